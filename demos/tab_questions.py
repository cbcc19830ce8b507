"""Questions tab: the ready-made personality questionnaire, and a team's own questionnaire.

`build(ctx, person)` lays out the tab. Its top part works out of the box: the Big Five traits from as few
questions as the shipped model needs (demos/tab_personality.py). Below it, the "personality type in the
browser" project's own questionnaire: each teammate answers, says which type they think they are (the label),
and the answers become tabular samples; the Train tab fits a tabular learner (grouped by person) and, once
deployed, this tab classifies new answers with calibrated uncertainty. Answers can also be pasted as
comma-separated numbers.
"""
from __future__ import annotations

import math
from typing import Any

from demos import tab_personality
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


ANSWER_CHOICES = [("1 · disagree", 1), ("2", 2), ("3 · neutral", 3), ("4", 4), ("5 · agree", 5)]


def build(ctx: AppContext, person: Any) -> None:
    """The tab's components and events (call inside `gr.Tab`); `person` is the page's name box."""
    import gradio as gr

    hidden = dict(api_visibility="undocumented")  # page plumbing, not part of the documented API
    gr.Markdown("## Your personality in a few questions\nThe ready-made model asks one question at a time, "
                "always the one that tells it most about you, and shows the five traits after every answer. "
                "Stop whenever you like.")
    state = gr.State(None, time_to_live=3600)
    with gr.Row():
        with gr.Column(scale=3):
            question = gr.Markdown(elem_id="pq-question")
            asked = gr.Textbox(visible=False, elem_id="pq-item")
            choice = gr.Radio(ANSWER_CHOICES, value=None, label="Your answer", elem_id="pq-answer")
            with gr.Row():
                stop_btn = gr.Button("Stop here", elem_id="pq-stop")
                again_btn = gr.Button("Start again", elem_id="pq-restart")
                short_btn = gr.Button("Short form (10 fixed questions)", elem_id="pq-short")
            traits = gr.Markdown(elem_id="pq-traits")
        with gr.Column(scale=2):
            curve = gr.Plot(label="Why it keeps asking: accuracy and confidence vs questions answered",
                            elem_id="pq-curve")
    outputs = [state, question, asked, traits]

    def reply(result: tuple) -> tuple:
        return (*result, gr.Radio(value=None))  # the answer buttons cleared for the next question

    gr.on(None, lambda: (*tab_personality.start(ctx), tab_personality.curve_figure(ctx)), None, [*outputs, curve],
          **hidden)  # on page load: the first question, and the plot
    choice.input(lambda st, item, value: reply(tab_personality.answer(ctx, st, item, value)), [state, asked, choice],
                 [*outputs, choice], api_name="personality_answer")
    stop_btn.click(lambda st: reply(tab_personality.stop(ctx, st)), [state], [*outputs, choice], **hidden)
    again_btn.click(lambda: reply(tab_personality.start(ctx, "adaptive")), None, [*outputs, choice], **hidden)
    short_btn.click(lambda: reply(tab_personality.start(ctx, "short form")), None, [*outputs, choice], **hidden)

    gr.Markdown("## Your team's own questionnaire\nAnswer, type your type as the label and save (a few per "
                "teammate); train with task 'tabular' in the Train tab, deploy, then classify.")
    answers = [gr.Slider(SCALE_MIN, SCALE_MAX, value=3, step=1, label=text) for _, text in QUESTIONS]
    pasted = gr.Textbox(label="…or paste all answers as numbers, e.g. 3,4,2,5,1,3,4,2", elem_id="pasted")
    with gr.Row():
        q_label = gr.Textbox(label="Your type (label, for training)", max_lines=1)
        q_save = gr.Button("Save as training sample")
        q_btn = gr.Button("Classify my answers", variant="primary", elem_id="q-run")
    q_probs = gr.Label(num_top_classes=4, label="Type probabilities")
    q_info = gr.Markdown(elem_id="q-info")

    def team_classify(pasted_text, who, *values):
        return classify(ctx, *values, pasted=pasted_text, person=who)

    def team_save(pasted_text, label, who, *values):
        return save_sample(ctx, *values, pasted=pasted_text, label=label, person=who)

    q_btn.click(team_classify, [pasted, person, *answers], [q_probs, q_info], api_name="questions")
    q_save.click(team_save, [pasted, q_label, person, *answers], [q_info], api_name="questions_save")
