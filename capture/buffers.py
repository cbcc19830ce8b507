"""Bounded hand-over between a capture thread and its consumer.

Nothing in capture grows without bound. `BoundedQueue` carries items (frames, chunks) with a named
policy for when it is full; `AudioRing` carries raw samples from a sounddevice callback. Both count
what they dropped, so a slow consumer shows up as a number, not as lag or memory growth.
"""
from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class DropPolicy(str, enum.Enum):
    """What `put` does when the queue is full."""

    DROP_OLDEST = "drop_oldest"  # live sources: keep the newest items, discard the stalest
    DROP_NEWEST = "drop_newest"  # keep what is queued, discard the incoming item
    BLOCK = "block"  # file replay as fast as possible: wait, lose nothing


class QueueClosed(Exception):
    """Raised by `BoundedQueue.get` once the queue is closed and drained."""


@dataclass(frozen=True)
class QueueCounters:
    put: int  # items offered
    dropped: int  # items discarded by the policy
    got: int  # items handed to the consumer
    size: int  # items waiting now
    max_size_seen: int  # high-water mark (never above maxsize)


class BoundedQueue(Generic[T]):
    """Thread-safe FIFO of at most `maxsize` items with a drop policy and counters.

    The producer calls `put`, and `close(error)` when it ends; the consumer calls `get`, which
    raises `QueueClosed` after the last item, or re-raises the producer's error.
    """

    def __init__(self, maxsize: int, policy: DropPolicy | str = DropPolicy.DROP_OLDEST) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.policy = DropPolicy(policy)
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._put = self._dropped = self._got = self._max_seen = 0

    def put(self, item: T, timeout_s: float | None = None) -> bool:
        """Offer an item; True when `item` was queued, False when it was dropped.
 DROP_OLDEST always queues it (discarding the oldest);
        DROP_NEWEST discards `item` when full; BLOCK waits up to `timeout_s` (None: until space or close).
        """
        with self._cond:
            self._put += 1
            if self._closed:
                self._dropped += 1
                return False
            if len(self._items) >= self.maxsize:
                if self.policy is DropPolicy.DROP_OLDEST:
                    self._items.popleft()
                    self._dropped += 1
                elif self.policy is DropPolicy.DROP_NEWEST:
                    self._dropped += 1
                    return False
                else:
                    ok = self._cond.wait_for(lambda: len(self._items) < self.maxsize or self._closed, timeout_s)
                    if not ok or self._closed:
                        self._dropped += 1
                        return False
            self._items.append(item)
            self._max_seen = max(self._max_seen, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float | None = None) -> T:
        """Next item. Raises TimeoutError after `timeout_s`, QueueClosed at the end, or the producer's error."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout_s):
                raise TimeoutError(f"no item within {timeout_s} s")
            if self._items:
                self._got += 1
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            if self._error is not None:
                raise self._error
            raise QueueClosed

    def close(self, error: BaseException | None = None) -> None:
        """No more items. With `error`, the consumer gets it (after draining) instead of QueueClosed.

        An error also discards what is queued, so the consumer hears of the failure at once.
        """
        with self._cond:
            self._closed = True
            if error is not None and self._error is None:
                self._error = error
                self._dropped += len(self._items)
                self._items.clear()
            self._cond.notify_all()

    def count_dropped(self, n: int) -> None:
        """The consumer discarded `n` items it got (e.g. skipped to the newest): count them as dropped."""
        with self._cond:
            self._dropped += n
            self._got -= n

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def counters(self) -> QueueCounters:
        with self._cond:
            return QueueCounters(self._put, self._dropped, self._got, len(self._items), self._max_seen)


class AudioRing:
    """Fixed-size float32 ring of mono samples, written by an audio callback, read by a thread.

    `write` never blocks and never allocates (safe inside a PortAudio callback): when the reader is
    late, the oldest samples are overwritten and counted in `overwritten_samples`. Each sample keeps
    its absolute position (`read_position`), so chunk times stay exact across drops.
    """

    def __init__(self, capacity_samples: int) -> None:
        if capacity_samples < 1:
            raise ValueError(f"capacity_samples must be >= 1, got {capacity_samples}")
        self.capacity = capacity_samples
        self._buf = np.zeros(capacity_samples, dtype=np.float32)  # (capacity,)
        self._cond = threading.Condition()
        self._written = 0  # total samples ever written (absolute position of the next write)
        self._read = 0  # absolute position of the next sample to read
        self.overwritten_samples = 0
        self.last_write_s: float | None = None  # time.monotonic() of the last write

    def write(self, samples: np.ndarray) -> None:
        """Copy (N,) float32 samples in; overwrite the oldest unread ones if full."""
        n = len(samples)
        with self._cond:
            if n >= self.capacity:  # only the newest `capacity` samples can survive
                skipped = n - self.capacity
                samples = samples[skipped:]
                self._written += skipped
                n = self.capacity
            start = self._written % self.capacity
            first = min(n, self.capacity - start)
            self._buf[start : start + first] = samples[:first]
            self._buf[: n - first] = samples[first:]
            self._written += n
            lost = self._written - self._read - self.capacity
            if lost > 0:
                self.overwritten_samples += lost
                self._read += lost
            self.last_write_s = time.monotonic()
            self._cond.notify_all()

    def read(self, n: int, timeout_s: float | None = None) -> tuple[int, np.ndarray] | None:
        """Wait for `n` unread samples; return (absolute position of the first, (n,) copy), or None on timeout."""
        if n > self.capacity:
            raise ValueError(f"cannot read {n} samples from a ring of {self.capacity}")
        with self._cond:
            if not self._cond.wait_for(lambda: self._written - self._read >= n, timeout_s):
                return None
            pos = self._read
            start = pos % self.capacity
            first = min(n, self.capacity - start)
            out = np.empty(n, dtype=np.float32)
            out[:first] = self._buf[start : start + first]
            out[first:] = self._buf[: n - first]
            self._read += n
            return pos, out

    def available(self) -> int:
        with self._cond:
            return self._written - self._read

    def wake(self) -> None:
        """Wake a waiting reader (used on stop)."""
        with self._cond:
            self._cond.notify_all()
