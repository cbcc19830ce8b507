"""A questionnaire's items and how answers given so far become the numbers a trait model reads.

Kept as JSON in bundle.json "input" (so inference needs no pickle and the page can show the items):

    {"encoding": "centred_value_and_mask", "scale": [1, 5],
     "items": [{"id": "E1", "trait": "Extraversion", "key": "+", "text": "I am the life of the party."}, ...],
     "traits": ["Extraversion", ...], "short_form": ["E7", "E4", ...]}

Encoding of one person's answers {item id: 1..5}, any subset of the items (missing answers are normal):
(2K,) float32 = K centred answers (x - mid) / half_range in [-1, 1] (0 when unanswered), then K mask bits
(1 = answered), in item order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

ENCODING = "centred_value_and_mask"


class QuestionnaireInputError(ValueError):
    """Answers this questionnaire cannot read (unknown item, answer off the scale); the message says which."""


@dataclass(frozen=True)
class Item:
    id: str  # e.g. "E1"
    trait: str  # the trait it marks, e.g. "Extraversion"
    key: str  # "+": agreeing raises the trait; "-": reverse keyed (scored 6 - x on a 1..5 scale)
    text: str  # the statement shown to the person


@dataclass(frozen=True)
class Questionnaire:
    items: tuple[Item, ...]
    traits: tuple[str, ...]  # the model's heads, in output order
    scale: tuple[int, int] = (1, 5)  # lowest and highest answer (1 = disagree, 5 = agree)
    short_form: tuple[str, ...] = ()  # the fixed short form's item ids, in asking order

    def __post_init__(self) -> None:
        ids = [it.id for it in self.items]
        if len(set(ids)) != len(ids) or not ids:
            raise QuestionnaireInputError("the questionnaire's item ids must be unique and non-empty")
        unknown = sorted(set(self.short_form) - set(ids))
        if unknown:
            raise QuestionnaireInputError(f"the short form names unknown items {unknown}")
        if not self.scale[0] < self.scale[1]:
            raise QuestionnaireInputError(f"the answer scale {self.scale} is empty")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(it.id for it in self.items)

    @property
    def n_levels(self) -> int:
        return self.scale[1] - self.scale[0] + 1

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise QuestionnaireInputError(f"unknown question {item_id!r}; this questionnaire has "
                                      f"{', '.join(self.ids[:5])}, ... ({len(self.items)} in all)")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Questionnaire":
        try:
            if spec.get("encoding") != ENCODING:
                raise ValueError(f"encoding {spec.get('encoding')!r}, this version reads {ENCODING!r}")
            items = tuple(Item(str(it["id"]), str(it["trait"]), str(it["key"]), str(it["text"]))
                          for it in spec["items"])
            low, high = (int(v) for v in spec["scale"])
            return cls(items, tuple(str(t) for t in spec["traits"]), (low, high),
                       tuple(str(i) for i in spec.get("short_form", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise QuestionnaireInputError(f"bundle.json's questionnaire is incomplete ({e}); re-export the bundle") \
                from e

    def to_spec(self) -> dict[str, Any]:
        return {"encoding": ENCODING, "scale": list(self.scale), "traits": list(self.traits),
                "items": [vars(it) for it in self.items], "short_form": list(self.short_form)}

    def check(self, answers: Mapping[str, Any]) -> dict[str, int]:
        """{item id: whole answer on the scale}; QuestionnaireInputError names an unknown item or a bad answer."""
        if not isinstance(answers, Mapping):
            raise QuestionnaireInputError(f"answers must be {{question id: answer}}, got {type(answers).__name__}")
        if len(answers) > len(self.items):
            raise QuestionnaireInputError(f"{len(answers)} answers for {len(self.items)} questions")
        known = set(self.ids)
        out = {}
        for item_id, value in answers.items():
            if item_id not in known:
                self.item(str(item_id)[:40])  # raises, naming the unknown question
            out[item_id] = self.check_answer(value, item_id)
        return out

    def check_answer(self, value: Any, item_id: str = "") -> int:
        """One answer as an int on the scale; QuestionnaireInputError otherwise."""
        low, high = self.scale
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number) or number != round(number) \
                or not low <= number <= high:
            raise QuestionnaireInputError(f"the answer to {item_id or 'the question'} is {str(value)[:40]!r}: "
                                          f"give a whole number from {low} (disagree) to {high} (agree)")
        return int(number)

    def encode(self, answers: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(N, 2K) float32 model input for N people's answers so far (see the module docstring)."""
        index = {item_id: k for k, item_id in enumerate(self.ids)}
        k = len(self.items)
        x = np.zeros((len(answers), 2 * k), np.float32)
        for row, person in enumerate(answers):
            for item_id, value in self.check(person).items():
                x[row, index[item_id]] = self.centre(value)
                x[row, k + index[item_id]] = 1.0
        return x

    def encode_matrix(self, values: np.ndarray, answered: np.ndarray) -> np.ndarray:
        """(N, 2K) model input from (N, K) answers on the scale and an (N, K) bool mask of those given."""
        answered = np.asarray(answered, bool)
        centred = np.where(answered, self.centre(np.asarray(values, np.float32)), 0.0)
        return np.concatenate([centred, answered], axis=1).astype(np.float32)

    def centre(self, value: Any) -> Any:
        """An answer on the scale -> [-1, 1] (the scale's middle -> 0)."""
        low, high = self.scale
        return (value - (low + high) / 2) / ((high - low) / 2)
