"""Hand landmarks (mediapipe HandLandmarker in VIDEO mode) and features for sign classifiers.

VIDEO mode tracks a found hand from frame to frame instead of running the palm detector every
frame, which is what makes it fast enough for a live loop; it needs strictly increasing
timestamps, which `HandLandmarks.detect` guarantees.

`hand_features(hand, kind)` turns 21 landmarks into numbers that do not change when the hand moves in
the frame, when it is nearer or farther, or when it is the other hand; the live pipeline and training
call it alike (FEATURE_DIMS names the kinds a bundle's input.features may ask for):
- "hand_invariant_v1" (63): coordinates in pixels (so the frame's aspect ratio does not squash the
  hand), relative to the wrist, divided by the palm length (wrist to middle-finger knuckle), left hands
  mirrored onto right ones. In-plane rotation is kept: it tells some letters apart (e.g. H and U).
- "hand_invariant_v2" (84): the same, then turned in the image plane so the palm (wrist to middle
  knuckle) points up, so a hand held a little tilted looks like an upright one; the palm's direction is
  kept as two numbers (cos, sin) so H and U still differ; plus the bend at each of the 15 finger joints
  and the spread between neighbouring fingers (cosines between bone directions), which do not depend
  on the hand's size or finger lengths.
- "mediapipe_normalized" (63): the landmarks as mediapipe gives them, flattened.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.mediapipe_lifetime import close_with

STORE_NAME = "mediapipe-hand-landmarker"
N_LANDMARKS = 21
N_FEATURES = 3 * N_LANDMARKS  # 63, of "hand_invariant_v1"
WRIST, MIDDLE_MCP = 0, 9  # mediapipe landmark indices
FINGERS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))  # wrist->tip
FEATURE_DIMS = {"hand_invariant_v1": N_FEATURES, "hand_invariant_v2": N_FEATURES + 2 + 15 + 4,
                "mediapipe_normalized": N_FEATURES}
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
    world: np.ndarray | None = None  # (21, 3) float32 metres, mediapipe's world landmarks (origin: the hand's centre)
    found_by: str = "frame"  # "frame", or "padded frame" when only the second pass (HandSettings.rescue_pad) found it

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
    """(63,) float32 "hand_invariant_v1" features: invariant to position, scale and handedness (module docstring)."""
    return features_from_pixels(hand.pixels, hand.handedness)


def hand_features(hand: Hand, kind: str) -> np.ndarray:
    """(FEATURE_DIMS[kind],) float32 features of one hand; ValueError for degenerate landmarks or an unknown kind."""
    if kind == "hand_invariant_v1":
        return landmark_features(hand)
    if kind == "hand_invariant_v2":
        return shape_features(hand.pixels, hand.handedness)
    if kind == "mediapipe_normalized":
        return hand.landmarks.reshape(-1).astype(np.float32)
    raise ValueError(f"unknown landmark features {kind!r}; this version computes {', '.join(FEATURE_DIMS)}")


def shape_features(points_px: np.ndarray, handedness: str) -> np.ndarray:
    """(21, 3) pixel landmarks + "Left"/"Right" -> (84,) float32 "hand_invariant_v2" features: 63 coordinates
    turned so the palm points up, (cos, sin) of the palm's direction, 15 joint bends, 4 finger spreads."""
    p = features_from_pixels(points_px, handedness).astype(np.float64).reshape(N_LANDMARKS, 3)  # wrist 0, palm 1
    up = p[MIDDLE_MCP, :2] / max(float(np.linalg.norm(p[MIDDLE_MCP, :2])), 1e-6)  # (2,) palm direction in the image
    cos_t, sin_t = -up[1], up[0]  # angle from straight up (image y grows downwards)
    turn = np.array([[cos_t, sin_t], [-sin_t, cos_t]])  # rotates the palm direction onto (0, -1)
    q = p.copy()
    q[:, :2] = p[:, :2] @ turn.T  # (21, 2) turned coordinates; z kept
    bends, tips = [], []
    for chain in FINGERS:
        bones = np.diff(p[list(chain)], axis=0)  # (4, 3) wrist->knuckle and the three finger bones
        bones /= np.maximum(np.linalg.norm(bones, axis=1, keepdims=True), 1e-6)
        bends += list((bones[:-1] * bones[1:]).sum(axis=1))  # (3,) cosines between consecutive bones
        tips.append(bones[1:].sum(axis=0) / max(float(np.linalg.norm(bones[1:].sum(axis=0))), 1e-6))
    spreads = [float(tips[i] @ tips[i + 1]) for i in range(4)]  # neighbouring fingers' directions
    return np.concatenate([q.reshape(-1), [cos_t, sin_t], bends, spreads]).astype(np.float32)


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
    rescue_pad: float = 0.5  # > 0: a frame with no hand is looked at again with this share of its longer side
    #   added as a black border on every side, so a hand that fills the frame or touches its edge is found. On the
    #   sign training photos the first pass missed, 0.5 found 1,423 of 2,878 (0.25: 1,149; a half-size frame: 417;
    #   thresholds 0.3: 376) and it invented no hand in 120 empty Kaggle "nothing" photos nor in 150 frames of a
    #   face video (bench.signs); it costs a second landmarker run on frames with no hand


