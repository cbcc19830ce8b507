"""Train tab: capture labelled samples, train with an honest split, read the evidence, deploy.

Samples come from the live tabs (the last webcam frame, the last committed transcript, the
questionnaire, voice recordings from the microphone) with the person and session recorded, so a
grouped split can keep every person on one side. Voice recordings of spoken commands refit the
team's command calibration (`train.command_calibration`: temperature, rejection biases, surface
forms learned from the transcripts, validated on persons held out), which the Speak tab's commands
mode then uses. Training runs `train.trainer.train_model` (curves, diagnosis, calibration, the
random-vs-grouped leakage gap); with a model already deployed for the task, both are compared on
the new validation examples with McNemar's paired test. Deploy hot-swaps the bundle into the live tabs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from demos import vision_session
from demos.context import AppContext, user_error
from demos.deployed import DeployError
from demos.inputs import MAX_PHRASE_CHARS, check_int, clean_text

TASKS = ("image", "landmarks", "text", "tabular")
SPLITS = ("grouped:person", "grouped:session", "random", "time:3")
COUNT_COLUMNS = ["class", "person", "samples"]
SAMPLE_COLUMNS = ["id", "label", "person", "session", "captured", "content"]
MAX_SAMPLE_ROWS = 500  # newest samples listed in the tab
MAX_EPOCHS = 200
MONITOR_PIPELINE = {"image": vision_session.TEAM_IMAGE, "landmarks": vision_session.TEAM_SIGN, "text": "speech",
                    "tabular": "questions"}  # the Monitor's name for the live pipeline using each task's model
BASELINE_FILE = "validation_outputs.npz"  # written next to the bundle by the Train tab
FACE_CROP_PX = 224  # side of the face crops saved as image samples (what LearnerPipeline feeds a team model)
MIN_VOICE_S = 0.2  # a recorded command shorter than this holds no word
MAX_VOICE_S = 10.0  # a command is a word or a few; longer recordings are refused


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
        image = vision_session.face_crop(frame, faces[0], FACE_CROP_PX) if faces else frame
        sample = ctx.samples.add_image(image, label, person=person, session=session)
        where = "face crop" if faces else "whole frame (no face found)"
    elif task == "landmarks":
        features = vision_session.hand_features(frame)
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
    text = clean_text(typed, "phrase", MAX_PHRASE_CHARS) or clean_text(getattr(speak_state, "last_text", ""),
                                                                       "transcript", MAX_PHRASE_CHARS)
    if not text:
        raise user_error("Type a phrase, or speak in the Speak tab first: there is no transcript to save.")
    sample = ctx.samples.add_text(text, label, person=person, session=session)
    return f"Saved “{text[:60]}” as **{label}** ({sample.id}). " + counts_markdown(ctx, "text")


def capture_voice(ctx: AppContext, recording: Any, label: str, person: str, session: str) -> str:
    """Save a microphone recording of one spoken command (label "none" for anything else) as an audio sample."""
    import io

    import soundfile

    from capture.audio import as_float32_mono, resample
    from capture.items import AUDIO_SAMPLE_RATE
    from capture.source import CaptureError

    label, person, session = _meta(label, person, session)
    if recording is None:
        raise user_error("Record yourself saying the command first (the microphone above the button).")
    try:
        rate, data = recording
        audio = resample(as_float32_mono(data, int(rate)), int(rate), AUDIO_SAMPLE_RATE)
    except (CaptureError, TypeError, ValueError) as e:
        raise user_error(f"This recording cannot be used ({e}). Record again.", e) from e
    duration_s = len(audio) / AUDIO_SAMPLE_RATE
    if not MIN_VOICE_S <= duration_s <= MAX_VOICE_S:
        raise user_error(f"The recording lasts {duration_s:.1f} s; record one command, {MIN_VOICE_S}-{MAX_VOICE_S:.0f} s long.")
    if float(np.abs(audio).max()) < 1e-3:
        raise user_error("The recording is silent: check that the microphone is on, then record again.")
    wav = io.BytesIO()
    soundfile.write(wav, audio, AUDIO_SAMPLE_RATE, format="WAV", subtype="PCM_16")
    sample = ctx.samples.add("audio", label, data=wav.getvalue(), suffix=".wav", person=person, session=session)
    return f"Saved a {duration_s:.1f} s recording as **{label}** ({sample.id}). " + counts_markdown(ctx, "audio")


class _LockedScorer:
    """The hub's command scorer, one utterance at a time under the Whisper lock (live sessions share it)."""

    def __init__(self, scorer: Any):
        self._scorer = scorer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scorer, name)

    def score(self, *args: Any, **kwargs: Any) -> Any:
        from demos.speech_session import ASR_LOCK

        with ASR_LOCK:
            return self._scorer.score(*args, **kwargs)


