"""One user's live speech session: a streaming transcriber (its own buffer) on the hub's shared Whisper,
decoded in a worker thread, and the transcript classifiers built on the hub's one MiniLM.
"""
from __future__ import annotations

import queue
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from demos.context import AppContext, ModelHub, user_error

MAX_PENDING_CHUNKS = 240  # audio chunks waiting for Whisper (2 min at 0.5 s); beyond, the oldest are dropped
FINISH_TIMEOUT_S = 60.0  # how long stopping a recording waits for Whisper to catch up
ZERO_SHOT_CACHE_SIZE = 32  # label sets kept embedded per hub (users retype their classes)

# One Whisper decode at a time: decoding installs hooks on the shared model's modules (its
# key/value cache), so two sessions decoding at once would read each other's caches. On a 2-core
# CPU nothing is lost: a decode already uses both cores.
_ASR_LOCK = threading.Lock()


def open_stream(ctx: AppContext) -> Any:
    """A per-session streaming transcriber on the hub's shared Whisper model.

    Its voice activity detector is per session too: silero carries state from one audio frame to the
    next (a 2 MB ONNX graph, read from the model store's copy)."""
    from capture.vad import VadSettings
    from models.streaming_asr import StreamingASR, StreamingSettings
    from models.vad_model import load_vad

    try:
        transcriber = ctx.hub.get("asr")
    except Exception as e:
        raise user_error(f"The speech model could not be loaded ({type(e).__name__}). "
                         "Run `livelearner models fetch --default` on the server.", e) from e
    settings = StreamingSettings()
    vad = load_vad(VadSettings(backend=settings.vad)) if settings.vad != "off" else None
    return StreamingASR(transcriber, settings, vad=vad)


def step(stream: Any, chunk: Any) -> Any:
    """Add one AudioChunk and decode if enough new speech arrived -> StreamUpdate."""
    stream.insert_audio(chunk)
    with _ASR_LOCK:
        return stream.process_iter()


def process(stream: Any) -> Any:
    """Decode if enough new speech arrived (audio already inserted) -> StreamUpdate."""
    with _ASR_LOCK:
        return stream.process_iter()


def finish(stream: Any) -> Any:
    with _ASR_LOCK:
        return stream.finish()


class SpeechWorker:
    """Runs one user's streaming transcriber in a thread, so the stream handler returns at once.

    Why: while a Gradio stream handler is busy, newer chunks from the browser replace the waiting
    one (right for video, where only the newest frame matters; wrong for audio, where every chunk
    holds words). The handler only queues the chunk; this thread decodes whatever has arrived and
    hands each StreamUpdate to `on_update(update, labels_text)`.
    """

    def __init__(self, stream: Any, on_update: Callable[[Any, str], Any], name: str, labels_text: str = ""):
        self.stream = stream
        self.on_update = on_update
        self.inbox: queue.Queue = queue.Queue()
        self.dropped = 0  # chunks dropped because Whisper fell more than MAX_PENDING_CHUNKS behind
        self.error: BaseException | None = None
        self.labels_text = labels_text
        self._thread = threading.Thread(target=self._run, name=f"speech-{name}", daemon=True)
        self._thread.start()

    def push(self, chunk: Any, labels_text: str) -> None:
        self.labels_text = labels_text
        if self.inbox.qsize() >= MAX_PENDING_CHUNKS:
            try:
                self.inbox.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
        self.inbox.put(chunk)

    def finish(self, labels_text: str, timeout_s: float = FINISH_TIMEOUT_S) -> None:
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
            while not self.inbox.empty():  # decode everything that arrived meanwhile in one go
                items.append(self.inbox.get_nowait())
            done = items[-1] is None
            try:
                for chunk in items:
                    if chunk is not None:
                        self.stream.insert_audio(chunk)
                self.on_update(finish(self.stream) if done else process(self.stream), self.labels_text)
            except Exception as e:  # shown to the user on their next chunk
                self.error = e
                return
            if done:
                return


_zero_shot: "weakref.WeakKeyDictionary[ModelHub, OrderedDict]" = weakref.WeakKeyDictionary()
_zero_shot_lock = threading.Lock()


def zero_shot_classifier(ctx: AppContext, descriptions: dict[str, str]) -> Any:
    """An in-memory zero-shot text bundle (models.bundle backend "zeroshot") for the typed classes,
    embedding with the hub's MiniLM; the last ZERO_SHOT_CACHE_SIZE label sets are kept."""
    from models.bundle import Bundle
    from train.datablocks import ZERO_SHOT_TEMPERATURE

    key = tuple(descriptions.items())
    with _zero_shot_lock:
        cache = _zero_shot.setdefault(ctx.hub, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    classes = list(descriptions)
    emb = np.asarray(ctx.embedder.encode([descriptions[c] for c in classes]), dtype=np.float32)  # (C, 384)
    spec = {"format": 2, "task": "text", "backend": "zeroshot", "classes": classes,
            "temperature": ZERO_SHOT_TEMPERATURE, "calibrated": False, "conformal_qhat": None, "coverage": None,
            "policy": {"accept_at": ctx.settings.review.accept_at, "abstain_below": ctx.settings.review.abstain_below}}
    bundle = Bundle(Path("zero-shot"), spec, zeroshot=emb)
    bundle.use_embedder(ctx.embedder)
    with _zero_shot_lock:
        cache[key] = bundle
        while len(cache) > ZERO_SHOT_CACHE_SIZE:
            cache.popitem(last=False)
    return bundle
