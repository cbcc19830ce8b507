"""The one prediction type used by every pipeline (vision, speech, text, tabular).

A `Prediction` carries class probabilities and everything derived from them that the UI, the
review queue and the drift monitor need: entropy, margin, the conformal prediction set (when the
model has been calibrated), whether and on what the probabilities were calibrated, and the
routing decision with the reason for it. `make_prediction` is the one place that decides
accept / review / abstain; the UI, the CLI and the review queue only read `decision` and `reason`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

import numpy as np


class Decision(str, Enum):
    ACCEPT = "accept"  # confident enough to act on automatically
    REVIEW = "review"  # send to a human (Review tab)
    ABSTAIN = "abstain"  # too uncertain (or no usable input) to say anything


@dataclass(frozen=True)
class RoutingPolicy:
    """Thresholds on the top-class probability: accept, send to a person, or abstain.

    The lesson's default for a binary task: process automatically when p < 0.1 or p > 0.9 of the
    positive class, and have a person review everything in between. p(top) >= accept_at = 0.9 is
    the same rule for two classes and its analogue for more. A top class barely above chance
    (below `floor`, 1.5 / n_classes and never above 0.5, so a binary task never abstains on
    probability alone) is not worth a person's time either: abstain.
    """

    accept_at: float = 0.9  # top-class probability at or above which we accept
    abstain_below: float | None = None  # None: 1.5 / n_classes, at most 0.5 (50% above uniform)

    def floor(self, n_classes: int) -> float:
        """Top-class probability below which the prediction abstains."""
        return self.abstain_below if self.abstain_below is not None else min(1.5 / max(n_classes, 1), 0.5)

    def decide(self, top_prob: float, n_classes: int) -> Decision:
        return self.route(top_prob, n_classes)[0]

    def route(self, top_prob: float, n_classes: int, *, review_because: str | None = None,
              abstain_because: str | None = None) -> tuple[Decision, str]:
        """(decision, reason in words). A pipeline's own knowledge overrides the probability:
        `abstain_because` (e.g. a hallucinated transcript) always abstains, `review_because`
        (e.g. a hand partly outside the frame) turns an accept into a review."""
        if abstain_because:
            return Decision.ABSTAIN, abstain_because
        if not math.isfinite(top_prob):
            return Decision.ABSTAIN, "no usable probabilities"
        floor = self.floor(n_classes)
        if top_prob < floor:
            return Decision.ABSTAIN, f"top probability {top_prob:.2f} < {floor:.2f}: barely above chance over {n_classes} classes"
        if review_because:
            return Decision.REVIEW, review_because
        if top_prob >= self.accept_at:
            return Decision.ACCEPT, f"top probability {top_prob:.2f} >= {self.accept_at:.2f}"
        return Decision.REVIEW, f"top probability {top_prob:.2f} between {floor:.2f} and {self.accept_at:.2f}: unsure"


UNCALIBRATED = "uncalibrated (raw model scores)"  # what a Prediction says when no calibration is known


@dataclass(frozen=True)
class Prediction:
    """One model output for one input (a frame, a face, a hand, a transcript segment).

    probs: (n_classes,) float64, non-negative, sums to 1; calibrated (temperature scaling on
    held-out data) when `calibrated` is True, and `calibration` then says on what data.
    """

    classes: tuple[str, ...]
    probs: np.ndarray  # (n_classes,)
    decision: Decision
    prediction_set: tuple[str, ...] | None = None  # conformal set; None when uncalibrated
    coverage: float | None = None  # target coverage of prediction_set, e.g. 0.9
    calibrated: bool = False  # True only when fitted on held-out data and its error measured
    calibration: str | None = None  # e.g. "calibrated on FER2013 held-out faces (n=3252), 90% set"
    reason: str = ""  # why `decision`, in words (shown on the page and stored with a review item)
    timestamp_s: float = 0.0  # capture time of the input (time.monotonic() seconds)
    latency_ms: float = 0.0  # model time for this input
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) pixels, for detections
    track_id: int | None = None  # stable id of a tracked face/hand across frames
    extra: dict[str, Any] = field(default_factory=dict)  # pipeline-specific (e.g. ASR confidence)

    def __post_init__(self) -> None:
        if not self.calibrated and (self.calibration or "").lower().startswith("calibrated"):
            raise ValueError(f"an uncalibrated prediction cannot say {self.calibration!r}")

    @property
    def calibration_note(self) -> str:
        """What the probabilities are, for people: the calibration data, or that there is none."""
        if self.calibration:
            return self.calibration
        return "calibrated (data not recorded)" if self.calibrated else UNCALIBRATED

    @property
    def top_index(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        return self.classes[self.top_index]

    @property
    def confidence(self) -> float:
        return float(self.probs[self.top_index])

    @property
    def entropy(self) -> float:
        """Shannon entropy in nats (0 = certain, log(n) = uniform)."""
        p = self.probs[self.probs > 0]
        return float(-(p * np.log(p)).sum())

    @property
    def margin(self) -> float:
        """Top probability minus the runner-up (1 for a single class)."""
        if len(self.probs) < 2:
            return 1.0
        top2 = np.sort(self.probs)[-2:]
        return float(top2[1] - top2[0])

    def as_label_dict(self) -> dict[str, float]:
        """{class: probability}, the shape gr.Label takes."""
        return {c: float(p) for c, p in zip(self.classes, self.probs)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for logs, the review queue and the CLI)."""
        return {
            "label": self.label,
            "confidence": self.confidence,
            "probs": self.as_label_dict(),
            "entropy": self.entropy,
            "margin": self.margin,
            "prediction_set": list(self.prediction_set) if self.prediction_set is not None else None,
            "coverage": self.coverage,
            "calibrated": self.calibrated,
            "calibration": self.calibration_note,
            "decision": self.decision.value,
            "reason": self.reason,
            "timestamp_s": self.timestamp_s,
            "latency_ms": self.latency_ms,
            "box": list(self.box) if self.box is not None else None,
            "track_id": self.track_id,
            **({"extra": self.extra} if self.extra else {}),
        }


