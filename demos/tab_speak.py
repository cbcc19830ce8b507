"""Speak tab: microphone -> streaming transcript -> transcript classifier with the ASR's doubt folded in.

Text that the transcriber has committed never changes; the partial (uncommitted) tail is shown
apart. Each committed segment is classified: by the deployed text model, else zero-shot against
the classes the user typed. The segment's ASR confidence c (Whisper's own signals, calibrated)
is folded into the class probabilities as p' = c * p + (1 - c) / C: if the words may be wrong,
the label cannot be more certain than the words. A segment flagged as hallucinated abstains.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capture.browser import BrowserAudio
from capture.source import CaptureError
from demos import speech_session
from demos.context import AppContext, new_session_id, user_error
from demos.inputs import MAX_LABEL_CHARS, MAX_LABELS_TEXT_CHARS, clean_text, read_audio_file
from demos.monitor import speech_rate_wps
from demos.speech_session import SpeechWorker
from models.asr_confidence import HALLUCINATED_NOTE
from models.prediction import Prediction, RoutingPolicy, make_prediction

# label: description. Zero-shot compares the sentence with the description (a bare label word
# works less well: on MiniLM, "Can you help me with my homework?" is nearer "complaint" than "question")
DEFAULT_LABELS = ("question: a question asking for something, greeting: a greeting saying hello, "
                  "complaint: a complaint that something is wrong, thanks: thanking someone")
MAX_LABELS = 20
MAX_CHUNK_S = 10.0  # one microphone chunk (the browser sends 0.5 s); longer ones are refused


@dataclass
class SpeakState:
    """One browser tab's microphone session (lives in that user's gr.State)."""

    session_id: str = field(default_factory=new_session_id)
    audio: BrowserAudio = field(default_factory=BrowserAudio)
    stream: Any = None  # the per-user streaming transcriber (its buffer) on the hub's shared Whisper
    worker: SpeechWorker | None = None  # decodes this user's audio off the request thread
    segments: list = field(default_factory=list)  # closed sentences (with ASR confidence), in order
    earlier_text: str = ""  # committed text of recordings already finished
    committed_text: str = ""  # committed text of the current recording (never retracted)
    partial: str = ""
    last_text: str = ""  # last committed segment (the Train tab can save it as a sample)
    last_prediction: Prediction | None = None


def parse_labels(text: str) -> dict[str, str]:
    """"question, greeting: saying hello" -> {label: description}; errors name the problem."""
    out: dict[str, str] = {}
    for part in clean_text(text, "list of classes", MAX_LABELS_TEXT_CHARS).split(","):
        label, _, desc = part.partition(":")
        label = clean_text(label, "class name", MAX_LABEL_CHARS)
        if label:
            out[label] = desc.strip() or label
    if len(out) < 2:
        raise user_error("Type at least two classes separated by commas, e.g. “question, greeting, complaint”.")
    if len(out) > MAX_LABELS:
        raise user_error(f"At most {MAX_LABELS} classes, please (got {len(out)}).")
    return out


FOLDED_NOTE = "uncalibrated: the text model's probabilities mixed with the ASR confidence score"


def fold_asr_confidence(prediction: Prediction, asr_confidence: float, hallucinated: bool,
                        policy: RoutingPolicy = RoutingPolicy()) -> Prediction:
    """p' = c * p + (1 - c) / C, decision re-taken with the same policy; hallucinated -> abstain."""
    c = float(np.clip(asr_confidence, 0.0, 1.0))
    n = len(prediction.classes)
    probs = c * prediction.probs + (1.0 - c) / n
    extra = {**prediction.extra, "asr_confidence": c, "asr_hallucinated": hallucinated,
             "text_probs": [float(p) for p in prediction.probs]}
    # mixed with an uncalibrated score, the result is not calibrated, whatever the text model was
    return make_prediction(prediction.classes, probs, policy=policy, calibrated=False, calibration=FOLDED_NOTE,
                           abstain_because=HALLUCINATED_NOTE if hallucinated else None,
                           timestamp_s=prediction.timestamp_s, latency_ms=prediction.latency_ms, extra=extra)


