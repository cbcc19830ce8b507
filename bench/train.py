"""Benchmark of train/: how long does a team wait, and can it trust the result?

    python -m bench.train --data PATH [--quick] [--image-size PX]

Image part: fine-tune the packaged mobilenet_v2 on 200 images (from PATH if it is a `label/*.jpg`
folder, optionally with labels.csv/samples.csv naming persons; else generated 224-px shape images),
time it (target <= 60 s on a laptop CPU), then on held-out images of the same classes report accuracy,
ECE before/after temperature scaling (fitted on validation only) and conformal coverage vs target.
Landmark part: the landmark MLP on 480 generated vectors (target <= 5 s), the random-vs-grouped gap,
and calibration/coverage on 2000 held-out vectors.
Wall times on a shared machine include waiting for the CPU, so CPU seconds are reported too.
Last line: one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from models.prediction import softmax
from train.calibration import ece, empirical_coverage
from train.datablocks import LearnerSettings, TaskData
from train.fit import FitSettings
from train.samples import IMAGE_SUFFIXES, SampleStore
from train.synthetic import LeakyLandmarks, ShapeImages, fill_store, leaky_landmarks, shape_images
from train.trainer import TrainSettings, train_model

COVERAGE = 0.9


def _image_store(data: Path | None, root: Path, n_train: int, n_held: int, seed: int = 0) -> tuple[SampleStore, str, str]:
    """Store of n_train images + held-out store; returns (train store, held-out store root, source)."""
    store, held = SampleStore(root / "train"), SampleStore(root / "held")
    files = sorted(p for p in data.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES) if data and data.is_dir() else []
    if len(files) >= n_train + n_held // 2:
        meta = next((data / n for n in ("samples.csv", "labels.csv") if (data / n).is_file()), None)
        tmp = SampleStore(root / "all")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmp.import_folder(data, meta_csv=meta)
        samples = tmp.samples("image")
        classes = sorted({s.label for s in samples})
        per_class = max(n_train // min(len(classes), 5), 5)
        chosen = classes[: max(2, n_train // per_class)]  # enough images per class to learn something
        rng = np.random.default_rng(seed)
        for c in chosen:
            mine = [s for s in samples if s.label == c]
            rng.shuffle(mine)
            for k, s in enumerate(mine[: per_class + n_held // len(chosen)]):
                dest = store if k < per_class else held
                dest.add("image", s.label, person=s.person, session=s.session, captured_at=s.captured_at,
                         data=s.path.read_bytes(), suffix=s.path.suffix)
        return store, str(root / "held"), f"{data} ({len(chosen)} classes)"
    per = n_train // (5 * 4)
    fill_store(store, "image", shape_images(ShapeImages(n_persons=5, per_person_class=per, size_px=224)))
    fill_store(held, "image", shape_images(ShapeImages(n_persons=5, per_person_class=max(1, n_held // 20),
                                                       size_px=224, seed=1)))
    return store, str(root / "held"), "generated 224-px shapes (5 persons x 4 classes)"


def _held_out_figures(bundle_path: Path, held: TaskData, temperature: float, qhat: float) -> dict[str, float]:
    from models.bundle import load_bundle
    from train.trainer import items_of

    bundle = load_bundle(bundle_path)
    keep = [i for i, lab in enumerate(held.labels) if lab in bundle.classes]
    held = held.subset(keep)
    logits = bundle.predict_logits(items_of(held))
    y = np.array([bundle.classes.index(lab) for lab in held.labels])
    before, after = softmax(logits), softmax(logits, temperature)
    cov, size = empirical_coverage(after, y, qhat)
    return {"held_out_n": int(len(y)), "held_out_accuracy": float((after.argmax(1) == y).mean()),
            "ece_before": ece(before, y), "ece_after": ece(after, y),
            "conformal_coverage": cov, "conformal_mean_set_size": size}


def bench_images(data: Path | None, quick: bool, image_size_px: int) -> dict[str, float]:
    n_train, n_held = (80, 80) if quick else (200, 200)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        store, held_root, source = _image_store(data, root, n_train, n_held)
        train = TaskData.from_store(store, "image")
        split = "grouped:person" if len(set(train.persons)) >= 2 else "random"
        settings = TrainSettings(task="image", split=split, compare_splits=False, coverage=COVERAGE,
                                 learner=LearnerSettings(image_size_px=96 if quick else image_size_px),
                                 fit=FitSettings(progress=False))
        cpu0 = time.process_time()
        result = train_model(train, settings, out=root / "bundle")
        cpu_s = time.process_time() - cpu0
        held = TaskData.from_store(SampleStore(held_root), "image")
        figs = _held_out_figures(root / "bundle", held, result.calibration.temperature,
                                 result.calibration.conformal_qhat)
    print(f"images: {source}; {len(train)} training images ({split}), trained at "
          f"{settings.learner.image_size_px} px, {result.final.curves.epochs} epochs")
    print(f"  fine-tune time {result.final.seconds:.1f} s wall (target <= 60 s), {result.final.cpu_s:.1f} s CPU "
          f"(both threads); whole run {cpu_s:.1f} s CPU")
    print(f"  validation accuracy {result.score}; diagnosis {result.diagnosis.name}")
    print(f"  held-out ({figs['held_out_n']}): accuracy {figs['held_out_accuracy']:.3f}, ECE "
          f"{figs['ece_before']:.3f} -> {figs['ece_after']:.3f} (T={result.calibration.temperature:.2f}), "
          f"{COVERAGE:.0%} conformal coverage {figs['conformal_coverage']:.3f} (mean set {figs['conformal_mean_set_size']:.2f})")
    return {"image_source": source, "image_train_n": len(train), "image_size_px": settings.learner.image_size_px,
            "image_finetune_wall_s": result.final.seconds, "image_finetune_cpu_s": result.final.cpu_s,
            "image_run_cpu_s": cpu_s,
            "image_valid_accuracy": result.score.value, **{f"image_{k}": v for k, v in figs.items()}}


def bench_landmarks(quick: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        store = SampleStore(Path(tmp) / "lm")
        fill_store(store, "landmarks", leaky_landmarks(LeakyLandmarks(per_person_class=10 if quick else 20)))
        data = TaskData.from_store(store, "landmarks")
        cpu0 = time.process_time()
        result = train_model(data, TrainSettings(task="landmarks", split="grouped:person",
                                                 fit=FitSettings(progress=False)))
        cpu_s = time.process_time() - cpu0
        lk = result.leakage
        # calibration and coverage: an honest single-person task with label noise, 2000 held-out vectors
        cfg = LeakyLandmarks(n_persons=1, per_person_class=650, class_signal=0.7, person_offset=0, quirk=0,
                             label_noise=0.2, dim=63, seed=5)
        rows = list(leaky_landmarks(cfg))
        cal_store = SampleStore(Path(tmp) / "cal")
        fill_store(cal_store, "landmarks", iter(rows[:600]))
        cal = train_model(TaskData.from_store(cal_store, "landmarks"),
                          TrainSettings(task="landmarks", split="random", valid_frac=0.4, compare_splits=False,
                                        fit=FitSettings(progress=False)), out=Path(tmp) / "bundle")
        held = TaskData("landmarks", [r[0] for r in rows[600:]], [r[1] for r in rows[600:]],
                        [r[2] for r in rows[600:]], [r[3] for r in rows[600:]],
                        np.array([r[4] for r in rows[600:]]), [str(i) for i in range(len(rows) - 600)])
        figs = _held_out_figures(Path(tmp) / "bundle", held, cal.calibration.temperature,
                                 cal.calibration.conformal_qhat)
    print(f"landmarks: {len(data)} vectors, 6 persons; fit {result.final.seconds:.2f} s wall (target <= 5 s), "
          f"{result.final.cpu_s:.2f} s CPU; "
          f"whole run with split comparison {cpu_s:.1f} s CPU")
    print(f"  {lk['message']}")
    print(f"  held-out ({figs['held_out_n']}): ECE {figs['ece_before']:.3f} -> {figs['ece_after']:.3f} "
          f"(T={cal.calibration.temperature:.2f}), {COVERAGE:.0%} conformal coverage "
          f"{figs['conformal_coverage']:.3f} (mean set {figs['conformal_mean_set_size']:.2f})")
    return {"landmark_fit_wall_s": result.final.seconds, "landmark_fit_cpu_s": result.final.cpu_s,
            "landmark_run_cpu_s": cpu_s,
            "landmark_random_split_accuracy": lk["random"]["value"],
            "landmark_grouped_split_accuracy": lk["grouped"]["value"], "landmark_leakage_gap": lk["gap"],
            **{f"landmark_{k}": v for k, v in figs.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="label/*.jpg folder to take 200 images from (generated images if it has none)")
    parser.add_argument("--quick", action="store_true", help="80 images at 96 px and fewer vectors")
    parser.add_argument("--image-size", type=int, default=LearnerSettings().image_size_px,
                        help="training resolution in pixels (default %(default)s)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    out = {"coverage_target": COVERAGE, "quick": args.quick}
    out.update(bench_landmarks(args.quick))
    out.update(bench_images(args.data, args.quick, args.image_size))
    out["image_finetune_within_60s"] = out["image_finetune_wall_s"] <= 60
    out["landmark_fit_within_5s"] = out["landmark_fit_wall_s"] <= 5
    for part in ("image", "landmark"):
        out[f"{part}_coverage_within_3_points"] = abs(out[f"{part}_conformal_coverage"] - COVERAGE) <= 0.03
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
