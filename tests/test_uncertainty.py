"""Uncertainty that is true: the shipped emotion calibration, one routing decision, drift references.

Real models and real photos. The calibration check reads ../shared/traindata/fer2013_heldout (next to
the clone in CI) and is skipped cleanly where that folder is absent.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from demos.monitor import Monitor, MonitorSettings
from demos.review import ReviewSettings
from models.calibration_store import load_calibration
from models.prediction import Decision, make_prediction

HELDOUT = Path(__file__).resolve().parents[1].parent / "shared" / "traindata" / "fer2013_heldout"
CHECK_FACES = 1500  # of the ~3250 faces the calibration was not fitted on: coverage +-0.03 is ~4 standard errors


@pytest.fixture(scope="module")
def emotion():
    from models.emotion import EmotionSettings, load_emotion_classifier

    return load_emotion_classifier(EmotionSettings(device="cpu"))


def test_packaged_emotion_model_loads_its_calibration(emotion):
    cal = load_calibration("fer-mini-xception")
    assert cal is not None and abs(cal.temperature - 1.0) > 0.05  # fitted, not the identity
    assert emotion.temperature == cal.temperature and emotion.conformal_qhat == cal.conformal_qhat
    face = np.full((64, 64), 128, np.uint8)
    p = make_prediction(emotion.classes, emotion.predict_probs(face[None])[0], conformal_qhat=emotion.conformal_qhat,
                        coverage=emotion.coverage, calibrated=emotion.calibrated, calibration=emotion.calibration)
    assert p.calibrated and p.prediction_set is not None
    assert p.calibration_note.startswith("calibrated on FER2013 held-out faces (n=") and "90% set" in p.calibration_note


@pytest.mark.skipif(not (HELDOUT / "labels.csv").is_file(), reason=f"no {HELDOUT} (shared training data)")
def test_emotion_sets_cover_held_out_faces_at_90_percent(emotion):
    import cv2

    from models.emotion import face_to_input
    from train.packaged_calibration import split_fit_check

    with open(HELDOUT / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([emotion.classes.index(r["label"]) for r in rows])
    _, check = split_fit_check(labels)  # the part the shipped temperature and threshold never saw
    pick = np.random.default_rng(1).choice(check, CHECK_FACES, replace=False)
    faces = np.stack([face_to_input(cv2.imread(str(HELDOUT / rows[i]["path"]), cv2.IMREAD_GRAYSCALE)) for i in pick])
    probs = emotion.predict_probs(faces)
    sets = [make_prediction(emotion.classes, p, conformal_qhat=emotion.conformal_qhat).prediction_set for p in probs]
    coverage = np.mean([emotion.classes[y] in s for s, y in zip(sets, labels[pick])])
    assert 0.87 <= coverage <= 0.93
    assert 1.5 < np.mean([len(s) for s in sets]) < 4  # sets say something: not every class


def test_nothing_uncalibrated_is_called_calibrated():
    with pytest.raises(ValueError, match="uncalibrated"):
        make_prediction(["a", "b"], [0.3, 0.7], calibrated=False, calibration="calibrated on my laptop")
    assert make_prediction(["a", "b"], [0.3, 0.7]).calibration_note.startswith("uncalibrated")


@pytest.mark.parametrize("accept_at, drawn, queued", [(1.0, Decision.REVIEW, 1), (0.3, Decision.ACCEPT, 0)])
def test_accept_at_changes_what_is_drawn_and_what_is_queued(tmp_path, accept_at, drawn, queued):
    from demos import tab_webcam
    from demos.context import AppContext, AppSettings

    ctx = AppContext(AppSettings(data_dir=tmp_path, preload=(),
                                 review=ReviewSettings(accept_at=accept_at, min_interval_s=0.0)))
    _, _, info, state = tab_webcam.process_frame(ctx, data.astronaut(), "emotion", None, "ana")
    [p] = state.last_predictions
    assert p.decision is drawn and f"decision **{drawn.value}**" in info  # what the page draws
    items = ctx.review.pending(task="emotion")
    assert len(items) == queued  # what the Review tab gets
    if queued:
        assert items[0].prediction["decision"] == "review" and items[0].reason == p.reason != ""


def test_drift_references_survive_a_restart(tmp_path):
    rng = np.random.default_rng(0)
    first = Monitor(MonitorSettings(min_samples=30), state_dir=tmp_path)
    assert first.install_shipped_references() == ["emotion"]  # the packaged model's validation references
    first.set_references("team image model", {"confidence": rng.beta(8, 2, 400)}, "validation of bundle b1")
    restarted = Monitor(MonitorSettings(min_samples=30), state_dir=tmp_path)
    assert restarted.install_shipped_references() == []  # kept, not replaced
    refs = restarted.references()
    assert refs["team image model/confidence"] == "validation of bundle b1"
    assert refs["emotion/face_brightness"].startswith("validation: FER2013 held-out faces")
    for v in rng.beta(2, 8, 200):  # the live model became unsure: drift against the restored reference
        restarted.record("team image model/confidence", float(v))
    result = restarted.drift("team image model/confidence")
    assert result.alarm and result.reference_source == "validation of bundle b1"


def test_drift_alarm_needs_a_change_worth_attention():
    mon = Monitor(MonitorSettings(min_samples=30))
    rng = np.random.default_rng(0)
    mon.set_references("cam", {"brightness": 0.400 + rng.normal(0, 0.001, 300)}, "validation")
    for v in 0.404 + rng.normal(0, 0.001, 100):  # 0.004 brighter: "significant", not meaningful
        mon.record("cam/brightness", float(v))
    assert not mon.drift("cam/brightness").alarm
    for v in 0.2 + rng.normal(0, 0.01, 100):  # lights half off
        mon.record("cam/brightness", float(v))
    assert mon.drift("cam/brightness").alarm


def test_segment_words_are_scored_against_the_aligned_reference():
    from bench.uncertainty import segment_correctness

    ref = "ask not what your country can do".split()
    assert segment_correctness(ref, [["ask", "not", "what"], ["your", "country", "can", "do"]]) == [True, True]
    assert segment_correctness(ref, [["ask", "not", "what"], ["you", "country", "can", "do"]]) == [True, False]
    assert segment_correctness(ref, [["ask", "not"], ["what", "your", "can", "do"]]) == [True, False]  # skipped word
    assert segment_correctness(ref, [["ask", "not", "what", "your", "country", "can", "do", "now"]]) == [False]


def test_the_app_keeps_drift_references_across_a_restart(tmp_path):
    from demos.context import AppContext, AppSettings

    settings = AppSettings(data_dir=tmp_path, preload=())
    first = AppContext(settings)
    assert first.monitor.references()["emotion/confidence"].startswith("validation: FER2013 held-out faces")
    first.monitor.set_references("questions", {"confidence": np.linspace(0.5, 1.0, 50)}, "validation of q1")
    again = AppContext(settings)  # the app restarted on the same data folder
    assert again.monitor.references()["questions/confidence"] == "validation of q1"
    assert again.monitor.values("questions/confidence")[0].size > 0
