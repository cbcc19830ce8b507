"""Bundle format 2 (bundle.json + model.safetensors, architecture by name): a tiny model of each kind,
saved and loaded back with no pickle, gives the probabilities fastai's own learner gives."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.bundle import BundleError, load_bundle
from train.bundle_writer import save_bundle
from train.datablocks import LearnerSettings, build_learner
from train.synthetic import LeakyLandmarks, ShapeImages, leaky_landmarks, shape_images

TOLERANCE = 1e-5  # probabilities


pytestmark = pytest.mark.filterwarnings("ignore")  # fastai/torch deprecation noise


def _fit(learn, epochs: int = 2) -> None:
    import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar

    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs, lr=3e-3)


def _valid_probs(learn) -> np.ndarray:
    with learn.no_bar(), learn.no_logging():
        probs, _ = learn.get_preds(ds_idx=1)
    return probs.double().numpy()


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    return idx[idx % 4 != 0], idx[idx % 4 == 0]


def _saved(tmp_path, learn, backend, spec, task):
    out = save_bundle(tmp_path / task, task=task, backend=backend, classes=list(learn.dls.vocab), learner=learn,
                      input_spec=spec)
    assert not list(out.glob("*.pkl")) and (out / "model.safetensors").is_file()
    assert json.loads((out / "bundle.json").read_text())["format"] == 2
    return load_bundle(out)


def test_vector_bundle_matches_the_learner(tmp_path):
    rows = list(leaky_landmarks(LeakyLandmarks(n_persons=2, per_person_class=10, dim=12)))
    x, labels = np.stack([r[0] for r in rows]), [r[1] for r in rows]
    train_idx, valid_idx = _split(len(x))
    learn, backend, spec = build_learner("landmarks", x, labels, train_idx, valid_idx,
                                         LearnerSettings(hidden=(16, 8), dropout=0.2))
    _fit(learn)
    bundle = _saved(tmp_path, learn, backend, spec, "landmarks")
    assert bundle.spec["arch"] == {"name": "vector_mlp", "dim": 12, "hidden": [16, 8], "n_classes": 4,
                                   "dropout": 0.2}
    np.testing.assert_allclose(bundle.predict_probs(x[valid_idx]), _valid_probs(learn), atol=TOLERANCE)


@pytest.mark.slow
def test_vision_bundle_matches_the_learner(tmp_path):
    paths, labels = [], []
    for i, (img, label, *_rest) in enumerate(shape_images(ShapeImages(n_persons=2, per_person_class=3, size_px=48))):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
        labels.append(label)
    train_idx, valid_idx = _split(len(paths))
    learn, backend, spec = build_learner("image", [str(p) for p in paths], labels, train_idx, valid_idx,
                                         LearnerSettings(image_size_px=32, batch_size=8, augment=False,
                                                         pretrained=False))
    _fit(learn, 1)
    bundle = _saved(tmp_path, learn, backend, spec, "image")
    assert bundle.spec["arch"]["name"] == "mobilenet_v2_fastai"
    np.testing.assert_allclose(bundle.predict_probs([paths[i] for i in valid_idx]), _valid_probs(learn),
                               atol=TOLERANCE)


def _answers(n: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        label = ("calm", "busy")[i % 2]
        sleep = float(rng.normal(7 if label == "calm" else 5, 1))
        rows.append({"sleep_h": np.nan if i % 13 == 3 else sleep, "mood": str(rng.choice(["ok", "low", "high"])),
                     "coffee": float(rng.integers(0, 5))})
        labels.append(label)
    return rows, labels


def test_tabular_bundle_matches_the_learner_with_missing_and_unseen_answers(tmp_path):
    import pandas as pd

    from train.datablocks import answers_frame

    rows, labels = _answers(64)
    df = answers_frame(rows)
    train_idx, valid_idx = _split(len(rows))
    learn, backend, spec = build_learner("tabular", df, labels, train_idx, valid_idx)
    _fit(learn)
    bundle = _saved(tmp_path, learn, backend, spec, "tabular")
    assert "sleep_h_na" in bundle.spec["tabular"]["cat_names"]  # FillMissing's flag column
    np.testing.assert_allclose(bundle.predict_probs(df.iloc[valid_idx].reset_index(drop=True)),
                               _valid_probs(learn), atol=TOLERANCE)
    new = pd.DataFrame([{"sleep_h": np.nan, "mood": "never seen", "coffee": 9.0},
                        {"sleep_h": 8.5, "mood": "low", "coffee": 0.0}])
    with learn.no_bar(), learn.no_logging():
        expected, _ = learn.get_preds(dl=learn.dls.test_dl(new))
    np.testing.assert_allclose(bundle.predict_probs(new), expected.double().numpy(), atol=TOLERANCE)
    with pytest.raises(BundleError, match="coffee"):
        bundle.predict_probs([{"sleep_h": 7.0, "mood": "ok"}])
    with pytest.raises(BundleError, match="coffee.*number"):
        bundle.predict_probs([{"sleep_h": 7.0, "mood": "ok", "coffee": "lots"}])


def test_zero_shot_bundle_keeps_its_embeddings_as_tensors(tmp_path):
    emb = np.random.default_rng(0).normal(size=(3, 384)).astype(np.float32)
    out = save_bundle(tmp_path / "zs", task="text", backend="zeroshot", classes=["a", "b", "c"],
                      zeroshot_embeddings=emb, temperature=0.05)
    bundle = load_bundle(out)
    np.testing.assert_array_equal(bundle._zeroshot, emb)
    assert not list(out.glob("*.npz")) and not list(out.glob("*.pkl"))


def test_damaged_weights_and_unknown_architectures_get_clear_errors(tmp_path):
    rows = list(leaky_landmarks(LeakyLandmarks(n_persons=2, per_person_class=5, dim=6)))
    x, labels = np.stack([r[0] for r in rows]), [r[1] for r in rows]
    learn, backend, spec = build_learner("landmarks", x, labels, *_split(len(x)))
    out = save_bundle(tmp_path / "b", task="landmarks", backend=backend, classes=list(learn.dls.vocab),
                      learner=learn, input_spec=spec)
    spec_path = out / "bundle.json"
    good = json.loads(spec_path.read_text())
    spec_path.write_text(json.dumps({**good, "arch": {**good["arch"], "name": "resnet_from_mars"}}))
    with pytest.raises(BundleError, match="unknown architecture 'resnet_from_mars'"):
        load_bundle(out)
    spec_path.write_text(json.dumps({**good, "arch": {**good["arch"], "hidden": [7]}}))
    with pytest.raises(BundleError, match="do not fit"):
        load_bundle(out)
    spec_path.write_text(json.dumps(good))
    (out / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(out)


def test_bundle_predictions_say_what_they_were_calibrated_on(tmp_path):
    from models.shipped import shipped_bundle

    shipped = load_bundle(shipped_bundle("sign"))  # the shipped sign model: cross-fitted over person folds
    p = shipped.predictions(np.zeros((1, shipped.spec["input"]["dim"]), np.float32))[0]
    assert p.calibrated and "n=7575" in p.calibration and "same examples, not on new data" in p.calibration
    assert "new person" in p.calibration and "worst 0.65" in p.calibration
    # a bundle that states no calibration and was not fitted says uncalibrated; one claiming it is refused words
    data = list(leaky_landmarks(LeakyLandmarks(n_persons=2, per_person_class=10, dim=8)))
    x = np.stack([r[0] for r in data])
    train_idx, valid_idx = _split(len(data))
    learn, backend, spec = build_learner("landmarks", x, [r[1] for r in data], train_idx, valid_idx,
                                         LearnerSettings(hidden=(8,)))
    raw = _saved(tmp_path, learn, backend, spec, "landmarks")  # temperature 1, no sets: nothing fitted
    assert not raw.calibrated and raw.predictions(x[:1])[0].calibration_note.startswith("uncalibrated")
    spec_path = raw.root / "bundle.json"
    spec_path.write_text(json.dumps({**json.loads(spec_path.read_text()), "calibration": "calibrated on my laptop"}))
    assert load_bundle(raw.root).predictions(x[:1])[0].calibration_note == "uncalibrated: calibrated on my laptop"
