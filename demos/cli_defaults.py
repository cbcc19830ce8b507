"""`livelearner train-default emotion|sign|personality --data TRAINDATA --out DIR`: retrain a shipped default model.

The one command per shipped model that retrains it from a data folder and reproduces its metrics
(within noise: seeds are fixed, but thread scheduling makes CPU training not bit-exact).

    emotion  DATA is a folder holding fer2013_train/<class>/*.jpg (or that folder itself)
    sign     DATA is a folder holding asl_webcam_signers/, asl_other_signers/ and asl_alphabet_train/
             (<LETTER>/*.jpg and labels.csv each); a hand-landmark MLP is cross-fitted over person folds
             (the new-person figures and the calibration), then trained on every person and written to OUT
             (--eval is not taken: report on evaluation data with `python -m bench.accuracy --task sign`)
    personality  DATA is the folder holding answers.csv and items.tsv (traindata/personality_questionnaire),
             or a folder holding personality_questionnaire/; split by country (train / calibration / test),
             the Questions tab's trait model with its accuracy-vs-questions curve is written to OUT
    packaged-emotion  no training: writes the packaged mini-Xception as a bundle (no --data), so that
             `livelearner compare` can test the project's model against it:
             livelearner compare PACKAGED_BUNDLE OWN_BUNDLE FACE_FOLDER
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-default", help="retrain a shipped default model (emotion, sign or personality) from data",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=("emotion", "sign", "personality", "packaged-emotion"))
    p.add_argument("--data", type=Path, help="training data folder (see above)")
    p.add_argument("--out", required=True, type=Path,
                   help="bundle folder to write (an existing one is refused, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="if --out exists, move it aside to OUT.replaced-DATE-TIME when the new bundle is written "
                        "(nothing is deleted)")
    p.add_argument("--eval", type=Path, default=None,
                   help="a labelled folder of NEW data to measure once at the end (never used for fitting)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (e.g. for a quick try)")
    p.add_argument("--full-cycle", action="store_true",
                   help="emotion: run the whole one-cycle schedule of --epochs (no early stop, no second anneal), "
                        "the plan for a machine with free cores or a GPU")
    p.add_argument("--limit-per-class", type=int, default=None,
                   help="emotion: train on at most this many faces per class (a quick try, not the shipped model)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (1 is fastest on a machine whose cores are busy with other work)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from capture.source import CaptureError
    from demos.cli import UserFacingError
    from models.bundle import BundleError
    from train.fit import SettingsError, check_range

    if args.model == "packaged-emotion":
        from train.emotion_recipe import packaged_emotion_bundle

        try:
            print(f"bundle: {packaged_emotion_bundle(args.out, overwrite=args.overwrite)}")
        except BundleError as e:
            raise UserFacingError(str(e)) from e
        return 0
    if args.data is None or not args.data.is_dir():
        raise UserFacingError(f"{args.data} is not a folder; pass the training data folder with --data")
    if args.eval is not None and not args.eval.is_dir():
        raise UserFacingError(f"{args.eval} is not a folder; pass a labelled <label>/*.jpg folder with --eval")
    if args.threads is not None:
        import torch

        try:
            check_range("threads", args.threads, 1, 1024)
        except SettingsError as e:
            raise UserFacingError(str(e)) from e
        torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(time.strftime("%H:%M:%S"), message, flush=True)

    try:
        if args.model == "emotion":
            out = _emotion(args, log)
        elif args.model == "personality":
            out = _personality(args, log)
        else:
            out = _sign(args, log)
    except (FileNotFoundError, ValueError, BundleError, CaptureError, SettingsError) as e:
        raise UserFacingError(str(e)) from e
    print(f"bundle: {out}")
    return 0


def _emotion(args: argparse.Namespace, log) -> Path:
    from train.emotion_recipe import EmotionRecipe, evaluate_emotion_once, record_evaluation, retrain_emotion

    data = args.data / "fer2013_train" if (args.data / "fer2013_train").is_dir() else args.data
    kw = {"epochs": args.epochs} if args.epochs is not None else {}
    if args.full_cycle:
        kw.update(stop_after_epochs=None, anneal_epochs=0)
    recipe = EmotionRecipe(data=data, out=args.out, overwrite=args.overwrite, limit_per_class=args.limit_per_class,
                           threads=args.threads, **kw)
    out = retrain_emotion(recipe, log=log)
    if args.eval is not None:
        evaluation = evaluate_emotion_once(out, args.eval)
        record_evaluation(out, evaluation)
        log(json.dumps(evaluation, indent=1))
    return out


def _sign(args: argparse.Namespace, log) -> Path:
    from demos.cli import UserFacingError
    from train.sign_recipe import SignRecipe, retrain_sign

    if args.eval is not None:
        raise UserFacingError("train-default sign takes no --eval: its figures are for people held out of the "
                              "training data; report on evaluation data with "
                              "`python -m bench.accuracy --task sign --data EVALDATA --model OUT`")
    kw = {"epochs": args.epochs} if args.epochs is not None else {}
    recipe = SignRecipe(data=args.data, out=args.out, overwrite=args.overwrite, **kw)
    return retrain_sign(recipe, log=log)


def _personality(args: argparse.Namespace, log) -> Path:
    from train.personality_recipe import PersonalityRecipe, retrain_personality

    data = args.data / "personality_questionnaire" if (args.data / "personality_questionnaire").is_dir() else args.data
    kw = {"epochs": args.epochs} if args.epochs is not None else {}
    return retrain_personality(PersonalityRecipe(data=data, out=args.out, overwrite=args.overwrite, **kw), log=log)
