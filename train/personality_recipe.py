"""The personality recipe: the Questions tab's default model, five Big Five traits from any answers so far.

`retrain_personality(PersonalityRecipe(data=.../personality_questionnaire, out=DIR))` reads the Open
Psychometrics "BIG5" answers (19,718 respondents, the 50 IPIP Big-Five factor markers of Goldberg 1992,
1 = disagree .. 5 = agree, and the respondent's country), drops the straight-liners (one answer to all 50
items: their reverse-keyed items contradict themselves), and splits BY COUNTRY, the only grouping the data
has (no person id; one row per submission):

    test         ~15% of respondents, whole countries: never trained or calibrated on; the accuracy-vs-
                 questions curve shipped with the model (questions_curve.json) and bench.personality use it
    calibration  ~15%, other whole countries: the learner's validation set (curves, random subsets), then one
                 temperature and one 90% conformal threshold per trait (train.trainer.assess_heads), fitted on one
                 state per respondent as the tab meets them: a third random subsets, a third short-form prefixes,
                 a third prefixes of the adaptive questioner's path (choosing items by the model's own estimates
                 makes it overconfident on those paths: 0.83 confidence for 0.81 accuracy after 7 questions
                 when calibrated on random subsets only)
    train        the rest

Labels: a trait is "high" when its keyed 10-item score (x, or 6 - x for reverse-keyed items) is above the
TRAINING respondents' median. The network (models.architectures.TraitNet) reads any subset of the answers
(centred value + mask bit per item) and outputs five trait logits plus every item's answer logits. Each
training example is a respondent with a random subset answered (the short form on `short_form_share` of
draws, else k items, k mostly small): loss = BCE of the traits + `answer_weight` x cross-entropy of the
unanswered items' answers (what the adaptive questioner needs: p(next answer | answers so far)).
The short form is the two items per trait with the highest corrected item-total correlation on the training
respondents. Fitting, calibration and export are the trainer's (fit_and_validate, assess_heads, write_bundle).
"""
from __future__ import annotations

import csv
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.questionnaire_inputs import Item, Questionnaire
from train.fit import FitSettings, check_range

Log = Callable[[str], None]
CLASSES = ("low", "high")
CURVE_FILE = "questions_curve.json"  # accuracy and confidence vs questions answered, held-out countries
CURVE_MAX_QUESTIONS = 20
NOISE_FLOOR = ("the loss stays high by design, not for want of capacity: most training draws answer few items, so "
               "the traits and the unanswered answers are uncertain; a 256x256 network (40 epochs) was no better on "
               "the calibration countries (short form 0.832 vs 0.832, 7 adaptive questions 0.807 vs 0.812)")


@dataclass(frozen=True)
class PersonalityRecipe:
    """Settings of the default questionnaire model's training run (defaults reproduce the shipped one)."""

    data: Path  # folder with answers.csv and items.tsv (traindata/personality_questionnaire layout)
    out: Path  # bundle folder written at the end (an existing one is refused unless `overwrite`)
    overwrite: bool = False  # move an existing `out` aside (OUT.replaced-DATE-TIME) instead of refusing
    test_frac: float = 0.15  # share of respondents in the held-out test countries
    calibration_frac: float = 0.15  # share in the calibration countries (other countries)
    hidden: tuple[int, ...] = (128, 128)
    dropout: float = 0.1
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 256
    weight_decay: float = 0.01
    answer_weight: float = 0.5  # weight of the next-answer cross-entropy beside the trait BCE
    short_form_share: float = 0.15  # share of training draws that answer exactly the short form
    small_share: float = 0.8  # share of the other draws with 0..`small_max` items answered (else more)
    small_max: int = 12
    short_form_per_trait: int = 2
    coverage: float = 0.9
    curve_limit: int | None = None  # ask at most this many test respondents for the curve (None: all)
    seed: int = 0

    def __post_init__(self) -> None:
        from train.fit import MAX_EPOCHS

        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("test share", self.test_frac, 0, 0.5, low_open=True)
        check_range("calibration share", self.calibration_frac, 0, 0.5, low_open=True)
        check_range("short form share", self.short_form_share, 0, 1)
        check_range("small share", self.small_share, 0, 1)


