"""The default sign-letter model: a hand-landmark learner and a cropped-hand pixel learner, compared honestly.

Two questions decide what to ship: how well does a model do on a person it has never seen (cross-signer),
and how much better does it look when validated on the person it was trained on (same-signer)? The gap is
the leakage the lesson warns about.

- cross-signer: train on `asl_other_signers` (Massey hand1..hand5 + ASL2Text phone photos), validate on
  held-out signers (grouped split, for calibration), test once on the evaluation signer (nobody in common);
- same-signer: train on `asl_alphabet_train` (one signer, video frames), validate on contiguous blocks of
  frame numbers (never random frames: neighbouring frames are near-duplicates).

Hands are found by mediapipe's hand landmarker (IMAGE mode, one hand, the live pipeline's confidence
thresholds); images smaller than `DETECT_MIN_SIDE_PX` are upscaled first. Landmarks, boxes and hand crops
are cached under `$LIVELEARNER_HOME/cache`, so reruns skip detection.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.datasets import cache_dir, folder_key, labelled_files

DETECT_MIN_SIDE_PX = 256  # smaller images (the 64x64 Kaggle frames) are upscaled (cubic) before detection
CROP_MARGIN = 0.25  # hand crop: landmark box grown by this fraction of its longer side on every side
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass
class HandSet:
    """Images of one folder with what mediapipe found in them."""

    files: list[Path]
    labels: np.ndarray  # (N,) str
    groups: np.ndarray  # (N,) str: signer, or frame number as text for one-signer video frames
    features: np.ndarray  # (N, 63) float32, NaN rows where no hand was found
    boxes: np.ndarray  # (N, 4) int: square crop (x0, y0, x1, y1) in original pixels; whole image if no hand
    crops: list[Path]  # (N,) cached 128x128 RGB crops (whole image, squashed, where no hand was found)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.features[:, 0])

    def subset(self, mask: np.ndarray) -> "HandSet":
        idx = np.flatnonzero(mask)
        return HandSet([self.files[i] for i in idx], self.labels[idx], self.groups[idx], self.features[idx],
                       self.boxes[idx], [self.crops[i] for i in idx])


def _read_groups(root: Path, files: list[Path]) -> np.ndarray:
    """Signer (or Kaggle frame number) of each file from the folder's labels.csv; "unknown" without one."""
    table = root / "labels.csv"
    by_path: dict[str, str] = {}
    if table.exists():
        with table.open(newline="") as f:
            for row in csv.DictReader(f):
                group = row.get("signer") or row.get("kaggle_frame_number") or "unknown"
                by_path[row["path"]] = group
    return np.array([by_path.get(f"{f.parent.name}/{f.name}", "unknown") for f in files])


def detect_hands(root: Path, crop_size_px: int = 128, log=print) -> HandSet:
    """Run the hand landmarker over a `LETTER/*.jpg` folder (cached)."""
    import cv2

    from capture.images import read_image_rgb
    from models.faces import crop_square
    from models.hands import HandSettings, landmark_features, load_hand_landmarks

    root = Path(root)
    files, labels = labelled_files(root)
    key = folder_key(root, files, f"hands-v1-{DETECT_MIN_SIDE_PX}-{CROP_MARGIN}-{crop_size_px}")
    folder = cache_dir() / f"hands-{key}"
    index = folder / "hands.npz"
    if not index.exists():
        started = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        feats = np.full((len(files), 63), np.nan, np.float32)
        boxes = np.zeros((len(files), 4), np.int32)
        detector = load_hand_landmarks(HandSettings(max_hands=1, video_mode=False))
        try:
            for i, f in enumerate(files):
                rgb = read_image_rgb(f)  # (H, W, 3) uint8; ImageError names a bad or oversized file
                h, w = rgb.shape[:2]
                scale = max(1.0, DETECT_MIN_SIDE_PX / min(h, w))
                big = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC) \
                    if scale > 1 else rgb
                hands = detector.detect(np.ascontiguousarray(big))
                box = (0, 0, w, h)
                if hands:
                    try:
                        feats[i] = landmark_features(hands[0])
                    except ValueError:
                        pass  # degenerate landmarks: counted as not found
                    else:
                        box = _square_box(np.array(hands[0].box) / scale, CROP_MARGIN)
                boxes[i] = box
                crop = crop_square(rgb, box, crop_size_px, upscale=cv2.INTER_CUBIC)  # (size, size, 3)
                cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        finally:
            detector.close()
        np.savez(folder / "hands.tmp.npz", features=feats, boxes=boxes)
        (folder / "hands.tmp.npz").replace(index)
        log(f"hands: {root.name}: {int((~np.isnan(feats[:, 0])).sum())}/{len(files)} found "
            f"in {time.perf_counter() - started:.0f} s")
    with np.load(index) as z:
        feats, boxes = z["features"], z["boxes"]
    crops = [folder / f"{i:05d}.png" for i in range(len(files))]
    return HandSet(files, np.array(labels), _read_groups(root, files), feats, boxes, crops)


