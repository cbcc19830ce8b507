"""The default sign-letter model: a hand-landmark MLP trained on every sign training person, judged on people it
never saw.

Every user of the sign demo is a new person, so every figure here is measured on whole people held out:
1. the photos of all training people (train.sign_data: 51 webcam signers, Massey hand1..hand5, an ASL2Text
   phone signer, the Kaggle signer) are cut into `folds` person folds (train.splits.grouped_folds);
2. `cross_fit`: one model per fold, trained on the other folds' people (plus augmented copies of their hands,
   train.hand_augment), gives out-of-fold logits: each photo scored by a model that never saw its person;
3. calibration is fitted on those out-of-fold logits (train.person_scores): a temperature that weighs every
   person equally and a conformal threshold fitted per person (each person's own 90 % threshold, then the 90 %
   quantile over people), so a new person's own sets cover 90 % with probability 90 %;
   the figures the card states for a new person come from calibrations fitted without that person's fold;
4. the shipped model is trained the same way on every person, with that calibration, and written through the
   trainer's `write_bundle` (the one training path: `fit_and_validate`, `assess`, `write_bundle`).
Candidate settings (features, augmentation) are compared on the same folds with McNemar's test over photos and
a count of the people each one reads better (`compare_candidates`).
Only the 24 static letters are learned: J and Z are movements, which one still frame cannot show.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.hands import FEATURE_DIMS, hand_features
from train.calibration import ece
from train.hand_augment import HandAugment, augment_hand
from train.person_scores import (PersonCalibration, PersonScores, fit_person_calibration, leave_fold_out_probs,
                                 person_scores)
from train.sign_data import SignPhotos, load_sign_photos

STATIC_LETTERS = tuple("ABCDEFGHIKLMNOPQRSTUVWXY")  # J and Z move


@dataclass(frozen=True)
class SignRecipe:
    """Settings of the shipped sign model (defaults reproduce it)."""

    data: Path  # the training data folder holding asl_webcam_signers/, asl_other_signers/, asl_alphabet_train/
    out: Path  # where the bundle is written
    overwrite: bool = False  # move an existing `out` aside (OUT.replaced-DATE-TIME) instead of refusing
    cache: Path | None = None  # landmark cache folder (None: $LIVELEARNER_HOME/cache)
    features: str = "hand_invariant_v2"  # models.hands.FEATURE_DIMS
    augment: HandAugment = HandAugment(copies=4)
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    batch_size: int = 64  # LearnerSettings.batch_size: vectors go 4x this (256) a batch
    epochs: int = 30
    folds: int = 5  # person folds
    coverage: float = 0.9
    letters: tuple[str, ...] = STATIC_LETTERS
    seed: int = 0

    def __post_init__(self) -> None:
        from train.fit import MAX_EPOCHS, check_range

        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("folds", self.folds, 2, 50)
        if self.features not in FEATURE_DIMS:
            raise ValueError(f"unknown landmark features {self.features!r}; use one of {', '.join(FEATURE_DIMS)}")


def features_of(photos: SignPhotos, kind: str) -> np.ndarray:
    """(N, D) features of each photo's hand (NaN rows where no hand was found or its landmarks are degenerate)."""
    out = np.full((len(photos.files), FEATURE_DIMS[kind]), np.nan, np.float32)
    for i in np.flatnonzero(photos.found):
        try:
            out[i] = hand_features(photos.hand(i), kind)
        except ValueError:
            pass  # degenerate landmarks: counted as no hand, as the live pipeline skips them
    return out


