"""How sure are we of a score, and is one model really better than another?

- `wilson_interval(k, n)`: 95% interval for an accuracy of k correct out of n (good for small n and
  for accuracies near 0 or 1, where the textbook p +- 1.96*SE interval misbehaves).
- `bootstrap_interval(values)`: percentile bootstrap of the mean of any per-example score.
- `mcnemar(correct_a, correct_b)`: paired test on the SAME examples. Only the discordant pairs count:
  b = A right & B wrong, c = A wrong & B right. Exact binomial test when b + c < 25, else chi-squared
  with continuity correction. The verdict is "evidence" when p < alpha, else "noise".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

EXACT_BELOW = 25  # discordant pairs under which McNemar uses the exact binomial test


@dataclass(frozen=True)
class Estimate:
    value: float  # the point estimate (e.g. accuracy)
    low: float  # lower end of the interval
    high: float  # upper end
    n: int  # examples it is based on
    method: str  # "wilson" | "bootstrap"
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n}, {self.method} {self.confidence:.0%})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval for a proportion k/n."""
    if n <= 0:
        return Estimate(float("nan"), 0.0, 1.0, 0, "wilson", confidence)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, "wilson", confidence)


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, n_boot: int = 2000,
                       seed: int = 0) -> Estimate:
    """Percentile bootstrap interval of the mean of per-example values (e.g. 0/1 correctness)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "bootstrap", confidence)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)  # (n_boot,)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(float(v.mean()), float(lo), float(hi), int(v.size), "bootstrap", confidence)


def accuracy(correct: Sequence[bool], confidence: float = 0.95) -> Estimate:
    """Accuracy with its Wilson interval from per-example correctness."""
    c = np.asarray(correct, dtype=bool)
    return wilson_interval(int(c.sum()), int(c.size), confidence)


@dataclass(frozen=True)
class McNemarResult:
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    statistic: float  # chi-squared statistic (continuity-corrected), or b for the exact test
    p_value: float
    method: str  # "exact" | "chi2"
    verdict: str  # "evidence" | "noise"
    message: str  # plain-language sentence for the CLI and the app

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"McNemar {self.method} p = {self.p_value:.3g} ({self.verdict}): {self.message}"


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], *, exact: bool | None = None,
            correction: bool = True, alpha: float = 0.05, names: tuple[str, str] = ("A", "B")) -> McNemarResult:
    """McNemar's paired test on per-example correctness of two models on the same examples."""
    a, bb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape:
        raise ValueError(f"both models must be scored on the same examples ({a.size} vs {bb.size})")
    b, c = int((a & ~bb).sum()), int((~a & bb).sum())
    return mcnemar_counts(b, c, exact=exact, correction=correction, alpha=alpha, names=names)


def mcnemar_counts(b: int, c: int, *, exact: bool | None = None, correction: bool = True,
                   alpha: float = 0.05, names: tuple[str, str] = ("A", "B")) -> McNemarResult:
    """McNemar's test from the discordant counts b (only A right) and c (only B right)."""
    n = b + c
    use_exact = n < EXACT_BELOW if exact is None else exact
    if n == 0:
        stat, p, method = 0.0, 1.0, "exact"
    elif use_exact:
        stat, p, method = float(b), float(min(1.0, 2 * stats.binom.cdf(min(b, c), n, 0.5))), "exact"
    else:
        stat = (abs(b - c) - (1 if correction else 0)) ** 2 / n
        p, method = float(stats.chi2.sf(stat, df=1)), "chi2"
    better = names[0] if b > c else names[1]
    if p < alpha:
        verdict = "evidence"
        msg = (f"{better} is better: of the {n} examples where the models disagree, {max(b, c)} favour {better} "
               f"(p = {p:.3g} < {alpha}). A difference this large is unlikely to be luck.")
    else:
        verdict = "noise"
        msg = (f"No evidence of a difference: the models disagree on {n} examples, split {b} vs {c} "
               f"(p = {p:.3g} >= {alpha}). This could be noise; collect more examples before choosing.")
    return McNemarResult(b, c, float(stat), float(p), method, verdict, msg)