@dataclass
class Responses:
    """Respondents' full answers and what the recipe derives from them."""

    questionnaire: Questionnaire  # items (trait, key, text) and trait names; short form filled by the recipe
    values: np.ndarray  # (N, K) int answers 1..5
    countries: np.ndarray  # (N,) str, "unknown" for the source's empty country
    ids: np.ndarray  # (N,) int respondent_id (row in the source)

    def scores(self) -> np.ndarray:
        """(N, H) keyed trait scores (sum over each trait's items of x, or 6 - x when reverse keyed)."""
        qn = self.questionnaire
        low, high = qn.scale
        keyed = np.where([it.key == "-" for it in qn.items], low + high - self.values, self.values)
        return np.stack([keyed[:, [it.trait == t for it in qn.items]].sum(axis=1) for t in qn.traits], axis=1)


def read_responses(root: str | Path) -> Responses:
    """answers.csv + items.tsv of the personality_questionnaire layout; straight-liners dropped."""
    root = Path(root)
    try:
        with (root / "items.tsv").open(newline="") as f:
            items = tuple(Item(r["item"], r["trait"], r["key"], r["text"]) for r in csv.DictReader(f, delimiter="\t"))
        with (root / "answers.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        values = np.array([[int(r[it.id]) for it in items] for r in rows], dtype=np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{root} is not a questionnaire data folder (answers.csv with respondent_id, country and one "
                         f"column per item, items.tsv with item, trait, key, text): {e}") from e
    traits = tuple(dict.fromkeys(it.trait for it in items))
    qn = Questionnaire(items, traits)
    if values.min() < qn.scale[0] or values.max() > qn.scale[1]:
        raise ValueError(f"{root / 'answers.csv'} has answers outside {qn.scale}")
    keep = values.min(axis=1) != values.max(axis=1)  # straight-liners out
    countries = np.array([r["country"] or "unknown" for r in rows])
    ids = np.array([int(r["respondent_id"]) for r in rows])
    return Responses(qn, values[keep], countries[keep], ids[keep])


