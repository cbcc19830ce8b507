"""Review tab: teammates confirm or correct the predictions the model was unsure about."""
from __future__ import annotations

import time

import numpy as np

from demos.context import AppContext, user_error
from demos.inputs import clean_text
from demos.review import ReviewItem

QUEUE_COLUMNS = ["id", "task", "predicted", "p", "age", "person", "why queued"]


def queue_rows(ctx: AppContext, task: str = "", limit: int = 50) -> list[list]:
    """Pending items, oldest first, as rows for a gr.Dataframe."""
    now = time.time()
    return [
        [item.id, item.task, item.predicted, round(item.confidence, 3), _age(now - item.created_s), item.person or "",
         item.reason]
        for item in ctx.review.pending(limit=limit, task=task or None)
    ]


def queue_summary(ctx: AppContext) -> str:
    pending = ctx.review.count("pending")
    done = ctx.review.by_reviewer()
    who = ", ".join(
        f"{name}: {sum(v.values())} ({v.get('corrected', 0)} corrected)" for name, v in sorted(done.items())
    )
    s = ctx.settings.review
    return (
        f"**{pending} waiting for review.** Band: top-class probability between the abstain floor and "
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
