"""Validation splits that do not leak, and the locked test set.

- `random_split`: stratified random hold-out (what Teachable Machine does; leaks when the same
  person is in both parts, because the model can recognise the person instead of the class).
- `grouped_split`: whole persons (or sessions) go to validation: no group is on both sides.
- `walk_forward`: time-ordered folds; train on everything before a block, validate on the block;
  the metric is averaged over folds.
- `LockedTestSet`: a held-out set fixed once in the sample store, evaluated on request; every
  evaluation is recorded, and evaluating again says so (a second look is no longer a clean test).

Spec strings (CLI): "random", "grouped:person", "grouped:session", "time" or "time:K".
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MIN_PER_CLASS = 5  # fewer training examples than this per class cannot be learned or validated


class SplitError(ValueError):
    """A split that cannot be made from this data; the message says what to record or change."""


@dataclass(frozen=True)
class Split:
    train_idx: np.ndarray  # (n_train,) int indices into the dataset
    valid_idx: np.ndarray  # (n_valid,) int
    kind: str  # "random" | "grouped:person" | "grouped:session" | "time"
    fold: int = 0  # walk-forward fold number (0 otherwise)

    def describe(self, groups: Sequence[str] | None = None) -> str:
        text = f"{self.kind}: {len(self.train_idx)} train / {len(self.valid_idx)} validation"
        if groups is not None and self.kind.startswith("grouped"):
            g = np.asarray(groups)
            text += f" (validation {self.kind.split(':')[1]}s: {', '.join(sorted(set(g[self.valid_idx])))})"
        return text


@dataclass(frozen=True)
class SplitSpec:
    kind: str  # "random" | "grouped" | "time"
    group_by: str | None = None  # "person" | "session" for grouped
    folds: int = 3  # walk-forward folds
    valid_frac: float = 0.2  # random/grouped: share of the data (or of the groups) held out
    seed: int = 0

    @classmethod
    def parse(cls, text: str, **kw: Any) -> "SplitSpec":
        head, _, arg = text.strip().partition(":")
        if head == "random" and not arg:
            return cls("random", **kw)
        if head == "grouped" and arg in ("person", "session"):
            return cls("grouped", arg, **kw)
        if head == "time":
            try:
                return cls("time", folds=int(arg) if arg else 3, **kw)
            except ValueError as e:
                raise SplitError(f"time:K needs a whole number of folds, got {arg!r}") from e
        raise SplitError(f"unknown split {text!r}; use random, grouped:person, grouped:session or time[:K]")

    @property
    def name(self) -> str:
        return {"random": "random", "grouped": f"grouped:{self.group_by}", "time": f"time:{self.folds}"}[self.kind]


def check_labels(labels: Sequence[str], min_per_class: int = MIN_PER_CLASS) -> None:
    """Refuse data that cannot be trained on: one class only, or too few examples of a class."""
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    if len(classes) < 2:
        only = classes[0] if len(classes) else "none"
        raise SplitError(f"only one class ({only}): record examples of at least 2 classes to train a classifier")
    few = {c: int(n) for c, n in zip(classes, counts) if n < min_per_class}
    if few:
        listing = ", ".join(f"{c}: {n}" for c, n in few.items())
        raise SplitError(f"too few examples: need at least {min_per_class} per class for training and "
                         f"validation; record more of {listing}")


def random_split(labels: Sequence[str], valid_frac: float = 0.2, seed: int = 0) -> Split:
    """Stratified: every class keeps about `valid_frac` of its examples in validation (at least 1)."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    valid = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        valid.extend(idx[: max(1, round(len(idx) * valid_frac))])
    valid_idx = np.sort(np.asarray(valid, dtype=int))
    return Split(np.setdiff1d(np.arange(len(y)), valid_idx), valid_idx, "random")


def grouped_split(labels: Sequence[str], groups: Sequence[str], *, group_by: str = "person",
                  valid_frac: float = 0.2, seed: int = 0, tries: int = 200) -> Split:
    """Whole groups go to validation (about `valid_frac` of the examples), never to both sides.

    Among random group choices, picks the one whose validation share is closest to `valid_frac`
    and covers the most classes in both parts.
    """
    y, g = np.asarray(labels), np.asarray(groups)
    names = np.unique(g)
    if len(names) < 2:
        raise SplitError(f"grouped split by {group_by} impossible: every example comes from one {group_by} "
                         f"({names[0] if len(names) else 'none'}). Record at least 2 {group_by}s (better 3+), "
                         f"or use --split random knowing the score will overstate accuracy on new {group_by}s")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    best, best_cost = None, np.inf
    for _ in range(tries):
        order = rng.permutation(names)
        chosen, n = [], 0
        for name in order[:-1]:  # keep at least one group for training
            if n >= valid_frac * len(y):
                break
            chosen.append(name)
            n += int((g == name).sum())
        mask = np.isin(g, chosen)
        missing = len(classes) - len(np.unique(y[mask])) + len(classes) - len(np.unique(y[~mask]))
        cost = abs(mask.mean() - valid_frac) + missing
        if cost < best_cost:
            best, best_cost = mask, cost
    return Split(np.flatnonzero(~best), np.flatnonzero(best), f"grouped:{group_by}")


