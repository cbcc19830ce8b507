"""One training run with the lesson's discipline, from a sample store to a model bundle.

`train_model(data, TrainSettings(task=..., split="grouped:person"), out=BUNDLE)`:
1. refuses data it cannot learn from (one class, too few per class, grouped split with one person);
2. trains on the requested split (walk-forward: one model per fold, score averaged over folds) and,
   for the leakage gap, the same recipe on a random and on a grouped split, side by side;
3. records per-epoch curves, plots them, and diagnoses them;
4. fits temperature and conformal threshold on validation only, with a reliability diagram;
5. exports a bundle with a model card (split, metrics with 95% intervals, calibration, diagnosis,
   counts per person and class).

Its steps are the ONE training path: the default-model recipes (`train.emotion_recipe`,
`train.sign_recipe`) bring their own data loading and settings and call the same three functions:
`fit_and_validate` (train, then validation logits), `assess` (calibrate, diagnose, plot; `assess_heads` for
a network with several binary heads, as `train.personality_recipe`'s) and `write_bundle` (model card + bundle).
`evaluate_bundle` and `compare_bundles` score bundles on labelled data (McNemar for the comparison).
"""
from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from models.prediction import RoutingPolicy, softmax
from models.bundle import Bundle, BundleError
from train.bundle_writer import check_out_free, save_bundle
from train.calibration import CalibrationReport, calibrate, ece, empirical_coverage, reliability_diagram
from train.datablocks import (ZERO_SHOT_TEMPERATURE, LearnerSettings, TaskData, answers_frame, build_learner,
                              featurize, zero_shot_embeddings)
from train.diagnosis import Diagnosis, diagnose
from train.evidence import Estimate, McNemarResult, accuracy, mcnemar
from train.fit import Curves, FitSettings, check_range, fit_learner, plot_curves, valid_logits
from train.samples import SampleStore, StoreError, check_image_file, check_number
from train.splits import (MIN_PER_CLASS, LockedTestSet, Split, SplitError, SplitSpec, check_labels, grouped_split,
                          make_splits, random_split)

SMALL_VALIDATION = 30  # fewer validation examples than this: intervals are wide, calibration is rough


@dataclass(frozen=True)
class TrainSettings:
    task: str  # "image" | "landmarks" | "text" | "tabular"
    split: str = "grouped:person"  # random | grouped:person | grouped:session | time[:K]
    valid_frac: float = 0.2  # share held out for validation (random / grouped)
    coverage: float | None = 0.9  # conformal target coverage (None: no prediction sets)
    accept_at: float = 0.9  # RoutingPolicy.accept_at written to the bundle
    min_per_class: int = MIN_PER_CLASS
    compare_splits: bool = True  # also train on the other split kind to show the leakage gap
    seed: int = 0
    learner: LearnerSettings = LearnerSettings()
    fit: FitSettings = FitSettings()

    def __post_init__(self) -> None:
        check_range("validation share", self.valid_frac, 0, 0.9, low_open=True)
        check_range("coverage", self.coverage, 0.5, 0.999)
        check_range("accept_at", self.accept_at, 0, 1)
        check_range("min_per_class", self.min_per_class, 1, 10_000)


@dataclass
class Fitted:
    """One model trained, with its validation logits."""

    learner: Any
    curves: Curves
    logits: np.ndarray  # (n_valid, C) validation logits
    targets: np.ndarray  # (n_valid,) class indices
    seconds: float  # wall-clock training time
    cpu_s: float  # CPU time of training, all threads (on a busy machine, wall time includes waiting)


