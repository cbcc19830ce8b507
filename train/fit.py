"""Training with the curves recorded: loss and accuracy per epoch, on training AND validation data.

`CurveRecorder` is a fastai Callback: during each epoch it averages the loss and accuracy of the
training batches (as the model saw them, with augmentation and dropout) and, after the epoch, of
the validation batches. `fit_learner` trains (the task's default: fine-tuning for images, head first
then everything; or a schedule of `Stage`s, as the emotion recipe uses) and returns the `Curves`;
`plot_curves` draws them to a PNG; `valid_logits` gives the validation logits for calibration.
"""
from __future__ import annotations

import random
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback  # noqa: F401  (adds Learner.no_bar)
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle, fine_tune)


MAX_EPOCHS = 1000  # more is a typo, not a plan
MAX_LR = 10.0


class SettingsError(ValueError):
    """A training setting out of its range; the message names the setting and the range."""


def check_range(name: str, value: float | None, low: float, high: float, *, low_open: bool = False) -> None:
    """SettingsError unless low <= value <= high (low < value with low_open); None passes (a default applies)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN != NaN
        raise SettingsError(f"{name} must be a number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise SettingsError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class Stage:
    """One one-cycle run of a training schedule."""

    name: str  # shown in the curves and on the card, e.g. "A frozen"
    epochs: int  # the one-cycle schedule is planned over this many epochs ...
    lr: float  # ... with this peak learning rate for the head
    body_lr_div: float = 1.0  # the body's rate is lr / body_lr_div (discriminative rates when > 1)
    frozen: bool = False  # train only the last parameter group (the new head)
    stop_after_epochs: int | None = None  # end the stage early, keeping the schedule planned for `epochs`
    pct_start: float = 0.25  # share of the stage spent warming up (fastai's default)

    def __post_init__(self) -> None:
        check_range(f"stage {self.name} epochs", self.epochs, 1, MAX_EPOCHS)
        check_range(f"stage {self.name} learning rate", self.lr, 0, MAX_LR, low_open=True)
        check_range(f"stage {self.name} body_lr_div", self.body_lr_div, 1, 1e6)
        check_range(f"stage {self.name} stop_after_epochs", self.stop_after_epochs, 1, self.epochs)
        check_range(f"stage {self.name} pct_start", self.pct_start, 0, 1)


@dataclass(frozen=True)
class FitSettings:
    epochs: int | None = None  # None: the task's default (DEFAULT_EPOCHS)
    lr: float | None = None  # None: the task's default (DEFAULT_LR)
    freeze_epochs: int = 1  # images: epochs training only the new head before unfreezing the backbone
    weight_decay: float | None = None  # None: fastai's default
    progress: bool = True  # fastai progress bars (off in tests and the app)
    seed: int = 0
    stages: tuple[Stage, ...] = ()  # a schedule of one-cycle runs instead of the task's default (epochs, lr unused)

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("learning rate", self.lr, 0, MAX_LR, low_open=True)
        check_range("freeze epochs", self.freeze_epochs, 0, MAX_EPOCHS)
        check_range("weight decay", self.weight_decay, 0, 10)


DEFAULT_EPOCHS = {"image": 2, "landmarks": 30, "text": 30, "tabular": 20}
DEFAULT_LR = {"image": 2e-3, "landmarks": 1e-2, "text": 1e-2, "tabular": 1e-2}


@dataclass
class Curves:
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    valid_accuracy: list[float] = field(default_factory=list)
    stage: list[str] = field(default_factory=list)  # the schedule stage of each epoch ("" for the default)
    seconds: list[float] = field(default_factory=list)  # wall-clock time of each epoch

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


class CurveRecorder(Callback):
    """Per-epoch mean loss and accuracy on training batches and on the validation set. A loss function with a
    `count_correct(pred, target) -> (correct, n)` method says itself what counts (e.g. several heads each)."""

    order = 55  # after fastai's Recorder has the loss

    def __init__(self, log: Callable[[str], None] | None = None):
        self.curves = Curves()
        self.stage = ""  # set by fit_learner for each stage of a schedule
        self.log = log  # called with one line per epoch

    def before_epoch(self):
        self._sums = {True: [0.0, 0, 0, 0], False: [0.0, 0, 0, 0]}  # training? -> [loss sum, examples, correct, count]
        self._started = time.perf_counter()

    def after_batch(self):
        y = self.yb[0] if self.yb else None
        if y is None or self.pred is None:
            return
        s = self._sums[bool(self.training)]
        s[0] += float(self.loss.detach()) * int(y.shape[0])
        s[1] += int(y.shape[0])
        counter = getattr(self.learn.loss_func, "count_correct", None)  # several outputs per example
        correct, n = counter(self.pred.detach(), y) if counter else (
            int((self.pred.detach().argmax(dim=-1) == y).sum()), int(y.shape[0]))
        s[2] += correct
        s[3] += n

    def after_epoch(self):
        for training, (loss_list, acc_list) in ((True, (self.curves.train_loss, self.curves.train_accuracy)),
                                                (False, (self.curves.valid_loss, self.curves.valid_accuracy))):
            total, examples, correct, n = self._sums[training]
            loss_list.append(total / examples if examples else float("nan"))
            acc_list.append(correct / n if n else float("nan"))
        c = self.curves
        c.stage.append(self.stage)
        c.seconds.append(time.perf_counter() - self._started)
        if self.log is not None:
            self.log(f"epoch {c.epochs}{' (' + self.stage + ')' if self.stage else ''}: train loss "
                     f"{c.train_loss[-1]:.4f}, valid loss {c.valid_loss[-1]:.4f}, valid accuracy "
                     f"{c.valid_accuracy[-1]:.4f} ({c.seconds[-1]:.0f} s)")


def fit_learner(learn: Any, task: str, settings: FitSettings = FitSettings(),
                log: Callable[[str], None] | None = None) -> Curves:
    """Train `learn` and return its curves (recorded by its CurveRecorder, added if it has none, then
    removed so that later validation passes add no epoch). `log` gets one line per epoch."""
    rec = next((cb for cb in learn.cbs if isinstance(cb, CurveRecorder)), None)
    if rec is None:
        rec = CurveRecorder()
        learn.add_cb(rec)
    rec.log = log
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
        if settings.stages:
            for stage in settings.stages:
                _fit_stage(learn, rec, stage, wd)
        elif task == "image":
            learn.fine_tune(max(epochs - settings.freeze_epochs, 1), base_lr=lr,
                            freeze_epochs=settings.freeze_epochs, **wd)
        else:
            learn.fit_one_cycle(epochs, lr, **wd)
    learn.remove_cb(rec)
    return rec.curves


def _fit_stage(learn: Any, rec: CurveRecorder, stage: Stage, wd: dict[str, float]) -> None:
    rec.stage = stage.name
    if stage.frozen:
        learn.freeze()
    else:
        learn.unfreeze()
    lr = slice(stage.lr / stage.body_lr_div, stage.lr) if stage.body_lr_div != 1 else stage.lr
    cbs = [_StopAfter(stage.stop_after_epochs)] if stage.stop_after_epochs else []
    learn.fit_one_cycle(stage.epochs, lr, pct_start=stage.pct_start, cbs=cbs, **wd)
    learn.unfreeze()


class _StopAfter(Callback):
    """Ends a fit after `n_epochs` epochs, keeping the learning-rate schedule planned for the whole fit."""

    order = 70

    def __init__(self, n_epochs: int):
        self.n_epochs = n_epochs

    def after_epoch(self):
        from fastai.callback.core import CancelFitException

        if self.epoch + 1 >= self.n_epochs:
            raise CancelFitException()


def valid_logits(learn: Any) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float64, targets (N,) int) on the learner's validation set."""
    with learn.no_bar(), learn.no_logging():
        logits, targets = learn.get_preds(ds_idx=1, act=_identity)
    return logits.double().numpy(), targets.long().numpy().reshape(-1)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def plot_curves(curves: Curves, path: str | Path, title: str = "Learning curves") -> Path:
    """Loss (left) and accuracy (right) per epoch, training vs validation, to a PNG."""
    from train.plots import panels, save

    ep = np.arange(1, curves.epochs + 1)
    fig, (ax1, ax2) = panels(2, (4.5, 3.6))
    ax1.plot(ep, curves.train_loss, "o-", label="training")
    ax1.plot(ep, curves.valid_loss, "s-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss (cross-entropy)", title="loss")
    ax2.plot(ep, curves.train_accuracy, "o-", label="training")
    ax2.plot(ep, curves.valid_accuracy, "s-", label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="metric", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path, title)
