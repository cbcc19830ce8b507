"""Augmentation of hand landmarks: new hands that a new person might show, made from a training hand.

Every change acts on the (21, 3) pixel landmarks (models.hands.Hand.pixels) before features are computed, so
the augmented copies go through exactly the feature code the live pipeline runs:
- a small 3-D turn of the hand about its wrist (people hold the hand a little tilted towards or away from the
  camera, or rotated in the image plane);
- finger-length changes (each finger's bones scaled by one factor: hands differ in proportions);
- landmark jitter (mediapipe's landmarks wobble by a few percent of the palm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.hands import FINGERS, MIDDLE_MCP, WRIST


@dataclass(frozen=True)
class HandAugment:
    copies: int = 0  # augmented copies of each training hand (0: no augmentation)
    tilt_deg: float = 15.0  # max turn about the image's x and y axes (towards / away from the camera)
    roll_deg: float = 10.0  # max turn in the image plane
    finger_scale: float = 0.08  # standard deviation of each finger's length factor (1 = unchanged)
    jitter: float = 0.02  # standard deviation of landmark noise, as a share of the palm length


def _rotation(rng: np.random.Generator, aug: HandAugment) -> np.ndarray:
    """(3, 3) rotation: tilt about x and y, roll about z (angles uniform within the limits)."""
    ax, ay = np.radians(rng.uniform(-aug.tilt_deg, aug.tilt_deg, 2))
    az = np.radians(rng.uniform(-aug.roll_deg, aug.roll_deg))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def augment_hand(points_px: np.ndarray, rng: np.random.Generator, aug: HandAugment) -> np.ndarray:
    """(21, 3) pixel landmarks -> (21, 3) a changed copy (turned about the wrist, fingers rescaled, jittered)."""
    p = np.asarray(points_px, np.float64) - points_px[WRIST]  # (21, 3) relative to the wrist
    palm = max(float(np.linalg.norm(p[MIDDLE_MCP])), 1e-6)
    out = p.copy()
    for chain in FINGERS:  # knuckle-to-tip bones of each finger scaled by one factor; the palm is kept
        factor = max(0.7, 1.0 + aug.finger_scale * rng.standard_normal())
        for k in range(2, len(chain)):
            bone = p[chain[k]] - p[chain[k - 1]]
            out[chain[k]] = out[chain[k - 1]] + factor * bone
    out = out @ _rotation(rng, aug).T
    out += aug.jitter * palm * rng.standard_normal(out.shape)
    return (out + points_px[WRIST]).astype(np.float32)
