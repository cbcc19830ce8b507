"""One user's live speech session: a streaming transcriber (its own buffer and VAD) on the hub's shared
Whisper, driven by `models.asr_replay.StreamDriver` in a worker thread; the transcript classifiers built
on the hub's one MiniLM; and, in commands mode, the audio of each utterance the VAD closes.
"""
from __future__ import annotations

import queue
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from demos.context import AppContext, ModelHub, user_error

MAX_BACKLOG_S = 120.0  # audio waiting for Whisper; beyond it new chunks are refused (and become a counted gap)
FINISH_TIMEOUT_S = 60.0  # how long stopping a recording waits for Whisper to catch up
ZERO_SHOT_CACHE_SIZE = 32  # label sets kept embedded per hub (users retype their classes)
COMMAND_SET_CACHE_SIZE = 32  # command label sets kept tokenised per hub
UTTERANCE_RING_S = 40.0  # audio kept for cutting utterances (longer than Whisper's 30 s context)
UTTERANCE_PREROLL_S = 0.1  # audio kept before the stream's buffer start when an utterance opens
SAMPLE_RATE = 16_000

# One Whisper decode at a time: decoding installs hooks on the shared model's modules (its
# key/value cache), so two sessions decoding at once would read each other's caches; the command
# scorer shares the same model. On a 2-core CPU nothing is lost: a decode already uses both cores.
ASR_LOCK = threading.Lock()


def open_stream(ctx: AppContext, clock: str = "live") -> Any:
    """A per-session StreamDriver around a streaming transcriber on the hub's shared Whisper model.

    Its voice activity detector is per session too: silero carries state from one audio frame to the
    next (a 2 MB ONNX graph, read from the model store's copy by models.vad_model.load_vad)."""
    from models.asr_replay import StreamDriver
    from models.streaming_asr import StreamingASR, StreamingSettings

    try:
        transcriber = ctx.hub.get("asr")
    except Exception as e:
        raise user_error(f"The speech model could not be loaded ({type(e).__name__}). "
                         "Run `livelearner models fetch --default` on the server.", e) from e
    settings = StreamingSettings()
    return StreamDriver(StreamingASR(transcriber, settings, vad=build_vad(settings.vad)), clock=clock, lock=ASR_LOCK)


def build_vad(backend: str) -> Any:
    """A fresh VoiceActivityDetector for one stream (silero from the model store), None for "off"."""
    from capture.vad import VadSettings
    from models.vad_model import load_vad

    return None if backend == "off" else load_vad(VadSettings(backend=backend))


@dataclass(frozen=True)
class Utterance:
    """The audio of one utterance the streaming transcriber's VAD closed."""

    start_s: float  # stream seconds
    end_s: float
    audio: np.ndarray  # (N,) float32 16 kHz


class UtteranceCutter:
    """Keeps the stream's recent audio and cuts out each utterance when the VAD closes it.

    The streaming transcriber opens an utterance when its VAD hears speech (`StreamUpdate.in_speech`
    turns true; its buffer then starts `speech_pad_s` before the speech) and closes it after
    `end_of_speech_s` of silence (or at the end of the stream), when in_speech turns false again.
    The utterance is the audio between the two, trailing silence included (Whisper pads to 30 s anyway).
    """

    def __init__(self, ring_s: float = UTTERANCE_RING_S) -> None:
        self._max = int(ring_s * SAMPLE_RATE)
        self._audio = np.zeros(0, np.float32)  # (N,) the newest audio
        self._start_s = 0.0  # stream seconds of _audio[0]
        self._open_s: float | None = None  # start of the utterance going on

    def add(self, samples: np.ndarray, start_s: float | None = None) -> None:
        """Append (N,) 16 kHz float32 audio (its stream start, when known: gaps become silence)."""
        end_s = self._start_s + len(self._audio) / SAMPLE_RATE
        samples = np.asarray(samples, np.float32)
        if start_s is not None and start_s > end_s + 0.01:
            samples = np.concatenate([np.zeros(int((start_s - end_s) * SAMPLE_RATE), np.float32), samples])
        self._audio = np.concatenate([self._audio, samples])
        extra = len(self._audio) - self._max
        if extra > 0:
            self._audio = self._audio[extra:]
            self._start_s += extra / SAMPLE_RATE

    def watch(self, update: Any, buffer_s: float) -> Utterance | None:
        """After each StreamUpdate (and the transcriber's buffer length): the utterance it closed, if any."""
        if update.in_speech:
            if self._open_s is None:
                self._open_s = max(0.0, update.stream_time_s - buffer_s - UTTERANCE_PREROLL_S)
            return None
        if self._open_s is None:
            if not update.segments:  # nothing opened nor closed
                return None
            # opened and closed within one call (audio arrived in a batch): start from the words
            self._open_s = max(0.0, min(s.start_s for s in update.segments) - 0.3)
        start_s, self._open_s = self._open_s, None
        return self.cut(start_s, update.stream_time_s)

    def cut(self, start_s: float, end_s: float) -> Utterance:
        i = max(0, int(round((start_s - self._start_s) * SAMPLE_RATE)))
        j = max(i, int(round((end_s - self._start_s) * SAMPLE_RATE)))
        return Utterance(start_s, end_s, self._audio[i:j].copy())