def _augmented(photos: SignPhotos, idx: np.ndarray, recipe: SignRecipe) -> tuple[np.ndarray, np.ndarray]:
    """(features (M, D), photo index (M,)) of `recipe.augment.copies` changed copies of each photo in idx."""
    rng = np.random.default_rng(recipe.seed)
    feats, rows = [], []
    for i in idx:
        hand = photos.hand(i)
        for _ in range(recipe.augment.copies):
            moved = augment_hand(hand.pixels, rng, recipe.augment)
            w, h = hand.image_size
            try:
                feats.append(hand_features(replace(hand, landmarks=moved / np.array([w, h, w], np.float32)),
                                           recipe.features))
            except ValueError:
                continue
            rows.append(i)
    dim = FEATURE_DIMS[recipe.features]
    return np.array(feats, np.float32).reshape(-1, dim), np.array(rows, int)


@dataclass
class FoldModel:
    learner: Any
    curves: Any  # train.fit.Curves
    logits: np.ndarray  # (n_valid, C) logits of the validation photos
    seconds: float


def fit_model(photos: SignPhotos, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray,
              classes: list[str], recipe: SignRecipe) -> FoldModel:
    """One MLP on the found hands of train_idx (plus augmented copies) through the trainer's fit_and_validate;
    logits on valid_idx (found hands only). x: (N, D) features; y: (N,) class indices."""
    from train.datablocks import LearnerSettings, build_learner
    from train.fit import FitSettings
    from train.trainer import fit_and_validate

    train_idx = train_idx[~np.isnan(x[train_idx, 0])]
    valid_idx = valid_idx[~np.isnan(x[valid_idx, 0])]
    aug_x, aug_rows = _augmented(photos, train_idx, recipe) if recipe.augment.copies else (x[:0], train_idx[:0])
    rows = np.concatenate([train_idx, aug_rows, valid_idx])
    xs = np.concatenate([x[train_idx], aug_x, x[valid_idx]])  # (n_train + n_aug + n_valid, D)
    labels = [classes[c] for c in y[rows]]
    n_fit = len(train_idx) + len(aug_rows)
    learn, _, _ = build_learner("landmarks", xs, labels, np.arange(n_fit), np.arange(n_fit, len(rows)),
                                LearnerSettings(hidden=recipe.hidden, dropout=recipe.dropout,
                                                                batch_size=recipe.batch_size), classes=classes)
    fitted = fit_and_validate(learn, "landmarks", FitSettings(epochs=recipe.epochs, progress=False, seed=recipe.seed))
    return FoldModel(learn, fitted.curves, fitted.logits, fitted.seconds)


@dataclass
class CrossFit:
    """Out-of-fold logits of one candidate: every photo scored by the fold model that never saw its person."""

    recipe: SignRecipe
    photos: SignPhotos  # letter photos of `recipe.letters`
    classes: list[str]
    y: np.ndarray  # (N,) class indices
    folds: np.ndarray  # (N,) person fold
    x: np.ndarray  # (N, D) features, NaN where no hand
    logits: np.ndarray  # (N, C) out-of-fold logits, NaN rows where no hand
    curves: list[Any] = field(default_factory=list)  # per fold
    seconds: float = 0.0

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.logits[:, 0])

    def held_out(self) -> tuple[np.ndarray, np.ndarray, list[PersonCalibration]]:
        """(probs, qhat per photo, calibrations): each fold calibrated on the other folds' people only."""
        return leave_fold_out_probs(self.logits, self.y, self.photos.persons, self.folds, self.recipe.coverage)

    def scores(self) -> PersonScores:
        probs, qhat, _ = self.held_out()
        return person_scores(probs, self.y, self.photos.persons, qhat)

    def correct(self) -> np.ndarray:
        """(N,) bool: the out-of-fold answer is right (False where no hand)."""
        out = np.zeros(len(self.y), bool)
        out[self.found] = self.logits[self.found].argmax(1) == self.y[self.found]
        return out


def letter_photos(data: Path, recipe: SignRecipe, log: Callable[[str], None] = print) -> SignPhotos:
    photos = load_sign_photos(data, recipe.cache, log=log)
    return photos.subset(np.isin(photos.labels, recipe.letters))


