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
    assert clf.classes == tuple("ABCDEFGHIKLMNOPQRSTUVWXY") and clf.calibrated  # the 24 static letters
    card = clf.bundle.card
    assert card["calibration"]["new_person"] and card["new_person"]["n_persons"] >= 50
    assert "a new person" in clf.calibration
    landmarker = load_hand_landmarks(HandSettings(video_mode=False))
    try:
        image = draw_hand()
        right = landmarker.detect(image)
        left = landmarker.detect(np.ascontiguousarray(image[:, ::-1]))
    finally:
        landmarker.close()
    assert right and left, "the drawn hand was not found"
    p_right, p_left = clf.predict_probs(right), clf.predict_probs(left)
    assert p_right.shape == (1, 24) and p_right.sum() == pytest.approx(1.0, abs=1e-6)
    # a left hand is mirrored onto a right one: the mirrored photo reads as the same letter
    assert p_right.argmax() == p_left.argmax()
    assert np.abs(p_right - p_left).max() < 0.15