CUT = "cut"  # SpeechWorker inbox marker: chunks went missing here; end this stream, start the next one


class BacklogFull(RuntimeError):
    """Whisper is more than MAX_BACKLOG_S behind: the chunk was not queued (the caller counts a gap)."""


class SpeechWorker:
    """Runs one user's StreamDriver in a thread, so the connection that delivers audio never waits on Whisper.

    Every chunk pushed is decoded, in order: nothing is dropped. When decoding falls behind, the thread
    takes everything that queued meanwhile and decodes once over it (catching up: fewer, longer decodes);
    `backlog_s` says how far behind it is, for the page. The queue is bounded in audio seconds
    (`max_backlog_s`): past it, `push` raises BacklogFull and the chunk is not taken, so memory stays
    bounded and the loss is visible (a gap), never silent.

    `cut()` marks a gap (chunks that never arrived): the current stream is finished there, so words are
    never stitched across missing audio, and `restart()` gives the driver for the audio after it.
    """

    def __init__(self, driver: Any, on_update: Callable[[Any, str], Any], name: str, labels_text: Any = "",
                 on_chunk: Callable[[Any], None] | None = None, restart: Callable[[], Any] | None = None,
                 max_backlog_s: float = MAX_BACKLOG_S):
        """on_chunk(chunk): called in the worker with each AudioChunk as it is inserted (commands mode
        keeps the audio to cut utterances from). restart(): a fresh driver after a cut."""
        self.driver = driver
        self.on_update = on_update
        self.on_chunk = on_chunk
        self.restart = restart
        self.max_backlog_s = max_backlog_s
        self.inbox: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.labels_text = labels_text
        self.cuts = 0
        self._queued_s = 0.0  # audio in the inbox
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"speech-{name}", daemon=True)
        self._thread.start()

    @property
    def backlog_s(self) -> float:
        """Audio received but not yet given to Whisper (seconds)."""
        return self._queued_s

    def push(self, chunk: Any, labels_text: Any) -> None:
        seconds = len(chunk.samples) / chunk.sample_rate
        with self._lock:
            if self._queued_s + seconds > self.max_backlog_s:
                raise BacklogFull(f"speech recognition is {self._queued_s:.0f} s behind")
            self._queued_s += seconds
        self.labels_text = labels_text
        self.inbox.put(chunk)

    def cut(self) -> None:
        self.inbox.put(CUT)

    def finish(self, labels_text: Any, timeout_s: float = FINISH_TIMEOUT_S) -> None:
        self.labels_text = labels_text
        self.inbox.put(None)  # sentinel: flush and stop
        self._thread.join(timeout_s)

    def stop(self) -> None:
        """The session ended: let the thread exit without waiting for it."""
        self.inbox.put(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            items = [self.inbox.get()]
            while not self.inbox.empty() and items[-1] is not None and items[-1] is not CUT:
                items.append(self.inbox.get_nowait())  # decode everything that arrived meanwhile in one go
            last = items[-1]
            try:
                for chunk in items:
                    if chunk is None or chunk is CUT:
                        continue
                    with self._lock:
                        self._queued_s = max(0.0, self._queued_s - len(chunk.samples) / chunk.sample_rate)
                    self.driver.insert(chunk)
                    if self.on_chunk is not None:
                        self.on_chunk(chunk)
                if last is None or last is CUT:
                    self.on_update(self.driver.finish(), self.labels_text)
                    if last is None:
                        return
                    self.cuts += 1
                    self.driver = self.restart() if self.restart is not None else self.driver
                else:
                    self.on_update(self.driver.process(), self.labels_text)
            except Exception as e:  # shown to the user on their next chunk
                self.error = e
                return


_zero_shot: "weakref.WeakKeyDictionary[ModelHub, OrderedDict]" = weakref.WeakKeyDictionary()
_zero_shot_lock = threading.Lock()


def zero_shot_classifier(ctx: AppContext, descriptions: dict[str, str]) -> Any:
    """An in-memory zero-shot text bundle (models.bundle backend "zeroshot") for the typed classes,
    embedding with the hub's MiniLM; the last ZERO_SHOT_CACHE_SIZE label sets are kept."""
    key = tuple(descriptions.items())
    with _zero_shot_lock:
        cache = _zero_shot.setdefault(ctx.hub, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    bundle = zero_shot_bundle(ctx.embedder, descriptions, ctx.settings.review.policy)
    with _zero_shot_lock:
        cache[key] = bundle
        while len(cache) > ZERO_SHOT_CACHE_SIZE:
            cache.popitem(last=False)
    return bundle


def zero_shot_bundle(embedder: Any, descriptions: dict[str, str], policy: Any) -> Any:
    """An in-memory text bundle that scores a sentence against each class description (MiniLM cosine,
    uncalibrated), routed with `policy` (a models.prediction.RoutingPolicy)."""
    from models.bundle import Bundle
    from train.datablocks import ZERO_SHOT_TEMPERATURE

    classes = list(descriptions)
    emb = np.asarray(embedder.encode([descriptions[c] for c in classes]), dtype=np.float32)  # (C, 384)
    spec = {"format": 2, "task": "text", "backend": "zeroshot", "classes": classes,
            "temperature": ZERO_SHOT_TEMPERATURE, "calibrated": False, "conformal_qhat": None, "coverage": None,
            "policy": {"accept_at": policy.accept_at, "abstain_below": policy.abstain_below}}
    bundle = Bundle(Path("zero-shot"), spec, zeroshot=emb)
    bundle.use_embedder(embedder)
    return bundle


_commands: "weakref.WeakKeyDictionary[ModelHub, OrderedDict]" = weakref.WeakKeyDictionary()


def command_classifier(ctx: AppContext, labels: tuple[str, ...]) -> Any:
    """A models.commands.CommandClassifier for the typed commands on the hub's one command scorer, with
    the team's command calibration when one was fitted (Train tab), else the shipped one.

    Raises user_error for unusable labels (empty, duplicates, too long, not English for an .en model)."""
    from models.commands import CommandClassifier, CommandInputError

    calibration, cal_key = ctx.command_calibration()
    key = (labels, cal_key)
    with _zero_shot_lock:
        cache = _commands.setdefault(ctx.hub, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    try:
        scorer = ctx.hub.get("command-scorer")
    except Exception as e:
        raise user_error(f"The speech model could not be loaded ({type(e).__name__}). "
                         "Run `livelearner models fetch --default` on the server.", e) from e
    try:
        classifier = CommandClassifier(labels, scorer, calibration=calibration, policy=ctx.settings.review.policy)
    except CommandInputError as e:
        raise user_error(f"Commands: {e}.", e) from e
    with _zero_shot_lock:
        cache[key] = classifier
        while len(cache) > COMMAND_SET_CACHE_SIZE:
            cache.popitem(last=False)
    return classifier


def classify_utterance(classifier: Any, utterance: Utterance) -> Any:
    """Score the commands on one utterance's audio (under the Whisper lock) -> Prediction, or None when
    the utterance holds no speech (too short or silent)."""
    from models.commands import NoSpeechError

    with ASR_LOCK:
        try:
            return classifier.classify(utterance.audio, SAMPLE_RATE, timestamp_s=utterance.start_s)
        except NoSpeechError:
            return None
