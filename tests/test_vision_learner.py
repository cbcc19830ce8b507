"""A fastai image learner trained here on tiny drawn data plugs into the live loop; bad pickles are refused."""
from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.synthetic import draw_shape

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def shapes_pkl(tmp_path_factory) -> Path:
    """Train a small random-init resnet18 for one epoch on 24 circles and 24 squares; export it."""
    from fastai.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner

    root = tmp_path_factory.mktemp("shapes")
    for kind in ("circle", "square"):
        (root / kind).mkdir()
        for i in range(24):
            cv2.imwrite(str(root / kind / f"{i}.png"), cv2.cvtColor(draw_shape(kind, 64, seed=i), cv2.COLOR_RGB2BGR))
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0, item_tfms=Resize(64), bs=8, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-3)
    out = root / "shapes.pkl"
    learn.export(out)
    return out


@pytest.mark.slow
def test_exported_learner_runs_in_the_live_loop_like_learn_predict(shapes_pkl):
    from fastai.learner import load_learner
    from fastai.vision.core import PILImage

    from demos.live_loop import LiveLoop
    from models.pipelines import LearnerPipeline, LearnerPipelineSettings

    pipe = LearnerPipeline(LearnerPipelineSettings(model=str(shapes_pkl), region="frame", trust_pickle=True))
    assert pipe.classes == ("circle", "square")
    # the fast path (the export's own Resize + Normalize, no DataLoader) equals fastai's learn.predict
    learn = load_learner(shapes_pkl, cpu=True)
    for seed, kind in ((100, "circle"), (101, "square")):
        img = draw_shape(kind, 64, seed=seed)
        ours = pipe.process(img, 1.0)[0]
        _, _, theirs = learn.predict(PILImage.create(img))
        np.testing.assert_allclose(ours.probs, theirs.numpy(), atol=1e-4)
    # a webcam-sized frame goes through the live loop
    frame = cv2.resize(draw_shape("circle", 64, seed=5), (640, 480), interpolation=cv2.INTER_NEAREST)
    with LiveLoop(pipe) as loop:
        for i in range(3):
            loop.submit(frame, float(i))
            loop.wait_idle(10.0)
    stats = loop.stats()
    assert stats.processed == 3 and stats.errors == 0
    p = loop.latest().predictions[0]
    assert p.classes == ("circle", "square") and abs(p.probs.sum() - 1) < 1e-6 and p.latency_ms > 0
    assert p.box is None  # whole-frame prediction


@pytest.mark.slow
def test_learner_on_face_crops(shapes_pkl):
    from models.pipelines import build_pipeline

    pipe = build_pipeline(str(shapes_pkl), region="faces", trust_pickle=True)
    preds = pipe.process(skimage_data.astronaut(), 2.0)
    assert len(preds) == 1 and preds[0].box is not None and preds[0].track_id is not None
    assert pipe.process(np.zeros((100, 100, 3), np.uint8), 2.1) == []  # no face, no prediction
    pipe.close()


def test_bad_model_files_get_clear_errors(shapes_pkl, tmp_path):
    import torch

    from models.image_learner import ImageLearnerSettings, LearnerLoadError, load_image_learner

    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"\x80\x04 this is not a pickle" * 50)
    with pytest.raises(LearnerLoadError, match="corrupt or not"):
        load_image_learner(corrupt, trust_pickle=True)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(shapes_pkl.read_bytes()[:5000])
    with pytest.raises(LearnerLoadError, match="export the learner again"):
        load_image_learner(truncated, trust_pickle=True)
    not_learner = tmp_path / "dict.pkl"
    torch.save({"weights": [1, 2, 3]}, not_learner)
    with pytest.raises(LearnerLoadError, match="not a fastai Learner"):
        load_image_learner(not_learner, trust_pickle=True)
    plain_pickle = tmp_path / "list.pkl"
    plain_pickle.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(LearnerLoadError):
        load_image_learner(plain_pickle, trust_pickle=True)
    with pytest.raises(ValueError, match="can run code when loaded.*--trust-pickle"):
        load_image_learner(shapes_pkl)  # a pickle loads only when the user says it is trusted
    with pytest.raises(LearnerLoadError, match="no model file"):
        load_image_learner(tmp_path / "missing.pkl")
    with pytest.raises(LearnerLoadError, match="this task needs"):
        load_image_learner(shapes_pkl, ImageLearnerSettings(expected_classes=("happy", "sad")), trust_pickle=True)
    upload_dir = Path(tempfile.gettempdir()) / "gradio" / "test-upload"
    upload_dir.mkdir(parents=True, exist_ok=True)
    uploaded = upload_dir / "model.pkl"
    uploaded.write_bytes(shapes_pkl.read_bytes())
    try:
        with pytest.raises(LearnerLoadError, match="uploaded"):
            load_image_learner(uploaded, trust_pickle=True)
    finally:
        uploaded.unlink()
