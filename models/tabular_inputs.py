"""Questionnaire answers -> the (categorical codes, continuous values) tensors a fastai TabularModel reads,
from preprocessing state kept as JSON in bundle.json (so inference needs no fastai pickle).

The state is what fastai's procs learnt on the training rows, applied in fastai's order:
    FillMissing  "na_fill": {question: value}: a missing number becomes this (the training median),
                 and a "<question>_na" yes/no column says it was missing
    Categorify   "vocab": {column: ["#na#", value, ...]}: code = index in the list, 0 for unseen answers
    Normalize    "means" / "stds": {question: float}: (x - mean) / std
and "cat_names" / "cont_names": the model's column order (cat_names include the "_na" columns).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


class TabularInputError(ValueError):
    """The answers cannot be read by this model; the message says which question."""


@dataclass(frozen=True)
class TabularInputs:
    cat_names: tuple[str, ...]  # columns fed to embeddings, model order
    cont_names: tuple[str, ...]  # numeric questions, model order
    vocab: dict[str, list[Any]]  # column -> category list, "#na#" first
    na_fill: dict[str, float]  # numeric question -> value for a missing answer
    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "TabularInputs":
        try:
            return cls(tuple(spec["cat_names"]), tuple(spec["cont_names"]), dict(spec["vocab"]),
                       {k: float(v) for k, v in spec["na_fill"].items()},
                       {k: float(v) for k, v in spec["means"].items()}, {k: float(v) for k, v in spec["stds"].items()})
        except (KeyError, TypeError, ValueError) as e:
            raise TabularInputError(f"bundle.json's tabular preprocessing is incomplete ({e}); re-export the bundle") \
                from e

    @classmethod
    def from_dls(cls, dls: Any) -> "TabularInputs":
        """The state fastai's Categorify / FillMissing / Normalize procs learnt (TabularDataLoaders)."""
        procs = {type(p).__name__: p for p in dls.train_ds.procs}
        categorify, fill, norm = procs.get("Categorify"), procs.get("FillMissing"), procs.get("Normalize")
        cat_names, cont_names = tuple(dls.cat_names), tuple(dls.cont_names)
        vocab = {n: [_plain(v) for v in categorify.classes[n]] for n in cat_names} if categorify else {}
        na_fill = {n: float(v) for n, v in fill.na_dict.items()} if fill is not None and fill.add_col else {}
        means = {n: float(norm.means[n]) for n in cont_names} if norm is not None else {n: 0.0 for n in cont_names}
        stds = {n: float(norm.stds[n]) for n in cont_names} if norm is not None else {n: 1.0 for n in cont_names}
        return cls(cat_names, cont_names, vocab, na_fill, means, stds)

    def to_spec(self) -> dict[str, Any]:
        return {"cat_names": list(self.cat_names), "cont_names": list(self.cont_names), "vocab": self.vocab,
                "na_fill": self.na_fill, "means": self.means, "stds": self.stds}

    @property
    def questions(self) -> list[str]:
        """The answers a row must give (the "_na" columns are made here, not asked)."""
        made = {f"{n}_na" for n in self.na_fill}
        return [c for c in self.cat_names if c not in made] + list(self.cont_names)

    def tensors(self, items: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """list of {question: answer} dicts or a DataFrame -> ((N, n_cat) int64 codes, (N, n_cont) float32)."""
        import pandas as pd

        df = items if isinstance(items, pd.DataFrame) else pd.DataFrame(list(items))
        missing_questions = [q for q in self.questions if q not in df]
        if missing_questions:
            raise TabularInputError(f"the answers lack the question {missing_questions[0]!r} this model was trained on")
        columns: dict[str, np.ndarray] = {}
        for name in self.cont_names:
            values = pd.to_numeric(df[name], errors="coerce").to_numpy(np.float64)  # (N,)
            if np.isinf(values).any():
                raise TabularInputError(f"the answer to {name!r} is infinite; give a finite number")
            missing = np.isnan(values)
            if missing.any() and name not in self.na_fill:
                raise TabularInputError(f"the answer to {name!r} is missing or not a number, and this model was "
                                        "trained with no missing answers there; give a number")
            if name in self.na_fill:
                values = np.where(missing, self.na_fill[name], values)
                columns[f"{name}_na"] = missing
            columns[name] = (values - self.means[name]) / self.stds[name]
        codes = []
        for name in self.cat_names:
            raw = columns[name] if name in columns else df[name].astype(str).to_numpy()
            # pd.Categorical: index among the known values, -1 for unseen; +1 because "#na#" is code 0
            codes.append(pd.Categorical(raw, categories=self.vocab[name][1:]).codes.astype(np.int64) + 1)
        n = len(df)
        cats = np.stack(codes, axis=1) if codes else np.zeros((n, 0), np.int64)  # (N, n_cat)
        conts = np.stack([columns[c] for c in self.cont_names], axis=1) if self.cont_names \
            else np.zeros((n, 0))  # (N, n_cont)
        return torch.from_numpy(cats), torch.from_numpy(conts.astype(np.float32))


def _plain(value: Any) -> Any:
    """A category as a JSON value (numpy scalars -> Python ones; "#na#" and strings unchanged)."""
    return value.item() if isinstance(value, np.generic) else value
