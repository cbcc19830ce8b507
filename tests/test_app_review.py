"""Review queue: band routing, attribution, corrections become samples, nothing lost on kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from skimage import data

from demos.review import ReviewQueue, ReviewSettings
from models.prediction import make_prediction

EMOTIONS = ["angry", "happy", "neutral"]


def pred(p_top: float, track_id: int | None = None):
    rest = (1 - p_top) / 2
    return make_prediction(EMOTIONS, [rest, p_top, rest], track_id=track_id)


def test_only_band_predictions_are_queued_with_their_input(tmp_path):
    q = ReviewQueue(tmp_path, ReviewSettings(min_interval_s=0.0))
    face = data.astronaut()[:200, 150:350]  # (200, 200, 3) uint8
    assert q.offer("emotion", pred(0.95), face) is None  # confident: auto-accepted
    assert q.offer("emotion", pred(0.40), face) is None  # near uniform (1.5/3 = 0.5 floor): abstain
    item_id = q.offer("emotion", pred(0.70), face, person="ana", session="s1")
    assert item_id is not None
    item = q.pending()[0]
    assert item.predicted == "happy" and item.person == "ana" and item.kind == "image"
    np.testing.assert_array_equal(item.load_input(), face)  # PNG is lossless
    assert "between" in item.reason  # every item says why it was queued
    # the queue follows the prediction's own decision: made with accept_at 0.6, the same face is
    # accepted (drawn green) and not queued
    lenient = make_prediction(EMOTIONS, [0.15, 0.7, 0.15], policy=ReviewSettings(accept_at=0.6).policy)
    assert lenient.decision.value == "accept" and q.offer("emotion", lenient, face) is None


def test_pipeline_reasons_route_edge_hands_in_and_hallucinations_out(tmp_path):
    q = ReviewQueue(tmp_path, ReviewSettings(min_interval_s=0.0))
    img = np.zeros((32, 32, 3), np.uint8)
    edge = make_prediction(EMOTIONS, [0.02, 0.96, 0.02], review_because="hand partly outside the frame")
    made_up = make_prediction(EMOTIONS, [0.15, 0.7, 0.15], abstain_because="probably hallucinated")
    assert q.offer("sign", edge, img) is not None  # confident but at the edge: reviewed
    assert q.offer("text", made_up, "thank you for watching") is None  # abstained: never queued
    assert [i.reason for i in q.pending()] == ["hand partly outside the frame"]


def test_each_teammate_sees_their_own_queue_and_a_reviewer_sees_all(tmp_path):
    q = ReviewQueue(tmp_path, ReviewSettings(min_interval_s=0.0))
    for person in ("ana", "ben", "ana"):
        q.add("text", pred(0.7), f"said by {person}", person=person)
    assert [i.input_text for i in q.pending(person="ana")] == ["said by ana", "said by ana"]
    assert len(q.pending()) == 3 and q.count("pending", person="ben") == 1


def test_review_tab_shows_mine_or_everyone(tmp_path):
    import gradio as gr

    from demos import tab_review
    from demos.context import AppContext, AppSettings

    ctx = AppContext(AppSettings(data_dir=tmp_path, preload=(), review=ReviewSettings(min_interval_s=0.0)))
    for person in ("ana", "ben", "ana"):
        ctx.review.add("text", pred(0.7), f"said by {person}", person=person)

    def persons(scope: str, name: str) -> list[str]:
        return [row[5] for row in tab_review.queue_rows(ctx, scope=scope, person=name)]

    assert persons("mine", "ana") == ["ana", "ana"] and persons("mine", " ben ") == ["ben"]
    assert persons("everyone", "ana") == ["ana", "ben", "ana"]  # a reviewer sees both teammates' items
    assert persons("mine", "") == ["ana", "ben", "ana"]  # no name typed: nothing to filter on
    assert tab_review.queue_summary(ctx, "mine", "ana").startswith("**2 of yours (ana) waiting for review** (3 ")
    assert "type your name" in tab_review.queue_summary(ctx, "mine", "")
    with pytest.raises(gr.Error, match="mine"):
        tab_review.queue_rows(ctx, scope="theirs", person="ana")


def test_rate_limit_per_track(tmp_path):
    q = ReviewQueue(tmp_path, ReviewSettings(min_interval_s=60.0))
    img = np.zeros((32, 32, 3), np.uint8)
    assert q.offer("emotion", pred(0.7, track_id=1), img, session="a") is not None
    assert q.offer("emotion", pred(0.7, track_id=1), img, session="a") is None  # same face, too soon
    assert q.offer("emotion", pred(0.7, track_id=2), img, session="a") is not None  # another face
    assert q.offer("emotion", pred(0.7, track_id=1), img, session="b") is not None  # another user


def test_confirm_and_correct_are_attributed_and_become_samples(tmp_path):
    q = ReviewQueue(tmp_path, ReviewSettings(min_interval_s=0.0))
    a = q.add("text", pred(0.7), "I am so glad")
    b = q.add("tabular", pred(0.7), {"q1": 3, "q2": 5})
    samples: list = []

    def sink(item):
        samples.append((item.task, item.load_input(), item.label, item.reviewer))
        return f"s{len(samples)}"

    ra = q.resolve(a, "ben", sink=sink)
    rb = q.resolve(b, "cleo", "angry", sink=sink)
    assert (ra.status, ra.label, ra.sample_id) == ("confirmed", "happy", "s1")
    assert (rb.status, rb.label, rb.reviewer) == ("corrected", "angry", "cleo")
    assert samples[1] == ("tabular", {"q1": 3, "q2": 5}, "angry", "cleo")
    assert q.by_reviewer() == {"ben": {"confirmed": 1}, "cleo": {"corrected": 1}}
    with pytest.raises(ValueError, match="already"):
        q.resolve(a, "dan", "neutral")
    with pytest.raises(ValueError, match="reviewer"):
        q.resolve(q.add("text", pred(0.7), "x"), "  ")


def test_resolved_without_sample_is_recovered(tmp_path):
    q = ReviewQueue(tmp_path)
    i = q.add("text", pred(0.7), "hello")
    q.resolve(i, "ben", "neutral")  # no sink: as if the app died before writing the sample
    q2 = ReviewQueue(tmp_path)
    assert q2.sync_samples(lambda item: f"sample-{item.id}") == [f"sample-{i}"]
    assert q2.get(i).sample_id == f"sample-{i}"
    assert q2.sync_samples(lambda item: "again") == []


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from demos.review import ReviewQueue
    from models.prediction import make_prediction
    q = ReviewQueue(sys.argv[1])
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    i = 0
    while True:
        p = make_prediction(["a", "b", "c"], [0.1, 0.7, 0.2])
        item = q.add("emotion", p, img, person=str(i))
        if i % 2 == 0 and i > 0:
            q.resolve(item - 1, "writer", "c")
        print(item, flush=True)
        i += 1
    """
)


