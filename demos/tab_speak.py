"""Speak tab: microphone -> streaming transcript -> a class, by meaning or as a spoken command.

The page's AudioWorklet sends numbered PCM chunks over the live connection (demos/live_transport.py);
`live_audio` checks each one's number (a missing chunk is a gap: counted on the Monitor tab and cut
between utterances, never stitched), and queues it for the session's SpeechWorker, which decodes
everything in order and catches up when it falls behind (the page shows how far behind it is).
Every decode's result goes back to the page as `live_view` data.

Text that the transcriber has committed never changes; the partial (uncommitted) tail is shown
apart, and both are updated on every decode. The user chooses how speech becomes a class:

- "meaning": each committed segment's text is classified by the deployed text model, else
  zero-shot against the classes the user typed. The segment's ASR confidence c (Whisper's own
  signals; a score, not calibrated) is folded into the class probabilities as p' = c * p + (1 - c) / C:
  if the words may be wrong, the label cannot be more certain than the words. A segment flagged as
  hallucinated abstains.
- "commands": the audio of each utterance the VAD closes is scored against the typed commands by
  `models.commands.CommandClassifier` (Whisper's decoder scores each command's text on the audio;
  "none of these" when it is none of them), calibrated by the team's recordings when the Train tab
  fitted a calibration, else by the shipped one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from capture.browser import BrowserAudio
from capture.source import CaptureError
from demos import speech_session
from demos.context import AppContext, new_session_id, user_error
from demos.inputs import MAX_LABEL_CHARS, MAX_LABELS_TEXT_CHARS, clean_text, read_audio_file
from demos.monitor import speech_rate_wps
from demos.speech_session import BacklogFull, SpeechWorker
from models.asr_confidence import HALLUCINATED_NOTE
from models.prediction import Prediction, RoutingPolicy, make_prediction

# label: description. Zero-shot compares the sentence with the description (a bare label word
# works less well: on MiniLM, "Can you help me with my homework?" is nearer "complaint" than "question")
DEFAULT_LABELS = ("question: a question asking for something, greeting: a greeting saying hello, "
                  "complaint: a complaint that something is wrong, thanks: thanking someone")
DEFAULT_COMMANDS = "yes, no, stop, go"
MODES = ("meaning", "commands")
MAX_LABELS = 20
MAX_CHUNK_S = 10.0  # one microphone chunk (the browser sends 0.1 s); longer ones are refused
CATCHING_UP_S = 1.5  # audio waiting for Whisper beyond which the page says it is catching up (one decode is ~0.5 s)


@dataclass
class SpeakState:
    """One browser tab's microphone session (lives in that user's gr.State)."""

    session_id: str = field(default_factory=new_session_id)
    audio: BrowserAudio = field(default_factory=BrowserAudio)
    stream: Any = None  # the per-user StreamDriver (its transcriber's buffer) on the hub's shared Whisper
    utterances: Any = None  # commands mode: speech_session.UtteranceCutter over this recording's audio
    worker: SpeechWorker | None = None  # decodes this user's audio off the request thread
    segments: list = field(default_factory=list)  # closed sentences (with ASR confidence), in order
    earlier_text: str = ""  # committed text of recordings already finished
    committed_text: str = ""  # committed text of the current recording (never retracted)
    partial: str = ""
    last_text: str = ""  # last committed segment (the Train tab can save it as a sample)
    last_prediction: Prediction | None = None
    last_mode: str = "meaning"  # how last_prediction was made
    last_audio: np.ndarray | None = None  # commands mode: the last utterance (16 kHz), for the Train tab
    note: str = ""  # e.g. "no speech" for the last utterance
    problem: str = ""  # the last bad input (chunk or classes), shown until the next good one
    # what the page's controls last set (set_live_choice); the live connection reads them with each chunk
    mode: str = "meaning"
    labels_text: str = DEFAULT_LABELS
    commands_text: str = DEFAULT_COMMANDS
    person: str = ""
    live_token: str = ""  # demos.live_sessions: this page's live connection
    notify: Any = None  # called (no arguments) after every decode: the live connection sends live_view


@dataclass(frozen=True)
class Choice:
    """How the user asked for speech to be classified (read from the page with every chunk)."""

    mode: str = "meaning"  # one of MODES
    labels_text: str = DEFAULT_LABELS  # meaning: "label: description, ..."
    commands: tuple[str, ...] = ()  # commands: the words to listen for


def parse_choice(mode: str | None, labels_text: str, commands_text: str | None) -> Choice:
    """The page's mode, classes and commands -> Choice; bad input is a user_error saying what to fix."""
    mode = (mode or "meaning").strip().lower()
    if mode not in MODES:
        raise user_error(f"Choose how to classify: {' or '.join(MODES)}.")
    if mode == "meaning":
        parse_labels(labels_text)
        return Choice("meaning", labels_text)
    return Choice("commands", labels_text, parse_commands(commands_text))