def cross_fit(photos: SignPhotos, recipe: SignRecipe, log: Callable[[str], None] = print) -> CrossFit:
    """`recipe.folds` person folds; one model per fold on the other folds' people; out-of-fold logits."""
    from train.splits import grouped_folds

    from train.fit import Curves

    classes = list(recipe.letters)
    y = np.array([classes.index(c) for c in photos.labels])
    folds = grouped_folds(photos.persons, recipe.folds, recipe.seed)
    x = features_of(photos, recipe.features)
    logits = np.full((len(y), len(classes)), np.nan)
    cf = CrossFit(recipe, photos, classes, y, folds, x, logits)
    saved = _crossfit_cache(photos, recipe)
    if saved.is_file():  # the same photos, hands and settings were cross-fitted before: their logits are reused
        with np.load(saved) as z:
            logits[:] = z["logits"]
            cf.curves = [Curves(**c) for c in json.loads(str(z["curves"]))]
            cf.seconds = float(z["seconds"])
        log(f"  out-of-fold logits read from {saved} (delete it to train the fold models again)")
        return cf
    for k in range(recipe.folds):
        valid = np.flatnonzero(folds == k)
        model = fit_model(photos, x, y, np.flatnonzero(folds != k), valid, classes, recipe)
        logits[valid[~np.isnan(x[valid, 0])]] = model.logits
        cf.curves.append(model.curves)
        cf.seconds += model.seconds
        acc = (model.logits.argmax(1) == y[valid[~np.isnan(x[valid, 0])]]).mean()
        log(f"  fold {k + 1}/{recipe.folds}: {len(np.unique(photos.persons[valid]))} held-out people, "
            f"accuracy of found hands {acc:.3f}, {model.seconds:.0f} s")
    np.savez(saved.with_suffix(".tmp.npz"), logits=logits, seconds=cf.seconds,
             curves=json.dumps([c.to_dict() for c in cf.curves]))
    saved.with_suffix(".tmp.npz").replace(saved)
    return cf


def _crossfit_cache(photos: SignPhotos, recipe: SignRecipe) -> Path:
    """Where the out-of-fold logits of these photos under these settings are kept (outside the repository)."""
    import hashlib

    from train.datasets import cache_dir

    settings = {k: v for k, v in asdict(recipe).items() if k not in ("data", "out", "overwrite", "cache", "coverage")}
    hands = np.nan_to_num(photos.landmarks).astype(np.float64)
    text = json.dumps([settings, len(photos.files), sorted(set(photos.persons.tolist())), photos.labels.tolist(),
                       round(float(hands.sum()), 3), round(float((hands ** 2).sum()), 3)], default=str)
    return Path(recipe.cache or cache_dir()) / f"sign-crossfit-{hashlib.sha1(text.encode()).hexdigest()[:16]}.npz"


def compare_candidates(a: CrossFit, b: CrossFit, names: tuple[str, str]) -> dict[str, Any]:
    """McNemar over photos (no hand = wrong for both) and the people each candidate reads better."""
    from train.evidence import mcnemar

    test = mcnemar(a.correct(), b.correct(), names=names)
    ca, cb = a.correct(), b.correct()
    wins = losses = 0
    for person in np.unique(a.photos.persons):
        m = (a.photos.persons == person) & a.found
        diff = ca[m].mean() - cb[m].mean() if m.any() else 0.0
        wins, losses = wins + (diff > 1e-9), losses + (diff < -1e-9)
    return {"mcnemar": test.to_dict(), "text": str(test), f"people_better_{names[0]}": int(wins),
            f"people_better_{names[1]}": int(losses)}


