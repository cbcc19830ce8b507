"""Drift monitor: no alarm on the same distribution, an alarm when inputs get darker or the model less sure."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from demos.monitor import Monitor, MonitorSettings, audio_level_db, brightness, drift_figure, psi, review_rate_figure
from models.prediction import make_prediction


def test_input_statistics_on_real_media():
    photo = data.astronaut()  # (512, 512, 3) uint8
    assert 0.2 < brightness(photo) < 0.8
    assert brightness(photo // 4) == pytest.approx(brightness(photo) / 4, rel=0.05)
    t = np.arange(16000) / 16000
    assert audio_level_db(0.5 * np.sin(2 * np.pi * 440 * t)) == pytest.approx(-9.03, abs=0.1)
    assert audio_level_db(np.zeros(100)) == -100.0 and audio_level_db(np.array([])) == -100.0


def test_psi_small_for_same_large_for_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    assert psi(a, b) < 0.05
    assert psi(a, rng.normal(1.0, 1, 2000)) > 0.25


def test_darkening_camera_raises_alarm_against_warmup():
    rng = np.random.default_rng(1)
    photo = data.astronaut()
    mon = Monitor(MonitorSettings(warmup=60, window=60, min_samples=30))
    for _ in range(120):  # same lighting with sensor noise
        frame = np.clip(photo * rng.uniform(0.95, 1.05), 0, 255).astype(np.uint8)
        mon.record_frame("emotion", frame, [])
    assert not mon.drift("emotion/brightness").alarm
    for _ in range(60):  # lights off
        frame = np.clip(photo * rng.uniform(0.3, 0.4), 0, 255).astype(np.uint8)
        mon.record_frame("emotion", frame, [])
    result = mon.drift("emotion/brightness")
    assert result.alarm and result.reference_source == "warm-up" and result.recent_mean < result.reference_mean


def test_confidence_drift_against_validation_baseline_and_review_rate():
    rng = np.random.default_rng(2)
    mon = Monitor(MonitorSettings(min_samples=30))
    mon.set_baseline("emotion/confidence", rng.beta(9, 1, 500))  # validation: confident
    classes = ["a", "b", "c"]
    for _ in range(100):
        top = rng.beta(3, 2) * 0.6 + 0.34  # live: far less sure
        mon.record_predictions("emotion", [make_prediction(classes, [top, (1 - top) / 2, (1 - top) / 2])])
        mon.record_timing("emotion", compute_ms=5.0)
    res = mon.drift("emotion/confidence")
    assert res.alarm and res.reference_source == "validation"
    rate = mon.review_rate("emotion")
    assert rate and 0.3 < rate[-1][2] <= 1.0
    timing = mon.timing("emotion")
    assert timing["compute_median_ms"] == 5.0 and timing["n"] == 100
    fig = drift_figure(mon)
    assert any("DRIFT" in ax.get_title() for ax in fig.axes)
    review_rate_figure(mon)


def test_model_hub_loads_once_across_threads_and_reports_failures():
    import threading
    import time

    from demos.context import ModelHub

    calls = []

    def slow_model():
        calls.append(1)
        time.sleep(0.2)
        return object()

    def broken_model():
        raise FileNotFoundError("weights missing: run livelearner models fetch")

    hub = ModelHub({"slow": slow_model, "broken": broken_model})
    got = []
    threads = [threading.Thread(target=lambda: got.append(hub.get("slow"))) for _ in range(4)]
    for t in threads:
        t.start()
    assert "slow: loading" in hub.status_markdown()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(g is got[0] for g in got)
    with pytest.raises(FileNotFoundError):
        hub.get("broken")
    status = hub.status_markdown()
    assert "slow: ready" in status and "broken: failed" in status and "models fetch" in status
