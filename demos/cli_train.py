"""`livelearner train | evaluate | compare`: train your own model with honest validation.

    livelearner train DATA --task image|landmarks|text|tabular --split grouped:person --out BUNDLE
    livelearner evaluate BUNDLE DATA [--test]
    livelearner compare BUNDLE_A BUNDLE_B DATA

DATA is a sample store folder (samples.sqlite), a `label/*.jpg` folder (optionally with samples.csv or
labels.csv giving path,label,person,session), or a CSV (label,person,session + features / text / answers).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from demos.cli import UserFacingError

TASKS = ("image", "landmarks", "text", "tabular")
TRUST_PICKLE_HELP = "allow a format-1 bundle (fastai pickle: it can run code when loaded; trusted files only)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model on your own samples (honest splits, calibration)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="sample store folder, label/*.jpg folder, or CSV")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--split", default="grouped:person",
                   help="random | grouped:person | grouped:session | time[:K] (default grouped:person)")
    p.add_argument("--out", required=True, help="bundle folder to write (an existing one is refused, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="if --out exists, move it aside to OUT.replaced-DATE-TIME once the new bundle is written "
                        "(nothing is deleted)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default depends on the task)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default depends on the task)")
    p.add_argument("--image-size", type=int, default=None, help="image side in pixels for training (default 128)")
    p.add_argument("--coverage", type=float, default=0.9, help="conformal prediction-set coverage (default 0.9)")
    p.add_argument("--store", default=None, help="where to keep the imported samples (default: a temporary folder)")
    p.add_argument("--person-pattern", default=None,
                   help=r"regex with a (?P<person>...) group matched on label/file paths, e.g. '(?P<person>[^_/]+)_'")
    p.add_argument("--lock-test", action="store_true",
                   help="set aside a locked test set in the store (kept out of training; see evaluate --test)")
    p.add_argument("--no-compare", action="store_true", help="skip the random-vs-grouped leakage comparison")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser("evaluate", help="score a bundle on labelled data (accuracy with 95%% interval)")
    e.add_argument("model", help="bundle folder")
    e.add_argument("data", help="sample store folder, label/*.jpg folder, or CSV")
    e.add_argument("--test", action="store_true", help="evaluate on the store's locked test set (recorded)")
    e.add_argument("--store", default=None, help="sample store to import DATA into (default: temporary)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    e.set_defaults(func=run_evaluate)

    c = subparsers.add_parser("compare", help="compare two bundles on the same data (McNemar's test)")
    c.add_argument("model_a")
    c.add_argument("model_b")
    c.add_argument("data")
    c.add_argument("--store", default=None)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    c.set_defaults(func=run_compare)


def _errors():
    from capture.source import CaptureError
    from models.bundle import BundleError
    from train.fit import SettingsError
    from train.samples import StoreError
    from train.splits import SplitError

    return (BundleError, CaptureError, SettingsError, StoreError, SplitError)


def _task_data(args: argparse.Namespace, task: str, exclude=()):
    from train.datablocks import TaskData
    from train.trainer import open_store

    store = open_store(args.data, task, args.store, getattr(args, "person_pattern", None))
    data = TaskData.from_store(store, task, exclude=exclude)
    if len(data) == 0:
        raise UserFacingError(f"no {task} samples in {args.data}; record or import some first")
    return store, data


def run_train(args: argparse.Namespace) -> int:
    from train.datablocks import LearnerSettings, TaskData
    from train.fit import FitSettings
    from train.splits import LockedTestSet
    from train.bundle_writer import check_out_free
    from train.trainer import TrainSettings, open_store, train_model

    try:
        out = Path(args.out)
        if not args.overwrite:
            check_out_free(out)  # refused before any import or training
        learner = LearnerSettings(image_size_px=args.image_size) if args.image_size else LearnerSettings()
        settings = TrainSettings(task=args.task, split=args.split, coverage=args.coverage,
                                 compare_splits=not args.no_compare, learner=learner,
                                 fit=FitSettings(epochs=args.epochs, lr=args.lr, progress=not args.quiet))
        store = open_store(args.data, args.task, args.store, args.person_pattern)
        lock = LockedTestSet(store, args.task)
        if args.lock_test:
            if args.store is None and not (Path(args.data) / "samples.sqlite").is_file():
                raise UserFacingError("--lock-test needs a lasting store: give --store DIR (or train from a store)")
            ids = lock.lock()
            print(f"locked test set: {len(ids)} samples kept out of training (evaluate once with --test)")
        data = TaskData.from_store(store, args.task, exclude=lock.ids)
        result = train_model(data, settings, out=out, plots_dir=out.parent / f"{out.name}.plots",
                             overwrite=args.overwrite)
    except _errors() as e:
        raise UserFacingError(str(e)) from e
    print(result.summary())
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from models.bundle import load_bundle
    from train.trainer import evaluate_bundle, evaluate_locked_test, open_store

    try:
        bundle = load_bundle(args.model, trust_pickle=args.trust_pickle)
        if args.test:
            store = open_store(args.data, bundle.task, args.store)
            ev, before = evaluate_locked_test(bundle, store, str(Path(args.model).resolve()))
            note = ("first evaluation of the locked test set: this is your unbiased estimate" if before == 0 else
                    f"WARNING: the locked test set was already evaluated {before} time(s); choosing models by it "
                    "makes this score optimistic")
        else:
            _, data = _task_data(args, bundle.task)
            ev, note = evaluate_bundle(bundle, data), ""
    except _errors() as e:
        raise UserFacingError(str(e)) from e
    if args.json:
        print(json.dumps({"accuracy": ev.accuracy.to_dict(), "ece": ev.ece, "coverage": ev.coverage,
                          "mean_set_size": ev.mean_set_size, "n": ev.n, "note": note}))
    else:
        print(f"{args.model}: {ev}")
        if note:
            print(note)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from models.bundle import load_bundle
    from train.trainer import compare_bundles

    try:
        a, b = (load_bundle(m, trust_pickle=args.trust_pickle) for m in (args.model_a, args.model_b))
        if a.task != b.task:
            raise UserFacingError(f"cannot compare a {a.task} model with a {b.task} model")
        _, data = _task_data(args, a.task)
        ea, eb, test = compare_bundles(a, b, data, names=("A", "B"))
    except _errors() as e:
        raise UserFacingError(str(e)) from e
    if args.json:
        print(json.dumps({"a": ea.accuracy.to_dict(), "b": eb.accuracy.to_dict(), "mcnemar": test.to_dict()}))
    else:
        print(f"A {args.model_a}: accuracy {ea.accuracy}")
        print(f"B {args.model_b}: accuracy {eb.accuracy}")
        print(f"McNemar ({test.method}): b={test.b} c={test.c} p={test.p_value:.4g} -> {test.verdict}")
        print(test.message)
    return 0
