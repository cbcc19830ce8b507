"""The Questions tab's ready-made part: Big Five personality traits from as few questions as it needs.

Out of the box (no team training): the shipped questionnaire model (models.personality, trained by
train.personality_recipe on Open Psychometrics answers to the 50 IPIP items) asks ONE question; after each
answer it shows the five traits (probability of "high", the 90% set, the decision) and asks the unanswered item
that most reduces its expected uncertainty over the five traits. The person can stop at any time. The fixed
short form (10 items, two per trait) is one click away. A plot shows accuracy and mean confidence against the
number of questions answered, measured on respondents from countries held out from training and calibration.

Handlers are plain functions; the per-user state (a gr.State) is {"mode", "answers": {item: 1..5}, "asking"}
and is checked on every call, so a tampered or stale request gets a clear error, never a wrong answer.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from demos.context import AppContext, user_error

MODES = ("adaptive", "short form")
MODEL_NAME = "personality"  # the ModelHub entry (demos.context.hub_loaders)
CURVE_FILE = "questions_curve.json"  # shipped next to the bundle (train.personality_recipe.CURVE_FILE)
DECISION_WORDS = {"accept": "sure (accept)", "review": "unsure (a person should check)",
                  "abstain": "no idea (abstain)"}


def model(ctx: AppContext) -> Any:
    """The shared models.personality.PersonalityModel (loaded once per process by the hub)."""
    try:
        return ctx.hub.get(MODEL_NAME)
    except Exception as e:
        raise user_error(f"The personality model could not be loaded ({e}); reinstall livelearner or retrain it "
                         "with `livelearner train-default personality`.", e) from e


def start(ctx: AppContext, mode: str = "adaptive") -> tuple[dict, str, str, str]:
    """A fresh questionnaire -> (state, question markdown, asked item id, traits markdown)."""
    if mode not in MODES:
        raise user_error(f"Unknown questionnaire mode {str(mode)[:40]!r}; choose {' or '.join(MODES)}.")
    state = {"mode": mode, "answers": {}, "asking": None}
    return _next(ctx, state)


def answer(ctx: AppContext, state: Any, item_id: Any, value: Any) -> tuple[dict, str, str, str]:
    """Record `value` (1..5) as the answer to `item_id` (the question the page shows) and ask the next one."""
    from models.questionnaire_inputs import QuestionnaireInputError

    pm = model(ctx)
    state = check_state(pm, state)
    if state["asking"] is None:
        raise user_error("No question is open: press 'Start again' or 'Short form' to answer more.")
    if item_id != state["asking"]:
        raise user_error(f"This answer is for question {str(item_id)[:40]!r}, but the open question is "
                         f"{state['asking']}: reload the page and answer the question shown.")
    if value is None or value == "":
        raise user_error("Choose an answer from 1 (disagree) to 5 (agree) first.")
    try:
        number = pm.questionnaire.check_answer(value, state["asking"])
    except QuestionnaireInputError as e:
        raise user_error(f"{e}.", e) from e
    answers = {**state["answers"], state["asking"]: number}
    return _next(ctx, {**state, "answers": answers, "asking": None})


def stop(ctx: AppContext, state: Any) -> tuple[dict, str, str, str]:
    """End the questionnaire where it is: the traits from the answers so far, no open question."""
    pm = model(ctx)
    state = {**check_state(pm, state), "asking": None}
    n = len(state["answers"])
    return state, f"**Stopped after {n} question{'s' if n != 1 else ''}.** Start again for a new person.", "", \
        traits_markdown(pm, state["answers"])


def check_state(pm: Any, state: Any) -> dict:
    """The session state, checked: a dict with a known mode, answers {known item: 1..5}, an open item or None."""
    from models.questionnaire_inputs import QuestionnaireInputError

    if not isinstance(state, dict) or state.get("mode") not in MODES or not isinstance(state.get("answers"), dict):
        raise user_error("This questionnaire session is not valid (expired or tampered with): press 'Start again'.")
    try:
        answers = pm.questionnaire.check(state["answers"])
        asking = state.get("asking")
        if asking is not None:
            pm.questionnaire.item(asking)
    except (QuestionnaireInputError, TypeError) as e:
        raise user_error(f"This questionnaire session is not valid ({e}): press 'Start again'.", e) from e
    if asking is not None and asking in answers:
        raise user_error(f"Question {asking} is already answered: press 'Start again'.")
    return {"mode": state["mode"], "answers": answers, "asking": asking}


def _next(ctx: AppContext, state: dict) -> tuple[dict, str, str, str]:
    pm = model(ctx)
    answers = state["answers"]
    if state["mode"] == "adaptive":
        item = pm.next_question(answers)
    else:
        item = next((it for it in pm.short_form() if it.id not in answers), None)
    traits = traits_markdown(pm, answers)
    n = len(answers) + 1
    if item is None:
        done = "all 50" if state["mode"] == "adaptive" else "the 10 short-form"
        return {**state, "asking": None}, f"**Done: you answered {done} questions.**", "", traits
    how = ("chosen because it most reduces the model's expected uncertainty about the five traits"
           if state["mode"] == "adaptive" else "fixed short form, two items per trait")
    question = (f"### Question {n}: “{item.text}”\n1 = disagree · 3 = neutral · 5 = agree  \n"
                f"<small>{item.id} ({how}). Stop whenever you like: the traits below use the answers so far."
                f"</small>")
    return {**state, "asking": item.id}, question, item.id, traits


def traits_markdown(pm: Any, answers: dict[str, int]) -> str:
    """The five traits as a table: p(high), the 90% set, how sure (the routing decision)."""
    predictions = pm.predict(answers)
    first = next(iter(predictions.values()))
    n = len(answers)
    rows = [f"**Your traits after {n} answer{'s' if n != 1 else ''}**" + (" (none yet: the average person)"
                                                                          if n == 0 else ""), "",
            f"| trait | p(high) | {int(round((first.coverage or 0.9) * 100))}% set | how sure |", "|---|---|---|---|"]
    for trait, p in predictions.items():
        pset = "{" + ", ".join(p.prediction_set) + "}" if p.prediction_set else "n/a"
        rows.append(f"| {trait} | {p.probs[1]:.2f} | {pset} | {DECISION_WORDS[p.decision.value]} |")
    mean_confidence = sum(p.confidence for p in predictions.values()) / len(predictions)
    curve = read_curve(str(pm.bundle.root))
    short_form = float(np.mean(curve["short_form"]["accuracy"][-1])) if curve else None
    if n and short_form is not None and mean_confidence >= short_form:
        rows += ["", f"Mean confidence {mean_confidence:.2f}: as sure as the 10-question short form is right on "
                     f"held-out people ({short_form:.2f}). You can stop here, or answer more to be surer."]
    rows += ["", f"<small>High = above the median of the full 10-item scale. {first.calibration_note}.</small>"]
    return "\n".join(rows)


@functools.lru_cache(maxsize=4)
def read_curve(root: str) -> dict | None:
    """The bundle's accuracy-vs-questions curve (questions_curve.json), or None when it has none or it is
    unreadable (the page then says so)."""
    try:
        curve = json.loads((Path(root) / CURVE_FILE).read_text())
        for part in ("adaptive", "short_form"):
            np.asarray(curve[part]["accuracy"], float).reshape(len(curve[part]["n_questions"]), -1)
            np.asarray(curve[part]["confidence"], float).reshape(len(curve[part]["n_questions"]), -1)
        return curve
    except (OSError, ValueError, KeyError, TypeError):
        return None


def curve_figure(ctx: AppContext) -> Any:
    """Accuracy and mean confidence against questions answered (adaptive and short form), from the curve
    measured at training time on held-out countries (questions_curve.json next to the model)."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry shared by threads

    curve = read_curve(str(model(ctx).bundle.root))
    if curve is None:
        raise user_error(f"The model's accuracy curve ({CURVE_FILE}) is missing or unreadable; retrain with "
                         "`livelearner train-default personality`.")
    adaptive, short = curve["adaptive"], curve["short_form"]
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    for name, c, style in (("adaptive", adaptive, "o-"), ("short form", short, "s--")):
        n = c["n_questions"]
        ax.plot(n, np.mean(c["accuracy"], axis=1), style, color="C0", label=f"{name}: accuracy")
        ax.plot(n, np.mean(c["confidence"], axis=1), style, color="C1", label=f"{name}: mean confidence")
    ax.set(xlabel=f"questions answered ({curve.get('measured_on', 'held-out respondents')})",
           ylabel="mean over the five traits", ylim=(0.5, 1.0), xticks=adaptive["n_questions"][::2])
    ax.xaxis.label.set_fontsize(7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
