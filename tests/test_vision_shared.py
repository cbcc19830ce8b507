"""Shared vision models: sessions built on one SharedVision load nothing again, keep their own tracks, and
give the same answers from several threads at once as one at a time (the mediapipe graph is behind a lock)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bench.synthetic import draw_hand


@pytest.fixture(scope="module")
def shared_sign():
    from models.pipelines import load_shared

    shared = load_shared("sign")
    yield shared
    shared.close()


def test_sessions_on_shared_models_load_nothing(shared_sign, monkeypatch):
    import models.bundle
    import models.hands
    from models.pipelines import build_pipeline

    def no_load(*args, **kwargs):
        raise AssertionError("a session loaded a model again")

    monkeypatch.setattr(models.hands.HandLandmarks, "__init__", no_load)
    monkeypatch.setattr(models.bundle, "load_bundle", no_load)
    sessions = [build_pipeline("sign", shared=shared_sign) for _ in range(4)]
    assert all(s.classifier is shared_sign.classifier for s in sessions)
    assert len({id(s.tracker) for s in sessions}) == 4  # per-session state
    for s in sessions:
        s.close()  # a session's close leaves the shared models to the others
    assert build_pipeline("sign", shared=shared_sign).process(draw_hand(), 1.0)


def test_threads_sharing_one_landmarker_get_the_serial_answers(shared_sign):
    from models.pipelines import build_pipeline

    frames = [draw_hand(cx=260 + 40 * k, scale=0.9 + 0.05 * k, spread=1.0 + 0.3 * k, seed=k) for k in range(4)]

    def run(k: int) -> list[np.ndarray]:
        pipe = build_pipeline("sign", shared=shared_sign)
        out = []
        for i in range(6):
            preds = pipe.process(frames[k], 10.0 + i / 30)
            assert len(preds) == 1, f"session {k}, frame {i}: {len(preds)} hands"
            out.append(preds[0].probs)
        return out

    serial = [run(k) for k in range(4)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, range(4)))
    for k in range(4):
        np.testing.assert_allclose(np.array(parallel[k]), np.array(serial[k]), atol=1e-6)
    assert len({int(np.argmax(s[-1])) for s in serial}) > 1 or len({s[-1].tobytes() for s in serial}) == 4


COLLECT_INSIDE_SUBMIT = r'''
import concurrent.futures._base as base, gc, time
import numpy as np
from models.hands import load_hand_landmarks, HandSettings

settings = HandSettings(video_mode=False)
caller = load_hand_landmarks(settings)
owner = load_hand_landmarks(settings)
owner.cycle = owner  # freed only by the cyclic collector
task, closer = owner._landmarker, owner._close_landmarker
gc.disable()
del owner
plain_init, collected = base.Future.__init__, []

def init_then_collect(self, *args, **kwargs):  # the collector runs inside ThreadPoolExecutor.submit, under its locks
    plain_init(self, *args, **kwargs)
    if not collected:
        collected.append(gc.collect())

base.Future.__init__ = init_then_collect
caller.detect(np.zeros((64, 64, 3), np.uint8))
base.Future.__init__ = plain_init
assert collected and collected[0] > 0 and not closer.alive, "the owner was not collected inside submit"
deadline = time.monotonic() + 20
while task._handle is not None and time.monotonic() < deadline:  # mediapipe's graph handle: None once closed
    time.sleep(0.05)
assert task._handle is None, "the collected owner's landmarker was never closed"
caller.close()
print("closed without deadlock")
'''


def test_an_owner_collected_inside_a_mediapipe_call_closes_its_task_without_deadlock():
    """The CI hang of a deploy test: the collector ran inside ThreadPoolExecutor.submit (which holds a process-wide
    lock), freed an old hand landmarker's owner, and its close called submit again. Forced here deterministically;
    before models/mediapipe_lifetime.py queued such closes, this script never finished."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run([sys.executable, "-c", COLLECT_INSIDE_SUBMIT], cwd=root, capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: closing a landmarker from the garbage collector inside a mediapipe call never returned")
    assert done.returncode == 0 and "closed without deadlock" in done.stdout, done.stderr[-2000:]