def fit_and_validate(learn: Any, task: str, fit: FitSettings, log: Callable[[str], None] | None = None,
                     predict: Callable[[Any], tuple[np.ndarray, np.ndarray]] = valid_logits) -> Fitted:
    """Train `learn` (its DataLoaders hold the training and validation parts), then `predict(learn)` gives
    the validation (logits (N, C), targets (N,)): by default the learner's own validation pass."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    curves = fit_learner(learn, task, fit, log=log)
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    logits, targets = predict(learn)
    return Fitted(learn, curves, logits, targets, seconds, cpu_s)


@dataclass
class Assessment:
    """What validation says about a fitted model: calibration, diagnosis, plots, and warnings for the card."""

    calibration: CalibrationReport  # several heads: all heads pooled, each after its own temperature
    diagnosis: Diagnosis
    plots: dict[str, Path]
    warnings: list[str]
    heads: dict[str, CalibrationReport] = field(default_factory=dict)  # several binary heads: each one's own


def assess(logits: np.ndarray, targets: np.ndarray, curves: Curves, *, n_classes: int, n_train: int,
           coverage: float | None, plots_dir: str | Path, title: str, weights: np.ndarray | None = None,
           notes: Sequence[str] = ()) -> Assessment:
    """Calibrate on validation logits (N, C) / targets (N,) (each example once; `weights` reweigh the
    temperature fit), diagnose the curves, draw both plots into `plots_dir`; `notes` are earlier warnings."""
    n_valid = len(targets)
    cal = calibrate(logits, targets, coverage, weights)
    diag = diagnose(curves.train_loss, curves.valid_loss, n_classes=n_classes, n_train=n_train, n_valid=n_valid)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = {"learning_curves": plot_curves(curves, plots_dir / "learning_curves.png", f"{title}: {diag.name}"),
             "reliability": reliability_diagram(softmax(logits), softmax(logits, cal.temperature), targets,
                                                plots_dir / "reliability.png")}
    found = list(notes)
    if n_valid < SMALL_VALIDATION:
        found.append(f"only {n_valid} validation examples: the interval is wide and calibration is rough; "
                     f"aim for {SMALL_VALIDATION}+")
    found += list(cal.warnings)
    return Assessment(cal, diag, plots, found)


def assess_heads(logits: np.ndarray, targets: np.ndarray, curves: Curves, *, heads: Sequence[str], n_train: int,
                 coverage: float | None, plots_dir: str | Path, title: str, notes: Sequence[str] = (),
                 chance_loss: float | None = None) -> Assessment:
    """`assess` for several binary heads: logits (N, H) of each head's second class, targets (N, H) in {0, 1}.
    Each head gets its own temperature and conformal threshold (`calibrate` on [0, z], whose softmax is
    sigmoid(z)); one diagnosis of the shared curves (chance_loss: their loss's chance level when it is not the
    heads' log 2); one reliability diagram of all heads pooled."""
    z, y = np.asarray(logits, np.float64), np.asarray(targets, int)
    pairs = np.stack([np.zeros_like(z), z], axis=-1)  # (N, H, 2): softmax = [1 - sigmoid(z), sigmoid(z)]
    reports = {name: calibrate(pairs[:, h], y[:, h], coverage) for h, name in enumerate(heads)}
    temps = np.array([r.temperature for r in reports.values()])
    before = softmax(pairs.reshape(-1, 2))  # (N * H, 2), row n * H + h
    after = softmax((pairs / temps[None, :, None]).reshape(-1, 2))
    flat_y = y.reshape(-1)
    pooled = CalibrationReport(1.0, ece(before, flat_y), ece(after, flat_y), _mean_nll(before, flat_y),
                               _mean_nll(after, flat_y), coverage, None, None, len(y))
    diag = diagnose(curves.train_loss, curves.valid_loss, n_classes=2, n_train=n_train, n_valid=len(y),
                    chance_loss=chance_loss)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = {"learning_curves": plot_curves(curves, plots_dir / "learning_curves.png", f"{title}: {diag.name}"),
             "reliability": reliability_diagram(before, after, flat_y, plots_dir / "reliability.png",
                                                "Reliability, all heads pooled (validation)")}
    found = list(notes)
    if len(y) < SMALL_VALIDATION:
        found.append(f"only {len(y)} validation examples: calibration is rough; aim for {SMALL_VALIDATION}+")
    found += [f"{name}: {w}" for name, r in reports.items() for w in r.warnings]
    return Assessment(pooled, diag, plots, found, reports)


def _mean_nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def calibration_text(cal: CalibrationReport, fitted_on: str = "the validation split", new_data: str | None = None
                     ) -> str:
    """What a bundle's Predictions say about their probabilities (bundle.json "calibration"): the data the
    temperature and conformal threshold were fitted on, and where their error was measured. `calibrate` measures
    the ECE on the very examples it fitted on, so the text says so: that figure is not one on new data.
    new_data: figures measured on data it was not fitted on, e.g. "a new person (...): ECE 0.34, ..."."""
    sets = (f"; {cal.coverage:.0%} sets" if cal.conformal_qhat is not None
            else "; no prediction sets (too few examples)")
    text = (f"calibrated on {fitted_on}, n={cal.n}; ECE {cal.ece_before:.2f} -> {cal.ece_after:.2f} measured on "
            f"those same examples, not on new data{sets}")
    return text + (f"; on {new_data}" if new_data else "")


def write_bundle(out: str | Path, *, task: str, backend: str, classes: Sequence[str], learner: Any,
                 assessment: Assessment, input_spec: dict[str, Any], card: dict[str, Any], accept_at: float = 0.9,
                 overwrite: bool = False, calibrated_on: str = "the validation split",
                 extra_files: dict[str, Path] | None = None, **spec_extra: Any) -> Path:
    """Save the bundle with its calibration, diagnosis, warnings and plots on the card (plus `card`'s entries;
    `extra_files` {name in the bundle: file} are copied in too).
    calibrated_on: the validation data in words (e.g. "the validation split grouped by person (3 persons)");
    bundle.json's "calibration" (`calibration_text`) names it, and every Prediction of the bundle shows it."""
    cal = assessment.calibration
    heads = None
    if assessment.heads:  # several binary heads: each its own temperature and threshold
        text = heads_calibration_text(assessment.heads, calibrated_on)
        heads = [{"name": name, "temperature": r.temperature, "conformal_qhat": r.conformal_qhat}
                 for name, r in assessment.heads.items()]
        coverage = next((r.coverage for r in assessment.heads.values() if r.coverage is not None), None)
        calibration = {**cal.to_dict(), "heads": {n: r.to_dict() for n, r in assessment.heads.items()}, "text": text}
        cal = CalibrationReport(1.0, cal.ece_before, cal.ece_after, cal.nll_before, cal.nll_after, coverage, n=cal.n)
    else:
        text = calibration_text(cal, calibrated_on)
        calibration = {**cal.to_dict(), "text": text}
    card = {"calibration": calibration, "diagnosis": assessment.diagnosis.to_dict(),
            "warnings": list(assessment.warnings), **card}
    extra = {f"{name}.png": path for name, path in assessment.plots.items()}
    extra.update(extra_files or {})
    return save_bundle(out, task=task, backend=backend, classes=classes, learner=learner,
                       temperature=cal.temperature, conformal_qhat=cal.conformal_qhat, coverage=cal.coverage,
                       policy=RoutingPolicy(accept_at=accept_at), input_spec=input_spec, card=card,
                       extra_files=extra, overwrite=overwrite, heads=heads, **{"calibration": text, **spec_extra})


def heads_calibration_text(reports: dict[str, CalibrationReport], fitted_on: str) -> str:
    """`calibration_text` for several heads: where, n, and the worst head's ECE before and after."""
    first = next(iter(reports.values()))
    worst_before = max(r.ece_before for r in reports.values())
    worst_after = max(r.ece_after for r in reports.values())
    sets = (f"; {first.coverage:.0%} sets per head" if all(r.conformal_qhat is not None for r in reports.values())
            else "; no prediction sets for some heads (too few examples)")
    return (f"calibrated per head ({len(reports)} temperatures) on {fitted_on}, n={first.n}; ECE of the worst head "
            f"{worst_before:.2f} -> {worst_after:.2f} measured on those same examples, not on new data{sets}")


@dataclass
class SplitRun(Fitted):
    """One model trained and validated on one split of a sample store's data."""

    split: Split
    accuracy: Estimate
    backend: str = ""
    input_spec: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    task: str
    classes: list[str]
    split_name: str
    runs: list[SplitRun]  # the requested split's run(s); several for walk-forward
    score: Estimate  # validation accuracy (walk-forward: mean over folds, interval on pooled examples)
    leakage: dict[str, Any]  # random vs grouped accuracy and the gap
    assessment: Assessment  # of the final run
    counts: dict[str, dict[str, int]]
    bundle: Path | None = None
    moved_aside: Path | None = None  # where an existing bundle at `out` was moved (overwrite=True)

    @property
    def final(self) -> SplitRun:
        return self.runs[-1]

    @property
    def calibration(self) -> CalibrationReport:
        return self.assessment.calibration

    @property
    def diagnosis(self) -> Diagnosis:
        return self.assessment.diagnosis

    @property
    def warnings(self) -> list[str]:
        return self.assessment.warnings

    @property
    def plots(self) -> dict[str, Path]:
        return self.assessment.plots

    def summary(self) -> str:
        c = self.calibration
        lines = [f"task {self.task}, classes {', '.join(self.classes)}",
                 f"split {self.split_name}: validation accuracy {self.score}"]
        if len(self.runs) > 1:
            lines.append("  folds: " + ", ".join(f"{r.accuracy.value:.3f} (n={r.accuracy.n})" for r in self.runs))
        lines.append(self.leakage["message"])
        lines.append(f"diagnosis: {self.diagnosis}")
        lines.append(f"calibration (validation): temperature {c.temperature:.2f}, ECE {c.ece_before:.3f} -> "
                     f"{c.ece_after:.3f}" + (f", conformal qhat {c.conformal_qhat:.3f} for {c.coverage:.0%} sets "
                                             f"(mean size {c.mean_set_size:.2f})" if c.conformal_qhat is not None else ""))
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"{name}: {p}" for name, p in self.plots.items()]
        if self.bundle:
            lines.append(f"bundle: {self.bundle}")
        if self.moved_aside:
            lines.append(f"the folder that was at {self.bundle} was moved to {self.moved_aside} (nothing deleted)")
        return "\n".join(lines)


