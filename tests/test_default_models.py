"""The project's own default models: the shipped bundles load and behave on real photos, and the recipes
that retrain them run end to end on tiny generated data (the full retraining is `livelearner train-default`)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.shipped import SHIPPED, shipped_model
from train.datasets import class_balance_weights, stratified_split
from train.emotion_recipe import EmotionRecipe, retrain_emotion
from train.sign_recipe import contiguous_block_split

MAX_WEIGHTS_BYTES = 5 * 1024 * 1024


@pytest.mark.parametrize("model", SHIPPED, ids=lambda m: m.name)
def test_shipped_bundle_is_small_documented_and_loads(model):
    from models.bundle import load_bundle

    files = [p for p in model.path.iterdir() if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pt")]  # tensors only: loading runs no code
    assert sum(p.stat().st_size for p in files if p.suffix == ".safetensors") <= MAX_WEIGHTS_BYTES
    card = json.loads((model.path / "card.json").read_text())
    assert "licence" in json.dumps(card["data"]).lower()
    assert card["reproduce"].startswith("livelearner train-default")
    assert "Model card" in (model.path / "card.md").read_text()
    bundle = load_bundle(model.path)
    assert bundle.calibrated and bundle.temperature > 0


def test_stratified_and_balanced_indices():
    y = np.array([0] * 90 + [1] * 10)
    train, valid = stratified_split(y, 0.1, seed=0)
    assert set(train).isdisjoint(valid) and len(train) + len(valid) == 100
    assert (y[valid] == 1).sum() == 1 and (y[valid] == 0).sum() == 9
    w = class_balance_weights(y[valid])  # each example once, every class the same total weight
    assert len(w) == len(valid) and w[y[valid] == 0].sum() == pytest.approx(w[y[valid] == 1].sum())


def test_contiguous_blocks_never_interleave_frames():
    labels = np.array(["A"] * 50 + ["B"] * 50)
    frames = np.r_[np.arange(1, 3001, 60), np.arange(7, 3007, 60)]
    train, valid = contiguous_block_split(labels, frames, n_blocks=5, fold=2, gap_frames=30)
    for c in ("A", "B"):
        v = frames[valid][labels[valid] == c]
        t = frames[train][labels[train] == c]
        assert len(v) == 10
        # validation frames form one contiguous run, and no training frame lies within 30 frames of it
        assert not ((t >= v.min() - 30) & (t <= v.max() + 30)).any()


def _draw_face(mouth: str, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 grey cartoon face whose mouth shows the class, with random position, size and lighting."""
    img = np.full((48, 48), int(rng.integers(20, 60)), np.uint8)
    cx, cy, r = 24 + int(rng.integers(-3, 4)), 24 + int(rng.integers(-3, 4)), int(rng.integers(16, 21))
    cv2.circle(img, (cx, cy), r, int(rng.integers(150, 220)), -1)
    for dx in (-7, 7):
        cv2.circle(img, (cx + dx, cy - 5), 2, 30, -1)
    if mouth == "happy":
        cv2.ellipse(img, (cx, cy + 6), (8, 5), 0, 0, 180, 20, 2)
    elif mouth == "sad":
        cv2.ellipse(img, (cx, cy + 11), (8, 5), 0, 180, 360, 20, 2)
    else:  # surprise
        cv2.circle(img, (cx, cy + 8), 4, 20, -1)
    return img


