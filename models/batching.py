"""Several sessions' crops through a shared classifier as one batch, when they wait at the same time.

    batched = BatchingClassifier(classifier)      # same attributes as `classifier`
    probs = batched.predict_probs(crops)          # from any thread: (N, C), this caller's rows only

Opportunistic batching, with no added wait: a caller that finds the classifier idle runs at once,
taking along every request that queued while the previous batch ran; a caller that finds it busy
queues its crops and is answered by the next batch. One user alone is never delayed; with several
users, a frame's classification costs one forward pass of a larger batch instead of a pass each (on a
CPU a batch of 4 face crops costs little more than 1). Results go back to each caller in its order.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

MAX_BATCH_ITEMS = 64  # crops in one forward pass; more wait for the next one


@dataclass
class _Request:
    items: list[Any]
    wake: threading.Event = field(default_factory=threading.Event)  # answered, or handed the lead
    lead: bool = False
    probs: np.ndarray | None = None
    error: BaseException | None = None


class BatchingClassifier:
    """Wraps a classifier with `predict_probs(items) -> (N, C)`; every other attribute is the wrapped one's."""

    def __init__(self, classifier: Any, max_batch_items: int = MAX_BATCH_ITEMS) -> None:
        self.wrapped = classifier
        self.max_batch_items = max_batch_items
        self._lock = threading.Lock()  # guards _waiting and _busy
        self._waiting: list[_Request] = []
        self._busy = False
        self.batches = 0  # forward passes run
        self.requests = 0  # predict_probs calls answered
        self.largest_batch = 0  # requests in the largest pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["wrapped"], name)

    def predict_probs(self, items: Sequence[Any]) -> np.ndarray:
        request = _Request(list(items))
        if not request.items:
            return self.wrapped.predict_probs([])
        with self._lock:
            self._waiting.append(request)
            lead = not self._busy
            if lead:
                self._busy = True
        if not lead:
            request.wake.wait()
        if lead or request.lead:
            self._lead(request)
        if request.error is not None:
            raise request.error
        return request.probs

    def _lead(self, mine: _Request) -> None:
        """Run passes until this caller's request is answered, then hand the lead to the oldest waiter
        (so a leader returns as soon as its own frame is done)."""
        while mine.probs is None and mine.error is None:
            with self._lock:
                batch, n = [], 0
                while self._waiting and (not batch or n + len(self._waiting[0].items) <= self.max_batch_items):
                    request = self._waiting.pop(0)
                    batch.append(request)
                    n += len(request.items)
            self._run(batch)
        with self._lock:
            if self._waiting:
                heir = self._waiting[0]
                heir.lead = True
                heir.wake.set()
            else:
                self._busy = False

    def _run(self, batch: list[_Request]) -> None:
        try:
            probs = np.asarray(self.wrapped.predict_probs([x for r in batch for x in r.items]))
            start = 0
            for r in batch:
                r.probs = probs[start:start + len(r.items)]
                start += len(r.items)
        except BaseException as e:  # every waiting caller gets the error, none hangs
            for r in batch:
                r.error = e
        self.batches += 1
        self.requests += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        for r in batch:
            r.wake.set()