def _square_box(box: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))


def contiguous_block_split(labels: np.ndarray, frames: np.ndarray, n_blocks: int = 5, fold: int = 2,
                           gap_frames: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per class, frames sorted by number are cut into `n_blocks` contiguous blocks; block `fold` validates.

    Training frames within `gap_frames` of a validation frame of the same class are dropped (a buffer).
    """
    frames = frames.astype(int)
    train, valid = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort(frames[idx], kind="stable")]
        blocks = np.array_split(idx, n_blocks)
        v = blocks[fold]
        lo, hi = frames[v].min() - gap_frames, frames[v].max() + gap_frames
        t = [i for k, b in enumerate(blocks) if k != fold for i in b if not lo <= frames[i] <= hi]
        train.extend(t)
        valid.extend(v)
    return np.sort(np.array(train)), np.sort(np.array(valid))


@dataclass(frozen=True)
class SignRecipe:
    """Settings of the sign comparison and of the shipped sign model (defaults reproduce it)."""

    data: Path  # the training data folder holding asl_other_signers/ and asl_alphabet_train/
    out: Path  # the shipped bundle (the better learner, trained on other signers) is written here
    overwrite: bool = False  # move an existing `out` aside (OUT.replaced-DATE-TIME) instead of refusing
    eval_data: Path | None = None  # a LETTER/*.jpg folder of a new signer, measured once at the end
    landmark_epochs: int = 40
    landmark_hidden: tuple[int, ...] = (256, 128)
    landmark_dropout: float = 0.2
    pixel_epochs: int = 5  # 1 frozen + the rest unfrozen
    pixel_size_px: int = 96
    valid_frac: float = 0.2  # grouped (by signer) validation share, for calibration
    same_signer_blocks: int = 5  # contiguous frame blocks per class; one validates
    seed: int = 0

    def __post_init__(self) -> None:
        from train.fit import MAX_EPOCHS, check_range

        check_range("landmark epochs", self.landmark_epochs, 1, MAX_EPOCHS)
        check_range("pixel epochs", self.pixel_epochs, 1, MAX_EPOCHS)
        check_range("validation share", self.valid_frac, 0, 0.9, low_open=True)
        check_range("same-signer blocks", self.same_signer_blocks, 2, 100)


@dataclass
class SignRun:
    """One learner trained on one training set, validated, and (optionally) tested."""

    learner_kind: str  # "landmarks" | "pixels"
    setting: str  # "cross-signer" | "same-signer"
    bundle: Path
    valid: dict  # accuracy estimate, n
    test: dict | None  # accuracy over all test images, over detected hands, detection rate
    seconds: float


def _fit_and_bundle(kind: str, hs: HandSet, train_idx: np.ndarray, valid_idx: np.ndarray, classes: list[str],
                    recipe: SignRecipe, out: Path, card_extra: dict) -> tuple[Path, dict, float]:
    """Train one learner with the trainer's steps (fit_and_validate, assess, write_bundle); this recipe adds
    only the data (landmark vectors or hand crops) and the settings."""
    import torch

    from train.datablocks import LearnerSettings, build_learner
    from train.evidence import accuracy
    from train.fit import FitSettings
    from train.trainer import assess, fit_and_validate, write_bundle

    torch.manual_seed(recipe.seed)
    task = "landmarks" if kind == "landmarks" else "image"
    if kind == "landmarks":
        x: Any = hs.features
        settings = LearnerSettings(hidden=recipe.landmark_hidden, dropout=recipe.landmark_dropout)
        fit = FitSettings(epochs=recipe.landmark_epochs, progress=False, seed=recipe.seed)
    else:
        x = [str(p) for p in hs.crops]
        settings = LearnerSettings(image_size_px=recipe.pixel_size_px, batch_size=32, flip=True)
        fit = FitSettings(epochs=recipe.pixel_epochs, progress=False, seed=recipe.seed)
    learn, backend, spec = build_learner(task, x, list(hs.labels), train_idx, valid_idx, settings, classes=classes)
    fitted = fit_and_validate(learn, task, fit)
    assessment = assess(fitted.logits, fitted.targets, fitted.curves, n_classes=len(classes), n_train=len(train_idx),
                        coverage=0.9, plots_dir=out.parent / f".{out.name}-plots", title=kind)
    valid = accuracy(fitted.logits.argmax(1) == fitted.targets)
    if kind == "landmarks":
        spec = {**spec, "features": "hand_invariant_v1"}
    else:
        spec = {**spec, "crop": f"hand landmark box grown by {CROP_MARGIN} of its side on every side, square"}
    card = {"metrics": {"validation_accuracy": valid.to_dict()}, "curves": fitted.curves.to_dict(),
            "n_train": int(len(train_idx)), "n_valid": int(len(valid_idx)), "train_seconds": round(fitted.seconds, 1),
            "counts": {"class": {c: int((hs.labels[train_idx] == c).sum()) for c in classes}}, **card_extra}
    # `out` is this recipe's own working folder under the cache: a rerun replaces it (the old one is moved aside)
    if card_extra.get("setting") == "same-signer":
        fitted_on = "held-out blocks of video frames of the training signer"
    else:
        signers = sorted({str(g) for g in hs.groups[valid_idx]})
        fitted_on = f"{len(signers)} held-out validation signers ({', '.join(signers)})"
    path = write_bundle(out, task=task, backend=backend, classes=classes, learner=learn, assessment=assessment,
                        input_spec=spec, card=card, overwrite=True, calibrated_on=fitted_on)
    return path, {"accuracy": valid.to_dict(), "calibration": assessment.calibration.to_dict(),
                  "diagnosis": assessment.diagnosis.name}, fitted.seconds


def score_on(bundle_path: Path, kind: str, hs: HandSet) -> dict:
    """Accuracy of a bundle on a test HandSet: over all images (no hand found = wrong for landmarks), over
    the images where a hand was found, and the detection rate; each with a Wilson 95% interval."""
    from models.bundle import load_bundle
    from train.calibration import ece, empirical_coverage
    from train.evidence import accuracy, wilson_interval

    bundle = load_bundle(bundle_path)
    known = np.isin(hs.labels, bundle.classes)
    hs = hs.subset(known)
    found = hs.found
    y = np.array([bundle.classes.index(c) for c in hs.labels])
    correct = np.zeros(len(y), bool)
    probs = np.full((len(y), len(bundle.classes)), 1.0 / len(bundle.classes))
    if kind == "landmarks":
        if found.any():
            probs[found] = bundle.predict_probs(hs.features[found])
        correct[found] = probs[found].argmax(1) == y[found]
    else:
        probs = bundle.predict_probs([str(p) for p in hs.crops])
        correct = probs.argmax(1) == y
    return {"n": int(len(y)), "detection_rate": wilson_interval(int(found.sum()), len(y)).to_dict(),
            "accuracy_all": accuracy(correct).to_dict(),
            "accuracy_detected": accuracy(correct[found]).to_dict(),
            "ece_detected": float(ece(probs[found], y[found])) if found.any() else None,
            "set_coverage_detected": (empirical_coverage(probs[found], y[found], bundle.conformal_qhat)[0]
                                      if found.any() and bundle.conformal_qhat is not None else None),
            "correct": correct.tolist()}


def compare_sign_learners(recipe: SignRecipe, work: Path, log=print) -> dict:
    """Both learners in both settings; returns every figure (and writes one bundle per run under `work`)."""
    other = detect_hands(Path(recipe.data) / "asl_other_signers", log=log)
    alph = detect_hands(Path(recipe.data) / "asl_alphabet_train", log=log)
    alph = alph.subset(np.isin(alph.labels, LETTERS))  # the letters both settings share
    test = detect_hands(recipe.eval_data, log=log) if recipe.eval_data else None
    classes = sorted(set(other.labels))
    from train.splits import grouped_split
    from train.evidence import wilson_interval

    cross = grouped_split(list(other.labels), list(other.groups), group_by="signer", valid_frac=recipe.valid_frac,
                          seed=recipe.seed)
    same_train, same_valid = contiguous_block_split(alph.labels, alph.groups, recipe.same_signer_blocks,
                                                    fold=recipe.same_signer_blocks // 2)
    figures: dict = {"detection": {
        name: wilson_interval(int(hs.found.sum()), len(hs.files)).to_dict()
        for name, hs in (("asl_other_signers", other), ("asl_alphabet_train_AZ", alph)) + ((("eval", test),) if test else ())}}
    figures["cross_split"] = (f"grouped by signer; validation signers "
                              f"{', '.join(sorted(str(g) for g in set(other.groups[cross.valid_idx])))}")
    figures["same_split"] = (f"asl_alphabet_train A-Z, {recipe.same_signer_blocks} contiguous frame blocks per class, "
                             f"the middle one validates ({len(same_train)} train / {len(same_valid)} validation)")
    runs = {}
    for kind in ("landmarks", "pixels"):
        for setting, hs, tr, va in (("cross-signer", other, cross.train_idx, cross.valid_idx),
                                    ("same-signer", alph, same_train, same_valid)):
            if kind == "landmarks":  # only frames with a hand can be learned from
                tr, va_fit = tr[hs.found[tr]], va[hs.found[va]]
            else:
                va_fit = va
            out = work / f"{kind}-{setting}"
            log(f"{kind} {setting}: training on {len(tr)}, validating on {len(va_fit)}")
            bundle, valid, seconds = _fit_and_bundle(
                kind, hs, tr, va_fit, classes, recipe, out,
                {"setting": setting, "split": figures["cross_split" if setting == "cross-signer" else "same_split"]})
            run = {"bundle": str(bundle), "seconds": round(seconds, 1), "validation": valid,
                   "validation_all_images": score_on(bundle, kind, hs.subset(np.isin(np.arange(len(hs.files)), va)))}
            if test is not None:
                run["eval_signer"] = score_on(bundle, kind, test)
            for key in ("validation_all_images", "eval_signer"):
                if key in run:
                    a = run[key]["accuracy_all"]
                    log(f"  {kind} {setting} {key}: accuracy {a['value']:.3f} [{a['low']:.3f}, {a['high']:.3f}] "
                        f"(n={a['n']}), on detected hands {run[key]['accuracy_detected']['value']:.3f}")
            runs[f"{kind}/{setting}"] = run
    figures["runs"] = runs
    return figures


def retrain_sign(recipe: SignRecipe, log=print) -> Path:
    """Compare the learners, ship the better one on held-out SIGNERS (validation, not the evaluation signer),
    with a card giving every figure; the evaluation signer (if given) is measured once and reported."""
    from train.bundle_writer import check_out_free

    if not recipe.overwrite:
        check_out_free(recipe.out)  # refused now, not after the comparison
    figures = compare_sign_learners(recipe, cache_dir() / "sign-runs", log=log)
    return ship_sign(recipe, figures, log=log)


def ship_sign(recipe: SignRecipe, figures: dict, log=print) -> Path:
    """Copy the better cross-signer bundle of `figures` (from `compare_sign_learners`) to `recipe.out`,
    its card extended with the whole comparison."""
    import os
    import shutil

    from train.bundle_writer import aside_path, check_out_free, render_card_md

    if not recipe.overwrite:
        check_out_free(recipe.out)

    runs = figures["runs"]
    # The live pipeline classifies only frames where the landmarker found a hand (and the pixel learner needs
    # that hand's box for its crop), so the learners are compared on held-out signers' images with a hand.
    score = {kind: runs[f"{kind}/cross-signer"]["validation_all_images"]["accuracy_detected"]["value"]
             for kind in ("landmarks", "pixels")}
    best = max(score, key=score.get)
    log(f"held-out-signer accuracy (images with a hand found): {score}; shipping the {best} learner")
    src = Path(runs[f"{best}/cross-signer"]["bundle"])
    tmp = recipe.out.with_name(f".{recipe.out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    card = json.loads((tmp / "card.json").read_text())
    for run in runs.values():
        for key in ("validation_all_images", "eval_signer"):
            run.get(key, {}).pop("correct", None)
    card.update(_sign_card(recipe, figures, best))
    new_person = _new_person_calibration(runs[f"{best}/cross-signer"].get("eval_signer"), card["calibration"])
    if new_person:  # measured on data it was not fitted on: said on the card and by every Prediction
        spec = json.loads((tmp / "bundle.json").read_text())
        spec["calibration"] = card["calibration"]["text"] = f"{card['calibration']['text']}; on {new_person}"
        card["calibration"]["new_person"] = f"{new_person} (evaluation data: measured once, never fitted on)."
        (tmp / "bundle.json").write_text(json.dumps(spec, indent=2))
    (tmp / "card.json").write_text(json.dumps(card, indent=2))
    (tmp / "card.md").write_text(render_card_md(card) + _sign_card_md(card))
    if recipe.out.exists():  # checked up front unless overwrite: never deleted, moved aside
        aside = aside_path(recipe.out)
        os.replace(recipe.out, aside)
        log(f"the folder that was at {recipe.out} was moved to {aside} (nothing deleted)")
    tmp.replace(recipe.out)
    log(f"bundle written to {recipe.out}")
    return recipe.out


def _sign_card(recipe: SignRecipe, figures: dict, best: str) -> dict:
    runs = figures["runs"]
    cross = runs[f"{best}/cross-signer"]
    same = runs[f"{best}/same-signer"]
    gap = {}
    if "eval_signer" in cross:
        for key in ("accuracy_all", "accuracy_detected"):
            gap[key] = same["validation_all_images"][key]["value"] - cross["eval_signer"][key]["value"]
    return {
        "name": "livelearner-sign",
        "learner": best,
        "data": {"train": str(Path(recipe.data) / "asl_other_signers"),
                 "signers": "Massey hand1..hand5 (black background, 400x400) + ASL2Text phone photos (224x224)",
                 "classes": "A-Z (J and Z as still frames)",
                 "licence": "Massey: research use (cite Barczak et al. 2011); ASL2Text: Apache-2.0; "
                            "Kaggle ASL Alphabet (same-signer comparison only): GPL-2.0"},
        "split": figures["cross_split"],
        "selection": "the learner with the higher accuracy on held-out signers' images where a hand was found is "
                     "shipped (the live pipeline only classifies frames with a hand); the evaluation signer was "
                     "not used to choose",
        "comparison": figures,
        "same_vs_cross_signer_gap": gap,
        "new_person": _new_person_text(cross, same, best),
        "reproduce": f"livelearner train-default sign --data {recipe.data} --out {recipe.out}"
                     + (f" --eval {recipe.eval_data}" if recipe.eval_data else ""),
    }


def _new_person_calibration(eval_signer: dict | None, calibration: dict) -> str | None:
    """The calibration error and set coverage on the evaluation signer's found hands, in words (None: not measured)."""
    if not eval_signer or eval_signer.get("ece_detected") is None:
        return None
    n = eval_signer["accuracy_detected"]["n"]
    text = f"a new person (the evaluation signer, {n} found hands): ECE {eval_signer['ece_detected']:.2f}"
    if eval_signer.get("set_coverage_detected") is not None:
        text += f", {calibration.get('coverage', 0.9):.0%} sets cover {eval_signer['set_coverage_detected']:.3f}"
    return text


def _new_person_text(cross: dict, same: dict, best: str) -> str:
    def fmt(e: dict) -> str:
        return f"{e['value']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"

    cv = cross["validation_all_images"]
    text = (f"On signers it never saw (held-out signers of its own data, studio photos) it is right on "
            f"{fmt(cv['accuracy_detected'])} of the images where a hand was found ({fmt(cv['accuracy_all'])} of all "
            f"images).")
    if "eval_signer" in cross:
        ev = cross["eval_signer"]
        text += (f" On a new person in a new room (the evaluation signer, 64x64 webcam frames) it is right on "
                 f"{fmt(ev['accuracy_all'])} of all images; mediapipe found a hand in "
                 f"{fmt(ev['detection_rate'])} of them, and on those it is right on {fmt(ev['accuracy_detected'])}.")
    sv = same["validation_all_images"]
    text += (f" Trained and validated on one person (held-out blocks of video frames), the same learner is right "
             f"on {fmt(sv['accuracy_detected'])} of the frames with a hand found ({fmt(sv['accuracy_all'])} of all "
             f"frames: small 64x64 frames often hide the hand from the detector). Expect a new person to get far "
             f"less than a same-person score suggests. Record a few examples of each letter from the people who "
             f"will use it and retrain (`livelearner train --task landmarks`) for real use.")
    return text


def _sign_card_md(card: dict) -> str:
    lines = ["", "## Cross-signer vs same-signer (hand landmarks vs cropped-hand pixels)", "",
             "| learner / setting | held-out validation (all images) | evaluation signer (all) | "
             "evaluation signer (hands found) | detection rate |", "|---|---|---|---|---|"]

    def fmt(e: dict | None) -> str:
        return "-" if not e else f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}] n={e['n']}"

    for name, run in card["comparison"]["runs"].items():
        ev = run.get("eval_signer") or {}
        lines.append(f"| {name} | {fmt(run['validation_all_images']['accuracy_all'])} | "
                     f"{fmt(ev.get('accuracy_all'))} | {fmt(ev.get('accuracy_detected'))} | "
                     f"{fmt(ev.get('detection_rate'))} |")
    lines += ["", f"Shipped: **{card['learner']}** ({card['selection']}).", "", "## On a new person",
              card["new_person"], ""]
    return "\n".join(lines) + "\n"