def fit_commands(ctx: AppContext, progress: Callable[..., Any] | None = None) -> str:
    """Refit the team's command calibration on the voice recordings, validated on persons held out;
    the Speak tab's commands mode uses it from the next utterance on."""
    from models.commands import NONE_OF_THESE, CommandClassifier, CommandInputError
    from train.command_calibration import fit_command_calibration, store_clips

    say = progress or (lambda *a, **k: None)
    try:
        clips = store_clips(ctx.samples.root)
    except ValueError as e:
        raise user_error(f"{e}".replace(str(ctx.samples.root), "the app's sample store"), e) from e
    labels = sorted({c.label for c in clips if c.label != NONE_OF_THESE})
    persons = sorted({c.person for c in clips})
    if len(labels) < 2:
        raise user_error("Record at least two different commands (and, if you can, some other words labelled 'none').")
    try:
        scorer = _LockedScorer(ctx.hub.get("command-scorer"))
        prior = CommandClassifier(labels, scorer).calibration
    except CommandInputError as e:
        raise user_error(f"Commands: {e}.", e) from e
    say(0.05, desc=f"Scoring {len(clips)} recordings with Whisper (about 1-2 s each)…")
    fitted_on = f"team recordings ({len(clips)} clips by {len(persons)} person(s), labels {', '.join(labels)})"
    try:
        cal, report = fit_command_calibration(clips, [labels], scorer, fitted_on=fitted_on, learn=True,
                                              prior=prior if prior.calibrated else None)
    except ValueError as e:
        raise user_error(str(e), e) from e
    cal.to_json(ctx.command_calibration_path)
    h = report["heldout"]
    verdict = "calibrated" if cal.calibrated else "**not calibrated** (too few recordings or persons; it is used, labelled so)"
    forms = f" Learned spellings: {cal.extra_forms}." if cal.extra_forms else ""
    return (f"Command calibration refitted on {report['n_clips']} recordings by {len(persons)} person(s): {verdict}. "
            f"On persons held out ({h['folds']}-fold by person): accuracy {h['accuracy']:.2f}, ECE {h['ece']:.3f}, "
            f"'none of these' rejected {h['reject_unknown_rate']:.2f} of other words, false rejects "
            f"{h['false_reject_rate']:.2f}.{forms} The Speak tab's commands mode uses it now.")


def transcribe_voice(ctx: AppContext) -> str:
    """Each voice recording's transcript becomes a text sample with the recording's label, person and time,
    so a text model trained on them (task "text", meaning mode) learns how Whisper writes the team's
    words ("to." for "two"). Recordings transcribed before are skipped."""
    from capture.audio import load_audio
    from capture.items import AUDIO_SAMPLE_RATE
    from demos.speech_session import ASR_LOCK

    recordings = ctx.samples.samples("audio")
    if not recordings:
        raise user_error("No voice recordings yet: record each command a few times first.")
    done = {(s.person, s.captured_at) for s in ctx.samples.samples("text")}
    transcriber = ctx.hub.get("asr")
    added, silent = 0, 0
    for s in recordings:
        if (s.person, s.captured_at) in done or s.path is None:
            continue
        with ASR_LOCK:
            text = transcriber.transcribe(load_audio(s.path, AUDIO_SAMPLE_RATE)).text.strip()
        if not text:
            silent += 1
            continue
        ctx.samples.add_text(text, s.label, person=s.person, session=s.session, captured_at=s.captured_at)
        added += 1
    return (f"Added {added} transcripts of voice recordings as text samples"
            + (f" ({silent} had no words)" if silent else "")
            + ". Train the 'text' task on them to classify by meaning the way Whisper hears your team.")


def train(ctx: AppContext, task: str, split: str, epochs: float | None = None,
          progress: Callable[..., Any] | None = None) -> tuple[str, str | None, str | None, str, str]:
    """-> (summary, learning-curves png, reliability png, evidence markdown, new bundle's name).

    progress(fraction, desc=...) is told each stage (gr.Progress in the page)."""
    from models.bundle import load_bundle
    from train.datablocks import TaskData
    from train.fit import FitSettings
    from train.samples import StoreError
    from train.splits import SplitError
    from train.trainer import TrainSettings, compare_bundles, train_model

    if task not in TASKS:
        raise user_error(f"Choose a task among {', '.join(TASKS)}.")
    if split not in SPLITS:
        raise user_error(f"Choose a validation split among {', '.join(SPLITS)}.")
    epochs = check_int(epochs, "number of epochs", 1, MAX_EPOCHS)
    say = progress or (lambda *a, **k: None)
    say(0.02, desc="Reading the samples…")
    data = TaskData.from_store(ctx.samples, task)
    say(0.1, desc=f"Training on {len(data)} {task} samples ({split}, plus the other split for the leakage check)…")
    out = ctx.bundles_dir / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    fit = FitSettings(epochs=epochs)
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
            "\n\n".join(evidence), Path(result.bundle).name)