def country_split(countries: np.ndarray, test_frac: float, calibration_frac: float, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, calibration, test) row indices; whole countries on each side (train.splits.grouped_split)."""
    from train.splits import grouped_split

    rows = np.arange(len(countries))
    first = grouped_split(["r"] * len(rows), list(countries), group_by="country", valid_frac=test_frac, seed=seed)
    rest, test = first.train_idx, first.valid_idx
    second = grouped_split(["r"] * len(rest), list(countries[rest]), group_by="country",
                           valid_frac=calibration_frac / (1 - test_frac), seed=seed + 1)
    return rest[second.train_idx], rest[second.valid_idx], test


def short_form(values: np.ndarray, qn: Questionnaire, per_trait: int) -> tuple[str, ...]:
    """Per trait the `per_trait` items that together explain most of the trait's full keyed score (R^2 of a least-
    squares fit on these rows; the label is a split of that score), each trait's best single item first, traits
    interleaved. (On the training countries this beat the top corrected item-total correlations: a linear rule
    on the chosen pairs was right on 0.841 vs 0.83 of calibration respondents.)"""
    from itertools import combinations

    low, high = qn.scale
    keyed = np.where([it.key == "-" for it in qn.items], low + high - values, values).astype(np.float64)
    chosen = []
    for t in qn.traits:
        idx = [k for k, it in enumerate(qn.items) if it.trait == t]
        score = keyed[:, idx].sum(axis=1)

        def r2(cols: tuple[int, ...]) -> float:
            x = np.c_[np.ones(len(score)), keyed[:, list(cols)]]
            residual = score - x @ np.linalg.lstsq(x, score, rcond=None)[0]
            return 1.0 - residual.var() / score.var()

        best = max(combinations(idx, per_trait), key=r2)
        chosen.append(sorted(best, key=lambda k: -r2((k,))))
    return tuple(qn.items[chosen[t][j]].id for j in range(per_trait) for t in range(len(qn.traits)))


def sample_answered(rng: np.random.Generator, n: int, k: int, short_idx: np.ndarray, recipe: PersonalityRecipe
                    ) -> np.ndarray:
    """(n, k) bool: which items each draw has answered (the training and calibration mix of subsets)."""
    small = rng.random(n) < recipe.small_share
    count = np.where(small, rng.integers(0, recipe.small_max + 1, n), rng.integers(recipe.small_max + 1, k + 1, n))
    ranks = rng.random((n, k)).argsort(axis=1).argsort(axis=1)  # a random order of the items per draw
    answered = ranks < count[:, None]
    short = rng.random(n) < recipe.short_form_share
    answered[short] = False
    answered[np.ix_(np.flatnonzero(short), short_idx)] = True
    return answered


def calibration_states(model: Any, qn: Questionnaire, values: np.ndarray, short_idx: np.ndarray,
                       recipe: PersonalityRecipe) -> np.ndarray:
    """(N, K) bool: one answered set per calibration respondent, as the tab meets them: random subsets (the
    training mix), short-form prefixes (1..10 items) and adaptive-path prefixes (1..20 questions), a third each."""
    from models.bundle import Bundle, Head
    from models.personality import simulate_adaptive

    rng = np.random.default_rng(recipe.seed + 7)
    n, k = values.shape
    kind = rng.permutation(np.arange(n) % 3)  # 0 random, 1 short form, 2 adaptive
    answered = sample_answered(rng, n, k, short_idx, recipe)
    short = np.flatnonzero(kind == 1)
    answered[short] = False
    for row, length in zip(short, rng.integers(1, len(short_idx) + 1, len(short))):
        answered[row, short_idx[:length]] = True
    adaptive = np.flatnonzero(kind == 2)
    spec = {"task": "questionnaire", "backend": "heads", "classes": list(CLASSES)}
    interim = Bundle(Path("."), spec, model.eval(), questionnaire=qn,
                     heads=tuple(Head(t, 1.0, None) for t in qn.traits))  # uncalibrated: only picks the items
    asked, _ = simulate_adaptive(interim, values[adaptive], CURVE_MAX_QUESTIONS)  # (n_adaptive, 20)
    answered[adaptive] = False
    for row, path, length in zip(adaptive, asked, rng.integers(1, CURVE_MAX_QUESTIONS + 1, len(adaptive))):
        answered[row, path[:length]] = True
    return answered


class _MaskedAnswers:
    """Dataset of respondents: x = encoding of a random subset of their answers, y = (H trait targets,
    K answer levels 0..L-1, K answered bits). `fixed`: one subset per respondent drawn once (validation)."""

    def __init__(self, qn: Questionnaire, values: np.ndarray, targets: np.ndarray, short_idx: np.ndarray,
                 recipe: PersonalityRecipe, fixed: np.ndarray | None = None):
        self.qn, self.values, self.targets, self.short_idx, self.recipe = qn, values, targets, short_idx, recipe
        self.fixed = fixed

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int):
        import torch

        if self.fixed is not None:
            answered = self.fixed[i:i + 1]
        else:  # np.random is seeded by train.fit.fit_learner
            answered = sample_answered(np.random.default_rng(np.random.randint(2**31)), 1, self.values.shape[1],
                                       self.short_idx, self.recipe)
        x = self.qn.encode_matrix(self.values[i:i + 1], answered)[0]  # (2K,)
        y = np.concatenate([self.targets[i], self.values[i] - self.qn.scale[0], answered[0]]).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y)


class TraitAndAnswerLoss:
    """BCE of the H trait logits + answer_weight x mean cross-entropy of the unanswered items' answers."""

    def __init__(self, n_heads: int, n_items: int, n_levels: int, answer_weight: float):
        self.h, self.k, self.levels, self.answer_weight = n_heads, n_items, n_levels, answer_weight

    def __call__(self, out, y):
        import torch.nn.functional as F

        traits, answers = out[:, :self.h], out[:, self.h:].reshape(-1, self.levels)  # (B, H), (B * K, L)
        bce = F.binary_cross_entropy_with_logits(traits, y[:, :self.h])
        levels = y[:, self.h:self.h + self.k].long().reshape(-1)  # (B * K,)
        unanswered = 1.0 - y[:, self.h + self.k:].reshape(-1)  # (B * K,)
        ce = (F.cross_entropy(answers, levels, reduction="none") * unanswered).sum() / unanswered.sum().clamp(min=1)
        return bce + self.answer_weight * ce

    def count_correct(self, out, y) -> tuple[int, int]:
        """Trait heads right (logit > 0 == high), counted per head."""
        right = (out[:, :self.h] > 0) == (y[:, :self.h] > 0.5)
        return int(right.sum()), int(right.numel())


