"""Training with the curves recorded: loss and accuracy per epoch, on training AND validation data.

`CurveRecorder` is a fastai Callback: during each epoch it averages the loss and accuracy of the
training batches (as the model saw them, with augmentation and dropout) and, after the epoch, of
the validation batches. `fit_learner` trains (fine-tuning for images: head first, then everything)
and returns the `Curves`; `plot_curves` draws them to a PNG; `valid_logits` gives the validation
logits for calibration.
"""
from __future__ import annotations

import random
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback  # noqa: F401  (adds Learner.no_bar)
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle, fine_tune)


@dataclass(frozen=True)
class FitSettings:
    epochs: int | None = None  # None: the task's default (DEFAULT_EPOCHS)
    lr: float | None = None  # None: the task's default (DEFAULT_LR)
    freeze_epochs: int = 1  # images: epochs training only the new head before unfreezing the backbone
    weight_decay: float | None = None  # None: fastai's default
    progress: bool = True  # fastai progress bars (off in tests and the app)
    seed: int = 0


DEFAULT_EPOCHS = {"image": 2, "landmarks": 30, "text": 30, "tabular": 20}
DEFAULT_LR = {"image": 2e-3, "landmarks": 1e-2, "text": 1e-2, "tabular": 1e-2}


@dataclass
class Curves:
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    valid_accuracy: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


class CurveRecorder(Callback):
    """Per-epoch mean loss and accuracy on training batches and on the validation set."""

    order = 55  # after fastai's Recorder has the loss

    def __init__(self):
        self.curves = Curves()

    def before_epoch(self):
        self._sums = {True: [0.0, 0, 0], False: [0.0, 0, 0]}  # training? -> [loss sum, correct, count]

    def after_batch(self):
        y = self.yb[0] if self.yb else None
        if y is None or self.pred is None:
            return
        n = int(y.shape[0])
        s = self._sums[bool(self.training)]
        s[0] += float(self.loss.detach()) * n
        s[1] += int((self.pred.detach().argmax(dim=-1) == y).sum())
        s[2] += n

    def after_epoch(self):
        for training, (loss_list, acc_list) in ((True, (self.curves.train_loss, self.curves.train_accuracy)),
                                                (False, (self.curves.valid_loss, self.curves.valid_accuracy))):
            total, correct, n = self._sums[training]
            loss_list.append(total / n if n else float("nan"))
            acc_list.append(correct / n if n else float("nan"))


def fit_learner(learn: Any, task: str, settings: FitSettings = FitSettings()) -> Curves:
    """Train `learn` (which must carry a CurveRecorder) and return its curves."""
    rec = next((cb for cb in learn.cbs if isinstance(cb, CurveRecorder)), None)
    if rec is None:
        rec = CurveRecorder()
        learn.add_cb(rec)
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    epochs = settings.epochs or DEFAULT_EPOCHS[task]
    lr = settings.lr or DEFAULT_LR[task]
    wd = {} if settings.weight_decay is None else {"wd": settings.weight_decay}
    threads = torch.get_num_threads()
    if task != "image":  # tiny matrices: one thread is ~10x faster than several fighting over busy cores
        torch.set_num_threads(1)
    with ExitStack() as stack:
        stack.callback(torch.set_num_threads, threads)
        if not settings.progress:
            stack.enter_context(learn.no_bar())
            stack.enter_context(learn.no_logging())
        if task == "image":
            learn.fine_tune(max(epochs - settings.freeze_epochs, 1), base_lr=lr,
                            freeze_epochs=settings.freeze_epochs, **wd)
        else:
            learn.fit_one_cycle(epochs, lr, **wd)
    return rec.curves


def valid_logits(learn: Any) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float64, targets (N,) int) on the learner's validation set."""
    with learn.no_bar(), learn.no_logging():
        logits, targets = learn.get_preds(ds_idx=1, act=_identity)
    return logits.double().numpy(), targets.long().numpy().reshape(-1)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def plot_curves(curves: Curves, path: str | Path, title: str = "Learning curves") -> Path:
    """Loss (left) and accuracy (right) per epoch, training vs validation, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = np.arange(1, curves.epochs + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.plot(ep, curves.train_loss, "o-", label="training")
    ax1.plot(ep, curves.valid_loss, "s-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss (cross-entropy)", title="loss")
    ax2.plot(ep, curves.train_accuracy, "o-", label="training")
    ax2.plot(ep, curves.valid_accuracy, "s-", label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="metric", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