def classify_segment(ctx: AppContext, segment: Any, labels_text: str) -> Prediction:
    text = segment.text.strip()
    bundle = ctx.bundle("text") or speech_session.zero_shot_classifier(ctx, parse_labels(labels_text))
    prediction = bundle.predictions([text], timestamp_s=segment.start_s)[0]
    return fold_asr_confidence(prediction, segment.confidence.confidence, segment.confidence.hallucinated,
                               bundle.policy)


def process_chunk(ctx: AppContext, payload: tuple[int, np.ndarray] | None, labels_text: str,
                  state: SpeakState | None, person: str = "") -> tuple[str, str, dict | None, str, SpeakState]:
    """One microphone chunk -> (committed transcript, partial, class probs, info, state).

    Returns at once with what has been transcribed so far; decoding runs in the session's worker.
    """
    state = state if isinstance(state, SpeakState) else SpeakState()
    if _chunk_seconds(payload) > MAX_CHUNK_S:
        raise user_error(f"An audio chunk longer than {MAX_CHUNK_S:.0f} s was refused; the microphone sends "
                         "short chunks. Upload long recordings with “Transcribe the recording”.")
    try:
        chunk = state.audio.push(payload)
    except CaptureError as e:
        raise user_error(f"This audio chunk cannot be used ({e}).", e) from e
    if state.worker is not None and state.worker.error is not None:
        error, state.worker, state.stream = state.worker.error, None, None
        raise user_error(f"Transcription stopped ({type(error).__name__}). Start recording again.", error)
    if chunk is None:
        return _outputs(state)
    if state.worker is None:
        parse_labels(labels_text)  # bad classes: say so now, not after the first sentence
        person = clean_text(person, "name")
        state.stream = speech_session.open_stream(ctx)
        state.worker = SpeechWorker(state.stream, lambda update, labels: _absorb(ctx, state, update, labels, person),
                                    state.session_id, labels_text)
    ctx.monitor.record_audio("speech", chunk.samples)
    state.worker.push(chunk, labels_text)
    return _outputs(state)


def _chunk_seconds(payload: Any) -> float:
    try:
        return len(payload[1]) / float(payload[0])
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return 0.0  # not a (rate, samples) pair: BrowserAudio.push says what is wrong


def process_stream_chunk(ctx: AppContext, payload: tuple[int, np.ndarray] | None, labels_text: str,
                         state: SpeakState | None, person: str = "") -> tuple[Any, ...]:
    """The browser microphone's stream: like process_chunk, but a bad chunk (or bad classes) is
    answered in the info box and the stream keeps running, instead of ending it with an error."""
    import gradio as gr

    state = state if isinstance(state, SpeakState) else SpeakState()
    try:
        return process_chunk(ctx, payload, labels_text, state, person)
    except gr.Error as e:
        committed, partial, probs, _, state = _outputs(state)
        return committed, partial, probs, f"**{e.message}**", state


def finish(ctx: AppContext, labels_text: str, state: SpeakState | None, person: str = ""):
    """Recording stopped: flush the resampler, let Whisper catch up, commit what is left."""
    if not isinstance(state, SpeakState) or state.worker is None:
        return _outputs(state if isinstance(state, SpeakState) else SpeakState())
    tail = state.audio.flush()
    if tail is not None:
        state.worker.push(tail, labels_text)
    state.worker.finish(labels_text)
    outputs = _outputs(state)
    # the next recording starts a fresh stream (times restart at 0); keep what was said
    state.worker, state.stream = None, None
    state.earlier_text, state.committed_text, state.partial = _full_text(state), "", ""
    return outputs


def close(state: Any) -> None:
    """Session ended (Gradio's delete_callback): stop the worker thread."""
    worker = getattr(state, "worker", None)
    if worker is not None:
        worker.stop()
        state.worker, state.stream = None, None


