"""What a sign model does for a person it has never seen: figures per held-out person, and calibration fitted
only on other people.

- `leave_fold_out_probs(logits, labels, folds, coverage)`: out-of-fold logits (each photo's from the fold model
  that never saw its person) are calibrated, fold by fold, with a temperature and a conformal threshold fitted on
  the OTHER folds' people only; so the figures measured on a fold are those of a calibration that never saw it.
- `person_scores(probs, labels, persons, found, qhat)`: accuracy of found hands, 90 % set coverage and set size per
  person; the mean over people and the worst person; hand-found rate; ECE of the shown probability.

The conformal threshold is fitted per person (`person_level_qhat`): each calibration person's own 90 % threshold,
then the 90 % conformal quantile of those over people; so a new person's own sets cover 90 % with probability 90 %
(people exchangeable), and a person with 3,000 photos counts as one person, like one with 90. The temperature
weighs every person equally.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.prediction import softmax
from train.calibration import ece, fit_temperature, min_calibration_examples, prediction_sets


def person_weights(persons: np.ndarray) -> np.ndarray:
    """(N,) weights giving every person the same total weight (1 / that person's count)."""
    _, inverse, counts = np.unique(persons, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def person_level_qhat(probs: np.ndarray, labels: np.ndarray, persons: np.ndarray, coverage: float) -> float | None:
    """A threshold that holds per person: each calibration person's own `coverage` quantile of the score
    1 - p(true class) (the threshold that person needed), then the split-conformal `coverage` quantile of those over
    people. For a new person exchangeable with the calibration people, the chance that the threshold they need is at
    most this one (so that their own sets cover at least `coverage`) is at least `coverage`. None with too few people."""
    names = np.unique(persons)
    if len(names) < min_calibration_examples(coverage):
        return None
    needed = []
    for name in names:
        m = persons == name
        scores = np.sort(1.0 - probs[m][np.arange(int(m.sum())), labels[m]])
        needed.append(scores[min(math.ceil(coverage * len(scores)) - 1, len(scores) - 1)])
    level = min(1.0, math.ceil((len(names) + 1) * coverage) / len(names))
    return float(np.quantile(needed, level, method="higher"))


@dataclass(frozen=True)
class PersonCalibration:
    temperature: float
    qhat: float | None
    coverage: float
    n: int  # calibration photos (found hands)
    n_persons: int


def fit_person_calibration(logits: np.ndarray, labels: np.ndarray, persons: np.ndarray, coverage: float
                           ) -> PersonCalibration:
    """Temperature (every person weighted equally) and the per-person conformal threshold on held-out logits."""
    t = fit_temperature(logits, labels, person_weights(persons))
    qhat = person_level_qhat(softmax(logits, t), labels, persons, coverage)
    return PersonCalibration(t, qhat, coverage, len(labels), len(np.unique(persons)))


def leave_fold_out_probs(logits: np.ndarray, labels: np.ndarray, persons: np.ndarray, folds: np.ndarray,
                         coverage: float) -> tuple[np.ndarray, np.ndarray, list[PersonCalibration]]:
    """(probs (N, C), qhat per photo (N,), calibrations per fold) for out-of-fold logits (N, C): fold k's photos are
    calibrated on the other folds' photos only. Rows of NaN logits (no hand) stay NaN."""
    ok = ~np.isnan(logits[:, 0])
    probs = np.full(logits.shape, np.nan)
    qhat = np.full(len(labels), np.nan)
    cals = []
    for k in np.unique(folds):
        fit = ok & (folds != k)
        cal = fit_person_calibration(logits[fit], labels[fit], persons[fit], coverage)
        use = ok & (folds == k)
        probs[use] = softmax(logits[use], cal.temperature)
        qhat[use] = np.nan if cal.qhat is None else cal.qhat
        cals.append(cal)
    return probs, qhat, cals


@dataclass
class PersonScores:
    """Figures over held-out people (found hands unless said), each person counted once in the means."""

    acc_found_mean: float
    acc_found_worst_person: float
    set_coverage_mean: float
    set_coverage_worst_person: float
    set_size_mean: float
    ece: float  # pooled over every found hand (the probability the page shows)
    hand_found_rate: float  # pooled over every photo
    hand_found_rate_person_mean: float
    n_photos: int
    n_found: int
    n_persons: int
    per_person: dict[str, dict[str, float]] = field(default_factory=dict)
    worst: dict[str, str] = field(default_factory=dict)  # figure -> the person it comes from

    def to_dict(self, per_person: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not per_person:
            out.pop("per_person")
        return out

    def spread(self, key: str) -> tuple[float, float, float]:
        """(10th percentile, median, 90th percentile) over people of a per-person figure."""
        values = np.array([v[key] for v in self.per_person.values() if not math.isnan(v[key])])
        return tuple(float(np.percentile(values, q)) for q in (10, 50, 90))  # type: ignore[return-value]


def person_scores(probs: np.ndarray, labels: np.ndarray, persons: np.ndarray, qhat: np.ndarray | float | None
                  ) -> PersonScores:
    """probs (N, C) with NaN rows where no hand was found; labels (N,) class indices; qhat per photo (N,) or one."""
    found = ~np.isnan(probs[:, 0])
    q = np.broadcast_to(np.asarray(np.nan if qhat is None else qhat, np.float64), (len(labels),))
    correct = np.zeros(len(labels), bool)
    covered = np.zeros(len(labels), bool)
    size = np.zeros(len(labels))
    idx = np.flatnonzero(found)
    if len(idx):
        p = probs[idx]
        correct[idx] = p.argmax(1) == labels[idx]
        for qv in np.unique(q[idx]):
            sub = idx[q[idx] == qv] if not np.isnan(qv) else idx[np.isnan(q[idx])]
            sets = prediction_sets(probs[sub], None if np.isnan(qv) else float(qv))
            covered[sub] = sets[np.arange(len(sub)), labels[sub]]
            size[sub] = sets.sum(1)
    per: dict[str, dict[str, float]] = {}
    for name in np.unique(persons):
        m = persons == name
        mf = m & found
        per[str(name)] = {"n": int(m.sum()), "found": float(mf.sum() / m.sum()),
                          "acc_found": float(correct[mf].mean()) if mf.any() else math.nan,
                          "set_coverage": float(covered[mf].mean()) if mf.any() else math.nan,
                          "set_size": float(size[mf].mean()) if mf.any() else math.nan}

    def mean(key: str) -> float:
        return float(np.nanmean([v[key] for v in per.values()]))

    def worst(key: str) -> tuple[float, str]:
        name = min((k for k in per if not math.isnan(per[k][key])), key=lambda k: per[k][key])
        return per[name][key], name

    acc_w, acc_who = worst("acc_found")
    cov_w, cov_who = worst("set_coverage")
    return PersonScores(mean("acc_found"), acc_w, mean("set_coverage"), cov_w, mean("set_size"),
                        float(ece(probs[idx], labels[idx])) if len(idx) else math.nan, float(found.mean()),
                        mean("found"), int(len(labels)), int(found.sum()), len(per), per,
                        {"acc_found": acc_who, "set_coverage": cov_who})