def counts_of(data: TaskData) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {"class": {}, "person": {}, "session": {}}
    for lab, per, ses in zip(data.labels, data.persons, data.sessions):
        for key, val in (("class", lab), ("person", per), ("session", ses)):
            out[key][val] = out[key].get(val, 0) + 1
    return out


def run_split(data: TaskData, x: Any, split: Split, classes: list[str], settings: TrainSettings) -> SplitRun:
    """Train one model on `split` and score it on its validation part."""
    from fastai.torch_core import set_seed

    set_seed(settings.seed)  # same data + settings -> same model (weights init, shuffling, augmentation)
    learn, backend, spec = build_learner(data.task, x, data.labels, split.train_idx, split.valid_idx,
                                         settings.learner, classes)
    f = fit_and_validate(learn, data.task, settings.fit)
    return SplitRun(**vars(f), split=split, accuracy=accuracy(f.logits.argmax(axis=1) == f.targets),
                    backend=backend, input_spec=spec)


def _grouping(data: TaskData) -> tuple[str, list[str]] | None:
    """The grouping for the leakage comparison: persons if 2+, else sessions if 2+, else None."""
    for name, groups in (("person", data.persons), ("session", data.sessions)):
        if len(set(groups)) >= 2:
            return name, groups
    return None


def leakage_comparison(data: TaskData, x: Any, classes: list[str], settings: TrainSettings,
                       done: dict[str, SplitRun]) -> dict[str, Any]:
    """Random-split vs grouped-split validation accuracy with the same recipe (reusing runs in `done`)."""
    out: dict[str, Any] = {}
    if "random" not in done:
        done["random"] = run_split(data, x, random_split(data.labels, settings.valid_frac, settings.seed),
                                   classes, settings)
    out["random"] = done["random"].accuracy.to_dict()
    grouping = _grouping(data)
    if grouping is None:
        out["grouped"] = None
        out["message"] = (f"random split {done['random'].accuracy}; grouped split impossible: all examples come "
                          "from one person and one session, so this score says nothing about new people. "
                          "Record at least 2 people to measure that.")
        return out
    name, groups = grouping
    key = f"grouped:{name}"
    if key not in done:
        done[key] = run_split(data, x, grouped_split(data.labels, groups, group_by=name,
                                                     valid_frac=settings.valid_frac, seed=settings.seed),
                              classes, settings)
    r, g = done["random"].accuracy, done[key].accuracy
    gap = r.value - g.value
    out.update(grouped=g.to_dict(), group_by=name, gap=gap)
    verdict = ("the random split leaks: the model recognises the " + name + ", not only the class"
               if gap > 0.05 else "no sign of leakage")
    out["message"] = (f"random split accuracy {r.value:.3f} [{r.low:.3f}, {r.high:.3f}] vs grouped by {name} "
                      f"{g.value:.3f} [{g.low:.3f}, {g.high:.3f}]: gap {gap:+.3f} ({verdict}). "
                      f"Trust the grouped score for new {name}s.")
    return out


