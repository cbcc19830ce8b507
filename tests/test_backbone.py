"""MobileNetV2 ImageNet backbone from the store: real classification, and fastai transfer learning offline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from skimage import data

from models import backbone, store

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(autouse=True)
def no_hub_downloads(monkeypatch):
    """Any attempt to download weights fails the test: everything must come from the store."""

    def refuse(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_weights_load_from_the_store_file_without_touching_the_environment(torch_home, monkeypatch):
    import os

    monkeypatch.delenv("TORCH_HOME")
    model = backbone.mobilenet_v2(weights="IMAGENET1K_V1")
    assert model.classifier[1].out_features == 1000
    assert "TORCH_HOME" not in os.environ  # no process-wide setting changed
    assert not torch_home.exists()  # nothing copied into a torch hub cache
    reference = torch.load(store.ensure(backbone.STORE_NAME), map_location="cpu", weights_only=True)
    assert torch.equal(model.features[0][0].weight, reference["features.0.0.weight"])


def test_importing_the_backbone_registers_nothing_with_fastai():
    import subprocess
    import sys

    code = ("import models.backbone as b; from fastai.vision.learner import model_meta; "
            "assert b.mobilenet_v2 not in model_meta; b.register_with_fastai(); assert b.mobilenet_v2 in model_meta")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


def test_mobilenet_v2_ranks_the_cat_photo_among_cats(torch_home):
    model = backbone.mobilenet_v2(weights="IMAGENET1K_V1").eval()
    preprocess = backbone.WEIGHTS.transforms()  # resize 232, centre crop 224, ImageNet normalisation
    image = torch.from_numpy(data.chelsea()).permute(2, 0, 1)  # (3, 300, 451) uint8, a tabby cat
    with torch.no_grad():
        logits = model(preprocess(image)[None])  # (1, 1000)
    top5 = logits[0].topk(5).indices.tolist()
    assert top5[0] in CAT_CLASSES, top5
    assert sum(i in CAT_CLASSES for i in top5) >= 2, top5


@pytest.mark.slow
def test_fastai_vision_learner_uses_the_store_weights_offline(torch_home, tmp_path):
    from fastai.vision.all import DataBlock, ImageBlock, CategoryBlock, Normalize, Resize, vision_learner
    from PIL import Image

    photos = {"cat": data.chelsea(), "coffee": data.coffee(), "astronaut": data.astronaut(), "rocket": data.rocket()}
    items = []
    for name, rgb in photos.items():
        for flip in (False, True):
            path = tmp_path / f"{name}_{int(flip)}.png"
            Image.fromarray(rgb[:, ::-1] if flip else rgb).save(path)
            items.append(path)
    dls = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_y=lambda p: p.stem.split("_")[0],
        splitter=lambda items: (list(range(0, len(items), 2)), list(range(1, len(items), 2))),
        item_tfms=Resize(64),
    ).dataloaders(items, bs=4, num_workers=0)
    backbone.register_with_fastai()
    learn = vision_learner(dls, backbone.mobilenet_v2, pretrained=True)

    reference = backbone.mobilenet_v2(weights="IMAGENET1K_V1").features
    body = learn.model[0][0]
    assert all(torch.equal(a, b) for a, b in zip(body.state_dict().values(), reference.state_dict().values()))
    assert len(learn.opt.param_groups) == 3  # early body | late body | head
    convs = [m for m in body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not any(c.weight.requires_grad for c in convs)  # frozen body (fastai keeps BatchNorm trainable)
    norms = [t for t in dls.after_batch.fs if isinstance(t, Normalize)]
    assert len(norms) == 1 and np.allclose(norms[0].mean.flatten().cpu(), [0.485, 0.456, 0.406])

    learn.export(tmp_path / "model.pkl")  # the splitter and arch pickle by reference
    from fastai.learner import load_learner

    loaded = load_learner(tmp_path / "model.pkl")
    probs = loaded.get_preds(dl=loaded.dls.test_dl(items[:2]))[0]
    assert probs.shape == (2, 4)