def parse_commands(text: str | None) -> tuple[str, ...]:
    """"yes, no, stop" -> ("yes", "no", "stop"); duplicates, sentences and non-English words are
    refused by models.commands when the classifier is built."""
    commands = tuple(c for c in (clean_text(part, "command", MAX_LABELS_TEXT_CHARS)
                                 for part in clean_text(text, "list of commands", MAX_LABELS_TEXT_CHARS).split(","))
                     if c)
    if not commands:
        raise user_error("Type the commands to listen for, separated by commas, e.g. “yes, no, stop”.")
    return commands


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


def _start(ctx: AppContext, state: SpeakState, choice: Choice, person: str, clock: str = "live") -> None:
    """A fresh stream for a recording (times restart at 0), with its worker when live."""
    if choice.mode == "commands":
        speech_session.command_classifier(ctx, choice.commands)  # bad commands: say so before decoding
    state.stream = speech_session.open_stream(ctx, clock=clock)
    state.utterances = speech_session.UtteranceCutter()
    if clock == "live":
        def on_update(update: Any, c: Choice) -> None:
            _absorb(ctx, state, update, c, person)
            if state.notify is not None:
                state.notify()

        def restart() -> Any:  # after a gap: what was said stays; the audio after it is a new stream
            state.earlier_text, state.committed_text, state.partial = _full_text(state), "", ""
            state.stream = speech_session.open_stream(ctx)
            state.utterances = speech_session.UtteranceCutter()
            return state.stream

        state.worker = SpeechWorker(state.stream, on_update, state.session_id, choice, restart=restart,
                                    on_chunk=lambda chunk: state.utterances.add(chunk.samples, chunk.start_s))


def live_audio(ctx: AppContext, state: SpeakState, seq: int, sample_rate: int, samples: np.ndarray) -> None:
    """Chunk number `seq` of the page's recording ((N,) int16 or float PCM at sample_rate) -> queued for
    decoding. A gap before it is counted and cut; a late, repeated or unusable chunk is a user_error
    (the stream goes on). Returns at once: the worker decodes, and `state.notify` tells the page."""
    if state.worker is not None and state.worker.error is not None:
        error, state.worker, state.stream = state.worker.error, None, None
        state.audio.reset()
        raise user_error(f"Transcription stopped ({type(error).__name__}). Start recording again.", error)
    if len(samples) / float(sample_rate) > MAX_CHUNK_S:
        raise user_error(f"An audio chunk longer than {MAX_CHUNK_S:.0f} s was refused; the microphone sends "
                         "short chunks. Upload long recordings with “Transcribe the recording”.")
    if state.worker is not None and state.worker.backlog_s + len(samples) / float(sample_rate) > state.worker.max_backlog_s:
        raise user_error(f"Speech recognition is {state.worker.backlog_s:.0f} s behind, so audio chunk {seq} was "
                         "refused (it will show as a gap). Pause for a moment, or close other programs.")
    try:
        arrival = state.audio.push_numbered(seq, sample_rate, samples)
    except CaptureError as e:
        raise user_error(f"This audio chunk cannot be used ({e}).", e) from e
    choice = _live_choice(ctx, state)
    if arrival.gap:
        ctx.monitor.count("live/audio_chunks_lost", arrival.lost_chunks)
        ctx.monitor.count("live/audio_gaps", 1)
        if state.worker is not None:
            if arrival.before_gap is not None:
                state.worker.push(arrival.before_gap, choice)
            state.worker.cut()
    ctx.monitor.count("live/audio_chunks_received", 1)
    chunk = arrival.chunk
    if chunk is None:
        return
    if state.worker is None:
        _start(ctx, state, choice, state.person)
    ctx.monitor.record_audio("speech", chunk.samples)
    try:
        state.worker.push(chunk, choice)
    except BacklogFull as e:  # raced past the check above: counted as refused, shown as a gap next time
        raise user_error(f"Audio chunk {seq} was refused: {e}.", e) from e


