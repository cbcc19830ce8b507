"""How much to trust a transcript segment: Whisper's own signals → a confidence score (not calibrated).

Whisper reports, per segment, the average token log-probability, the probability that the
window held no speech, and the gzip compression ratio of the text (a decoding loop repeats
itself and compresses well); word timestamps add per-word probabilities. None of these is a
probability that the text is right. A logistic map turns them into one, and a second one into
P(hallucinated): text produced from audio that held no intelligible speech.

Both maps were fitted on our own synthetic data only (espeak-ng sentences in several voices,
rates and noise levels vs silence, hum, noise, reversed speech), never on evaluation data:
`python -m bench.asr_calibration` regenerates them and reports their held-out calibration.
Fitted on 108 synthetic segments with a held-out ECE of 0.24, the confidence is a ranking, not a
calibrated probability, and its Predictions say so (`calibrated=False`, `ASR_SCORE_NOTE`). There is
no real held-out speech here to calibrate it on (the training speech commands are 1 s words).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from models.prediction import Prediction, RoutingPolicy, make_prediction

FEATURE_NAMES = (
    "avg_logprob",  # mean token log-probability (<= 0)
    "no_speech_prob",  # [0, 1]
    "compression_ratio",  # gzip ratio, ~1-2 for normal text, > 2.4 for loops
    "mean_word_logprob",  # mean over words of log(word probability)
    "min_word_prob",  # the least certain word
    "log_words_per_s",  # log(words / duration); hallucinations are often too sparse or too dense
)
HALLUCINATED_AT = 0.5  # P(hallucinated) at or above which a segment is flagged
RELIABLE_CLASSES = ("reliable", "unreliable")  # the Prediction classes of a transcript segment
ASR_SCORE_NOTE = "uncalibrated score (fitted on synthetic speech)"  # Prediction.calibration of a segment
HALLUCINATED_NOTE = "probably hallucinated: text without intelligible speech behind it"  # abstain reason


@dataclass(frozen=True)
class SegmentSignals:
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    word_probs: tuple[float, ...]  # per-word probabilities, in order
    duration_s: float  # segment length in seconds

    def features(self) -> np.ndarray:
        """(len(FEATURE_NAMES),) float64; NaNs (missing signals) replaced by neutral values."""
        p = np.clip(np.asarray(self.word_probs, dtype=np.float64), 1e-6, 1.0)
        p = p[np.isfinite(p)]
        n = len(p)
        rate = n / self.duration_s if self.duration_s > 0 else 0.0
        f = np.array(
            [
                _finite(self.avg_logprob, -1.0),
                _finite(self.no_speech_prob, 0.5),
                _finite(self.compression_ratio, 1.5),
                float(np.log(p).mean()) if n else -3.0,
                float(p.min()) if n else 0.0,
                math.log(max(rate, 0.1)),
            ]
        )
        return f


@dataclass(frozen=True)
class LogisticMap:
    """sigmoid(weights · features + bias), weights in raw feature units."""

    weights: tuple[float, ...]  # one per FEATURE_NAMES
    bias: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(..., n_features) → (...) probabilities."""
        z = np.asarray(features, dtype=np.float64) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


# Fitted by `python -m bench.asr_calibration --n 70 --seed 0` (tiny.en, offline + streaming segments;
# 108 examples, 74 to fit, 34 held out by clip). Held out: correct Brier 0.179 (base rate alone 0.252),
# ECE 0.24; hallucinated Brier 0.065 (base rate 0.210), ECE 0.16, flag precision 0.90, recall 0.90.
# Small data: treat `confidence` as a ranking with rough calibration; refit with a larger --n.
CORRECT_MAP = LogisticMap(weights=(0.6216, -2.1027, -4.7086, 0.298, 9.767, -1.0417), bias=3.8891)
HALLUCINATION_MAP = LogisticMap(weights=(-1.1767, 5.8849, 5.0599, -0.0892, -4.5099, 0.3706), bias=-8.5049)


@dataclass(frozen=True)
class AsrConfidence:
    confidence: float  # score for "the segment's text is right (word error rate <= 25%)"; not calibrated
    hallucinated: bool  # P(hallucinated) >= HALLUCINATED_AT, or Whisper's own loop/no-speech rules fired
    p_hallucinated: float  # score for "text made up from audio without intelligible speech"; not calibrated
    signals: SegmentSignals

    def as_prediction(self, *, policy: RoutingPolicy = RoutingPolicy(), **meta: Any) -> Prediction:
        """A Prediction over ("reliable", "unreliable") so the UI and review queue can route it.

        Labelled an uncalibrated score; a hallucinated segment abstains (never queued for review)."""
        extra = {"hallucinated": self.hallucinated, "p_hallucinated": self.p_hallucinated, **meta.pop("extra", {})}
        return make_prediction(
            RELIABLE_CLASSES, np.array([self.confidence, 1.0 - self.confidence]), policy=policy, calibrated=False,
            calibration=ASR_SCORE_NOTE, abstain_because=HALLUCINATED_NOTE if self.hallucinated else None,
            extra=extra, **meta)


def score_segment(
    signals: SegmentSignals,
    correct_map: LogisticMap = CORRECT_MAP,
    hallucination_map: LogisticMap = HALLUCINATION_MAP,
) -> AsrConfidence:
    f = signals.features()
    p_ok = float(correct_map(f))
    p_hall = float(hallucination_map(f))
    whisper_rules = signals.compression_ratio > 2.4 or (signals.no_speech_prob > 0.6 and signals.avg_logprob < -1.0)
    hallucinated = bool(p_hall >= HALLUCINATED_AT or whisper_rules)
    return AsrConfidence(p_ok, hallucinated, p_hall, signals)


def logprob_from_words(word_probs: Sequence[float], token_counts: Sequence[int]) -> float:
    """Mean token log-probability estimated from word probabilities (each the mean of its tokens')."""
    p = np.clip(np.asarray(word_probs, dtype=np.float64), 1e-6, 1.0)
    n = np.asarray(token_counts, dtype=np.float64)
    if n.sum() <= 0:
        return float("nan")
    return float((np.log(p) * n).sum() / n.sum())


def _finite(x: float, default: float) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else default
