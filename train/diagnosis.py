"""Read the learning curves like the lesson does, and say what to do next.

From per-epoch training and validation losses, `diagnose` names one of six cases:

    underfit-capacity              training loss stays high and flat: the model cannot fit the data
    underfit-needs-more-training   both losses still falling at the last epoch
    training-set-too-small         both improved, but a large gap remains between them
    validation-unrepresentative    validation loss jumps around, or sits well below the training loss
    overfitting                    validation loss reached a minimum and then rose while training fell
    good-fit                       both fell and levelled off together, with a small gap

Losses are compared on the scale of the chance-level loss (log of the number of classes for
cross-entropy) so the same thresholds work for any task. Thresholds are named constants below.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

NAMES = ("underfit-capacity", "underfit-needs-more-training", "training-set-too-small",
         "validation-unrepresentative", "overfitting", "good-fit")

HIGH_TRAIN_LOSS = 0.45  # training loss above this share of chance level = cannot fit the data
STILL_FALLING = 0.06  # a fall larger than this (share of chance level) over the last third = not converged
RISE_AFTER_MIN = 0.06  # validation rising this much above its minimum = overfitting
LARGE_GAP = 0.2  # validation minus training loss above this = training set too small / unrepresentative
NOISY_VALID = 0.05  # mean wiggle of the validation curve around its 3-epoch average
VALID_BELOW = 0.12  # validation loss this far below training loss = validation set too easy

ADVICE = {
    "underfit-capacity": "The model cannot fit even its training data. Give it more capacity or better "
    "inputs: a bigger model or more hidden units, unfreeze the pretrained layers, less regularisation "
    "(dropout, weight decay); and check that the labels can be told apart from the input at all.",
    "underfit-needs-more-training": "Both losses were still falling when training stopped: train for "
    "more epochs (or with a higher learning rate) until the validation loss levels off.",
    "training-set-too-small": "Both losses improved but a large gap remains: the training set is too small "
    "or does not represent the validation cases. Record more examples (more people, sessions, lighting), "
    "use augmentation, and keep the validation set unchanged so scores stay comparable.",
    "validation-unrepresentative": "The validation loss is noisy or lower than the training loss: the "
    "validation set is too small or too easy to tell you much. Use a larger validation set (more people, "
    "grouped by person) or several folds, and do not trust this score yet.",
    "overfitting": "The validation loss reached its best and then rose while the training loss kept falling: "
    "the model is memorising the training examples. Stop at the best epoch (early stopping), add data or "
    "augmentation, add regularisation (dropout, weight decay) or use a smaller model.",
    "good-fit": "Training and validation losses fell and levelled off together with a small gap. Keep this "
    "model, and confirm it once on the locked test set.",
}


@dataclass(frozen=True)
class Diagnosis:
    name: str  # one of NAMES
    explanation: str  # what in the curves led to it, with numbers
    advice: str  # what the lesson says to do
    evidence: dict[str, float] = field(default_factory=dict)  # the measured quantities

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name}: {self.explanation}\n  advice: {self.advice}"


def diagnose(train_loss: Sequence[float], valid_loss: Sequence[float], *, n_classes: int | None = None,
             n_train: int | None = None, n_valid: int | None = None, chance_loss: float | None = None) -> Diagnosis:
    """Name the case shown by per-epoch losses (train loss averaged over the epoch, valid at its end).
    chance_loss: the loss of a model that knows nothing, when it is not log(n_classes) (a combined loss)."""
    tr, va = np.asarray(train_loss, dtype=float), np.asarray(valid_loss, dtype=float)
    if len(tr) != len(va) or len(tr) == 0:
        raise ValueError(f"need one training and one validation loss per epoch, got {len(tr)} and {len(va)}")
    if not (np.all(np.isfinite(tr)) and np.all(np.isfinite(va))):
        return _make("underfit-capacity", "the loss became infinite or NaN: training diverged "
                     "(lower the learning rate)", {})
    scale = chance_loss or (math.log(n_classes) if n_classes and n_classes > 1 else max(tr.max(), va.max(), 1e-8))
    tr_s, va_s = tr / scale, va / scale  # losses as a share of the chance-level loss
    epochs = len(tr)
    if epochs < 3:
        return _make("underfit-needs-more-training", f"only {epochs} epoch(s): too few to read a curve; "
                     "train at least 3", {"epochs": epochs})
    k = max(2, epochs // 3)  # tail length
    tr_end, va_end = tr_s[-2:].mean(), va_s[-2:].mean()
    tr_fall = tr_s[-k] - tr_s[-1]
    va_fall = va_s[-k] - va_s[-1]
    best = int(np.argmin(va_s))
    rise = va_s[-1] - va_s[best]
    gap = va_end - tr_end
    smooth = np.convolve(va_s, np.ones(3) / 3, mode="valid")
    wiggle_va = float(np.abs(va_s[1:-1] - smooth).mean())
    wiggle_tr = float(np.abs(tr_s[1:-1] - np.convolve(tr_s, np.ones(3) / 3, mode="valid")).mean())
    ev = {"epochs": epochs, "train_end": float(tr_end), "valid_end": float(va_end), "gap": float(gap),
          "train_fall_tail": float(tr_fall), "valid_fall_tail": float(va_fall), "best_epoch": best + 1,
          "valid_rise_after_best": float(rise), "valid_wiggle": wiggle_va, "train_wiggle": wiggle_tr}
    sizes = ""
    if n_train is not None and n_valid is not None:
        ev.update(n_train=n_train, n_valid=n_valid)
        sizes = f" ({n_train} training vs {n_valid} validation examples)"

    if wiggle_va > NOISY_VALID and wiggle_va > 3 * max(wiggle_tr, 1e-3):
        return _make("validation-unrepresentative", f"the validation loss jumps around (mean wiggle "
                     f"{wiggle_va:.2f} of chance level vs {wiggle_tr:.2f} for training){sizes}", ev)
    if -gap > VALID_BELOW:
        return _make("validation-unrepresentative", f"the validation loss ends {-gap:.2f} (share of chance "
                     f"level) below the training loss: the validation examples look easier than the training "
                     f"ones (heavy augmentation or dropout can also do this){sizes}", ev)
    if best <= epochs - 3 and rise > RISE_AFTER_MIN and tr_s[-1] < tr_s[best]:
        return _make("overfitting", f"the validation loss was lowest at epoch {best + 1} and rose by "
                     f"{rise:.2f} (share of chance level) since, while the training loss kept falling", ev)
    if tr_end > HIGH_TRAIN_LOSS and tr_fall <= STILL_FALLING:
        return _make("underfit-capacity", f"the training loss levelled off high, at {tr_end:.2f} of the "
                     f"chance-level loss", ev)
    if tr_fall > STILL_FALLING and va_fall > STILL_FALLING / 2:
        return _make("underfit-needs-more-training", f"over the last {k} epochs the training loss fell by "
                     f"{tr_fall:.2f} and the validation loss by {va_fall:.2f} (share of chance level): "
                     "neither has levelled off", ev)
    if gap > LARGE_GAP:
        return _make("training-set-too-small", f"both curves levelled off with a gap of {gap:.2f} (share of "
                     f"chance level) between validation and training loss{sizes}", ev)
    return _make("good-fit", f"both losses levelled off close together (gap {gap:.2f} of chance level, "
                 f"training loss {tr_end:.2f})", ev)


def _make(name: str, explanation: str, evidence: dict[str, float]) -> Diagnosis:
    return Diagnosis(name, explanation, ADVICE[name], evidence)