def _live_choice(ctx: AppContext, state: SpeakState) -> Choice:
    """The page's current mode and classes; when they are unusable (half-typed), the last usable ones,
    and the problem is shown: the audio is transcribed either way."""
    try:
        choice = parse_choice(state.mode, state.labels_text, state.commands_text)
        if choice.mode == "commands":
            speech_session.command_classifier(ctx, choice.commands)  # cached; raises for unusable commands
        state.problem = ""
        return choice
    except Exception as e:
        state.problem = getattr(e, "message", str(e))
        last = state.worker.labels_text if state.worker is not None else None
        return last if isinstance(last, Choice) else Choice()


def set_live_choice(state: SpeakState | None, mode: str, labels_text: str, commands_text: str,
                    person: str = "") -> SpeakState:
    """The page's mode, classes, commands or name changed: used from the next chunk (checked then)."""
    state = state if isinstance(state, SpeakState) else SpeakState()
    state.mode = clean_text(mode, "mode", 40) or "meaning"
    state.labels_text = clean_text(labels_text, "list of classes", MAX_LABELS_TEXT_CHARS)
    state.commands_text = clean_text(commands_text, "list of commands", MAX_LABELS_TEXT_CHARS)
    state.person = clean_text(person, "name")
    return state


def live_start(ctx: AppContext, state: SpeakState) -> None:
    """The page starts a recording: its chunks are numbered from 0 again (an unfinished one is finished)."""
    if state.worker is not None:
        finish(ctx, state)
    state.audio.reset()


def live_view(state: SpeakState) -> dict[str, Any]:
    """What the page shows for the microphone, as data: transcript, class, info, how far behind."""
    committed, partial, probs, info, _ = _outputs(state)
    backlog_s = state.worker.backlog_s if state.worker is not None else 0.0
    audio = state.audio
    return {"type": "speech", "committed": committed, "partial": partial, "probs": probs, "info": info,
            "problem": state.problem, "backlog_s": round(backlog_s, 2), "catching_up": backlog_s > CATCHING_UP_S,
            "received_s": round(audio.received_s, 3), "chunks_received": audio.received_chunks,
            "chunks_lost": audio.lost_chunks, "gaps": audio.gaps,
            "restarts": state.worker.cuts if state.worker is not None else 0}


def finish(ctx: AppContext, state: SpeakState | None):
    """Recording stopped: flush the resampler, let Whisper catch up, commit what is left."""
    if not isinstance(state, SpeakState) or state.worker is None:
        return _outputs(state if isinstance(state, SpeakState) else SpeakState())
    choice = _live_choice(ctx, state)
    tail = state.audio.flush()
    if tail is not None:
        try:
            state.worker.push(tail, choice)
        except BacklogFull:
            pass  # a few ms of resampler tail behind a 2-minute backlog: the stream ends without it
    state.worker.finish(choice)
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


def process_file(ctx: AppContext, path: str | None, labels_text: str, person: str = "", mode: str = "meaning",
                 commands_text: str = DEFAULT_COMMANDS) -> tuple[str, str, dict | None, str]:
    """An uploaded recording through the same streaming driver, as fast as possible (1 s chunks)."""
    if not path:
        raise user_error("Choose an audio file first.")
    choice = parse_choice(mode, labels_text, commands_text)  # fail early, before minutes of decoding
    person = clean_text(person, "name")
    samples = read_audio_file(path)
    if float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) < 1e-4:
        raise user_error("This recording is silent: nothing to transcribe. Check the microphone and record again.")
    from models.asr_replay import replay  # after the checks: Whisper's import is slow

    state = SpeakState()
    _start(ctx, state, choice, person, clock="wall")
    state.utterances = speech_session.UtteranceCutter(ring_s=len(samples) / speech_session.SAMPLE_RATE + 1.0)
    state.utterances.add(samples, 0.0)
    for update in replay(state.stream, samples, chunk_s=1.0):
        committed, partial, probs, info, _ = _absorb(ctx, state, update, choice, person)
    if not committed.strip() and state.last_prediction is None:
        raise user_error("No speech found in this recording (only silence or noise). Speak closer to the microphone.")
    return committed, partial, probs, info


