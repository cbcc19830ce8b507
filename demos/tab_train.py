"""Train tab: capture labelled samples, train with an honest split, read the evidence, deploy.

Samples come from the live tabs (the last webcam frame, the last committed transcript, the
questionnaire) with the person and session recorded, so a grouped split can keep every person
on one side. Training runs `train.trainer.train_model` (curves, diagnosis, calibration, the
random-vs-grouped leakage gap); with a model already deployed for the task, both are compared on
the new validation examples with McNemar's paired test. Deploy hot-swaps the bundle into the live tabs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from demos import engines
from demos.handlers import AppContext, user_error

TASKS = ("image", "landmarks", "text", "tabular")
SPLITS = ("grouped:person", "grouped:session", "random", "time:3")
COUNT_COLUMNS = ["class", "person", "samples"]
MONITOR_PIPELINE = {"image": engines.TEAM_IMAGE, "landmarks": engines.TEAM_SIGN, "text": "speech",
                    "tabular": "questions"}  # the Monitor's name for the live pipeline using each task's model
BASELINE_FILE = "validation_outputs.npz"  # written next to the bundle by the Train tab
FACE_CROP_PX = 224  # side of the face crops saved as image samples (what LearnerPipeline feeds a team model)


def counts_rows(ctx: AppContext, task: str) -> list[list]:
    per = ctx.samples.counts(task)["person_class"]
    rows = []
    for key, n in sorted(per.items()):
        person, _, label = key.partition("/")
        rows.append([label, person, n])
    return rows


def counts_markdown(ctx: AppContext, task: str) -> str:
    c = ctx.samples.counts(task)
    if not c["class"]:
        return f"No {task} samples yet."
    return (f"**{sum(c['class'].values())} {task} samples**: {len(c['class'])} classes, "
            f"{len(c['person'])} people, {len(c['session'])} sessions.")


def capture_frame(ctx: AppContext, task: str, webcam_state: Any, label: str, person: str, session: str) -> str:
    """Save the last webcam frame as an image sample (face crop) or a landmarks sample (hand)."""
    label, person, session = _meta(label, person, session)
    frame = getattr(webcam_state, "last_frame", None)
    if frame is None:
        raise user_error("Start the camera in the Webcam tab first: there is no frame to save.")
    if task == "image":
        faces = [p.box for p in getattr(webcam_state, "last_predictions", []) if p.box is not None]
        image = engines.face_crop(frame, faces[0], FACE_CROP_PX) if faces else frame
        sample = ctx.samples.add_image(image, label, person=person, session=session)
        where = "face crop" if faces else "whole frame (no face found)"
    elif task == "landmarks":
        features = engines.hand_features(frame)
        if features is None:
            raise user_error("No hand found in the last frame: hold one hand fully inside the picture.")
        sample = ctx.samples.add_landmarks(features, label, person=person, session=session)
        where = "hand landmarks"
    else:
        raise user_error(f"The camera gives image or landmarks samples; for {task} use the Speak or Questions tab.")
    return f"Saved {where} as **{label}** ({sample.id}). " + counts_markdown(ctx, task)


def capture_text(ctx: AppContext, speak_state: Any, typed: str, label: str, person: str, session: str) -> str:
    """Save a typed phrase, else the last committed transcript, as a text sample."""
    label, person, session = _meta(label, person, session)
    text = (typed or "").strip() or (getattr(speak_state, "last_text", "") or "").strip()
    if not text:
        raise user_error("Type a phrase, or speak in the Speak tab first: there is no transcript to save.")
    sample = ctx.samples.add_text(text, label, person=person, session=session)
    return f"Saved “{text[:60]}” as **{label}** ({sample.id}). " + counts_markdown(ctx, "text")


def train(ctx: AppContext, task: str, split: str, epochs: float | None = None,
          progress: Callable[..., Any] | None = None) -> tuple[str, str | None, str | None, str, str]:
    """-> (summary, learning-curves png, reliability png, evidence markdown, new bundle path).

    progress(fraction, desc=...) is told each stage (gr.Progress in the page)."""
    from models.bundle import load_bundle
    from train.datablocks import TaskData
    from train.fit import FitSettings
    from train.samples import StoreError
    from train.splits import SplitError
    from train.trainer import TrainSettings, compare_bundles, train_model

    if task not in TASKS:
        raise user_error(f"Choose a task among {', '.join(TASKS)}.")
    say = progress or (lambda *a, **k: None)
    say(0.02, desc="Reading the samples…")
    data = TaskData.from_store(ctx.samples, task)
    say(0.1, desc=f"Training on {len(data)} {task} samples ({split}, plus the other split for the leakage check)…")
    out = ctx.bundles_dir / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    fit = FitSettings(epochs=int(epochs)) if epochs else FitSettings()
    try:
        result = train_model(data, TrainSettings(task=task, split=split, fit=fit), out=out, plots_dir=out.with_suffix(".plots"))
    except (SplitError, StoreError, ValueError) as e:
        raise user_error(str(e), e) from e
    say(0.95, desc="Calibrated and exported; comparing with the deployed model…")
    _save_baseline(result, Path(result.bundle))
    evidence = [f"**Validation accuracy ({result.split_name})**: {result.score}",
                f"**Leakage check**: {result.leakage['message']}",
                f"**Diagnosis: {result.diagnosis.name}**. {result.diagnosis}"]
    cal = result.calibration
    evidence.append(f"**Calibration** (fitted on validation): temperature {cal.temperature:.2f}, "
                    f"ECE {cal.ece_before:.3f} → {cal.ece_after:.3f}")
    current = ctx.bundle(task)
    if current is not None:
        valid = data.subset(result.final.split.valid_idx)
        try:
            new = load_bundle(result.bundle)
            _, _, test = compare_bundles(current, new, valid, names=("deployed", "new"))
            evidence.append(f"**Deployed vs new** on the same {len(valid)} validation examples: {test}. "
                            "(The deployed model may have trained on some of them, which flatters it.)")
        except Exception as e:  # e.g. the classes changed: say so, do not fail the run
            evidence.append(f"Deployed vs new: not comparable ({e}).")
    for w in result.warnings:
        evidence.append(f"> Warning: {w}")
    plots = result.plots
    return (f"```\n{result.summary()}\n```", str(plots["learning_curves"]), str(plots["reliability"]),
            "\n\n".join(evidence), str(result.bundle))


def _save_baseline(result: Any, bundle: Path) -> None:
    """Calibrated confidence and entropy of the validation predictions: the Monitor's reference."""
    from models.prediction import softmax

    probs = softmax(result.final.logits, result.calibration.temperature)  # (n_valid, C)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)
    np.savez(bundle / BASELINE_FILE, confidence=probs.max(axis=1), entropy=entropy)