def question_curve(bundle: Any, values: np.ndarray, targets: np.ndarray, n_max: int = CURVE_MAX_QUESTIONS,
                   p_adaptive: np.ndarray | None = None) -> dict[str, Any]:
    """Accuracy and mean confidence (per trait) after 1..n_max adaptive questions and after each question of the
    short form, for people whose answers are all known (values (N, K)) and trait targets (N, H). p_adaptive:
    models.personality.simulate_adaptive's (N, n_max, H) when already computed."""
    from models.personality import simulate_adaptive
    from train.calibration import ece

    qn = bundle.questionnaire
    if p_adaptive is None:
        _, p_adaptive = simulate_adaptive(bundle, values, n_max)  # (N, n, H)
    short_idx = [qn.ids.index(i) for i in qn.short_form]
    p_short = []
    for j in range(1, len(short_idx) + 1):
        answered = np.zeros(values.shape, bool)
        answered[:, short_idx[:j]] = True
        p_short.append(bundle.head_probs(qn.encode_matrix(values, answered)))  # (N, H)
    p_short = np.stack(p_short, axis=1)  # (N, S, H)

    def acc(p: np.ndarray) -> np.ndarray:  # (N, n, H) -> (n, H)
        return ((p > 0.5) == targets[:, None, :].astype(bool)).mean(axis=0)

    def conf(p: np.ndarray) -> np.ndarray:
        return np.maximum(p, 1 - p).mean(axis=0)

    last = p_short[:, -1]  # (N, H)
    return {"n_people": int(len(values)), "traits": list(qn.traits),
            "adaptive": {"n_questions": list(range(1, n_max + 1)), "accuracy": acc(p_adaptive).tolist(),
                         "confidence": conf(p_adaptive).tolist()},
            "short_form": {"items": list(qn.short_form), "n_questions": list(range(1, len(short_idx) + 1)),
                           "accuracy": acc(p_short).tolist(), "confidence": conf(p_short).tolist(),
                           "ece": [ece(np.stack([1 - last[:, h], last[:, h]], 1), targets[:, h])
                                   for h in range(len(qn.traits))]}}