def softmax(logits: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of logits / temperature."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def make_prediction(
    classes: Sequence[str],
    probs: np.ndarray,
    *,
    policy: RoutingPolicy = RoutingPolicy(),
    conformal_qhat: float | None = None,
    coverage: float | None = None,
    calibrated: bool = False,
    calibration: str | None = None,
    review_because: str | None = None,
    abstain_because: str | None = None,
    **meta: Any,
) -> Prediction:
    """Build a Prediction from (already calibrated) probabilities; the decision is taken here, once.

    conformal_qhat: split-conformal threshold on the score 1 - p(class); the set holds every
    class with p >= 1 - qhat (the top class is always included so the set is never empty).
    calibration: on what the probabilities were calibrated (None: not stated).
    review_because / abstain_because: see `RoutingPolicy.route`.
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(p) != len(classes):
        raise ValueError(f"{len(p)} probabilities for {len(classes)} classes {list(classes)}")
    if not np.all(np.isfinite(p)) or p.sum() <= 0:
        p = np.full(len(classes), 1.0 / len(classes))
        reason = abstain_because or "no usable probabilities"
        return Prediction(tuple(classes), p, Decision.ABSTAIN, calibrated=calibrated, calibration=calibration,
                          reason=reason, **meta)
    p = np.clip(p, 0.0, None)
    p = p / p.sum()
    pset = None
    if conformal_qhat is not None:
        keep = p >= 1.0 - conformal_qhat
        keep[int(np.argmax(p))] = True
        order = np.argsort(-p)
        pset = tuple(classes[i] for i in order if keep[i])
    decision, reason = policy.route(float(p.max()), len(classes), review_because=review_because,
                                    abstain_because=abstain_because)
    return Prediction(tuple(classes), p, decision, pset, coverage, calibrated, calibration, reason, **meta)