def process_file(ctx: AppContext, path: str | None, labels_text: str, person: str = "") -> tuple[str, str, dict | None, str]:
    """An uploaded recording through the same streaming code, as fast as possible."""
    if not path:
        raise user_error("Choose an audio file first.")
    parse_labels(labels_text)  # fail early on bad classes, before minutes of decoding
    person = clean_text(person, "name")
    samples = read_audio_file(path)
    if float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) < 1e-4:
        raise user_error("This recording is silent: nothing to transcribe. Check the microphone and record again.")
    state = SpeakState()
    state.stream = speech_session.open_stream(ctx)
    from capture.items import AUDIO_SAMPLE_RATE, AudioChunk

    step = AUDIO_SAMPLE_RATE  # feed 1 s chunks, like a live stream
    for start in range(0, len(samples), step):
        piece = samples[start:start + step]
        chunk = AudioChunk(piece, AUDIO_SAMPLE_RATE, start / AUDIO_SAMPLE_RATE, source=f"file:{Path(path).name}")
        _absorb(ctx, state, speech_session.step(state.stream, chunk), labels_text, person)
    committed, partial, probs, info, _ = _absorb(ctx, state, speech_session.finish(state.stream), labels_text, person)
    if not committed.strip():
        raise user_error("No speech found in this recording (only silence or noise). Speak closer to the microphone.")
    return committed, partial, probs, info


def _absorb(ctx: AppContext, state: SpeakState, update: Any, labels_text: str, person: str):
    """Classify newly committed segments, offer uncertain ones for review, update the state."""
    state.committed_text, state.partial = update.committed_text, update.partial_text
    for segment in update.segments:
        if not segment.text.strip():
            continue
        state.segments.append(segment)
        state.last_text = segment.text.strip()
        ctx.monitor.record("speech/speech_rate_wps", speech_rate_wps(segment.text, segment.end_s - segment.start_s))
        ctx.monitor.record("speech/asr_confidence", segment.confidence.confidence)
        prediction = classify_segment(ctx, segment, labels_text)
        state.last_prediction = prediction
        # drift of the text model's own output (what its validation reference holds); routing as shown
        ctx.monitor.record_outputs("speech", [make_prediction(prediction.classes, prediction.extra["text_probs"])])
        ctx.monitor.record_routing("speech", [prediction])
        ctx.monitor.record_timing("speech", prediction.latency_ms)
        ctx.review.offer("text", prediction, state.last_text, person=person or None, session=state.session_id)
    return _outputs(state)


def _full_text(state: SpeakState) -> str:
    return " ".join(t for t in (state.earlier_text.strip(), state.committed_text.strip()) if t)


def _outputs(state: SpeakState):
    committed = _full_text(state)
    partial = f"*{state.partial.strip()}…*" if state.partial.strip() else ""
    p = state.last_prediction
    if p is None:
        return committed, partial, None, "Speak: committed text appears above, the uncertain tail in italics.", state
    pset = ", ".join(p.prediction_set) if p.prediction_set else "n/a"
    info = (f"“{state.last_text}” → **{p.label}** p={p.confidence:.2f} · decision **{p.decision.value}** · "
            f"ASR confidence {p.extra.get('asr_confidence', float('nan')):.2f}"
            + (" · WARNING: probably hallucinated" if p.extra.get("asr_hallucinated") else "")
            + f" · set {{{pset}}}")
    return committed, partial, p.as_label_dict(), info, state


def explain_last(ctx: AppContext, state: SpeakState | None, k: int = 3) -> str:
    """Nearest training phrases (with labels) to the last committed sentence, by MiniLM similarity."""
    from demos.explain import nearest_texts

    if not isinstance(state, SpeakState) or not state.last_text:
        raise user_error("Say something first: there is no committed sentence to explain.")
    examples = [(s.payload, s.label) for s in ctx.samples.samples("text") if isinstance(s.payload, str)]
    if not examples:
        return ("No training phrases yet, so the classes come from zero-shot similarity to their names. "
                "Save phrases in the Train tab (task 'text') to get nearest examples.")
    rows = nearest_texts(ctx.hub.get("text-embedder"), state.last_text, examples, k)
    lines = [f"Training phrases closest to “{state.last_text}”:"]
    lines += [f"- “{text}” → **{label}** (cosine {sim:.2f})" for text, label, sim in rows]
    return "\n".join(lines)