def retrain_personality(recipe: PersonalityRecipe, log: Log = print) -> Path:
    """The whole recipe: read, split by country, fit, calibrate per trait, measure the curve, export."""
    import torch
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.learner import Learner

    from models.architectures import TraitNet
    from models.bundle import load_bundle
    from train.bundle_writer import check_out_free
    from train.trainer import assess_heads, fit_and_validate, write_bundle

    if not recipe.overwrite:
        check_out_free(recipe.out)
    started = time.perf_counter()
    data = read_responses(recipe.data)
    train_idx, cal_idx, test_idx = country_split(data.countries, recipe.test_frac, recipe.calibration_frac,
                                                 recipe.seed)
    scores = data.scores()  # (N, H)
    medians = np.median(scores[train_idx], axis=0)
    targets = (scores > medians).astype(np.float32)  # high = above the training median
    qn = Questionnaire(data.questionnaire.items, data.questionnaire.traits,
                       short_form=short_form(data.values[train_idx], data.questionnaire, recipe.short_form_per_trait))
    short_idx = np.array([qn.ids.index(i) for i in qn.short_form])
    log(f"{len(data.values)} respondents: train {len(train_idx)}, calibration {len(cal_idx)} "
        f"({len(set(data.countries[cal_idx]))} countries), test {len(test_idx)} ({len(set(data.countries[test_idx]))} "
        f"countries); medians {dict(zip(qn.traits, medians.tolist()))}; short form {', '.join(qn.short_form)}")

    torch.manual_seed(recipe.seed)
    cal_answered = sample_answered(np.random.default_rng(recipe.seed + 7), len(cal_idx), len(qn.items), short_idx,
                                   recipe)
    train_ds = _MaskedAnswers(qn, data.values[train_idx], targets[train_idx], short_idx, recipe)
    cal_ds = _MaskedAnswers(qn, data.values[cal_idx], targets[cal_idx], short_idx, recipe, fixed=cal_answered)
    bs = min(recipe.batch_size, len(train_idx))  # drop_last would leave no batch at all on tiny data
    dls = DataLoaders(TfmdDL(train_ds, bs=bs, shuffle=True, drop_last=True, num_workers=0),
                      TfmdDL(cal_ds, bs=1024, shuffle=False, num_workers=0), device="cpu")
    model = TraitNet(len(qn.items), qn.n_levels, len(qn.traits), recipe.hidden, recipe.dropout)
    learn = Learner(dls, model, loss_func=TraitAndAnswerLoss(len(qn.traits), len(qn.items), qn.n_levels,
                                                             recipe.answer_weight))
    fit = FitSettings(epochs=recipe.epochs, lr=recipe.lr, weight_decay=recipe.weight_decay, progress=False,
                      seed=recipe.seed)

    def calibration_logits(lr: Any) -> tuple[np.ndarray, np.ndarray]:
        states = calibration_states(lr.model, qn, data.values[cal_idx], short_idx, recipe)
        with torch.inference_mode():
            out = lr.model.eval()(torch.from_numpy(qn.encode_matrix(data.values[cal_idx], states)))
        return lr.model.split(out)[0].double().numpy(), targets[cal_idx].astype(int)  # (N, H), (N, H)

    fitted = fit_and_validate(learn, "tabular", fit, log=log, predict=calibration_logits)
    cal_countries = sorted(set(data.countries[cal_idx]))
    assessment = assess_heads(fitted.logits, fitted.targets, fitted.curves, heads=qn.traits,
                              n_train=len(train_idx), coverage=recipe.coverage,
                              plots_dir=tempfile.mkdtemp(prefix="livelearner-plots-"), title="personality",
                              chance_loss=float(np.log(2) + recipe.answer_weight * np.log(qn.n_levels)),
                              notes=[NOISE_FLOOR])
    for name, r in assessment.heads.items():
        log(f"{name}: temperature {r.temperature:.3f}, ECE {r.ece_before:.3f} -> {r.ece_after:.3f} (calibration "
            f"countries), qhat {r.conformal_qhat}")

    # the curve needs the calibrated bundle: write it to a scratch folder first, measure, then write `out`
    scratch = Path(tempfile.mkdtemp(prefix="livelearner-personality-")) / "bundle"
    kw = dict(task="questionnaire", backend="heads", classes=CLASSES, learner=learn, assessment=assessment,
              input_spec=qn.to_spec(), accept_at=0.9,
              calibrated_on=f"respondents from {len(cal_countries)} countries held out from training (one state "
                            "each: a random subset, a short-form prefix or an adaptive-path prefix of the items)")
    write_bundle(scratch, card={}, **kw)
    curve_rows = test_idx if recipe.curve_limit is None else test_idx[:recipe.curve_limit]
    curve = question_curve(load_bundle(scratch), data.values[curve_rows], targets[curve_rows].astype(int))
    curve["measured_on"] = (f"{len(curve_rows)} respondents from {len(set(data.countries[curve_rows]))} countries "
                            "held out from training and calibration")
    curve_path = scratch.parent / CURVE_FILE
    curve_path.write_text(json.dumps(curve, indent=1))
    log(f"adaptive accuracy at 1..{CURVE_MAX_QUESTIONS}: "
        f"{[round(float(np.mean(a)), 3) for a in curve['adaptive']['accuracy']]}; short form (10): "
        f"{np.mean(curve['short_form']['accuracy'][-1]):.3f}")
    card = _card(recipe, data, train_idx, cal_idx, test_idx, medians, fitted, curve)
    out = write_bundle(recipe.out, card=card, overwrite=recipe.overwrite, extra_files={CURVE_FILE: curve_path},
                       name="livelearner-personality", **kw)
    log(f"bundle written to {out} in {time.perf_counter() - started:.0f} s")
    return out