def _save_baseline(result: Any, bundle: Path) -> None:
    """Calibrated confidence and entropy of the validation predictions: the Monitor's reference."""
    from models.prediction import softmax

    probs = softmax(result.final.logits, result.calibration.temperature)  # (n_valid, C)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)
    np.savez(bundle / BASELINE_FILE, confidence=probs.max(axis=1), entropy=entropy)


def deploy(ctx: AppContext, task: str, name: str | None) -> str:
    """Make the bundle `name` (chosen from the app's bundles folder) live in the tabs, open sessions too."""
    from models.bundle import BundleError

    if task not in TASKS:
        raise user_error(f"Choose a task among {', '.join(TASKS)}.")
    if not name:
        raise user_error("Train a model first, or choose one from the list of models.")
    try:
        bundle = ctx.deploy(task, str(name))
    except (DeployError, BundleError) as e:
        raise user_error(f"{e} The previous model stays live.", e) from e
    except Exception as e:  # a broken bundle: say so without the server's paths
        raise user_error(f"{str(name)[:80]} could not be loaded ({type(e).__name__}); the previous model stays "
                         "live. Retrain it.", e) from e
    baseline = bundle.root / BASELINE_FILE
    if baseline.exists():  # drift of the live outputs is then measured against this model's validation outputs
        values = np.load(baseline)
        ctx.monitor.set_references(MONITOR_PIPELINE[task], {stat: values[stat] for stat in ("confidence", "entropy")},
                                   f"validation of {bundle.root.name}")
    else:  # the previous model's references do not describe this one
        ctx.monitor.clear_references(MONITOR_PIPELINE[task])
    where = {"image": "Webcam tab ('team image model')", "landmarks": "Webcam tab ('team sign model')",
             "text": "Speak tab", "tabular": "Questions tab"}[task]
    return f"Deployed **{bundle.root.name}**: live now in the {where}, for sessions already open too."


def bundle_choices(ctx: AppContext, task: str) -> list[str]:
    """Deployable models of `task` in the app's bundles folder, newest first."""
    return ctx.deployed.names(task) if task in TASKS else []


def sample_rows(ctx: AppContext, task: str, limit: int = MAX_SAMPLE_ROWS) -> list[list]:
    """The newest samples of `task` (kind), for the table the user relabels and deletes from."""
    if task not in TASKS:
        return []
    rows = []
    for s in reversed(ctx.samples.samples(task)[-limit:]):
        content = s.path.name if s.path is not None else str(s.payload)
        rows.append([s.id, s.label, s.person, s.session, time.strftime("%Y-%m-%d %H:%M", time.localtime(s.captured_at)),
                     content[:80]])
    return rows


def relabel_sample(ctx: AppContext, sample_id: str, label: str, who: str) -> str:
    """Give sample `sample_id` a new label; `who` (the name at the top of the page) is recorded."""
    from train.samples import StoreError

    sample_id, who = _sample_id(sample_id), _who(who)
    label = clean_text(label, "new label", required=True)
    try:
        ctx.samples.relabel(sample_id, label, by=who)
    except StoreError as e:
        raise user_error(str(e), e) from e
    return f"Sample {sample_id} relabelled **{label}** by {who}."


def delete_sample(ctx: AppContext, sample_id: str, who: str) -> str:
    """Remove sample `sample_id` (and its file); `who` is recorded."""
    from train.samples import StoreError

    sample_id, who = _sample_id(sample_id), _who(who)
    try:
        ctx.samples.remove(sample_id, by=who)
    except StoreError as e:
        raise user_error(str(e), e) from e
    return f"Sample {sample_id} deleted by {who}."


def _sample_id(value: Any) -> str:
    sample_id = clean_text(value, "sample id", 64)
    if not sample_id:
        raise user_error("Click a row of the samples table (or type a sample id) first.")
    return sample_id


def _who(value: Any) -> str:
    who = clean_text(value, "name")
    if not who:
        raise user_error("Type your name at the top: changes to samples record who made them.")
    return who


