"""Personality traits from the answers given so far, and which question to ask next.

A questionnaire bundle (backend "heads", trained by train.personality_recipe) gives, from any subset of its
items, each trait's calibrated probability of being high. Its network also predicts every unanswered item's
answer, p(answer | answers so far) (its answer heads, trained on the same randomly masked answers), which is
what adaptive questioning needs:

    score(item) = sum over answers a of p(a | answers) x sum over traits of H(p(trait high | answers + (item, a)))

the expected entropy over the five traits after asking the item (nats); the next question is the unanswered
item with the lowest score (greedy expected posterior entropy). One batch of K x L forward passes per choice.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from models.bundle import Bundle, BundleError, load_bundle
from models.prediction import Prediction
from models.questionnaire_inputs import Item, Questionnaire


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of Bernoulli(p), elementwise (0 at p = 0 or 1)."""
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return -(q * np.log(q) + (1 - q) * np.log(1 - q))


def expected_entropy(bundle: Bundle, x: np.ndarray) -> np.ndarray:
    """(N, K) expected total trait entropy after asking each item, for N people's encoded answers x (N, 2K);
    +inf for items already answered."""
    qn: Questionnaire = bundle.questionnaire
    n, k, levels = len(x), len(qn.items), qn.n_levels
    p_answer = bundle.answer_probs(x)  # (N, K, L)
    candidates = np.repeat(x[:, None, None, :], levels, axis=2).repeat(k, axis=1)  # (N, K, L, 2K)
    item_idx = np.arange(k)
    values = qn.centre(np.arange(qn.scale[0], qn.scale[1] + 1, dtype=np.float32))  # (L,)
    candidates[:, item_idx, :, item_idx] = values  # answer a to item j: its centred value ...
    candidates[:, item_idx, :, k + item_idx] = 1.0  # ... and its mask bit
    p_high = bundle.head_probs(candidates.reshape(n * k * levels, 2 * k)).reshape(n, k, levels, -1)  # (N, K, L, H)
    score = (p_answer * binary_entropy(p_high).sum(axis=-1)).sum(axis=-1)  # (N, K)
    return np.where(x[:, k:] > 0, np.inf, score)


def simulate_adaptive(bundle: Bundle, values: np.ndarray, n_questions: int, batch: int = 128
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Ask people whose answers to every item are known (values (N, K) on the scale) adaptively, one item at a
    time -> (asked (N, n) item indices in order, p_high (N, n, H) after each answer)."""
    qn: Questionnaire = bundle.questionnaire
    n, k = values.shape
    asked = np.zeros((n, n_questions), int)
    p_high = np.zeros((n, n_questions, len(bundle.heads)))
    for start in range(0, n, batch):
        rows = slice(start, min(start + batch, n))
        answered = np.zeros((rows.stop - rows.start, k), bool)
        for step in range(n_questions):
            x = qn.encode_matrix(values[rows], answered)
            choice = expected_entropy(bundle, x).argmin(axis=1)  # (B,)
            answered[np.arange(len(choice)), choice] = True
            asked[rows, step] = choice
            p_high[rows, step] = bundle.head_probs(qn.encode_matrix(values[rows], answered))
    return asked, p_high


class PersonalityModel:
    """A loaded questionnaire bundle with the page's two questions: what are the traits now, what to ask next."""

    def __init__(self, bundle: Bundle):
        if bundle.backend != "heads" or bundle.questionnaire is None:
            raise BundleError(f"{bundle.root} is a {bundle.task} model, not a questionnaire model with trait heads")
        self.bundle = bundle
        self.questionnaire: Questionnaire = bundle.questionnaire

    @classmethod
    def load(cls, path: Any) -> "PersonalityModel":
        return cls(load_bundle(path))

    @property
    def traits(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.bundle.heads)

    def predict(self, answers: Mapping[str, Any]) -> dict[str, Prediction]:
        """{trait: Prediction over ("low", "high")} from any answers so far (none is fine: the population prior)."""
        return self.bundle.head_predictions([dict(answers)])[0]

    def next_question(self, answers: Mapping[str, Any]) -> Item | None:
        """The unanswered item that most reduces the expected trait entropy; None when every item is answered."""
        checked = self.questionnaire.check(answers)
        if len(checked) == len(self.questionnaire.items):
            return None
        score = expected_entropy(self.bundle, self.questionnaire.encode([checked]))[0]  # (K,)
        return self.questionnaire.items[int(np.argmin(score))]

    def short_form(self) -> tuple[Item, ...]:
        """The fixed short form's items, in asking order."""
        return tuple(self.questionnaire.item(i) for i in self.questionnaire.short_form)
