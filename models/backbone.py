"""ImageNet MobileNetV2 backbone for transfer learning with fastai, with its weights from the model store.

torchvision looks for `mobilenet_v2-b0353104.pth` (the IMAGENET1K_V1 weights) in
`$TORCH_HOME/hub/checkpoints` before downloading it. `install_weights()` puts the store's copy there
(a hard link when it can, so no second copy on disk). If TORCH_HOME is unset, it is set to
`$LIVELEARNER_HOME/torch` for this process, so the app never writes into ~/.cache/torch behind the
user's back; a TORCH_HOME the user set is respected.

fastai has no `model_meta` for mobilenet_v2; importing this module registers one (cut, split, ImageNet
stats) for both `models.backbone.mobilenet_v2` and `torchvision.models.mobilenet_v2`, so

    vision_learner(dls, models.backbone.mobilenet_v2, pretrained=True)

builds a frozen pretrained body + new head with no download.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torchvision
from fastai.vision.core import imagenet_stats
from fastai.torch_core import params
from fastai.vision.learner import model_meta
from fastcore.foundation import L
from torch import nn
from torchvision.models import MobileNet_V2_Weights

from models import store

STORE_NAME = "mobilenet_v2-imagenet"
WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1  # the store's file; torchvision's DEFAULT is V2 (not carried)
BODY_SPLIT_AT = 10  # features[:10] (stem to 64 channels) | features[10:] (96 to 1280 channels) | head


def torch_home() -> Path:
    """$TORCH_HOME, set to $LIVELEARNER_HOME/torch for this process when the user has not set it."""
    os.environ.setdefault("TORCH_HOME", str(store.home() / "torch"))
    return Path(os.environ["TORCH_HOME"]).expanduser()


def install_weights(*, progress: bool = True) -> Path:
    """Place the store's mobilenet_v2 ImageNet weights where torchvision looks; return that path."""
    torch_home()
    src = store.ensure(STORE_NAME, progress=progress)
    dst = Path(torch.hub.get_dir()) / "checkpoints" / Path(WEIGHTS.url).name  # (names match: checked in tests)
    if dst.is_file() and (os.path.samefile(src, dst) or store.sha256_of(dst) == store.entry(STORE_NAME).artefact_sha256):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def mobilenet_v2(weights: MobileNet_V2_Weights | str | None = None, progress: bool = True, **kwargs) -> nn.Module:
    """torchvision's MobileNetV2 (1000-class head); with weights="IMAGENET1K_V1" loaded from the store.

    The signature matches torchvision's builder, so fastai calls it the same way. Other weights
    (e.g. "IMAGENET1K_V2") are left to torchvision, which downloads them (needs internet).
    """
    if weights is not None and MobileNet_V2_Weights.verify(weights) == WEIGHTS:
        path = install_weights(progress=progress)
        try:
            return torchvision.models.mobilenet_v2(weights=WEIGHTS, progress=progress, **kwargs)
        except Exception as e:  # truncated / foreign file in the torch hub folder
            raise store.broken_model_error(STORE_NAME, path, e) from e
    return torchvision.models.mobilenet_v2(weights=weights, progress=progress, **kwargs)


def _mobilenet_v2_split(model: nn.Module) -> L:
    """Parameter groups for discriminative learning rates: early body, late body, head.

    model[0] is the body fastai cut (Sequential holding `features`), model[1] the new head.
    """
    features = model[0][0]
    return L(features[:BODY_SPLIT_AT], features[BODY_SPLIT_AT:], model[1:]).map(params)


MOBILENET_V2_META = {
    "cut": -1,  # drop `classifier`; keep `features` (B, 1280, H/32, W/32)
    "split": _mobilenet_v2_split,
    "stats": imagenet_stats,
    "weights": WEIGHTS.name,  # fastai passes this to the builder when pretrained=True
}
model_meta[mobilenet_v2] = MOBILENET_V2_META
# torchvision's own builder works too once install_weights() has run (else torchvision downloads).
model_meta[torchvision.models.mobilenet_v2] = MOBILENET_V2_META