def train_model(data: TaskData, settings: TrainSettings, out: str | Path | None = None,
                plots_dir: str | Path | None = None, overwrite: bool = False) -> TrainResult:
    """Train, compare splits, diagnose, calibrate and (with `out`) export a bundle.

    An existing `out` is refused before any training (BundleExistsError) unless `overwrite`; then the
    old folder is moved aside (never deleted) when the new bundle is in place."""
    if out is not None and not overwrite:
        check_out_free(out)
    if data.task != settings.task:
        raise SplitError(f"data is {data.task!r} but settings ask for {settings.task!r}")
    check_labels(data.labels, settings.min_per_class)
    if data.task == "image":
        _check_images(data)
    notes: list[str] = _check_tabular(data) if data.task == "tabular" else []
    spec = SplitSpec.parse(settings.split, valid_frac=settings.valid_frac, seed=settings.seed)
    splits = make_splits(spec, data.labels, data.persons, data.sessions, data.times)
    classes = data.classes
    for s in splits:
        missing = sorted(set(classes) - set(np.asarray(data.labels)[s.train_idx]))
        if missing:
            notes.append(f"{s.kind} split fold {s.fold}: training part has no {', '.join(missing)}; "
                         "record those classes with more people/sessions")
    x = featurize(data)
    runs = [run_split(data, x, s, classes, settings) for s in splits]
    done = {spec.name: runs[0]} if spec.kind != "time" else {}
    if settings.compare_splits:
        leakage = leakage_comparison(data, x, classes, settings, done)
    else:
        leakage = {"message": "split comparison skipped (compare_splits=False)"}
    if len(runs) == 1:
        score = runs[0].accuracy
    else:  # walk-forward: the metric averaged over folds, interval from all validated examples
        pooled = accuracy(np.concatenate([r.logits.argmax(1) == r.targets for r in runs]))
        score = Estimate(float(np.mean([r.accuracy.value for r in runs])), pooled.low, pooled.high, pooled.n,
                         "wilson (pooled folds)")
    final = runs[-1]
    assessment = assess(final.logits, final.targets, final.curves, n_classes=len(classes),
                        n_train=len(final.split.train_idx), coverage=settings.coverage,
                        plots_dir=plots_dir or tempfile.mkdtemp(prefix="livelearner-plots-"),
                        title=f"{data.task}, {spec.name}", notes=notes)
    for w in assessment.warnings:
        warnings.warn(w)
    result = TrainResult(data.task, classes, spec.name, runs, score, leakage, assessment, counts_of(data))
    if out is not None:
        result.bundle = export_bundle(result, settings, out, overwrite=overwrite,
                                      calibrated_on=validation_words(spec, final.split, data))
        moved = json.loads((result.bundle / "card.json").read_text()).get("previous_bundle_moved_to")
        result.moved_aside = Path(moved) if moved else None
    return result


