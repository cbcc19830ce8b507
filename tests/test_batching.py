"""Frames of several sessions through one shared classifier: batched when they meet, each answered with its own rows."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from models.batching import BatchingClassifier


class SlowDouble:
    """A stand-in classifier: 20 ms a forward pass whatever the batch size (as a CPU net on small crops)."""

    classes = ("a", "b")

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def predict_probs(self, items):
        self.batch_sizes.append(len(items))
        time.sleep(0.02)
        if any(x == "boom" for x in items):
            raise ValueError("broken crop")
        return np.array([[float(x), -float(x)] for x in items])


def test_waiting_callers_share_a_pass_and_get_their_own_rows():
    inner = SlowDouble()
    batched = BatchingClassifier(inner)
    wrong = []

    def session(i: int) -> None:
        for k in range(15):
            mine = [i * 1000 + k, i * 1000 + k + 0.5]
            probs = batched.predict_probs(mine)
            if probs.shape != (2, 2) or list(probs[:, 0]) != mine:
                wrong.append((i, k, probs))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(4)]
    started = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    elapsed = time.perf_counter() - started
    assert not wrong
    assert batched.requests == 60 and batched.batches < 60 and batched.largest_batch >= 2
    assert max(inner.batch_sizes) > 2  # several sessions' crops in one pass
    assert elapsed < 60 * 0.02  # fewer passes than calls: faster than one pass per call
    assert batched.classes == ("a", "b")  # everything else is the wrapped classifier's


def test_an_error_reaches_every_caller_of_that_pass_and_nobody_hangs():
    batched = BatchingClassifier(SlowDouble())
    with pytest.raises(ValueError, match="broken crop"):
        batched.predict_probs(["boom"])
    assert batched.predict_probs([1.0])[0, 0] == 1.0  # the next call runs as usual