def _absorb(ctx: AppContext, state: SpeakState, update: Any, choice: Choice, person: str):
    """Classify what this update closed (segments by meaning, an utterance as a command), offer
    uncertain predictions for review, record them for the Monitor, update the state."""
    state.committed_text, state.partial = update.committed_text, update.partial_text
    for segment in update.segments:
        if not segment.text.strip():
            continue
        state.segments.append(segment)
        state.last_text = segment.text.strip()
        ctx.monitor.record("speech/speech_rate_wps", speech_rate_wps(segment.text, segment.end_s - segment.start_s))
        ctx.monitor.record("speech/asr_confidence", segment.confidence.confidence)
        if choice.mode == "meaning":
            prediction = classify_segment(ctx, segment, choice.labels_text)
            _record(ctx, state, prediction, "meaning", "text", state.last_text, person)
    utterance = state.utterances.watch(update, state.stream.asr.buffer_s) if state.utterances is not None else None
    if utterance is not None and choice.mode == "commands":
        prediction = speech_session.classify_utterance(speech_session.command_classifier(ctx, choice.commands), utterance)
        if prediction is None:
            state.note = "no speech in the last utterance (too short or silent)"
        else:
            state.last_audio = utterance.audio
            _record(ctx, state, prediction, "commands", "commands", utterance.audio, person)
    return _outputs(state)


def _record(ctx: AppContext, state: SpeakState, prediction: Prediction, mode: str, task: str, item: Any,
            person: str) -> None:
    state.last_prediction, state.last_mode, state.note = prediction, mode, ""
    # drift of the model's own output (what its validation reference holds); routing as shown
    pipeline = "speech" if mode == "meaning" else "commands"
    own = prediction.extra.get("text_probs", prediction.probs)
    ctx.monitor.record_outputs(pipeline, [make_prediction(prediction.classes, own)])
    ctx.monitor.record_routing(pipeline, [prediction])
    ctx.monitor.record_timing(pipeline, prediction.latency_ms)
    ctx.review.offer(task, prediction, item, person=person or None, session=state.session_id)


def _full_text(state: SpeakState) -> str:
    return " ".join(t for t in (state.earlier_text.strip(), state.committed_text.strip()) if t)


def _outputs(state: SpeakState):
    committed = _full_text(state)
    partial = f"*{state.partial.strip()}…*" if state.partial.strip() else ""
    p = state.last_prediction
    if p is None:
        info = state.note or "Speak: committed text appears above, the uncertain tail in italics."
        return committed, partial, None, info, state
    return committed, partial, p.as_label_dict(), describe(p, state.last_mode, state.last_text, state.note), state


def describe(p: Prediction, mode: str, text: str, note: str = "") -> str:
    """One line for the page: transcript, class and probability, 90% set, decision, calibration."""
    pset = ", ".join(p.prediction_set) if p.prediction_set else "n/a (uncalibrated)"
    if mode == "commands":
        heard = p.extra.get("transcript") or "(no words)"
        calibration = (f"calibrated on {p.extra.get('calibrated_on')}" if p.calibrated
                       else f"uncalibrated ({p.extra.get('calibrated_on')})")
        parts = [f"command: heard “{heard}” → **{p.label}** p={p.confidence:.2f}"]
    else:
        calibration = p.calibration_note
        parts = [f"“{text}” → **{p.label}** p={p.confidence:.2f}",
                 f"ASR confidence {p.extra.get('asr_confidence', float('nan')):.2f}"
                 + (" · WARNING: probably hallucinated" if p.extra.get("asr_hallucinated") else "")]
    coverage = f"{p.coverage:.0%} set" if p.coverage else "set"
    parts += [f"{coverage} {{{pset}}}", f"decision **{p.decision.value}** ({p.reason})", f"probabilities: {calibration}"]
    if note:
        parts.append(note)
    return " · ".join(parts)


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
