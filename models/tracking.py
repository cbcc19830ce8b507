"""Stable ids for boxes across frames (greedy IoU matching) and per-track probability smoothing.

Why: a per-frame classifier flickers between neighbouring classes on a face that hardly changes;
averaging each face's last few probability vectors steadies the label without hiding a real
change for long (the window is a setting: at 30 fps, 5 frames is ~170 ms of memory).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import count

import numpy as np

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels


@dataclass(frozen=True)
class TrackerSettings:
    iou_threshold: float = 0.3  # a box continues a track when they overlap at least this much
    max_missed_frames: int = 10  # a track unseen for more frames than this is forgotten
    smoothing_window: int = 5  # frames of probabilities averaged per track; 1 = no smoothing


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when disjoint or degenerate)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    track_id: int
    box: Box
    missed: int = 0
    history: deque = field(default_factory=deque)  # recent (n_classes,) probability vectors


class IouTracker:
    """update(boxes) -> track ids (same order); smooth(track_id, probs) -> window mean of probs."""

    def __init__(self, settings: TrackerSettings = TrackerSettings()) -> None:
        if settings.smoothing_window < 1:
            raise ValueError("smoothing_window must be at least 1 frame")
        self.settings = settings
        self._tracks: dict[int, _Track] = {}
        self._ids = count(1)

    def update(self, boxes: list[Box]) -> list[int]:
        """Match this frame's boxes to live tracks (best IoU first); unmatched boxes start new tracks."""
        pairs = sorted(((iou(t.box, b), tid, i) for tid, t in self._tracks.items() for i, b in enumerate(boxes)),
                       reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for overlap, tid, i in pairs:
            if overlap < self.settings.iou_threshold:
                break
            if tid in used or ids[i] is not None:
                continue
            ids[i] = tid
            used.add(tid)
        for i, b in enumerate(boxes):
            if ids[i] is None:
                tid = next(self._ids)
                self._tracks[tid] = _Track(tid, b, history=deque(maxlen=self.settings.smoothing_window))
                ids[i] = tid
                used.add(tid)
            track = self._tracks[ids[i]]
            track.box, track.missed = b, 0
        for tid in list(self._tracks):
            if tid not in used:
                self._tracks[tid].missed += 1
                if self._tracks[tid].missed > self.settings.max_missed_frames:
                    del self._tracks[tid]
        return [int(i) for i in ids]

    def smooth(self, track_id: int, probs: np.ndarray) -> np.ndarray:
        """Add this frame's probabilities to the track and return the mean over its window."""
        track = self._tracks.get(track_id)
        if track is None:
            return np.asarray(probs, np.float64)
        if track.history and len(track.history[-1]) != len(probs):
            track.history.clear()  # the model changed under the track
        track.history.append(np.asarray(probs, np.float64))
        return np.mean(track.history, axis=0)

    @property
    def active(self) -> int:
        return len(self._tracks)

    def reset(self) -> None:
        self._tracks.clear()