def test_kill_9_mid_write_loses_no_committed_item(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 25 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            acknowledged.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up, possibly in the middle of a write
    proc.wait()
    assert len(acknowledged) >= 25
    q = ReviewQueue(tmp_path)
    for item_id in acknowledged:
        item = q.get(item_id)
        assert item is not None, f"item {item_id} acknowledged but lost"
        assert item.load_input().shape == (240, 320, 3)
    resolved = [i for i in acknowledged if q.get(i).status == "corrected"]
    assert len(resolved) >= 10 and all(q.get(i).reviewer == "writer" for i in resolved)
    # the queue still works after the crash
    assert q.add("emotion", pred(0.7), np.zeros((8, 8, 3), np.uint8)) > max(acknowledged)


def test_a_queue_from_before_reasons_were_stored_still_opens(tmp_path):
    import sqlite3

    from demos.review import SCHEMA

    lines = [line for line in SCHEMA.splitlines() if not line.strip().startswith("reason TEXT")]
    old_schema = "\n".join(lines).replace("sample_id TEXT,", "sample_id TEXT")  # the first version's table
    db = sqlite3.connect(tmp_path / "review.sqlite")
    db.executescript(old_schema)
    db.execute("INSERT INTO items (task, kind, input_text, predicted, confidence, prediction_json, created_s) "
               "VALUES ('text', 'text', 'hi', 'happy', 0.7, '{}', 1.0)")
    db.commit()
    db.close()
    q = ReviewQueue(tmp_path)
    assert [(i.input_text, i.reason) for i in q.pending()] == [("hi", "")]
    q.add("text", pred(0.7), "again")
    assert q.pending()[-1].reason.startswith("top probability 0.70")
