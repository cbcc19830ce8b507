"""Sign letters for people the model never saw: leave-people-out folds over every sign training person.

    python -m bench.signs --data ../shared/traindata [--quick] [--cache DIR]

DATA holds asl_webcam_signers/, asl_other_signers/ and asl_alphabet_train/ (train.sign_data; any of them may be
missing). Hands are found once with the live page's landmarker settings and cached (under
$LIVELEARNER_HOME/cache, or --cache), so a rerun skips mediapipe.

after  the shipped recipe (train.sign_recipe.SignRecipe defaults): person folds, one model per fold trained on
       the other folds' people, each fold calibrated (temperature, conformal threshold) on the other folds' people
       only; every figure is over photos of people absent from both the model and its calibration.
before the sign model shipped before issue 19 (bench/baselines/sign_landmarks_mlp_v1: 26 letters, trained on
       Massey hand4, hand5 and the ASL2Text signer, calibrated on hand1..hand3) with its own calibration, on the
       people it never saw (every person outside asl_other_signers); "after" is also printed for those people.

Figures (found hands unless said; people counted once each): accuracy of found hands (mean over people, worst
person), 90 % set coverage (mean, worst person), mean set size, ECE of the shown probability (pooled over found
hands), hand-found rate (pooled over photos). Second-pass hand finding (train.sign_data.RESCUES) is reported as
photos recovered. --quick: 12 people, 3 folds, 8 epochs, 1 augmented copy. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

BASELINE = Path(__file__).resolve().parent / "baselines" / "sign_landmarks_mlp_v1"
BASELINE_TRAINED_ON = ("other:",)  # person prefixes the baseline was trained or calibrated on
KEYS = ("acc_found_mean", "acc_found_worst_person", "set_coverage_mean", "set_coverage_worst_person", "set_size_mean",
        "ece", "hand_found_rate")
QUICK_PEOPLE = 12
CANDIDATES = {  # name -> the settings it changes in the shipped recipe
    "v1_no_aug": lambda r: {"features": "hand_invariant_v1", "augment": replace(r.augment, copies=0)},
    "v2_no_aug": lambda r: {"augment": replace(r.augment, copies=0)},
}


def baseline_scores(photos, bundle_path: Path = BASELINE):
    """PersonScores of a saved sign bundle (its own temperature and conformal threshold) on `photos`, with the hands
    the landmarker found before the second pass existed (hands only the second pass found count as not found)."""
    from models.bundle import load_bundle
    from models.signs import BundleSignClassifier
    from train.person_scores import person_scores

    clf = BundleSignClassifier(load_bundle(bundle_path))
    probs = np.full((len(photos.files), len(clf.classes)), np.nan)
    for i in np.flatnonzero(photos.found & ~photos.second_pass):
        try:
            probs[i] = clf.predict_probs([photos.hand(i)])[0]
        except ValueError:
            pass  # degenerate landmarks: no hand, as live
    y = np.array([clf.classes.index(c) for c in photos.labels])
    return person_scores(probs, y, photos.persons, clf.conformal_qhat)


def quick_subset(photos):
    """QUICK_PEOPLE people (smallest first, so both kinds of source appear), every photo of theirs."""
    names, counts = np.unique(photos.persons, return_counts=True)
    keep = names[np.argsort(counts, kind="stable")][:QUICK_PEOPLE]
    return photos.subset(np.isin(photos.persons, keep))


def rescue_report(photos) -> dict[str, dict[str, float]]:
    """Per second-pass variant: how many of the letter photos the first pass missed it finds a hand in."""
    first = photos.found & ~photos.second_pass
    missed = ~first
    return {name: {"recovered": int((~np.isnan(lm[missed, 0, 0])).sum()), "of_missed": int(missed.sum()),
                   "hand_found_rate_with_it": float((first | ~np.isnan(lm[:, 0, 0])).mean())}
            for name, lm in photos.rescued.items()}


def invented_hands(photos, video: Path | None, max_frames: int = 300) -> dict[str, dict[str, int]]:
    """Hands each variant ("live" + RESCUES) finds where there is none: the Kaggle "nothing" photos (cached) and
    up to max_frames frames of a video without hands (e.g. a face talking)."""
    from train.sign_data import RESCUES, detect_variant, detection_frame, open_detectors

    nothing = photos.labels == "nothing"
    out = {"nothing_photos": {"n": int(nothing.sum()), "live": int(photos.found[nothing].sum()),
                              **{k: int((~np.isnan(v[nothing & ~photos.found, 0, 0])).sum()) for k, v in
                                 photos.rescued.items()}}}
    if video is None:
        return out
    import cv2

    cap = cv2.VideoCapture(str(video))
    counts = {"n": 0, "live": 0, **{k: 0 for k in RESCUES}}
    detectors = open_detectors()
    try:
        while counts["n"] < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            frame = detection_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            counts["n"] += 1
            for name in counts.keys() - {"n"}:
                counts[name] += bool(detect_variant(detectors, name, frame))
    finally:
        cap.release()
        for det in detectors.values():
            det.close()
    out["video_frames"] = counts
    return out


def line(name: str, s) -> str:
    return (f"{name:<28} acc found {s.acc_found_mean:.3f} (worst {s.acc_found_worst_person:.3f} "
            f"{s.worst['acc_found']})  90% sets cover {s.set_coverage_mean:.3f} (worst {s.set_coverage_worst_person:.3f} "
            f"{s.worst['set_coverage']}), size {s.set_size_mean:.2f}  ECE {s.ece:.3f}  hand found "
            f"{s.hand_found_rate:.3f}  ({s.n_persons} people, {s.n_found}/{s.n_photos} photos with a hand)")


def main(argv: list[str] | None = None) -> int:
    import torch

    from train.person_scores import person_scores
    from train.sign_data import load_sign_photos
    from train.sign_recipe import SignRecipe, cross_fit

    p = argparse.ArgumentParser(prog="python -m bench.signs", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="training data folder (asl_* sign folders inside)")
    p.add_argument("--cache", type=Path, default=None, help="landmark cache folder (default $LIVELEARNER_HOME/cache)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_PEOPLE} people, 3 folds, 8 epochs")
    p.add_argument("--baseline", type=Path, default=BASELINE, help="the 'before' bundle")
    p.add_argument("--compare", action="store_true",
                   help="also cross-fit the candidate settings (CANDIDATES) on the same folds: McNemar over photos "
                        "and the people each reads better, against the shipped recipe")
    p.add_argument("--no-hand-video", type=Path, default=None,
                   help="a video with no hand in it: hands found there by each pass are counted (false positives)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    recipe = SignRecipe(data=args.data, out=Path("unused"), cache=args.cache)
    if args.quick:
        recipe = replace(recipe, folds=3, epochs=8, augment=replace(recipe.augment, copies=1))
    try:
        every = load_sign_photos(args.data, recipe.cache, log=lambda m: print(m, file=sys.stderr))
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from e
    photos = every.subset(np.isin(every.labels, recipe.letters))
    if args.quick:
        photos = quick_subset(photos)
    n_people = len(np.unique(photos.persons))
    print(f"{len(photos.files)} letter photos of {n_people} people; {recipe.folds} person folds; "
          f"features {recipe.features}, {recipe.augment.copies} augmented copies, {recipe.epochs} epochs")
    cf = cross_fit(photos, recipe, log=print)
    after = cf.scores()
    unseen = ~np.char.startswith(photos.persons.astype(str), BASELINE_TRAINED_ON)
    before = baseline_scores(photos.subset(unseen), args.baseline) if unseen.any() else None
    probs, qhat, cals = cf.held_out()
    after_unseen = person_scores(probs[unseen], cf.y[unseen], photos.persons[unseen], qhat[unseen]) \
        if unseen.any() else None
    comparisons = {}
    if args.compare:
        from train.sign_recipe import compare_candidates

        for name, change in CANDIDATES.items():
            other = replace(recipe, **change(recipe))
            print(f"candidate {name}: features {other.features}, {other.augment.copies} augmented copies")
            ocf = cross_fit(photos, other, log=print)
            print(line(f"candidate {name}", ocf.scores()))
            comparisons[name] = {**compare_candidates(cf, ocf, ("shipped", name)),
                                 **{k: round(float(getattr(ocf.scores(), k)), 4) for k in KEYS}}
            print(f"  shipped vs {name}: {comparisons[name]['text']}; people read better: shipped "
                  f"{comparisons[name]['people_better_shipped']}, {name} {comparisons[name][f'people_better_{name}']}")
    print()
    print(line("after (all people)", after))
    if before is not None:
        print(line("after (baseline's unseen)", after_unseen))
        print(line("before (baseline's unseen)", before))
    lo, mid, hi = after.spread("set_coverage")
    print(f"90% set coverage per new person: 10th percentile {lo:.3f}, median {mid:.3f}, 90th {hi:.3f}; "
          f"fold temperatures {', '.join(f'{c.temperature:.2f}' for c in cals)}, thresholds "
          f"{', '.join(f'{c.qhat:.3f}' for c in cals if c.qhat is not None)}")
    rescues = rescue_report(photos)
    for name, r in rescues.items():
        print(f"second pass {name}: finds a hand in {r['recovered']}/{r['of_missed']} photos with none "
              f"(hand found would be {r['hand_found_rate_with_it']:.3f})")
    invented = invented_hands(every, args.no_hand_video)
    for where, counts in invented.items():
        print(f"hands invented in {counts['n']} {where.replace('_', ' ')} (none has a hand): "
              + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "n"))
    by_source = {src: float(photos.found[np.char.startswith(photos.persons.astype(str), src)].mean())
                 for src in ("webcam:", "other:", "kaggle:") if np.char.startswith(photos.persons.astype(str), src).any()}
    print("hand found by source: " + ", ".join(f"{k[:-1]} {v:.3f}" for k, v in by_source.items())
          + f"; {int(photos.second_pass.sum())} of the found hands come from the padded second pass "
          f"(first pass alone: {float((photos.found & ~photos.second_pass).mean()):.3f})")
    out = {**{k: round(float(getattr(after, k)), 4) for k in KEYS},
           **({f"before_{k}": round(float(getattr(before, k)), 4) for k in KEYS} if before else {}),
           **({f"after_unseen_{k}": round(float(getattr(after_unseen, k)), 4) for k in KEYS} if after_unseen else {}),
           "set_coverage_p10_person": round(lo, 4), "n_people": n_people, "n_photos": len(photos.files),
           "folds": recipe.folds, "hand_found_by_source": {k[:-1]: round(v, 4) for k, v in by_source.items()},
           "candidates": comparisons, "rescue": rescues,
           "hand_found_rate_first_pass": round(float((photos.found & ~photos.second_pass).mean()), 4),
           "invented_hands": invented, "quick": bool(args.quick), "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
