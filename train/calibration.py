"""Calibration: make "90% sure" mean right 90% of the time, and give sets with guaranteed coverage.

- `fit_temperature(logits, labels)`: one scalar T minimising the negative log-likelihood of
  softmax(logits / T) on the VALIDATION set (never the test set). T > 1 softens an overconfident model.
- `ece(probs, labels)`: expected calibration error with 15 equal-width confidence bins.
- `reliability_diagram(...)`: accuracy vs confidence per bin, before and after, to a PNG.
- `conformal_qhat(probs, labels, coverage)`: split-conformal threshold on the score 1 - p(true class);
  the set {classes with p >= 1 - qhat} then contains the true class with probability >= coverage on
  exchangeable new data. `empirical_coverage` checks that on held-out data. With too few calibration
  examples for the coverage asked (fewer than 9 for 90%) there is no threshold: `calibrate` claims no
  sets and says so in `CalibrationReport.warnings`.
Each calibration example counts once: a resample drawn with replacement would make the conformal
guarantee false. `weights` (e.g. equal total weight per class) reweigh the temperature fit and ECE only.
The set rule matches `models.prediction.make_prediction(conformal_qhat=...)`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from models.prediction import softmax

ECE_BINS = 15
T_BOUNDS = (0.05, 20.0)  # search range for the temperature


@dataclass(frozen=True)
class CalibrationReport:
    temperature: float
    ece_before: float  # on the data it was fitted on (validation) unless stated otherwise
    ece_after: float
    nll_before: float
    nll_after: float
    coverage: float | None = None  # conformal target, e.g. 0.9
    conformal_qhat: float | None = None
    mean_set_size: float | None = None  # average conformal set size on validation
    n: int = 0
    warnings: tuple[str, ...] = ()  # what could not be fitted, and why (shown on the model card)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nll(logits: np.ndarray, labels: np.ndarray, t: float, weights: np.ndarray | None = None) -> float:
    p = softmax(logits, t)
    return float(-np.average(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)), weights=weights))


def fit_temperature(logits: np.ndarray, labels: Sequence[int], weights: np.ndarray | None = None) -> float:
    """logits: (N, C); labels: (N,) class indices; weights: (N,) or None. Returns T in T_BOUNDS (1.0 for
    empty input)."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=int)
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda log_t: _nll(z, y, math.exp(log_t), weights),
                          bounds=(math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])), method="bounded")
    return float(math.exp(res.x))