def deploy(ctx: AppContext, task: str, bundle_path: str) -> str:
    if not bundle_path:
        raise user_error("Train a model first (or there is nothing to deploy).")
    try:
        ctx.deploy(task, Path(bundle_path))
    except Exception as e:
        raise user_error(f"Could not deploy {bundle_path}: {e}. The previous model stays live.", e) from e
    baseline = Path(bundle_path) / BASELINE_FILE
    if baseline.exists():  # drift of the live outputs is then measured against validation
        values = np.load(baseline)
        for stat in ("confidence", "entropy"):
            ctx.monitor.set_baseline(f"{MONITOR_PIPELINE[task]}/{stat}", values[stat])
    where = {"image": "Webcam tab ('team image model')", "landmarks": "Webcam tab ('team sign model')",
             "text": "Speak tab", "tabular": "Questions tab"}[task]
    return f"Deployed **{Path(bundle_path).name}**: live now in the {where}."


def _meta(label: str, person: str, session: str) -> tuple[str, str, str]:
    label, person = (label or "").strip(), (person or "").strip()
    if not label:
        raise user_error("Type the label (class) of this sample first.")
    if not person:
        raise user_error("Type your name at the top: samples are grouped by person so validation is honest.")
    return label, person, (session or "").strip() or time.strftime("%Y-%m-%d")


def build(ctx: AppContext, webcam_state: Any, speak_state: Any, person: Any) -> Any:
    """The tab's components and events (called inside `with gr.Tab(...)`)."""
    import functools

    import gradio as gr

    bind = functools.partial
    hidden = dict(api_visibility="undocumented")
    with gr.Row():
        task = gr.Dropdown(list(TASKS), value="image", label="Task", elem_id="train-task")
        label = gr.Textbox(label="Label of the next samples", max_lines=1, elem_id="train-label")
        session = gr.Textbox(label="Session (default: today)", max_lines=1)
    with gr.Row():
        cam_btn = gr.Button("Add the last webcam frame", elem_id="train-add-frame")
        typed = gr.Textbox(label="Phrase (or the last transcript)", max_lines=1)
        text_btn = gr.Button("Add phrase / transcript")
    msg = gr.Markdown(elem_id="train-msg")
    counts = gr.Dataframe(headers=COUNT_COLUMNS, interactive=False, label="Samples per class and person")
    with gr.Row():
        split = gr.Dropdown(list(SPLITS), value=SPLITS[0], label="Validation split", elem_id="train-split")
        epochs = gr.Number(label="Epochs (empty = default)", precision=0)
        train_btn = gr.Button("Train", variant="primary", elem_id="train-run")
    summary = gr.Markdown()
    with gr.Row():
        curves = gr.Image(label="Learning curves", type="filepath")
        reliability = gr.Image(label="Reliability (before / after calibration)", type="filepath")
    evidence = gr.Markdown()
    bundle_path = gr.Textbox(label="New model", interactive=False)
    deploy_btn = gr.Button("Deploy to the live tabs", elem_id="train-deploy")
    deployed = gr.Markdown()

    def show_counts(t):
        return counts_rows(ctx, t)

    task.change(show_counts, [task], [counts], **hidden)
    cam_btn.click(bind(capture_frame, ctx), [task, webcam_state, label, person, session], [msg], **hidden).then(
        show_counts, [task], [counts], **hidden)
    text_btn.click(bind(capture_text, ctx), [speak_state, typed, label, person, session], [msg], **hidden).then(
        show_counts, [task], [counts], **hidden)
    def run_training(t, s, e, progress=gr.Progress()):
        return train(ctx, t, s, e, progress)

    train_btn.click(run_training, [task, split, epochs], [summary, curves, reliability, evidence, bundle_path],
                    concurrency_limit=1, concurrency_id="train", api_name="train")
    deploy_btn.click(bind(deploy, ctx), [task, bundle_path], [deployed], api_name="deploy")
    return counts
