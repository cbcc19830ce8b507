import numpy as np
import pytest

from models.prediction import Decision, RoutingPolicy, make_prediction, softmax


def test_probabilities_normalised_and_derived_fields():
    p = make_prediction(["a", "b", "c"], np.array([2.0, 1.0, 1.0]))
    assert p.probs.sum() == pytest.approx(1.0)
    assert p.label == "a" and p.confidence == pytest.approx(0.5)
    assert p.margin == pytest.approx(0.25)
    assert 0 < p.entropy < np.log(3)


def test_routing_thresholds_binary_and_multiclass():
    policy = RoutingPolicy()
    assert make_prediction(["no", "yes"], [0.05, 0.95], policy=policy).decision is Decision.ACCEPT
    assert make_prediction(["no", "yes"], [0.95, 0.05], policy=policy).decision is Decision.ACCEPT
    assert make_prediction(["no", "yes"], [0.3, 0.7], policy=policy).decision is Decision.REVIEW
    # 7 classes: uniform-ish top class abstains, middling goes to review
    flat = np.full(7, 1 / 7)
    assert make_prediction(list("abcdefg"), flat).decision is Decision.ABSTAIN
    mid = np.array([0.6] + [0.4 / 6] * 6)
    assert make_prediction(list("abcdefg"), mid).decision is Decision.REVIEW


def test_conformal_set_contains_top_and_grows_with_qhat():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    small = make_prediction(list("abcd"), probs, conformal_qhat=0.55, coverage=0.9)
    large = make_prediction(list("abcd"), probs, conformal_qhat=0.9, coverage=0.9)
    assert small.prediction_set == ("a",)
    assert large.prediction_set == ("a", "b", "c")
    assert make_prediction(list("abcd"), probs, conformal_qhat=0.0).prediction_set == ("a",)


def test_bad_probabilities_abstain_instead_of_crashing():
    p = make_prediction(["x", "y"], [np.nan, 1.0])
    assert p.decision is Decision.ABSTAIN
    with pytest.raises(ValueError, match="2 probabilities for 3 classes"):
        make_prediction(["a", "b", "c"], [0.5, 0.5])


def test_softmax_temperature_flattens():
    logits = np.array([3.0, 0.0])
    assert softmax(logits, 2.0)[0] < softmax(logits, 1.0)[0]
