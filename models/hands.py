"""Hand landmarks (mediapipe HandLandmarker in VIDEO mode) and features for sign classifiers.

VIDEO mode tracks a found hand from frame to frame instead of running the palm detector every
frame, which is what makes it fast enough for a live loop; it needs strictly increasing
timestamps, which `HandLandmarks.detect` guarantees.

`landmark_features` turns 21 landmarks into 63 numbers that do not change when the hand moves
in the frame, when it is nearer or farther, or when it is the other hand: coordinates are taken
in pixels (so the frame's aspect ratio does not squash the hand), relative to the wrist, divided
by the palm length (wrist to middle-finger knuckle), and left hands are mirrored onto right ones.
In-plane rotation is kept: it tells some letters apart (e.g. H and U).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.mediapipe_lifetime import close_with

STORE_NAME = "mediapipe-hand-landmarker"
N_LANDMARKS = 21
N_FEATURES = 3 * N_LANDMARKS  # 63
WRIST, MIDDLE_MCP = 0, 9  # mediapipe landmark indices
HAND_CONNECTIONS = (  # pairs of landmark indices, for drawing
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)


@dataclass(frozen=True)
class Hand:
    landmarks: np.ndarray  # (21, 3) float32: x, y in [0, 1] of width/height, z relative depth (x's scale)
    handedness: str  # "Left" or "Right", as mediapipe names it
    score: float  # handedness confidence
    image_size: tuple[int, int]  # (width, height) of the frame the landmarks refer to

    @property
    def pixels(self) -> np.ndarray:
        """(21, 3) landmarks in pixels (z scaled like x)."""
        w, h = self.image_size
        return self.landmarks * np.array([w, h, w], np.float32)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) pixel box around the landmarks, clipped to the frame."""
        w, h = self.image_size
        p = self.pixels
        x0, y0 = np.floor(p[:, :2].min(axis=0)).astype(int)
        x1, y1 = np.ceil(p[:, :2].max(axis=0)).astype(int)
        return (max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h))

    @property
    def touches_edge(self) -> bool:
        """True when some landmarks fall outside the frame (mediapipe extrapolates them)."""
        xy = self.landmarks[:, :2]
        return bool((xy < 0).any() or (xy > 1).any())


def landmark_features(hand: Hand) -> np.ndarray:
    """(63,) float32 features invariant to position, scale and handedness (see module docstring)."""
    return features_from_pixels(hand.pixels, hand.handedness)


def features_from_pixels(points_px: np.ndarray, handedness: str) -> np.ndarray:
    """(21, 3) pixel landmarks + "Left"/"Right" -> (63,) float32 features."""
    p = np.asarray(points_px, np.float64)
    if p.shape != (N_LANDMARKS, 3):
        raise ValueError(f"expected (21, 3) hand landmarks, got {p.shape}")
    p = p - p[WRIST]
    if handedness.lower().startswith("l"):
        p[:, 0] = -p[:, 0]  # mirror a left hand onto a right one
    palm = float(np.linalg.norm(p[MIDDLE_MCP]))
    if not np.isfinite(palm) or palm < 1e-6:
        raise ValueError("degenerate hand landmarks (wrist and middle knuckle coincide)")
    return (p / palm).astype(np.float32).reshape(-1)


@dataclass(frozen=True)
class HandSettings:
    model_path: Path | None = None  # hand_landmarker .task; None: load_hand_landmarks uses the model store's
    max_hands: int = 1  # hands tracked per frame
    min_detection_confidence: float = 0.5  # palm detector threshold
    min_presence_confidence: float = 0.5  # landmark model's "a hand is still here" threshold
    min_tracking_confidence: float = 0.5  # below this, VIDEO mode re-runs the palm detector
    video_mode: bool = True  # track across frames (needs increasing timestamps); False: every frame alone


def load_hand_landmarks(settings: HandSettings = HandSettings()) -> "HandLandmarks":
    """A HandLandmarks of `settings.model_path`, or of the store's hand landmarker (fetched on first use)."""
    from dataclasses import replace

    from models.store import ensure

    return HandLandmarks(replace(settings, model_path=Path(settings.model_path or ensure(STORE_NAME))))


class HandLandmarks:
    """detect(image_rgb, timestamp_s) -> list[Hand] with mediapipe's HandLandmarker. It reads the .task file
    it is given and fetches nothing (`load_hand_landmarks` does). One graph: not for concurrent threads."""

    def __init__(self, settings: HandSettings) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        if settings.model_path is None:
            raise ValueError("HandLandmarks needs HandSettings.model_path; models.hands.load_hand_landmarks "
                             "finds the store's model")
        self.settings = settings
        path = settings.model_path
        if not Path(path).is_file():
            raise FileNotFoundError(f"no hand landmarker model at {path}: run `livelearner models fetch {STORE_NAME}`")
        mode = vision.RunningMode.VIDEO if settings.video_mode else vision.RunningMode.IMAGE
        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), running_mode=mode, num_hands=settings.max_hands,
            min_hand_detection_confidence=settings.min_detection_confidence,
            min_hand_presence_confidence=settings.min_presence_confidence,
            min_tracking_confidence=settings.min_tracking_confidence)
        try:
            self._landmarker = vision.HandLandmarker.create_from_options(options)
            self._close_landmarker = close_with(self, self._landmarker)
        except Exception as e:  # noqa: BLE001 - mediapipe raises RuntimeError/ValueError variously
            raise ValueError(f"{path} is not a usable hand landmarker .task ({e}); "
                             f"run `livelearner models fetch {STORE_NAME}`") from e
        self._last_ms = -1

    def detect(self, image_rgb: np.ndarray, timestamp_s: float = 0.0) -> list[Hand]:
        import mediapipe as mp

        h, w = image_rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=image_rgb)
        if self.settings.video_mode:
            ms = max(int(timestamp_s * 1000), self._last_ms + 1)  # VIDEO mode wants strictly increasing ms
            self._last_ms = ms
            result = self._landmarker.detect_for_video(image, ms)
        else:
            result = self._landmarker.detect(image)
        hands = []
        for lms, handed in zip(result.hand_landmarks, result.handedness):
            arr = np.array([(p.x, p.y, p.z) for p in lms], np.float32)
            cat = handed[0]
            hands.append(Hand(arr, cat.category_name, float(cat.score), (w, h)))
        return hands

    def close(self) -> None:
        self._close_landmarker()
