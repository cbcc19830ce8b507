"""What every capture source shares: a producer thread, a bounded queue, stats, and a clean stop.

A source is used like this (the same for camera, file, folder, microphone):

    with VideoFileSource("clip.mp4") as source:
        for frame in source:          # ends at end of file; raises CaptureError if the device fails
            ...
        print(source.stats())         # fps measured, drops, ...

`read(timeout_s)` is the non-iterator form: an item, or None at the end of the stream.
"""
from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from capture.buffers import BoundedQueue, DropPolicy, QueueClosed

T = TypeVar("T")

JOIN_TIMEOUT_S = 3.0  # how long stop() waits for the producer thread before giving up on it
FPS_WINDOW = 60  # items over which the capture rate is measured


class CaptureError(RuntimeError):
    """A source could not open or stopped delivering; the message says what was found and what to do."""


@dataclass(frozen=True)
class SourceStats:
    captured: int  # items the producer made (frames read, chunks formed)
    delivered: int  # items handed to the consumer
    dropped: int  # items discarded because the consumer was slower (queue policy) or the device overran
    queued: int  # items waiting now
    max_queued: int  # high-water mark of the queue (never above its bound)
    capture_fps: float  # items per second the producer made, over the last FPS_WINDOW items
    retries: int  # device re-opens after a failure
    running: bool

    def line(self) -> str:
        return (f"{self.capture_fps:6.1f}/s captured={self.captured} delivered={self.delivered} "
                f"dropped={self.dropped} queued={self.queued} retries={self.retries}")


class Source(Generic[T]):
    """Base of all capture sources: subclasses implement `_open()`, `_produce()` and `_release()`.

    `_open` runs in `start()` (so a missing device fails there, with a clear CaptureError);
    `_produce` runs in the producer thread and calls `_emit(item)` until `_stopping` is set or the
    stream ends; `_release` frees the device and runs in `stop()` after the thread has joined.
    """

    name = "source"

    def __init__(self, maxsize: int, policy: DropPolicy | str) -> None:
        self._queue: BoundedQueue[T] = BoundedQueue(maxsize, policy)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._captured = 0
        self._extra_dropped = 0  # drops before the queue (e.g. audio overruns), counted by subclasses
        self._retries = 0
        self._times: deque[float] = deque(maxlen=FPS_WINDOW)
        self._lock = threading.Lock()
        self._stall_timeout_s: float | None = None  # live sources: longest wait before the consumer hears why
        self._producer_done = False
        self._release_on_exit = False  # stop() gave up waiting: the producer releases the device itself

    # --- subclass hooks -------------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _produce(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    # --- producer side ----------------------------------------------------------------------------
    def _emit(self, item: T, timestamp_s: float | None = None) -> bool:
        with self._lock:
            self._captured += 1
            self._times.append(time.monotonic() if timestamp_s is None else timestamp_s)
        return self._queue.put(item, timeout_s=None)

    def _pace(self, due_s: float | None) -> bool:
        """Wait until time.monotonic() reaches `due_s` (a file replayed at its recorded pace; None: no wait).
        False once stop() was called: the producer should return."""
        if due_s is not None and (delay_s := due_s - time.monotonic()) > 0:
            self._stopping.wait(delay_s)
        return not self._stopping.is_set()

    def _run(self) -> None:
        try:
            self._produce()
        except CaptureError as e:
            self._queue.close(e)
        except Exception as e:  # noqa: BLE001 - any producer failure must reach the consumer, not die silently
            self._queue.close(CaptureError(f"{self.name}: capture failed: {type(e).__name__}: {e}"))
        else:
            self._queue.close()
        finally:
            with self._lock:
                self._producer_done = True
                release = self._release_on_exit
            if release:
                self._release()

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "Source[T]":
        if self._thread is not None:
            return self
        self._open()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the producer, join its thread, release the device. Safe to call twice."""
        self._stopping.set()
        self._queue.close()  # wakes a producer blocked on a full queue
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)
        with self._lock:  # never release a device under a read still in progress (OpenCV may crash)
            busy = self._thread is not None and not self._producer_done
            self._release_on_exit = busy
        if busy:
            warnings.warn(f"{self.name}: the capture thread is stuck in the device driver; it will release the "
                          f"device when the driver returns.", stacklevel=2)
        else:
            self._release()

    def _wake(self) -> None:
        """Subclasses waiting on something other than the queue wake it here."""

    def __enter__(self) -> "Source[T]":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- consumer side ----------------------------------------------------------------------------
    def read(self, timeout_s: float | None = None) -> T | None:
        """Next item; None at the end of the stream.

        Raises CaptureError if the source failed (or, for a live source, delivered nothing for its
        stall timeout), TimeoutError if nothing came within the `timeout_s` you gave.
        """
        if self._thread is None:
            self.start()
        wait_s = timeout_s if timeout_s is not None else self._stall_timeout_s
        try:
            return self._queue.get(wait_s)
        except QueueClosed:
            return None
        except TimeoutError:
            if timeout_s is not None:
                raise
            raise CaptureError(f"{self.name}: nothing captured for {wait_s:g} s; the device stopped answering. "
                               "Check it is connected and not used by another program.") from None

    def read_latest(self, timeout_s: float | None = None) -> T | None:
        """The newest item, discarding older queued ones (counted as dropped): for a model slower than
        the camera that should always work on the freshest frame. None at the end of the stream."""
        item = self.read(timeout_s)
        while item is not None and len(self._queue):
            try:
                newer = self._queue.get(0)
            except (QueueClosed, TimeoutError):
                break
            self._queue.count_dropped(1)
            item = newer
        return item

    def __iter__(self) -> Iterator[T]:
        while (item := self.read()) is not None:
            yield item

    def stats(self) -> SourceStats:
        c = self._queue.counters()
        with self._lock:
            times = list(self._times)
            captured = self._captured
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        running = self._thread is not None and self._thread.is_alive()
        return SourceStats(captured, c.got, c.dropped + self._extra_dropped, c.size, c.max_size_seen, fps,
                           self._retries, running)