def retrain_sign(recipe: SignRecipe, log: Callable[[str], None] = print) -> Path:
    """Cross-fit (the figures for a new person), calibrate on the out-of-fold logits, train on every person and
    write the bundle with a card stating the new-person figures."""
    from train.bundle_writer import check_out_free
    from train.trainer import assess, write_bundle

    if not recipe.overwrite:
        check_out_free(recipe.out)  # refused now, not after the training
    photos = letter_photos(recipe.data, recipe, log)
    log(f"{len(photos.files)} letter photos of {len(np.unique(photos.persons))} people; hands found in "
        f"{photos.found.mean():.3f}; {recipe.folds} person folds")
    cf = cross_fit(photos, recipe, log)
    scores = cf.scores()
    log(f"held-out people: accuracy of found hands {scores.acc_found_mean:.3f} (worst {scores.acc_found_worst_person:.3f}),"
        f" 90% sets cover {scores.set_coverage_mean:.3f} (worst {scores.set_coverage_worst_person:.3f}), ECE {scores.ece:.3f}")
    ok = cf.found
    cal = fit_person_calibration(cf.logits[ok], cf.y[ok], photos.persons[ok], recipe.coverage)
    everyone = np.arange(len(cf.y))
    # fastai needs a validation part: a few of its own training photos, whose figures are not used (the card's
    # curves are fold 1's, its figures the out-of-fold ones)
    final = fit_model(photos, cf.x, cf.y, everyone, everyone[cf.found][:64], cf.classes, recipe)
    plots = recipe.out.parent / f".{recipe.out.name}-plots"
    assessment = assess(cf.logits[ok], cf.y[ok], cf.curves[0], n_classes=len(cf.classes),
                        n_train=int((cf.folds != 0).sum()), coverage=recipe.coverage, plots_dir=plots,
                        title="sign letters, fold 1")
    assessment.calibration = _with_person_calibration(assessment.calibration, cf.logits[ok], cf.y[ok], cal, plots)
    new_person = new_person_text(scores, recipe)
    card = sign_card(recipe, photos, cf, scores, cal, final.seconds)
    fitted_on = (f"out-of-fold predictions for {cal.n_persons} people the fold models never saw ({recipe.folds} "
                 f"person folds; every person weighted equally, sets fitted to hold per person)")
    path = write_bundle(recipe.out, task="landmarks", backend="vector", classes=cf.classes, learner=final.learner,
                        assessment=assessment, input_spec={"dim": FEATURE_DIMS[recipe.features],
                                                           "features": recipe.features},
                        card=card, overwrite=recipe.overwrite, calibrated_on=fitted_on)
    _state_new_person(path, new_person)
    log(f"bundle written to {path}")
    return path


def _with_person_calibration(report: Any, logits: np.ndarray, y: np.ndarray, cal: PersonCalibration,
                             plots: Path) -> Any:
    """The trainer's CalibrationReport with the person-weighted temperature and threshold in place of its own, its
    after-figures measured again for them, and the reliability diagram redrawn."""
    from models.prediction import softmax
    from train.calibration import empirical_coverage, reliability_diagram

    after = softmax(logits, cal.temperature)
    nll = float(-np.mean(np.log(np.clip(after[np.arange(len(y)), y], 1e-12, None))))
    reliability_diagram(softmax(logits), after, y, plots / "reliability.png")
    return replace(report, temperature=cal.temperature, ece_after=ece(after, y), nll_after=nll,
                   conformal_qhat=cal.qhat, coverage=cal.coverage if cal.qhat is not None else None,
                   mean_set_size=empirical_coverage(after, y, cal.qhat)[1] if cal.qhat is not None else None)


def new_person_text(s: PersonScores, recipe: SignRecipe) -> str:
    """The new-person figures in words (said by every Prediction of the bundle and on the card)."""
    lo, mid, hi = s.spread("set_coverage")
    return (f"a new person ({s.n_persons} people held out by person fold, calibration fitted without them): "
            f"{recipe.coverage:.0%} sets cover {s.set_coverage_mean:.2f} on average per person (10th-90th percentile "
            f"of people {lo:.2f}-{hi:.2f}, worst {s.set_coverage_worst_person:.2f}), ECE {s.ece:.2f}")