def _card(recipe: PersonalityRecipe, data: Responses, train_idx: np.ndarray, cal_idx: np.ndarray,
          test_idx: np.ndarray, medians: np.ndarray, fitted: Any, curve: dict[str, Any]) -> dict[str, Any]:
    def countries(idx: np.ndarray) -> list[str]:
        return sorted(set(data.countries[idx].tolist()))

    short = curve["short_form"]
    return {
        "name": "livelearner-personality",
        "data": {"source": "Open-Source Psychometrics Project (openpsychometrics.org), 'BIG5' raw data (c. 2012): "
                           "answers of online test takers to the 50 IPIP Big-Five Factor Markers (Goldberg 1992)",
                 "respondents": int(len(data.values)), "dropped": "straight-liners (one answer to all 50 items)",
                 "licence": "items: IPIP, public domain; answers: published openly and anonymously for research and "
                            "education, no licence stated; cite Open Psychometrics and Goldberg (1992). The rows "
                            "are not redistributed; only weights trained on them."},
        "split": "by country (the only grouping the data has): train / calibration / test, whole countries each",
        "split_detail": {"train": {"n": int(len(train_idx)), "countries": countries(train_idx)},
                         "calibration": {"n": int(len(cal_idx)), "countries": countries(cal_idx)},
                         "test": {"n": int(len(test_idx)), "countries": countries(test_idx)},
                         "seed": recipe.seed},
        "labels": {"rule": "high = keyed 10-item score above the training respondents' median",
                   "medians": dict(zip(data.questionnaire.traits, medians.tolist()))},
        "metrics": {"test_short_form_accuracy_mean": float(np.mean(short["accuracy"][-1])),
                    "test_short_form_accuracy": dict(zip(curve["traits"], short["accuracy"][-1])),
                    "test_short_form_ece": dict(zip(curve["traits"], short["ece"])),
                    "test_adaptive_accuracy_mean": [float(np.mean(a)) for a in curve["adaptive"]["accuracy"]]},
        "adaptive": "next question = the unanswered item with the lowest expected total trait entropy after its "
                    "answer, the answer's distribution predicted by the same network (models.personality)",
        "curves": fitted.curves.to_dict(), "n_train": int(len(train_idx)), "n_valid": int(len(cal_idx)),
        "train_seconds": round(fitted.seconds, 1), "recipe": {k: (str(v) if isinstance(v, Path) else v)
                                                             for k, v in asdict(recipe).items()},
        "reproduce": f"livelearner train-default personality --data {recipe.data} --out {recipe.out}",
    }
