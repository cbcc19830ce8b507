"""Run any fastai-exported image classifier (`learn.export()` .pkl) on live frames or face crops.

Loading a pickle runs code from it. So `load_image_learner` loads only when the caller says it trusts
the file (`trust_pickle=True`: the CLI's --trust-pickle, for a path the user typed); it refuses files in
Gradio's upload cache even then, and the web page must never hand it an uploaded file.

Inference does not go through `learn.predict` (which builds a DataLoader per call, ~20 ms of
overhead): the exported learner's own Resize and Normalize are read from its DataLoaders and
applied with OpenCV/numpy, then the model runs under `torch.inference_mode`.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from models.prediction import Prediction, RoutingPolicy, make_prediction, softmax


class LearnerLoadError(ValueError):
    """The file is not a usable fastai image classifier; the message says what to do."""


@dataclass(frozen=True)
class ImageLearnerSettings:
    temperature: float = 1.0  # logits / T; fit on held-out data (train.calibration.fit_temperature)
    policy: RoutingPolicy = RoutingPolicy()  # accept / review / abstain thresholds
    expected_classes: tuple[str, ...] | None = None  # when the task fixes the classes, they must match


def _upload_dirs() -> list[Path]:
    dirs = [Path(tempfile.gettempdir()) / "gradio"]
    if os.environ.get("GRADIO_TEMP_DIR"):
        dirs.append(Path(os.environ["GRADIO_TEMP_DIR"]))
    return [d.resolve() for d in dirs]


def load_image_learner(path: str | Path, settings: ImageLearnerSettings = ImageLearnerSettings(), *,
                       trust_pickle: bool = False) -> "ImageLearner":
    """Load a fastai .pkl export named explicitly by the user who trusts it (`trust_pickle`)."""
    from models.bundle import BundleError, load_trusted_learner, pickle_refusal

    path = Path(path).expanduser()
    if not path.is_file():
        raise LearnerLoadError(f"no model file at {path}: give the path of a fastai `learn.export()` .pkl")
    resolved = path.resolve()
    if any(d == resolved or d in resolved.parents for d in _upload_dirs()):
        raise LearnerLoadError(f"{path} is an uploaded file; loading a pickle runs its code, so only models "
                               "from a path you typed yourself are loaded")
    if not trust_pickle:
        raise pickle_refusal(path)
    try:
        learn = load_trusted_learner(resolved)
    except BundleError as e:
        raise LearnerLoadError(str(e)) from e
    return ImageLearner(learn, settings, source=str(path))


def _find_transform(pipeline: Any, name: str) -> Any:
    for tfm in getattr(pipeline, "fs", []) or []:
        if type(tfm).__name__ == name:
            return tfm
    return None


class ImageLearner:
    """(H, W, 3) uint8 RGB images -> calibrated probabilities over the learner's classes."""

    def __init__(self, learn: Any, settings: ImageLearnerSettings = ImageLearnerSettings(), source: str = "") -> None:
        self.learn = learn
        self.settings = settings
        self.source = source
        vocab = getattr(learn.dls, "vocab", None)
        if vocab is None or len(vocab) < 2 or isinstance(vocab[0], (list, tuple)):
            raise LearnerLoadError(f"{source or 'the learner'} is not a single-label classifier (no class list "
                                   "in its DataLoaders); export a vision_learner trained on a CategoryBlock")
        self.classes: tuple[str, ...] = tuple(str(c) for c in vocab)
        if settings.expected_classes is not None and set(self.classes) != set(settings.expected_classes):
            raise LearnerLoadError(f"{source or 'the model'} predicts {list(self.classes)} but this task needs "
                                   f"{list(settings.expected_classes)}; choose a model trained for this task")
        self.policy = settings.policy
        self.temperature = float(settings.temperature)
        self.calibrated = settings.temperature != 1.0
        self.conformal_qhat: float | None = None
        self.coverage: float | None = None
        self.model = learn.model.eval()
        resize = _find_transform(learn.dls.after_item, "Resize")
        norm = _find_transform(learn.dls.after_batch, "Normalize")
        self.size_hw: tuple[int, int] | None = None
        self.resize_method = "squash"
        if resize is not None:
            size = resize.size
            self.size_hw = (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size),) * 2
            self.resize_method = str(getattr(resize, "method", "crop"))
        self.mean = self.std = None
        if norm is not None and getattr(norm, "mean", None) is not None:
            self.mean = torch.as_tensor(norm.mean).float().reshape(1, -1, 1, 1)
            self.std = torch.as_tensor(norm.std).float().reshape(1, -1, 1, 1)
        self.channels = int(self.mean.shape[1]) if self.mean is not None else 3
        if self.size_hw is None:
            warnings.warn(f"{source}: no Resize in the export; images are fed at 224x224 (squashed)")
            self.size_hw = (224, 224)

    def _prepare(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (h, w, C) uint8 resized the way the learner's Resize did at validation."""
        th, tw = self.size_hw
        img = image_rgb
        if self.resize_method == "crop":  # centre crop to the target aspect, then resize
            h, w = img.shape[:2]
            scale = min(h / th, w / tw)
            ch, cw = int(round(th * scale)), int(round(tw * scale))
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            img = img[y0:y0 + ch, x0:x0 + cw]
        elif self.resize_method == "pad":  # letterbox with reflection, fastai's default pad mode
            h, w = img.shape[:2]
            target = max(h / th, w / tw)
            ph, pw = int(round(th * target)) - h, int(round(tw * target)) - w
            img = cv2.copyMakeBorder(img, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_REFLECT_101)
        img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA if img.shape[0] > th else cv2.INTER_LINEAR)
        if self.channels == 1:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
        return img

    def logits(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """list of (H, W, 3) uint8 RGB -> (N, C) float logits."""
        if len(images_rgb) == 0:
            return np.zeros((0, len(self.classes)))
        batch = np.stack([self._prepare(im) for im in images_rgb])  # (N, h, w, C)
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0  # (N, C, h, w)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        with torch.inference_mode():
            out = self.model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().numpy()

    def predict_probs(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        return softmax(self.logits(images_rgb), self.temperature)

    def predictions(self, images_rgb: Sequence[np.ndarray], **meta: Any) -> list[Prediction]:
        return [make_prediction(self.classes, p, policy=self.policy, calibrated=self.calibrated, **meta)
                for p in self.predict_probs(images_rgb)]
