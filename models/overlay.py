"""Drawing predictions on frames: box, label, probability bar, "?" when a human should review.

Used by the CLI window (`livelearner watch`) and the web page alike, so both show the same thing.
Works on (H, W, 3) uint8 RGB frames (the project's colour order) and returns a new array.
Colours follow the routing decision: green accept, amber review ("?" before the label),
grey abstain (no label, just "?").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from models.prediction import Decision, Prediction

COLOURS_RGB = {Decision.ACCEPT: (40, 200, 80), Decision.REVIEW: (255, 170, 0), Decision.ABSTAIN: (150, 150, 150)}
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class OverlaySettings:
    thickness_px: int = 2  # box line width
    font_scale: float = 0.55  # OpenCV font scale of the label
    bar_height_px: int = 6  # probability bar under the label
    show_runner_up: bool = True  # write the second class when routed to review
    draw_landmarks: bool = True  # hand skeletons when a prediction carries extra["landmarks_px"]


def label_text(p: Prediction, show_runner_up: bool = True) -> str:
    """What to write beside a box: "happy 93%", "? happy 61% / sad 30%", or "?" when abstaining."""
    if p.decision == Decision.ABSTAIN:
        return "?"
    text = f"{p.label} {p.confidence:.0%}"
    if p.decision == Decision.REVIEW:
        text = "? " + text
        if show_runner_up and len(p.probs) > 1:
            second = int(np.argsort(p.probs)[-2])
            text += f" / {p.classes[second]} {p.probs[second]:.0%}"
    return text


def draw_predictions(image_rgb: np.ndarray, predictions: Sequence[Prediction],
                     settings: OverlaySettings = OverlaySettings()) -> np.ndarray:
    """Copy of the frame with every prediction drawn. A prediction without a box labels the frame."""
    out = np.ascontiguousarray(image_rgb).copy()
    h, w = out.shape[:2]
    for p in predictions:
        colour = COLOURS_RGB[p.decision]
        box = p.box if p.box is not None else (0, 0, w, h)
        x0, y0, x1, y1 = (int(v) for v in box)
        if p.box is not None:
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, settings.thickness_px, cv2.LINE_AA)
        if settings.draw_landmarks and "landmarks_px" in p.extra:
            _draw_hand(out, np.asarray(p.extra["landmarks_px"]), colour)
        text = label_text(p, settings.show_runner_up)
        if p.track_id is not None and p.box is not None:
            text = f"#{p.track_id} {text}"
        (tw, th), base = cv2.getTextSize(text, FONT, settings.font_scale, 1)
        bar_h = settings.bar_height_px
        above = y0 - th - base - bar_h - 8 >= 0  # room for label + bar above the box?
        if p.box is None:
            ty = th + 4
        elif above:
            ty = y0 - bar_h - base - 6
        else:
            ty = y1 + th + 4
        tx = min(max(x0, 0), max(w - tw - 2, 0))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), (0, 0, 0), -1)
        cv2.putText(out, text, (tx + 1, ty), FONT, settings.font_scale, colour, 1, cv2.LINE_AA)
        # probability bar under the label: full width = box width (or the text's without a box)
        bar_w = max((x1 - x0) if p.box is not None else tw, 20)
        by = ty + base + 2
        cv2.rectangle(out, (tx, by), (tx + bar_w, by + bar_h), (60, 60, 60), -1)
        cv2.rectangle(out, (tx, by), (tx + int(round(bar_w * p.confidence)), by + bar_h), colour, -1)
    return out


def overlay_data(p: Prediction, settings: OverlaySettings = OverlaySettings()) -> dict[str, Any]:
    """What `draw_predictions` would draw for `p`, as JSON-ready data, for a page that draws it itself
    over its own live video (same words, same colours), plus what the prediction says.

    box: [x0, y0, x1, y1] pixels of the frame it was computed on (None: the whole frame).
    """
    text = label_text(p, settings.show_runner_up)
    if p.track_id is not None and p.box is not None:
        text = f"#{p.track_id} {text}"
    data: dict[str, Any] = {
        "box": [int(v) for v in p.box] if p.box is not None else None,
        "text": text,
        "colour": list(COLOURS_RGB[p.decision]),
        "label": p.label,
        "confidence": round(p.confidence, 4),
        "probs": {c: round(float(q), 4) for c, q in zip(p.classes, p.probs)},
        "set": list(p.prediction_set) if p.prediction_set is not None else None,
        "coverage": p.coverage,
        "decision": p.decision.value,
        "reason": p.reason,
        "track_id": p.track_id,
        "track_label": p.extra.get("track_label"),
        "calibration": p.calibration_note,
    }
    if settings.draw_landmarks and "landmarks_px" in p.extra:
        from models.hands import HAND_CONNECTIONS

        data["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y, *_ in p.extra["landmarks_px"]]
        data["skeleton"] = [list(pair) for pair in HAND_CONNECTIONS]
    return data


def _draw_hand(out: np.ndarray, points_px: np.ndarray, colour: tuple[int, int, int]) -> None:
    from models.hands import HAND_CONNECTIONS

    pts = [(int(x), int(y)) for x, y in points_px[:, :2]]
    for a, b in HAND_CONNECTIONS:
        cv2.line(out, pts[a], pts[b], colour, 1, cv2.LINE_AA)
    for pt in pts:
        cv2.circle(out, pt, 2, (255, 255, 255), -1, cv2.LINE_AA)


def draw_status(image_rgb: np.ndarray, text: str) -> np.ndarray:
    """Write a status line (fps, latency, drops) in the bottom-left corner, in place; returns the frame."""
    h = image_rgb.shape[0]
    (tw, th), base = cv2.getTextSize(text, FONT, 0.5, 1)
    cv2.rectangle(image_rgb, (0, h - th - base - 6), (tw + 8, h), (0, 0, 0), -1)
    cv2.putText(image_rgb, text, (4, h - base - 3), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image_rgb