def grouped_folds(groups: Sequence[str], n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """(N,) fold number 0..n_folds-1 of each example; whole groups per fold, folds of similar size (the groups,
    largest first after a seeded shuffle, each go to the fold with the fewest examples so far)."""
    g = np.asarray(groups)
    names, counts = np.unique(g, return_counts=True)
    if len(names) < n_folds:
        raise SplitError(f"{n_folds} grouped folds need at least {n_folds} groups; the data has {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]
    sizes, fold_of = np.zeros(n_folds, int), {}
    for i in order:
        k = int(np.argmin(sizes))
        fold_of[names[i]] = k
        sizes[k] += counts[i]
    return np.array([fold_of[name] for name in g])


def walk_forward(times: Sequence[float], folds: int = 3, min_train_frac: float = 0.4) -> list[Split]:
    """Time-ordered folds: the first `min_train_frac` of the data is always training; the rest is cut
    into `folds` consecutive blocks, each validated by a model trained on everything before it."""
    t = np.asarray(times, dtype=float)
    if folds < 1:
        raise SplitError("time split needs at least 1 fold")
    order = np.argsort(t, kind="stable")
    start = int(len(t) * min_train_frac)
    edges = np.linspace(start, len(t), folds + 1).round().astype(int)
    if start < 2 or np.any(np.diff(edges) < 1):
        raise SplitError(f"too few examples ({len(t)}) for {folds} walk-forward folds; record more or use fewer")
    return [Split(np.sort(order[: edges[k]]), np.sort(order[edges[k]: edges[k + 1]]), "time", fold=k)
            for k in range(folds)]


def make_splits(spec: SplitSpec, labels: Sequence[str], persons: Sequence[str], sessions: Sequence[str],
                times: Sequence[float]) -> list[Split]:
    """The split(s) a spec asks for: one for random/grouped, `folds` for time."""
    if spec.kind == "random":
        return [random_split(labels, spec.valid_frac, spec.seed)]
    if spec.kind == "grouped":
        groups = persons if spec.group_by == "person" else sessions
        return [grouped_split(labels, groups, group_by=spec.group_by, valid_frac=spec.valid_frac, seed=spec.seed)]
    return walk_forward(times, spec.folds)


class LockedTestSet:
    """A held-out test set fixed once in a `SampleStore` (its meta table) and kept out of training.

    `lock` picks it (grouped by person when there are 3+ persons, else stratified random);
    `record_evaluation` logs each look and returns how many looks came before, so callers can say
    "this test set has already been evaluated N times: it is no longer an unbiased estimate".
    """

    KEY = "locked_test_set"

    def __init__(self, store: Any, kind: str):
        self.store, self.kind = store, kind

    @property
    def _key(self) -> str:
        return f"{self.KEY}:{self.kind}"

    @property
    def state(self) -> dict[str, Any] | None:
        return self.store.get_meta(self._key)

    @property
    def ids(self) -> list[str]:
        return list((self.state or {}).get("ids", []))

    def lock(self, frac: float = 0.2, seed: int = 0) -> list[str]:
        """Choose and freeze the test set; a second call keeps the first choice."""
        if self.state is not None:
            return self.ids
        samples = self.store.samples(self.kind)
        labels = [s.label for s in samples]
        persons = [s.person for s in samples]
        check_labels(labels, min_per_class=2)
        if len(set(persons)) >= 3:
            split = grouped_split(labels, persons, valid_frac=frac, seed=seed)
        else:
            split = random_split(labels, frac, seed)
        ids = [samples[i].id for i in split.valid_idx]
        self.store.set_meta(self._key, {"ids": ids, "split": split.kind, "locked_at_s": time.time(), "evaluations": []})
        return ids

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        return list((self.state or {}).get("evaluations", []))

    def record_evaluation(self, model: str, accuracy: float) -> int:
        """Log one evaluation; returns the number of evaluations before this one."""
        state = self.state
        if state is None:
            raise SplitError("no locked test set yet; lock one first (livelearner train --lock-test)")
        before = len(state["evaluations"])
        state["evaluations"].append({"model": model, "accuracy": accuracy, "at_s": time.time()})
        self.store.set_meta(self._key, state)
        return before
