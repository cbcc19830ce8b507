"""ImageNet MobileNetV2 backbone for transfer learning with fastai, its weights read from the model store.

    register_with_fastai()                                   # once, where a learner is built
    vision_learner(dls, models.backbone.mobilenet_v2, pretrained=True)

`mobilenet_v2(weights="IMAGENET1K_V1")` builds torchvision's network and loads the store's copy of those
weights straight from their file (`torch.load(weights_only=True)`): nothing goes through torchvision's
download cache, so no environment variable is set and nothing is written to ~/.cache/torch.

fastai has no `model_meta` for mobilenet_v2; `register_with_fastai()` adds one (cut, split, ImageNet stats)
when called, never at import.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import MobileNet_V2_Weights

from models import store

STORE_NAME = "mobilenet_v2-imagenet"
WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1  # the store's file; torchvision's DEFAULT is V2 (not carried)
BODY_SPLIT_AT = 10  # features[:10] (stem to 64 channels) | features[10:] (96 to 1280 channels) | head


def imagenet_weights_path(*, progress: bool = True) -> Path:
    """The store's IMAGENET1K_V1 state dict file (fetched once)."""
    return store.ensure(STORE_NAME, progress=progress)


def mobilenet_v2(weights: MobileNet_V2_Weights | str | None = None, progress: bool = True,
                 weights_path: Path | None = None, **kwargs) -> nn.Module:
    """torchvision's MobileNetV2 (1000-class head); with weights="IMAGENET1K_V1" (or a `weights_path` of the
    same state dict) loaded from that file.

    The signature matches torchvision's builder, so fastai calls it the same way. Other named weights
    (e.g. "IMAGENET1K_V2") are left to torchvision, which downloads them (needs internet).
    """
    wanted = weights is not None and MobileNet_V2_Weights.verify(weights) == WEIGHTS
    if weights is not None and not wanted:
        return torchvision.models.mobilenet_v2(weights=weights, progress=progress, **kwargs)
    model = torchvision.models.mobilenet_v2(weights=None, **kwargs)
    if wanted or weights_path is not None:
        path = Path(weights_path) if weights_path is not None else imagenet_weights_path(progress=progress)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # truncated or foreign file
            if store.name_of_path(path) == STORE_NAME:
                raise store.broken_model_error(STORE_NAME, path, e) from e
            raise ValueError(f"{path} is not a torchvision mobilenet_v2 state dict ({e})") from e
    return model


def _mobilenet_v2_split(model: nn.Module) -> list:
    """Parameter groups for discriminative learning rates: early body, late body, head.

    model[0] is the body fastai cut (Sequential holding `features`), model[1] the new head.
    """
    from fastai.torch_core import params
    from fastcore.foundation import L

    features = model[0][0]
    return L(features[:BODY_SPLIT_AT], features[BODY_SPLIT_AT:], model[1:]).map(params)


def register_with_fastai() -> None:
    """Tell fastai how to cut, split and normalise this backbone (idempotent; call before vision_learner)."""
    from fastai.vision.core import imagenet_stats
    from fastai.vision.learner import model_meta

    model_meta[mobilenet_v2] = {
        "cut": -1,  # drop `classifier`; keep `features` (B, 1280, H/32, W/32)
        "split": _mobilenet_v2_split,
        "stats": imagenet_stats,
        "weights": WEIGHTS.name,  # fastai passes this to the builder when pretrained=True
    }
