"""Bounded queues and the audio ring: bounds hold, drops are counted, nothing is lost by BLOCK."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from capture.buffers import AudioRing, BoundedQueue, DropPolicy, QueueClosed


def test_drop_oldest_keeps_newest_and_counts():
    q: BoundedQueue[int] = BoundedQueue(3, DropPolicy.DROP_OLDEST)
    for i in range(10):
        assert q.put(i)
    c = q.counters()
    assert (c.put, c.dropped, c.size, c.max_size_seen) == (10, 7, 3, 3)
    assert [q.get(0) for _ in range(3)] == [7, 8, 9]


def test_drop_newest_keeps_oldest():
    q: BoundedQueue[int] = BoundedQueue(3, "drop_newest")
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    assert [q.get(0) for _ in range(3)] == [0, 1, 2]
    assert q.counters().dropped == 2


def test_block_loses_nothing_with_slow_consumer():
    q: BoundedQueue[int] = BoundedQueue(2, DropPolicy.BLOCK)
    producer = threading.Thread(target=lambda: [q.put(i) for i in range(20)] and q.close())
    producer.start()
    got = []
    with pytest.raises(QueueClosed):
        while True:
            got.append(q.get(timeout_s=2))
            time.sleep(0.002)
    producer.join(2)
    assert got == list(range(20))
    assert q.counters().dropped == 0 and q.counters().max_size_seen <= 2


def test_close_with_error_reaches_consumer_and_get_times_out():
    q: BoundedQueue[int] = BoundedQueue(2)
    with pytest.raises(TimeoutError):
        q.get(timeout_s=0.05)
    q.put(1)
    q.close(RuntimeError("camera gone"))
    with pytest.raises(RuntimeError, match="camera gone"):
        q.get(0)


def test_concurrent_bound_and_accounting():
    q: BoundedQueue[int] = BoundedQueue(4, DropPolicy.DROP_OLDEST)
    sizes = []

    def produce():
        for i in range(5000):
            q.put(i)
            sizes.append(len(q))
        q.close()

    t = threading.Thread(target=produce)
    t.start()
    got = []
    while True:
        try:
            got.append(q.get(timeout_s=2))
        except QueueClosed:
            break
    t.join(2)
    c = q.counters()
    assert max(sizes) <= 4 and c.max_size_seen <= 4
    assert c.put == 5000 == c.got + c.dropped
    assert got == sorted(got)  # order kept, only gaps


def test_audio_ring_wraps_and_counts_overwrites():
    ring = AudioRing(1000)
    ramp = np.arange(2500, dtype=np.float32)
    for i in range(0, 1200, 300):  # 1200 written into 1000: 200 overwritten
        ring.write(ramp[i : i + 300])
    assert ring.overwritten_samples == 200 and ring.available() == 1000
    pos, block = ring.read(600, timeout_s=0)
    assert pos == 200 and np.array_equal(block, ramp[200:800])
    ring.write(ramp[1200:2500])  # larger than the ring: only the newest 1000 survive
    pos, block = ring.read(1000, timeout_s=0)
    assert pos == 1500 and np.array_equal(block, ramp[1500:2500])
    assert ring.read(1, timeout_s=0.01) is None
