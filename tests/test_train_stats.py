"""Statistics of train/: intervals and paired tests against textbook values, calibration maths,
conformal coverage, the six learning-curve diagnoses, and leakage-safe splits."""
from __future__ import annotations

import numpy as np
import pytest

from models.prediction import make_prediction, softmax
from train.calibration import (calibrate, conformal_qhat, ece, empirical_coverage, fit_temperature,
                               prediction_sets, reliability_diagram)
from train.diagnosis import NAMES, diagnose
from train.evidence import bootstrap_interval, mcnemar, mcnemar_counts, wilson_interval
from train.splits import (LockedTestSet, SplitError, SplitSpec, check_labels, grouped_split, random_split,
                          walk_forward)


# ---- evidence ------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,n,low,high", [
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Stat Med 17:857, Table I
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe(k, n, low, high):
    est = wilson_interval(k, n)
    assert est.low == pytest.approx(low, abs=1e-4) and est.high == pytest.approx(high, abs=1e-4)


def test_mcnemar_textbook_values():
    # Agresti, Categorical Data Analysis: presidential approval, b=150, c=86 -> z^2 = 17.36 (no correction)
    r = mcnemar_counts(150, 86, correction=False)
    assert r.statistic == pytest.approx(17.36, abs=0.01) and r.p_value < 1e-4 and r.verdict == "evidence"
    assert mcnemar_counts(150, 86).statistic == pytest.approx(63 ** 2 / 236)  # with continuity correction
    # exact: 1 vs 6 discordant -> two-sided binomial p = 2 * (1 + 7) / 2**7 = 0.125
    small = mcnemar_counts(1, 6)
    assert small.method == "exact" and small.p_value == pytest.approx(0.125) and small.verdict == "noise"
    assert "noise" in str(small) and "evidence" in str(r)


def test_mcnemar_from_correctness_vectors():
    a = np.array([1] * 40 + [1] * 30 + [0] * 5 + [0] * 25, bool)
    b = np.array([1] * 40 + [0] * 30 + [1] * 5 + [0] * 25, bool)
    r = mcnemar(a, b)
    assert (r.b, r.c) == (30, 5) and r.verdict == "evidence" and "A is better" in r.message
    with pytest.raises(ValueError, match="same examples"):
        mcnemar(a, b[:-1])


def test_bootstrap_interval_brackets_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = bootstrap_interval(rng.random(50) < 0.8)
    big = bootstrap_interval(rng.random(2000) < 0.8)
    assert small.low < small.value < small.high
    assert (big.high - big.low) < (small.high - small.low) / 3
    assert big.low < 0.8 < big.high


