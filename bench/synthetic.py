"""Small generated media for vision tests and benchmarks: a drawn hand, simple shapes.

The drawn hand (shaded palm, four fingers with creases and nails, thumb, forearm) is found by the
real mediapipe hand landmarker (handedness "Right", and "Left" once mirrored), so tests can use
real landmark detections without shipping photos.
"""
from __future__ import annotations

import cv2
import numpy as np

SKIN_BGR = (90, 120, 170)
BACKGROUND_BGR = (60, 90, 60)


def draw_hand(height: int = 480, width: int = 640, cx: float = 320, cy: float = 260, scale: float = 1.0,
              spread: float = 1.0, skin_bgr: tuple[int, int, int] = SKIN_BGR,
              background_bgr: tuple[int, int, int] = BACKGROUND_BGR, arm: bool = True, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 **RGB** image of an open hand, palm centre at (cx, cy) pixels."""
    s = scale
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    palm = np.array([[-50, 70], [50, 70], [62, -30], [45, -65], [-45, -65], [-62, -20]], np.float32) * s + (cx, cy)
    cv2.fillPoly(mask, [palm.astype(np.int32)], 255, cv2.LINE_AA)
    if arm:
        forearm = np.array([[-42, 60], [42, 60], [50, 400], [-50, 400]], np.float32) * s + (cx, cy)
        cv2.fillPoly(mask, [forearm.astype(np.int32)], 255)
    fingers = []  # (base, tip, angle) of the four fingers
    for base_x, angle_deg, length in ((-40, -12, 85), (-13, -4, 105), (14, 4, 100), (40, 13, 80)):
        base = np.array([cx + base_x * s, cy - 58 * s])
        a = np.deg2rad(angle_deg * spread)
        tip = base + np.array([np.sin(a), -np.cos(a)]) * length * s
        cv2.line(mask, _pt(base), _pt(tip), 255, int(24 * s), cv2.LINE_AA)
        cv2.circle(mask, _pt(tip), int(12 * s), 255, -1, cv2.LINE_AA)
        fingers.append((base, tip, a))
    base = np.array([cx - 50 * s, cy + 25 * s])
    tip = base + np.array([-60 * spread, -65]) * s
    cv2.line(mask, _pt(base), _pt(tip), 255, int(28 * s), cv2.LINE_AA)
    cv2.circle(mask, _pt(tip), int(14 * s), 255, -1, cv2.LINE_AA)
    # Shading from the distance to the outline gives the fingers a rounded look.
    dist = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 5)
    shade = np.clip(dist / (14 * s), 0, 1) ** 0.5
    xx = np.arange(width, dtype=np.float32)[None, :]
    bg = np.array(background_bgr, np.float32) + rng.normal(0, 6, (height, width, 3))
    bg *= (0.8 + 0.4 * xx / width)[..., None]
    skin = np.array(skin_bgr, np.float32) * (0.55 + 0.45 * shade[..., None]) + rng.normal(0, 3, (height, width, 3))
    alpha = (mask.astype(np.float32) / 255)[..., None]
    img = skin * alpha + bg * (1 - alpha)
    crease = tuple(float(c) * 0.7 for c in skin_bgr)
    nail = tuple(float(c) * 1.1 for c in skin_bgr)
    for base, tip, a in fingers:
        for f in (0.3, 0.62):
            p = base + (tip - base) * f
            n = np.array([np.cos(a), np.sin(a)]) * 9 * s
            cv2.line(img, _pt(p - n), _pt(p + n), crease, 2, cv2.LINE_AA)
        centre = tip - (tip - base) / np.linalg.norm(tip - base) * 4 * s
        cv2.ellipse(img, _pt(centre), (int(6 * s), int(5 * s)), float(np.rad2deg(a)), 0, 360, nail, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def draw_shape(kind: str, size_px: int = 64, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8 RGB: a filled "circle" or "square" of random colour, place and size."""
    rng = np.random.default_rng(seed)
    img = np.full((size_px, size_px, 3), rng.integers(0, 80, 3), np.uint8)
    colour = tuple(int(c) for c in rng.integers(120, 256, 3))
    r = int(rng.integers(size_px // 6, size_px // 3))
    c = rng.integers(r, size_px - r, 2)
    if kind == "circle":
        cv2.circle(img, (int(c[0]), int(c[1])), r, colour, -1, cv2.LINE_AA)
    elif kind == "square":
        cv2.rectangle(img, (int(c[0] - r), int(c[1] - r)), (int(c[0] + r), int(c[1] + r)), colour, -1)
    else:
        raise ValueError(f"shape must be circle or square, not {kind!r}")
    return img


def _pt(p: np.ndarray) -> tuple[int, int]:
    return (int(round(float(p[0]))), int(round(float(p[1]))))
