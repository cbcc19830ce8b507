"""Confidence of a transcript segment: features, calibrated maps, flags, Prediction wrapper."""
from __future__ import annotations

import math

import numpy as np

from models.asr_confidence import (ASR_SCORE_NOTE, CORRECT_MAP, FEATURE_NAMES, RELIABLE_CLASSES, SegmentSignals,
                                   logprob_from_words, score_segment)
from models.prediction import Decision, RoutingPolicy


def signals(avg_logprob=-0.2, no_speech_prob=0.02, compression_ratio=1.3, word_probs=(0.95, 0.9, 0.97, 0.92), duration_s=1.6):
    return SegmentSignals(avg_logprob, no_speech_prob, compression_ratio, tuple(word_probs), duration_s)


def test_features_are_finite_even_for_missing_signals():
    f = signals(avg_logprob=math.nan, no_speech_prob=math.nan, word_probs=(), duration_s=0.0).features()
    assert f.shape == (len(FEATURE_NAMES),) and np.isfinite(f).all()


def test_clear_speech_scores_above_a_hallucination():
    good = score_segment(signals())
    bad = score_segment(signals(avg_logprob=-1.6, no_speech_prob=0.7, compression_ratio=1.9, word_probs=(0.2, 0.1, 0.3), duration_s=4.0))
    assert 0.0 <= bad.confidence < good.confidence <= 1.0
    assert bad.p_hallucinated > good.p_hallucinated
    assert bad.hallucinated and not good.hallucinated


def test_whisper_rules_always_flag_loops_and_silence():
    loop = score_segment(signals(compression_ratio=3.1))
    silence = score_segment(signals(no_speech_prob=0.9, avg_logprob=-1.2))
    assert loop.hallucinated and silence.hallucinated


def test_as_prediction_routes_by_calibrated_confidence():
    conf = score_segment(signals())
    p = conf.as_prediction(policy=RoutingPolicy(accept_at=0.0), timestamp_s=3.0, extra={"text": "hello"})
    assert p.classes == RELIABLE_CLASSES and not p.calibrated  # fitted on synthetic speech only: a score
    assert p.calibration_note == ASR_SCORE_NOTE and p.to_dict()["calibration"] == ASR_SCORE_NOTE
    assert math.isclose(p.probs[0], conf.confidence) and p.decision == Decision.ACCEPT
    assert p.extra["text"] == "hello" and p.extra["hallucinated"] is False and p.timestamp_s == 3.0
    strict = conf.as_prediction(policy=RoutingPolicy(accept_at=1.01))
    assert strict.decision != Decision.ACCEPT


def test_logprob_from_words_weights_by_token_count():
    assert math.isclose(logprob_from_words([0.5, 1.0], [1, 3]), math.log(0.5) / 4)
    assert math.isnan(logprob_from_words([], []))


def test_map_is_a_probability():
    x = np.random.default_rng(0).normal(size=(100, len(FEATURE_NAMES))) * 5
    p = CORRECT_MAP(x)
    assert p.shape == (100,) and ((p >= 0) & (p <= 1)).all()


def test_hallucinated_segment_abstains_with_its_reason():
    bad = score_segment(signals(compression_ratio=3.1))  # a decoding loop: Whisper's own rule flags it
    p = bad.as_prediction(policy=RoutingPolicy(accept_at=0.0))  # would accept anything on probability alone
    assert p.decision == Decision.ABSTAIN and "hallucinated" in p.reason