def load_hand_landmarks(settings: HandSettings = HandSettings()) -> "HandLandmarks":
    """A HandLandmarks of `settings.model_path`, or of the store's hand landmarker (fetched on first use)."""
    from dataclasses import replace

    from models.store import ensure

    return HandLandmarks(replace(settings, model_path=Path(settings.model_path or ensure(STORE_NAME))))


class HandLandmarks:
    """detect(image_rgb, timestamp_s) -> list[Hand] with mediapipe's HandLandmarker. It reads the .task file
    it is given and fetches nothing (`load_hand_landmarks` does). One graph: not for concurrent threads."""

    def __init__(self, settings: HandSettings) -> None:
        if settings.model_path is None:
            raise ValueError("HandLandmarks needs HandSettings.model_path; models.hands.load_hand_landmarks "
                             "finds the store's model")
        self.settings = settings
        path = settings.model_path
        if not Path(path).is_file():
            raise FileNotFoundError(f"no hand landmarker model at {path}: run `livelearner models fetch {STORE_NAME}`")
        self._landmarker = _create_landmarker(settings, settings.video_mode)
        self._close_landmarker = close_with(self, self._landmarker)
        self._rescuer: Any = None  # the second pass's IMAGE-mode graph, made on first use
        self._close_rescuer: Any = None
        self._last_ms = -1

    def detect(self, image_rgb: np.ndarray, timestamp_s: float = 0.0) -> list[Hand]:
        """Hands in one (H, W, 3) uint8 RGB frame; with `rescue_pad`, a frame with none is tried once more padded."""
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        if self.settings.video_mode:
            ms = max(int(timestamp_s * 1000), self._last_ms + 1)  # VIDEO mode wants strictly increasing ms
            self._last_ms = ms
            result = self._landmarker.detect_for_video(image, ms)
        else:
            result = self._landmarker.detect(image)
        hands = _hands_of(result, image_rgb.shape[1], image_rgb.shape[0])
        if hands or self.settings.rescue_pad <= 0:
            return hands
        return self.detect_padded(image_rgb)

    def detect_padded(self, image_rgb: np.ndarray) -> list[Hand]:
        """The second pass alone: the frame in a black border of `rescue_pad` of its longer side on every side
        (IMAGE mode, its own graph: the tracker is not disturbed); landmarks are mapped back to the frame's own
        coordinates (they may then lie outside [0, 1])."""
        import mediapipe as mp

        if self._rescuer is None:
            self._rescuer = _create_landmarker(self.settings, video_mode=False)
            self._close_rescuer = close_with(self, self._rescuer)
        h, w = image_rgb.shape[:2]
        pad = int(round(self.settings.rescue_pad * max(h, w)))
        padded = np.zeros((h + 2 * pad, w + 2 * pad, 3), np.uint8)  # (H + 2p, W + 2p, 3)
        padded[pad:pad + h, pad:pad + w] = image_rgb
        result = self._rescuer.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=padded))
        scale = np.array([(w + 2 * pad) / w, (h + 2 * pad) / h, (w + 2 * pad) / w], np.float32)
        shift = np.array([pad / w, pad / h, 0.0], np.float32)
        return [Hand(hand.landmarks * scale - shift, hand.handedness, hand.score, (w, h), hand.world, "padded frame")
                for hand in _hands_of(result, w + 2 * pad, h + 2 * pad)]

    def close(self) -> None:
        self._close_landmarker()
        if self._close_rescuer is not None:
            self._close_rescuer()


def _create_landmarker(settings: HandSettings, video_mode: bool) -> Any:
    """A mediapipe HandLandmarker of `settings` in VIDEO or IMAGE mode; ValueError for an unusable .task file."""
    from mediapipe.tasks.python import BaseOptions, vision

    path = settings.model_path
    mode = vision.RunningMode.VIDEO if video_mode else vision.RunningMode.IMAGE
    options = vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(path)), running_mode=mode, num_hands=settings.max_hands,
        min_hand_detection_confidence=settings.min_detection_confidence,
        min_hand_presence_confidence=settings.min_presence_confidence,
        min_tracking_confidence=settings.min_tracking_confidence)
    try:
        return vision.HandLandmarker.create_from_options(options)
    except Exception as e:  # noqa: BLE001 - mediapipe raises RuntimeError/ValueError variously
        raise ValueError(f"{path} is not a usable hand landmarker .task ({e}); "
                         f"run `livelearner models fetch {STORE_NAME}`") from e


def _hands_of(result: Any, width: int, height: int) -> list[Hand]:
    """mediapipe's HandLandmarkerResult -> [Hand] for a (width, height) frame."""
    hands = []
    for i, (lms, handed) in enumerate(zip(result.hand_landmarks, result.handedness)):
        arr = np.array([(p.x, p.y, p.z) for p in lms], np.float32)  # (21, 3)
        world = (np.array([(p.x, p.y, p.z) for p in result.hand_world_landmarks[i]], np.float32)
                 if i < len(result.hand_world_landmarks) else None)  # (21, 3) metres
        cat = handed[0]
        hands.append(Hand(arr, cat.category_name, float(cat.score), (width, height), world))
    return hands