def _check_tabular(data: TaskData) -> list[str]:
    """Refuse non-finite or absurd numbers (naming the sample and the question); the notes say how many
    missing answers training will fill in (fastai's FillMissing: the column median, plus a was-missing flag)."""
    bad, missing = [], {}
    for sid, answers in zip(data.ids, data.items):
        for question, value in answers.items():
            if value is None or (isinstance(value, str) and not value.strip()):
                missing[question] = missing.get(question, 0) + 1
                continue
            try:
                check_number(value, f"sample {sid}, question {question!r}")
            except StoreError as e:
                bad.append(str(e))
    if bad:
        raise StoreError(f"{len(bad)} tabular answer(s) cannot be trained on: {'; '.join(bad[:5])}. Relabel or remove "
                         "those samples (SampleStore.remove(id, by=...)) or fix the CSV and import it again.")
    if not missing:
        return []
    return [f"{sum(missing.values())} missing answer(s) filled in with the column median during training: "
            + ", ".join(f"{q} ({n})" for q, n in sorted(missing.items()))]


def _check_images(data: TaskData) -> None:
    """Refuse to start training when an image file is missing or corrupt (fastai would fail mid-epoch)."""
    bad = []
    for sid, path in zip(data.ids, data.items):
        try:
            check_image_file(Path(path))
        except (StoreError, OSError):
            bad.append(f"{sid} ({path})")
    if bad:
        raise StoreError(f"{len(bad)} image(s) cannot be read: {', '.join(bad[:5])}; remove them "
                         "(SampleStore.remove(id, by=...)) or capture them again. Nothing was changed in the store.")


