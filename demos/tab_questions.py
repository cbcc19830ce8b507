"""Questions tab: a short questionnaire answered in the browser, classified by a tabular learner.

The "personality type in the browser" project: each teammate answers, says which type they think
they are (the label), and the answers become tabular samples; the Train tab fits a tabular
learner (grouped by person) and, once deployed, this tab classifies new answers with calibrated
uncertainty. Answers can also be pasted as comma-separated numbers.
"""
from __future__ import annotations

import math
from typing import Any

from demos.context import AppContext, user_error
from demos.inputs import clean_text
from demos.tab_webcam import _label

# (column name, statement) answered on a 1 (disagree) .. 5 (agree) scale
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("q_party", "I feel energised after a party."),
    ("q_plan", "I plan my week in advance."),
    ("q_talk", "I start conversations with strangers."),
    ("q_detail", "I notice small details others miss."),
    ("q_worry", "I worry about things that might go wrong."),
    ("q_new", "I like trying food I have never had."),
    ("q_alone", "I need time alone to recharge."),
    ("q_rules", "Rules are there to be followed."),
)
SCALE_MIN, SCALE_MAX = 1, 5


def parse_answers(values: list[Any] | tuple[Any, ...] | None, pasted: str = "") -> dict[str, float]:
    """Slider values (or a pasted "3,4,2,...") -> {question: answer}; clear errors when malformed."""
    pasted = clean_text(pasted, "pasted answers", 20 * len(QUESTIONS))
    if pasted:
        parts = [p.strip() for p in pasted.replace(";", ",").split(",") if p.strip()]
        if len(parts) != len(QUESTIONS):
            raise user_error(
                f"Paste exactly {len(QUESTIONS)} answers separated by commas (got {len(parts)}), e.g. 3,4,2,5,1,3,4,2."
            )
        values = parts
    if values is None or len(values) != len(QUESTIONS):
        raise user_error(f"Answer all {len(QUESTIONS)} questions.")
    answers = {}
    for (key, text), value in zip(QUESTIONS, values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise user_error(f"Answer to “{text}” is {value!r}: give a number from {SCALE_MIN} to {SCALE_MAX}.") from None
        if not math.isfinite(number) or not SCALE_MIN <= number <= SCALE_MAX:
            raise user_error(f"Answer to “{text}” is {value!r}: give a number from {SCALE_MIN} to {SCALE_MAX}.")
        answers[key] = number
    return answers


def classify(ctx: AppContext, *values: Any, pasted: str = "", person: str = "") -> tuple[dict | None, str]:
    """Answers -> (class probabilities, markdown with decision and prediction set)."""
    answers = parse_answers(list(values), pasted)
    person = clean_text(person, "name")
    bundle = ctx.bundle("tabular")
    if bundle is None:
        raise user_error(
            "No questionnaire model is deployed yet. Answer, type your type as the label and press "
            "'Save as training sample' (a few per teammate), then train with task 'tabular' in the Train tab."
        )
    try:
        prediction = bundle.predictions([answers])[0]
    except Exception as e:
        raise user_error(f"The questionnaire model could not use these answers ({e}); retrain it on these questions.", e) from e
    ctx.monitor.record_predictions("questions", [prediction])
    item_id = ctx.review.offer("tabular", prediction, answers, person=person or None, session="questions")
    pset = ", ".join(prediction.prediction_set) if prediction.prediction_set else "n/a"
    note = f" · sent to review (item {item_id})" if item_id else ""
    text = (
        f"**{prediction.label}** p={prediction.confidence:.2f} · decision **{prediction.decision.value}** · "
        f"prediction set {{{pset}}}{note}"
    )
    return _label([prediction]), text


def save_sample(ctx: AppContext, *values: Any, pasted: str = "", label: str = "", person: str = "", session: str = "") -> str:
    answers = parse_answers(list(values), pasted)
    label, person = clean_text(label, "label"), clean_text(person, "name")
    if not label:
        raise user_error("Type the label (your type) before saving the answers as a training sample.")
    if not person:
        raise user_error("Type your name as person: the model is validated on people it has not seen.")
    session = clean_text(session, "session name") or "questions"
    sample = ctx.samples.add_tabular(answers, label, person=person, session=session)
    counts = ctx.samples.counts("tabular")["class"]
    return f"Saved sample {sample.id} ({label}). Questionnaire samples per class: {counts}"
