"""Review tab: teammates confirm or correct the predictions the model was unsure about.

Each teammate sees their own queue ("mine": the items whose input came from the name typed at the top of the
page) and a reviewer can see everyone's ("everyone"); with no name typed, "mine" cannot filter and shows all.
"""
from __future__ import annotations

import time

import numpy as np

from demos.context import AppContext, user_error
from demos.inputs import clean_text
from demos.review import ReviewItem

QUEUE_COLUMNS = ["id", "task", "predicted", "p", "age", "person", "why queued"]
SCOPES = ("mine", "everyone")  # whose items the queue lists: the typed name's own, or all (a reviewer's view)


def scope_person(scope: str | None, person: str | None) -> str | None:
    """The name whose items to list: the typed name for "mine", None (everyone) for "everyone" or no name."""
    scope = scope or SCOPES[0]
    if scope not in SCOPES:
        raise user_error(f"Show {' or '.join(repr(s) for s in SCOPES)} items, not {scope!r}.")
    name = clean_text(person, "name")
    return name if scope == "mine" and name else None


def queue_rows(ctx: AppContext, task: str = "", limit: int = 50, scope: str = "mine", person: str = "") -> list[list]:
    """Pending items, oldest first, as rows for a gr.Dataframe: `person`'s own ("mine") or everyone's."""
    now = time.time()
    return [
        [item.id, item.task, item.predicted, round(item.confidence, 3), _age(now - item.created_s), item.person or "",
         item.reason]
        for item in ctx.review.pending(limit=limit, task=task or None, person=scope_person(scope, person))
    ]


def queue_summary(ctx: AppContext, scope: str = "mine", person: str = "") -> str:
    pending = ctx.review.count("pending")
    name = scope_person(scope, person)
    if name is not None:
        waiting = f"**{ctx.review.count('pending', person=name)} of yours ({name}) waiting for review** ({pending} from everyone)."
    elif (scope or SCOPES[0]) == "mine":
        waiting = f"**{pending} waiting for review** (everyone's: type your name at the top to see only yours)."
    else:
        waiting = f"**{pending} waiting for review** (everyone's)."
    done = ctx.review.by_reviewer()
    who = ", ".join(
        f"{name}: {sum(v.values())} ({v.get('corrected', 0)} corrected)" for name, v in sorted(done.items())
    )
    s = ctx.settings.review
    return (
        f"{waiting} Band: top-class probability between the abstain floor and "
        f"{s.accept_at:.2f}. Reviews so far: {who or 'none yet'}."
    )


def show_item(ctx: AppContext, item_id: float | int | None) -> tuple[np.ndarray | None, str | None, str, dict | None, str, list[str]]:
    """(image, audio path, text, probabilities, description, label choices) of one item."""
    item = _item(ctx, item_id)
    value = item.load_input()
    image = value if item.kind == "image" else None
    audio = str(item.input_path) if item.kind == "audio" and item.input_path else None
    text = value if item.kind == "text" else (str(value) if item.kind == "json" else "")
    pset = item.prediction.get("prediction_set")
    desc = (
        f"Item **{item.id}** ({item.task}) · model says **{item.predicted}** with p={item.confidence:.2f}"
        + (f" · prediction set {{{', '.join(pset)}}}" if pset else "")
        + f" · decision {item.prediction.get('decision')}: {item.reason}"
        + f" · {item.prediction.get('calibration', 'uncalibrated')}"
    )
    return image, audio, text or "", item.prediction.get("probs"), desc, item.classes


def resolve(ctx: AppContext, item_id: float | int | None, reviewer: str, label: str | None) -> str:
    """Confirm (label empty or equal to the prediction) or correct; the item becomes a sample."""
    item = _item(ctx, item_id)
    reviewer, label = clean_text(reviewer, "reviewer's name"), clean_text(label, "label")
    try:
        done = ctx.review.resolve(item.id, reviewer, label or None, sink=ctx.sample_from_review)
    except (ValueError, KeyError) as e:
        raise user_error(str(e).strip("'\""), e) from e
    verb = "confirmed as" if done.status == "confirmed" else "corrected to"
    return f"Item {done.id} {verb} **{done.label}** by {done.reviewer}; saved as training sample {done.sample_id}."


def skip(ctx: AppContext, item_id: float | int | None, reviewer: str) -> str:
    item = _item(ctx, item_id)
    ctx.review.skip(item.id, clean_text(reviewer, "reviewer's name"))
    return f"Item {item.id} skipped."


def _item(ctx: AppContext, item_id: float | int | None) -> ReviewItem:
    if item_id is None or (isinstance(item_id, float) and not np.isfinite(item_id)):
        raise user_error("Pick an item: click a row of the queue or type its id.")
    item = ctx.review.get(int(item_id))
    if item is None:
        raise user_error(f"No review item {int(item_id)}; refresh the queue.")
    return item


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