def validation_words(spec: SplitSpec, split: Split, data: TaskData) -> str:
    """The data a split's validation part holds, in words, e.g. "the validation split grouped by person (3 persons)"."""
    if spec.kind == "grouped":
        groups = data.persons if spec.group_by == "person" else data.sessions
        n = len(set(np.asarray(groups)[split.valid_idx]))
        return f"the validation split grouped by {spec.group_by} ({n} {spec.group_by}{'s' if n != 1 else ''})"
    if spec.kind == "time":
        return f"the last walk-forward fold's validation (the latest {len(split.valid_idx)} examples in time)"
    return "a random validation split (the same people and sessions as training)"


def export_bundle(result: TrainResult, settings: TrainSettings, out: str | Path, overwrite: bool = False,
                  calibrated_on: str = "the validation split") -> Path:
    final = result.final
    card = {
        "split": result.split_name + (f" ({len(result.runs)} folds)" if len(result.runs) > 1 else ""),
        "split_detail": final.split.describe(),
        "metrics": {"validation_accuracy": result.score.to_dict(),
                    **({f"fold_{i + 1}_accuracy": r.accuracy.to_dict() for i, r in enumerate(result.runs)}
                       if len(result.runs) > 1 else {})},
        "leakage": result.leakage, "curves": final.curves.to_dict(), "counts": result.counts,
        "n_train": int(len(final.split.train_idx)), "n_valid": int(len(final.targets)),
        "train_seconds": final.seconds, "train_cpu_seconds": final.cpu_s,
    }
    return write_bundle(out, task=result.task, backend=final.backend, classes=result.classes, learner=final.learner,
                        assessment=result.assessment, input_spec=final.input_spec, card=card,
                        accept_at=settings.accept_at, overwrite=overwrite, calibrated_on=calibrated_on)


def save_zero_shot_bundle(descriptions: dict[str, str], out: str | Path,
                          temperature: float = ZERO_SHOT_TEMPERATURE, accept_at: float = 0.9) -> Path:
    """A text bundle with no training data: classes are described in words ({label: description});
    probabilities are softmax(cosine similarity / temperature). Not calibrated until labelled data exists."""
    classes, emb = zero_shot_embeddings(descriptions)
    card = {"split": "none (zero-shot: no training data)", "descriptions": descriptions,
            "warnings": ["zero-shot: probabilities are not calibrated; record labelled examples and train"]}
    return save_bundle(out, task="text", backend="zeroshot", classes=classes, zeroshot_embeddings=emb,
                       temperature=temperature, policy=RoutingPolicy(accept_at=accept_at),
                       input_spec={"embedder": "minilm-l6-v2", "dim": int(emb.shape[1])}, card=card,
                       calibration=f"uncalibrated: zero-shot (no labelled data), temperature {temperature:g} set by hand")


