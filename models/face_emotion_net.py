"""Networks that map a grey face to emotion logits (importable, no I/O: weights come in as paths or state dicts).

- `FaceEmotionNet`: (B, 1, 48, 48) grey faces in [0, 1] -> (B, C) logits. ImageNet mobilenet_v2 body with its
  first convolution summed to one grey channel, upsampled to `size_px` inside the network so the input
  contract is the same 48x48 grey crop the packaged mini-Xception takes. Trained by `train.emotion_recipe`.
- `GreyInputAdapter`: the packaged mini-Xception behind the same RGB-or-grey [0, 1] input.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from models.backbone import mobilenet_v2

IMAGENET_GREY_MEAN = 0.449  # mean of ImageNet's RGB means: the summed first conv expects grey scaled like this
IMAGENET_GREY_STD = 0.226
LUMA_WEIGHTS = torch.tensor([0.299, 0.587, 0.114])  # RGB -> grey, as cv2.COLOR_RGB2GRAY
BODY_CHANNELS = 1280  # mobilenet_v2 features


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) grey with OpenCV's weights; (B, 1, H, W) passes through."""
    if x.shape[1] == 3:
        return (x * LUMA_WEIGHTS.to(x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return x


class FaceEmotionNet(nn.Module):
    """Grey 48x48 face in [0, 1] -> emotion logits, via an ImageNet mobilenet_v2 at `size_px`.

    backbone_weights: the torchvision IMAGENET1K_V1 state dict file to start from (training: the loader
    passes `models.backbone.imagenet_weights_path()`); None builds random weights, to load a trained state.
    """

    def __init__(self, n_classes: int, size_px: int = 64, backbone_weights: Path | None = None,
                 head_dropout: float = 0.25) -> None:
        from fastai.vision.learner import create_body, create_head

        super().__init__()
        self.size_px = size_px
        self.flip_tta = False  # at inference, average with the mirrored face (set by the recipe if it helps)
        pretrained = backbone_weights is not None
        backbone = mobilenet_v2(weights_path=backbone_weights)
        self.body = create_body(backbone, n_in=1, pretrained=pretrained, cut=-1)  # features only
        self.head = create_head(BODY_CHANNELS, n_classes, lin_ftrs=[], ps=head_dropout)  # concat pool, BN, drop, lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, H, W) grey or (B, 3, H, W) RGB, in [0, 1]
        x = to_grey(x.float())
        if x.shape[-1] != self.size_px or x.shape[-2] != self.size_px:
            x = F.interpolate(x, size=(self.size_px, self.size_px), mode="bilinear", align_corners=False)
        x = (x - IMAGENET_GREY_MEAN) / IMAGENET_GREY_STD
        logits = self.head(self.body(x))  # (B, n_classes)
        if getattr(self, "flip_tta", False) and not self.training:  # a mirrored face is the same face
            logits = (logits + self.head(self.body(torch.flip(x, dims=[-1])))) / 2
        return logits

    def __setstate__(self, state: dict) -> None:
        # Exports may hold float16 weights (half the file); compute runs in float32 on every device.
        super().__setstate__(state)
        self.float()


def body_head_splitter(model: FaceEmotionNet) -> list[list[nn.Parameter]]:
    """Parameter groups for fastai: body (lower learning rate, frozen first), head."""
    return [list(model.body.parameters()), list(model.head.parameters())]


class GreyInputAdapter(nn.Module):
    """(B, 3 or 1, H, W) in [0, 1] -> `model` on grey scaled to [-1, 1]: the packaged mini-Xception behind the
    bundle format's RGB input, so `livelearner compare` can pit it against the project's own model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((to_grey(x.float()) - 0.5) * 2.0)