@pytest.mark.slow
def test_emotion_recipe_trains_calibrates_and_exports_on_tiny_data(tmp_path, monkeypatch):
    from models.store import ensure

    weights = ensure("mobilenet_v2-imagenet")  # the real packaged backbone
    monkeypatch.setenv("LIVELEARNER_HOME", str(tmp_path / "home"))  # decoded-data cache stays in tmp
    rng = np.random.default_rng(0)
    data = tmp_path / "faces"
    for cls in ("happy", "sad", "surprise"):
        (data / cls).mkdir(parents=True)
        for i in range(24):
            cv2.imwrite(str(data / cls / f"{i}.png"), _draw_face(cls, rng))
    recipe = EmotionRecipe(data=data, out=tmp_path / "bundle", frozen_epochs=0, epochs=1, stop_after_epochs=None,
                           anneal_epochs=0, batch_size=16,
                           valid_frac=0.25, threads=1, backbone_weights=weights)
    logs: list[str] = []
    out = retrain_emotion(recipe, log=logs.append)

    from models.bundle import load_bundle

    bundle = load_bundle(out)
    assert bundle.classes == ("happy", "sad", "surprise")
    card = bundle.card
    assert card["curves"]["stage"] == ["B one-cycle"] and np.isfinite(card["curves"]["valid_loss"]).all()
    assert card["calibration"]["temperature"] > 0 and card["diagnosis"]["name"]
    assert card["calibration"]["n"] == 18  # the 6 held-out faces of each class, each counted once
    assert "no person ids" in card["split"]
    assert (out / "model.safetensors").stat().st_size < MAX_WEIGHTS_BYTES  # float16 tensors
    faces = [cv2.cvtColor(_draw_face("happy", rng), cv2.COLOR_GRAY2RGB) for _ in range(3)]
    probs = bundle.predict_probs(faces)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert any(line.startswith("epoch 1 (B one-cycle)") for line in logs)


def test_shipped_sign_model_runs_on_a_hand_and_ignores_handedness():
    from bench.synthetic import draw_hand
    from models.bundle import load_bundle
    from models.hands import HandSettings, load_hand_landmarks
    from models.signs import BundleSignClassifier

    clf = BundleSignClassifier(load_bundle(shipped_model("livelearner-sign").path))
    assert clf.classes == tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") and clf.calibrated
    card = clf.bundle.card
    assert card["new_person"] and card["comparison"]["runs"]["landmarks/cross-signer"]
    landmarker = load_hand_landmarks(HandSettings(video_mode=False))
    try:
        image = draw_hand()
        right = landmarker.detect(image)
        left = landmarker.detect(np.ascontiguousarray(image[:, ::-1]))
    finally:
        landmarker.close()
    assert right and left, "the drawn hand was not found"
    p_right, p_left = clf.predict_probs(right), clf.predict_probs(left)
    assert p_right.shape == (1, 26) and p_right.sum() == pytest.approx(1.0, abs=1e-6)
    # a left hand is mirrored onto a right one: the mirrored photo reads as the same letter
    assert p_right.argmax() == p_left.argmax()
    assert np.abs(p_right - p_left).max() < 0.15


def test_landmark_learner_of_the_sign_recipe_trains_and_scores_per_detection(tmp_path):
    """The sign recipe's landmark path on generated hands: 3 letters, 2 signers, some photos with no hand."""
    from train.sign_recipe import HandSet, SignRecipe, _fit_and_bundle, score_on

    rng = np.random.default_rng(0)
    centres = {c: rng.normal(size=63).astype(np.float32) for c in "ABC"}
    labels = np.array([c for c in "ABC" for _ in range(40)])
    groups = np.array(["p1", "p2"] * 60)
    feats = np.stack([centres[c] + 0.3 * rng.normal(size=63).astype(np.float32) for c in labels])
    feats[1::10] = np.nan  # 12 of signer p2's 60 photos: no hand found
    hs = HandSet([tmp_path / f"{i}.jpg" for i in range(120)], labels, groups, feats, np.zeros((120, 4), np.int32),
                 [tmp_path / f"{i}.png" for i in range(120)])
    train_idx, valid_idx = np.flatnonzero((groups == "p1") & hs.found), np.flatnonzero((groups == "p2") & hs.found)
    recipe = SignRecipe(data=tmp_path, out=tmp_path / "out", landmark_epochs=8)
    bundle, valid, _ = _fit_and_bundle("landmarks", hs, train_idx, valid_idx, ["A", "B", "C"], recipe,
                                       tmp_path / "bundle", {"setting": "test"})
    assert valid["accuracy"]["value"] > 0.9
    card = json.loads((bundle / "card.json").read_text())
    assert len(card["curves"]["train_loss"]) == 8 and np.isfinite(card["curves"]["train_loss"]).all()
    scores = score_on(bundle, "landmarks", hs.subset(groups == "p2"))
    assert scores["detection_rate"]["value"] == pytest.approx(0.8)
    # photos without a hand count as wrong over all images, and are left out of the detected-hands figure
    assert scores["accuracy_all"]["value"] == pytest.approx(0.8 * scores["accuracy_detected"]["value"])