# ---- calibration ----------------------------------------------------------------------------------
def _overconfident(n: int, seed: int = 0, classes: int = 4, sharpen: float = 4.0):
    """Logits of a model whose true probabilities are softmax(z) but which reports softmax(sharpen * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, size=(n, classes))
    y = np.array([rng.choice(classes, p=p) for p in softmax(z)])
    return z * sharpen, y


def test_temperature_recovers_known_overconfidence_and_lowers_ece(tmp_path, artifacts_dir):
    logits, y = _overconfident(3000)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(4.0, rel=0.15)
    rep = calibrate(logits, y, coverage=0.9)
    assert rep.ece_after < rep.ece_before / 3 and rep.nll_after < rep.nll_before
    png = reliability_diagram(softmax(logits), softmax(logits, t), y, artifacts_dir / "train_reliability_synthetic.png")
    assert png.stat().st_size > 5000


def test_ece_of_perfectly_calibrated_is_small_and_of_overconfident_large():
    logits, y = _overconfident(5000, seed=2, sharpen=1.0)
    assert ece(softmax(logits), y) < 0.03
    assert ece(softmax(logits * 4), y) > 0.15


def test_conformal_coverage_holds_on_held_out_and_matches_prediction_sets():
    logits, y = _overconfident(7000, seed=3, sharpen=1.0)
    probs = softmax(logits)
    cal, test = slice(0, 2000), slice(2000, None)
    for target in (0.8, 0.9, 0.95):
        q = conformal_qhat(probs[cal], y[cal], target)
        cov, size = empirical_coverage(probs[test], y[test], q)
        # never below target (beyond sampling noise); within the issue's +-3 points above it (the top class
        # is always in the set, which can only add coverage)
        assert target - 0.015 <= cov <= target + 0.03, (target, cov)
        assert 1 <= size <= 4
    q = conformal_qhat(probs[cal], y[cal], 0.9)
    sets = prediction_sets(probs[:50], q)
    classes = list("abcd")
    for row, p in zip(sets, probs[:50]):  # the Prediction type builds the same sets
        pred = make_prediction(classes, p, conformal_qhat=q, coverage=0.9)
        assert set(pred.prediction_set) == {c for c, k in zip(classes, row) if k}
    assert conformal_qhat(probs[:5], y[:5], 0.9) is None  # too few to promise 90%: no threshold at all


def test_too_few_calibration_examples_claim_no_sets_and_say_so():
    from train.calibration import min_calibration_examples

    assert min_calibration_examples(0.9) == 9 and min_calibration_examples(0.95) == 19
    logits, y = _overconfident(20, seed=4, sharpen=1.0)
    few = calibrate(logits[:8], y[:8], coverage=0.9)
    assert few.conformal_qhat is None and few.coverage is None and few.mean_set_size is None
    sets_note = [w for w in few.warnings if "calibration examples" in w]
    assert len(sets_note) == 1 and "8 calibration examples" in sets_note[0] and "at least 9" in sets_note[0]
    enough = calibrate(logits[:9], y[:9], coverage=0.9)
    assert enough.conformal_qhat is not None and enough.coverage == 0.9
    assert not [w for w in enough.warnings if "calibration examples" in w]


def test_too_few_examples_fit_no_temperature_and_say_so():
    logits, y = _overconfident(40, seed=6, sharpen=3.0)
    few = calibrate(logits[:19], y[:19], coverage=0.9)
    assert few.temperature == 1.0 and any("temperature not fitted: 19 validation examples" in w for w in few.warnings)
    enough = calibrate(logits, y, coverage=0.9)
    assert enough.temperature > 1.2 and not any("temperature" in w for w in enough.warnings)  # overconfident: T > 1
    # without a threshold the only set that keeps the promise holds every class (held-out figures still computed)
    probs = softmax(logits[:8])
    assert empirical_coverage(probs, y[:8], None) == (1.0, float(probs.shape[1]))


def test_class_weights_change_the_temperature_fit_but_not_the_conformal_threshold():
    logits, y = _overconfident(600, seed=5, sharpen=1.0)
    weights = np.where(y == 0, 5.0, 1.0)
    plain, weighted = calibrate(logits, y, 0.9), calibrate(logits, y, 0.9, weights=weights)
    assert plain.n == weighted.n == 600  # every example once
    assert plain.temperature != pytest.approx(weighted.temperature, rel=1e-3)
    assert conformal_qhat(softmax(logits, weighted.temperature), y, 0.9) == pytest.approx(weighted.conformal_qhat)


# ---- diagnosis -------------------------------------------------------------------------------------
EP = np.arange(12)
GOOD_TRAIN = 1.3 * np.exp(-EP / 2) + 0.1


def _curves(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "good-fit":
        return GOOD_TRAIN, GOOD_TRAIN + 0.06
    if name == "overfitting":
        tr = 1.3 * np.exp(-EP / 2) + 0.02
        return tr, 0.45 + 0.025 * (EP - 4) ** 2
    if name == "underfit-capacity":
        tr = 1.05 + 0.3 * np.exp(-EP)
        return tr, tr + 0.03
    if name == "underfit-needs-more-training":
        tr = 1.38 - 0.07 * EP
        return tr, tr + 0.05
    if name == "training-set-too-small":
        return 1.2 * np.exp(-EP / 1.5) + 0.05, 1.0 * np.exp(-EP / 1.5) + 0.65
    if name == "validation-unrepresentative":
        return GOOD_TRAIN, GOOD_TRAIN + 0.05 + 0.35 * (-1.0) ** EP
    raise KeyError(name)


@pytest.mark.parametrize("name", NAMES)
def test_each_diagnosis_from_curves_built_to_show_it(name, tmp_path):
    tr, va = _curves(name)
    d = diagnose(tr, va, n_classes=4, n_train=160, n_valid=40)
    assert d.name == name, str(d)
    assert d.advice and d.explanation


def test_validation_lower_than_training_is_unrepresentative():
    d = diagnose(GOOD_TRAIN + 0.4, GOOD_TRAIN, n_classes=4)
    assert d.name == "validation-unrepresentative" and "below" in d.explanation


def test_diagnosis_handles_short_and_diverged_runs():
    assert diagnose([1.0, 0.9], [1.1, 1.0], n_classes=3).name == "underfit-needs-more-training"
    assert diagnose([1.0, np.nan, np.nan], [1.0, 2.0, np.inf]).name == "underfit-capacity"


# ---- splits ------------------------------------------------------------------------------------------
def _people(n_persons=6, per=20, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    persons = np.repeat([f"p{i}" for i in range(n_persons)], per)
    labels = rng.choice([f"c{k}" for k in range(classes)], size=len(persons))
    return labels, persons


@pytest.mark.parametrize("seed", range(5))
def test_grouped_split_never_shares_a_person(seed):
    labels, persons = _people(seed=seed)
    s = grouped_split(labels, persons, seed=seed)
    assert not set(persons[s.train_idx]) & set(persons[s.valid_idx])
    assert len(s.train_idx) + len(s.valid_idx) == len(labels)
    assert 0.1 < len(s.valid_idx) / len(labels) < 0.4
    assert "validation persons" in s.describe(persons)


def test_random_split_is_stratified_and_mixes_persons():
    labels, persons = _people()
    s = random_split(labels, 0.2, seed=0)
    assert set(labels[s.valid_idx]) == set(labels)
    assert set(persons[s.train_idx]) & set(persons[s.valid_idx])  # the leak the lesson warns about


def test_walk_forward_validates_only_on_the_future():
    times = np.random.default_rng(0).permutation(100).astype(float)
    folds = walk_forward(times, folds=3)
    assert len(folds) == 3
    for f in folds:
        assert times[f.train_idx].max() < times[f.valid_idx].min()
    assert len(folds[0].train_idx) < len(folds[2].train_idx)
    with pytest.raises(SplitError, match="too few"):
        walk_forward(times[:4], folds=5)


def test_split_errors_say_what_to_do():
    with pytest.raises(SplitError, match="one person"):
        grouped_split(["a", "b"] * 10, ["ana"] * 20)
    with pytest.raises(SplitError, match="only one class"):
        check_labels(["a"] * 30)
    with pytest.raises(SplitError, match=r"at least 5 per class.*b: 2"):
        check_labels(["a"] * 10 + ["b"] * 2)
    with pytest.raises(SplitError, match="unknown split"):
        SplitSpec.parse("grouped:pet")
    assert SplitSpec.parse("time:4").folds == 4 and SplitSpec.parse("grouped:session").name == "grouped:session"


def test_locked_test_set_is_fixed_and_counts_evaluations(tmp_path):
    from train.samples import SampleStore

    store = SampleStore(tmp_path / "s")
    labels, persons = _people(n_persons=4, per=10)
    for lab, per in zip(labels, persons):
        store.add_landmarks(np.random.rand(6), lab, person=per)
    lock = LockedTestSet(store, "landmarks")
    ids = lock.lock()
    assert ids and lock.lock() == ids  # a second lock keeps the first choice
    test_persons = {store.get(i).person for i in ids}
    rest = {s.person for s in store.samples("landmarks", exclude=ids)}
    assert not test_persons & rest  # 3+ persons: the test set is grouped by person too
    assert lock.record_evaluation("m1", 0.8) == 0
    assert LockedTestSet(store, "landmarks").record_evaluation("m2", 0.9) == 1  # persisted in the store