# ---- data in, evaluation -------------------------------------------------------------------------
def open_store(data_path: str | Path, task: str, store_dir: str | Path | None = None,
               person_pattern: str | None = None) -> SampleStore:
    """A SampleStore for DATA: the store itself, or a store (at `store_dir`, else temporary) filled
    from a folder tree `label/*.jpg` (with samples.csv/labels.csv metadata if present) or a CSV."""
    path = Path(data_path)
    if (path / "samples.sqlite").is_file():
        return SampleStore(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist; give a sample store, a label/*.jpg folder or a CSV")
    store = SampleStore(store_dir or tempfile.mkdtemp(prefix="livelearner-store-"))
    if len(store.samples(task)):
        return store  # already imported into this store
    if path.is_dir() and task != "image":
        raise StoreError(f"{path} is a folder; for {task} data give a CSV (label,person,session + data columns) "
                         "or a sample store folder")
    if path.is_dir():
        meta = next((path / n for n in ("samples.csv", "labels.csv") if (path / n).is_file()), None)
        store.import_folder(path, kind="image", meta_csv=meta,
                            person_pattern=person_pattern)
    else:
        store.import_csv(path, kind=task)
    return store


def items_of(data: TaskData) -> Any:
    """Items in the form Bundle.predict_probs takes."""
    if data.task == "landmarks":
        return np.stack(data.items)
    if data.task == "tabular":
        return answers_frame(data.items)
    return list(data.items)


@dataclass
class Evaluation:
    accuracy: Estimate
    correct: np.ndarray  # (N,) bool, per example, for paired tests
    ece: float
    coverage: float | None  # empirical conformal coverage (None without conformal sets)
    mean_set_size: float | None
    n: int

    def __str__(self) -> str:
        text = f"accuracy {self.accuracy}, ECE {self.ece:.3f}"
        if self.coverage is not None:
            text += f", conformal coverage {self.coverage:.3f} (mean set size {self.mean_set_size:.2f})"
        return text


def evaluate_bundle(bundle: Bundle, data: TaskData) -> Evaluation:
    """Score a bundle on labelled data; labels unknown to the model are a clear error."""
    unknown = sorted(set(data.labels) - set(bundle.classes))
    if unknown:
        raise BundleError(f"mismatched labels: the data has {', '.join(unknown)}, which the model does not know "
                          f"(its classes: {', '.join(bundle.classes)}); relabel, or retrain with those classes")
    if len(data) == 0:
        raise BundleError("no labelled examples to evaluate on")
    probs = bundle.predict_probs(items_of(data))
    y = np.array([bundle.classes.index(lab) for lab in data.labels])
    correct = probs.argmax(axis=1) == y
    cov = size = None
    if bundle.conformal_qhat is not None:
        cov, size = empirical_coverage(probs, y, bundle.conformal_qhat)
    return Evaluation(accuracy(correct), correct, ece(probs, y), cov, size, len(y))


def compare_bundles(a: Bundle, b: Bundle, data: TaskData, names: tuple[str, str] = ("A", "B")
                    ) -> tuple[Evaluation, Evaluation, McNemarResult]:
    """Both models on the same examples, with McNemar's paired test."""
    ea, eb = evaluate_bundle(a, data), evaluate_bundle(b, data)
    return ea, eb, mcnemar(ea.correct, eb.correct, names=names)


def evaluate_locked_test(bundle: Bundle, store: SampleStore, model_name: str) -> tuple[Evaluation, int]:
    """Evaluate on the store's locked test set; returns the evaluation and how many came before."""
    lock = LockedTestSet(store, bundle.task)
    if not lock.ids:
        raise SplitError("this store has no locked test set; create one with `livelearner train ... --lock-test`")
    wanted = set(lock.ids)
    full = TaskData.from_store(store, bundle.task)
    data = full.subset([i for i, sid in enumerate(full.ids) if sid in wanted])
    ev = evaluate_bundle(bundle, data)
    before = lock.record_evaluation(model_name, ev.accuracy.value)
    return ev, before