def ece(probs: np.ndarray, labels: Sequence[int], n_bins: int = ECE_BINS, weights: np.ndarray | None = None) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| x bin share
    (shares and means weighted by `weights` (N,) when given)."""
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=int)
    if len(y) == 0:
        return float("nan")
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = (pred == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)  # bin k holds (k/n, (k+1)/n]
    total = 0.0
    for k in range(n_bins):
        m = bins == k
        if m.any():
            share = w[m].sum() / w.sum()
            total += share * abs(np.average(correct[m], weights=w[m]) - np.average(conf[m], weights=w[m]))
    return float(total)


def reliability_diagram(probs_before: np.ndarray, probs_after: np.ndarray | None, labels: Sequence[int],
                        path: str | Path, title: str = "Reliability (validation)", n_bins: int = ECE_BINS) -> Path:
    """Accuracy vs confidence per bin (bars) with the diagonal; before and after calibration."""
    from train.plots import panels, save

    y = np.asarray(labels, dtype=int)
    shown = [("before", probs_before)] + ([("after temperature", probs_after)] if probs_after is not None else [])
    fig, axes = panels(len(shown), (4.5, 4.2))
    edges = np.linspace(0, 1, n_bins + 1)
    for ax, (name, p) in zip(axes, shown):
        p = np.asarray(p)
        conf, correct = p.max(axis=1), (p.argmax(axis=1) == y)
        bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
        acc = [correct[bins == k].mean() if (bins == k).any() else 0.0 for k in range(n_bins)]
        share = [(bins == k).mean() for k in range(n_bins)]
        ax.bar(edges[:-1], acc, width=1 / n_bins, align="edge", edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "r--", label="perfect calibration")
        ax.plot(edges[:-1] + 0.5 / n_bins, share, "g.", label="share of examples")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
               title=f"{name}: ECE {ece(p, y, n_bins):.3f}")
        ax.legend(loc="upper left", fontsize=8)
    return save(fig, path, title)


def min_calibration_examples(coverage: float) -> int:
    """Fewest calibration examples for which a split-conformal threshold at `coverage` exists (9 for 0.9)."""
    n = 1
    while math.ceil((n + 1) * coverage) > n:
        n += 1
    return n


def conformal_qhat(probs: np.ndarray, labels: Sequence[int], coverage: float = 0.9) -> float | None:
    """Split-conformal threshold from calibration data (N, C) probabilities and true labels.

    Score s_i = 1 - p_i(true class); qhat = the ceil((n + 1) * coverage) / n empirical quantile.
    None when there are too few examples to promise `coverage` (fewer than min_calibration_examples):
    the only honest set would hold every class, which is no prediction set at all.
    """
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=int)
    n = len(y)
    if n < min_calibration_examples(coverage):
        return None
    scores = 1.0 - p[np.arange(n), y]
    level = math.ceil((n + 1) * coverage) / n
    return float(np.quantile(scores, level, method="higher"))


def prediction_sets(probs: np.ndarray, qhat: float | None) -> np.ndarray:
    """(N, C) boolean: class in the set iff p >= 1 - qhat; the top class is always in. qhat None (too few
    calibration examples for a threshold): every class is in, the only set that keeps the promise."""
    p = np.asarray(probs, dtype=np.float64)
    if qhat is None:
        return np.ones(p.shape, dtype=bool)
    keep = p >= 1.0 - qhat
    keep[np.arange(len(p)), p.argmax(axis=1)] = True
    return keep


def empirical_coverage(probs: np.ndarray, labels: Sequence[int], qhat: float | None) -> tuple[float, float]:
    """(share of held-out examples whose set holds the true class, mean set size); qhat None: full sets."""
    sets = prediction_sets(probs, qhat)
    y = np.asarray(labels, dtype=int)
    if len(y) == 0:
        return float("nan"), float("nan")
    return float(sets[np.arange(len(y)), y].mean()), float(sets.sum(axis=1).mean())


MIN_TEMPERATURE_EXAMPLES = 20  # fewer validation examples than this: no temperature (2 gave ECE 0.01 -> 0.48)


def calibrate(logits: np.ndarray, labels: Sequence[int], coverage: float | None = 0.9,
              weights: np.ndarray | None = None) -> CalibrationReport:
    """Fit temperature and the conformal threshold on validation logits (N, C) and labels (N,), each
    example once. `weights` (N,) reweigh the temperature fit and the ECE figures, not the conformal threshold."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=int)
    notes: list[str] = []
    if len(y) >= MIN_TEMPERATURE_EXAMPLES:
        t = fit_temperature(z, y, weights)
    else:  # a temperature fitted on a handful of examples makes the probabilities worse, not honest
        t = 1.0
        notes.append(f"temperature not fitted: {len(y)} validation examples are too few (at least "
                     f"{MIN_TEMPERATURE_EXAMPLES} are needed); probabilities are the model's own softmax")
    before, after = softmax(z, 1.0), softmax(z, t)
    qhat = size = None
    if coverage is not None:
        qhat = conformal_qhat(after, y, coverage)
        if qhat is None:
            notes.append(f"no prediction sets: {len(y)} calibration examples are too few to promise {coverage:.0%} "
                         f"coverage (at least {min_calibration_examples(coverage)} are needed); record more")
        else:
            size = empirical_coverage(after, y, qhat)[1]
    return CalibrationReport(t, ece(before, y, weights=weights), ece(after, y, weights=weights),
                             _nll(z, y, 1.0, weights), _nll(z, y, t, weights), coverage if qhat is not None else None,
                             qhat, size, int(len(y)), tuple(notes))