def _meta(label: str, person: str, session: str) -> tuple[str, str, str]:
    label, person = clean_text(label, "label"), clean_text(person, "name")
    if not label:
        raise user_error("Type the label (class) of this sample first.")
    if not person:
        raise user_error("Type your name at the top: samples are grouped by person so validation is honest.")
    return label, person, clean_text(session, "session name") or time.strftime("%Y-%m-%d")


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
    with gr.Accordion("Voice commands: record each command (label 'none' for other words), then fit", open=False):
        with gr.Row():
            voice = gr.Audio(sources=["microphone"], type="numpy", label="One spoken command", elem_id="train-voice")
            with gr.Column():
                voice_btn = gr.Button("Add voice recording (label above)", elem_id="train-add-voice")
                fit_btn = gr.Button("Fit the team's command calibration", elem_id="train-fit-commands")
                transcribe_btn = gr.Button("Add the recordings' transcripts as text samples", elem_id="train-transcribe")
        voice_msg = gr.Markdown(elem_id="train-voice-msg")
    counts = gr.Dataframe(headers=COUNT_COLUMNS, interactive=False, label="Samples per class and person")
    with gr.Accordion("Samples: relabel or delete", open=False):
        samples = gr.Dataframe(headers=SAMPLE_COLUMNS, interactive=False, label="Newest first",
                               elem_id="train-samples")
        with gr.Row():
            sample_id = gr.Textbox(label="Sample id (click a row)", max_lines=1, elem_id="train-sample-id")
            new_label = gr.Textbox(label="New label", max_lines=1, elem_id="train-new-label")
            relabel_btn = gr.Button("Relabel", elem_id="train-relabel")
            delete_btn = gr.Button("Delete", variant="stop", elem_id="train-delete")
        sample_msg = gr.Markdown(elem_id="train-sample-msg")
    with gr.Row():
        split = gr.Dropdown(list(SPLITS), value=SPLITS[0], label="Validation split", elem_id="train-split")
        epochs = gr.Number(label=f"Epochs (empty = default, at most {MAX_EPOCHS})", precision=0,
                           minimum=1, maximum=MAX_EPOCHS)
        train_btn = gr.Button("Train", variant="primary", elem_id="train-run")
    summary = gr.Markdown()
    with gr.Row():
        curves = gr.Image(label="Learning curves", type="filepath")
        reliability = gr.Image(label="Reliability (before / after calibration)", type="filepath")
    evidence = gr.Markdown()
    with gr.Row():
        model = gr.Dropdown(bundle_choices(ctx, "image"), value=None, label="Model to deploy (trained here, newest first)",
                            elem_id="train-model")
        deploy_btn = gr.Button("Deploy to the live tabs", elem_id="train-deploy")
    deployed = gr.Markdown()

    def show_task(t):
        return counts_rows(ctx, t), sample_rows(ctx, t), gr.Dropdown(choices=bundle_choices(ctx, t), value=None)

    def show_samples(t):
        return counts_rows(ctx, t), sample_rows(ctx, t)

    def pick_sample(evt: gr.SelectData, rows):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0]

    task.change(show_task, [task], [counts, samples, model], **hidden)
    cam_btn.click(bind(capture_frame, ctx), [task, webcam_state, label, person, session], [msg], **hidden).then(
        show_samples, [task], [counts, samples], **hidden)
    text_btn.click(bind(capture_text, ctx), [speak_state, typed, label, person, session], [msg], **hidden).then(
        show_samples, [task], [counts, samples], **hidden)
    voice_btn.click(bind(capture_voice, ctx), [voice, label, person, session], [voice_msg], **hidden)

    def run_fit_commands(progress=gr.Progress()):
        return fit_commands(ctx, progress)

    fit_btn.click(run_fit_commands, None, [voice_msg], concurrency_limit=1, concurrency_id="train", **hidden)
    transcribe_btn.click(bind(transcribe_voice, ctx), None, [voice_msg], concurrency_limit=1, concurrency_id="train",
                         **hidden).then(show_samples, [task], [counts, samples], **hidden)
    samples.select(pick_sample, [samples], [sample_id], **hidden)
    relabel_btn.click(bind(relabel_sample, ctx), [sample_id, new_label, person], [sample_msg],
                      api_name="sample_relabel").then(show_samples, [task], [counts, samples], **hidden)
    delete_btn.click(bind(delete_sample, ctx), [sample_id, person], [sample_msg],
                     api_name="sample_delete").then(show_samples, [task], [counts, samples], **hidden)

    def run_training(t, s, e, progress=gr.Progress()):
        *shown, name = train(ctx, t, s, e, progress)
        return *shown, gr.Dropdown(choices=bundle_choices(ctx, t), value=name)

    train_btn.click(run_training, [task, split, epochs], [summary, curves, reliability, evidence, model],
                    concurrency_limit=1, concurrency_id="train", api_name="train")
    deploy_btn.click(bind(deploy, ctx), [task, model], [deployed], api_name="deploy")
    return counts
