"""Running a pipeline live: inference on its own thread, newest frame only, stale frames dropped.

    loop = LiveLoop(pipeline).start()
    for frame in source:                 # the capture thread / iterator, never blocked by the model
        loop.submit(frame.image, frame.timestamp_s)
        result = loop.latest()          # the most recent (frame, predictions), for display
    loop.stop(); print(loop.stats())

`submit` puts the frame in a one-slot mailbox. If the worker has not yet taken the previous frame,
that frame is stale: it is replaced and counted as dropped -- never queued -- so the delay from
capture to prediction stays at most about one model run plus one frame interval, however slow the
model. A frame that makes the pipeline raise (a bad image, a detector error) is counted and its
message kept in `stats().last_error`; the loop goes on with the next frame.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.prediction import Prediction

STATS_WINDOW = 120  # frames over which fps and latency figures are computed


@dataclass(frozen=True)
class LiveResult:
    image: np.ndarray  # the frame the predictions are about, (H, W, 3) uint8 RGB
    timestamp_s: float  # its capture time (time.monotonic())
    predictions: list[Prediction]
    done_s: float  # time.monotonic() when the predictions were ready
    index: int  # processed-frame counter

    @property
    def end_to_end_ms(self) -> float:
        """Capture to prediction, including any wait in the mailbox."""
        return (self.done_s - self.timestamp_s) * 1000.0


@dataclass(frozen=True)
class LiveStats:
    submitted: int  # frames handed to submit()
    processed: int  # frames the pipeline ran on
    dropped: int  # frames replaced before the worker took them (stale)
    errors: int  # frames on which the pipeline raised
    fps: float  # processed frames per second over the last STATS_WINDOW frames
    latency_median_ms: float  # capture -> prediction, median over the window
    latency_p95_ms: float
    model_median_ms: float  # the pipeline's own time per frame, median
    last_error: str = ""

    def line(self) -> str:
        return (f"{self.fps:5.1f} fps  latency {self.latency_median_ms:5.1f} ms (p95 {self.latency_p95_ms:5.1f})  "
                f"model {self.model_median_ms:5.1f} ms  dropped {self.dropped}/{self.submitted}"
                + (f"  errors {self.errors}" if self.errors else ""))


@dataclass(frozen=True)
class LiveSettings:
    stop_timeout_s: float = 3.0  # how long stop() waits for the worker to finish its frame


class LiveLoop:
    """Runs `pipeline.process` on a worker thread over the newest submitted frame."""

    def __init__(self, pipeline, settings: LiveSettings = LiveSettings(),
                 on_result: Callable[[LiveResult], None] | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.on_result = on_result
        self._cond = threading.Condition()
        self._slot: tuple[np.ndarray, float] | None = None
        self._latest: LiveResult | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self._submitted = self._processed = self._dropped = self._errors = 0
        self._last_error = ""
        self._done_times: deque[float] = deque(maxlen=STATS_WINDOW)
        self._latencies: deque[float] = deque(maxlen=STATS_WINDOW)
        self._model_ms: deque[float] = deque(maxlen=STATS_WINDOW)

    def start(self) -> "LiveLoop":
        if self._running:
            return self
        self._running = True
        self._thread = threading.Thread(target=self._work, name=f"live-{getattr(self.pipeline, 'name', 'model')}",
                                        daemon=True)
        self._thread.start()
        return self

    def submit(self, image: np.ndarray, timestamp_s: float | None = None) -> None:
        """Offer a frame (never blocks). timestamp_s: its capture time.monotonic(); default now."""
        ts = time.monotonic() if timestamp_s is None else float(timestamp_s)
        with self._cond:
            self._submitted += 1
            if self._slot is not None:
                self._dropped += 1  # the worker is busy and never saw that frame: stale, replace it
            self._slot = (image, ts)
            self._cond.notify()

    def latest(self) -> LiveResult | None:
        with self._cond:
            return self._latest

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until the mailbox is empty and the worker is not mid-frame (for replays and tests)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._slot is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.01)
            return self._slot is None and not self._busy

    _busy = False

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._running and self._slot is None:
                    self._cond.wait(0.1)
                if not self._running:
                    return
                image, ts = self._slot
                self._slot = None
                self._busy = True
            t0 = time.perf_counter()
            try:
                preds = self.pipeline.process(image, ts)
            except Exception as e:  # noqa: BLE001 - one bad frame must not end a live session
                with self._cond:
                    self._errors += 1
                    self._last_error = f"{type(e).__name__}: {e}"
                    self._busy = False
                    self._cond.notify_all()
                continue
            model_ms = (time.perf_counter() - t0) * 1000.0
            done = time.monotonic()
            with self._cond:
                self._processed += 1
                result = LiveResult(image, ts, preds, done, self._processed)
                self._latest = result
                self._done_times.append(done)
                self._latencies.append((done - ts) * 1000.0)
                self._model_ms.append(model_ms)
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception as e:  # noqa: BLE001 - a display error must not stop inference
                    with self._cond:
                        self._errors += 1
                        self._last_error = f"on_result: {type(e).__name__}: {e}"
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def stats(self) -> LiveStats:
        with self._cond:
            times = list(self._done_times)
            lat = np.array(self._latencies) if self._latencies else np.array([np.nan])
            model = np.array(self._model_ms) if self._model_ms else np.array([np.nan])
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return LiveStats(self._submitted, self._processed, self._dropped, self._errors, float(fps),
                             float(np.median(lat)), float(np.percentile(lat, 95)), float(np.median(model)),
                             self._last_error)

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.settings.stop_timeout_s)
            self._thread = None

    def __enter__(self) -> "LiveLoop":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