def _state_new_person(path: Path, text: str) -> None:
    """Append the new-person figures to bundle.json's calibration text and the card."""
    from train.bundle_writer import render_card_md

    spec = json.loads((path / "bundle.json").read_text())
    card = json.loads((path / "card.json").read_text())
    spec["calibration"] = card["calibration"]["text"] = f"{spec['calibration']}; on {text}"
    card["calibration"]["new_person"] = text
    (path / "bundle.json").write_text(json.dumps(spec, indent=2))
    (path / "card.json").write_text(json.dumps(card, indent=2))
    (path / "card.md").write_text(render_card_md(card) + sign_card_md(card))


def sign_card(recipe: SignRecipe, photos: SignPhotos, cf: CrossFit, s: PersonScores, cal: PersonCalibration,
              final_seconds: float) -> dict[str, Any]:
    from train.evidence import accuracy

    persons = np.unique(photos.persons)
    return {
        "name": "livelearner-sign",
        "learner": f"landmarks MLP {list(recipe.hidden)}, features {recipe.features}",
        "data": {"train": [str(Path(recipe.data) / n) for n in ("asl_webcam_signers", "asl_other_signers",
                                                                "asl_alphabet_train")],
                 "people": int(len(persons)), "photos": int(len(photos.files)),
                 "hands_found": round(float(photos.found.mean()), 4),
                 "classes": "the 24 static letters (J and Z move: one frame cannot show them)",
                 "licence": "webcam signers: training inside the project only; Massey: research use (cite Barczak "
                            "et al. 2011); ASL2Text: Apache-2.0; Kaggle ASL Alphabet: GPL-2.0"},
        "split": f"{recipe.folds} person folds (every fold's people absent from its model's training)",
        "metrics": {"accuracy_of_found_hands_held_out_people": accuracy(cf.correct()[cf.found]).to_dict()},
        "new_person": s.to_dict(),
        "new_person_spread": {k: s.spread(k) for k in ("acc_found", "set_coverage", "found")},
        "person_calibration": asdict(cal),
        "settings": {"features": recipe.features, "augment": asdict(recipe.augment), "hidden": list(recipe.hidden),
                     "dropout": recipe.dropout, "batch_size": recipe.batch_size, "epochs": recipe.epochs, "seed": recipe.seed},
        "train_seconds": round(cf.seconds + final_seconds, 1),
        "n_train": int(cf.found.sum()),
        "reproduce": f"livelearner train-default sign --data {recipe.data} --out {recipe.out}",
    }


def sign_card_md(card: dict[str, Any]) -> str:
    s = card["new_person"]
    spread = card["new_person_spread"]
    lines = ["", "## On a new person (people held out by fold)", "",
             "| figure | mean over people | worst person | 10th-90th percentile of people |", "|---|---|---|---|",
             f"| accuracy of found hands | {s['acc_found_mean']:.3f} | {s['acc_found_worst_person']:.3f} "
             f"({s['worst']['acc_found']}) | {spread['acc_found'][0]:.3f}-{spread['acc_found'][2]:.3f} |",
             f"| 90 % sets hold the letter | {s['set_coverage_mean']:.3f} | {s['set_coverage_worst_person']:.3f} "
             f"({s['worst']['set_coverage']}) | {spread['set_coverage'][0]:.3f}-{spread['set_coverage'][2]:.3f} |",
             f"| hand found | {s['hand_found_rate_person_mean']:.3f} | | {spread['found'][0]:.3f}-{spread['found'][2]:.3f} |",
             "", f"Mean set size {s['set_size_mean']:.2f}; ECE of the shown probability {s['ece']:.3f} over "
             f"{s['n_found']} found hands; hands found in {s['hand_found_rate']:.3f} of {s['n_photos']} photos; "
             f"{s['n_persons']} people.", "",
             "Measure again: `python -m bench.signs --data ../shared/traindata`.", ""]
    return "\n".join(lines) + "\n"
