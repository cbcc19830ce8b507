"""Spoken commands on the real tiny.en model and espeak-ng speech: classes, none of these, bad input, refitting."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from models.commands import (NONE_OF_THESE, CommandCalibration, CommandClassifier, CommandInputError, CommandScorer,
                             NoSpeechError, check_labels, default_calibration, label_scores, normalise, surface_forms)
from models.prediction import Decision

SR = 16_000
LABELS = ("yes", "no", "stop", "go", "left", "right", "7")


def load(path) -> np.ndarray:
    """The WAV as (N,) float32 with 0.3 s of silence on each side (espeak starts at sample 0)."""
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == SR
    pad = np.zeros(int(0.3 * SR), np.float32)
    return np.concatenate([pad, audio, pad])


def room_noise(seconds: float = 1.0, level_dbfs: float = -60.0, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (level_dbfs / 20)).astype(np.float32)


# ---- no model needed ---------------------------------------------------------------------------
def test_surface_forms_cover_case_punctuation_and_numbers():
    assert {" yes", " Yes.", " Yes!"} <= set(surface_forms("yes"))
    assert {" 7", " seven", " Seven."} <= set(surface_forms("7"))
    assert {" 3", " three"} <= set(surface_forms("Three"))
    assert normalise(" Two.") == normalise("2") == "two"
    assert normalise("Turn on!") == "turn on"


@pytest.mark.parametrize("labels, message", [
    ([], "no labels"),
    (["", "  "], "no labels"),
    ("yes, no", "as a list"),
    (["yes", "Yes."], "same spoken word"),
    (["3", "three"], "same spoken word"),
    ([" ".join(["word"] * 60)], "60 words"),
    (["да", "нет"], "English-only"),
    (["是", "不是"], "English-only"),
    (["yes", "none of these"], "added automatically"),
    (["yes", "!!!"], "no letters"),
])
def test_bad_labels_are_refused_with_what_to_do(labels, message):
    with pytest.raises(CommandInputError, match=message):
        check_labels(labels, english_only=True)


def test_non_english_labels_pass_for_a_multilingual_model():
    assert check_labels(["да", "нет"], english_only=False) == ("да", "нет")


def test_label_scores_are_log_sum_exp_over_forms():
    out = label_scores(np.log([0.2, 0.3, 0.1]), [0, 0, 1], 2)
    assert np.allclose(np.exp(out), [0.5, 0.1])


def test_calibration_biases_apply_to_none_of_these_only():
    cal = CommandCalibration(temperature=2.0, rejection_bias=-1.0, match_bias=-3.0, no_speech_weight=0.5)
    z = cal.logits(np.array([[-1.0, -2.0]]), np.array([-0.5]), np.array([False]), np.array([0.5]))
    assert np.allclose(z, [[-1.0, -2.0, -1.5]])
    assert np.allclose(cal.logits(np.array([-1.0, -2.0]), -0.5, True, 0.5), [-1.0, -2.0, -3.5])
    assert np.allclose(cal.logits(np.array([-1.0, -2.0]), -0.5, True, 0.9), [-1.0, -2.0, -3.5 + 0.5 * np.log(9)])
    p = cal.probs(np.array([-1.0, -2.0]), -0.5, False, 0.1)
    assert p.shape == (3,) and abs(p.sum() - 1) < 1e-9


def test_rejection_scale_shrinks_the_margin_of_none_of_these_only():
    raw = CommandCalibration(rejection_bias=0.0)
    scaled = CommandCalibration(rejection_bias=0.0, rejection_scale=0.5)
    labels, transcript = np.array([-6.0, -8.0]), -0.5  # the transcript beats the best label by 5.5
    assert np.allclose(raw.logits(labels, transcript, False, 0.5), [-6.0, -8.0, -0.5])
    assert np.allclose(scaled.logits(labels, transcript, False, 0.5), [-6.0, -8.0, -3.25])
    assert raw.probs(labels, transcript, False, 0.5)[-1] > 0.99 > scaled.probs(labels, transcript, False, 0.5)[-1]


def test_prior_weights_take_content_free_scores_off_labels_and_transcript():
    cal = CommandCalibration(prior_weight=1.0, transcript_prior_weight=0.5)
    labels, priors = np.array([-3.0, -4.0]), np.array([-1.0, -6.0])  # label 0 is what Whisper says to no speech
    z = cal.logits(labels, -2.0, False, 0.5, priors, -1.0)
    assert np.allclose(z, [-2.0, 2.0, -1.5])  # label 1 now leads; none = -2 - 0.5 * -1
    assert np.allclose(CommandCalibration().logits(labels, -2.0, False, 0.5, priors, -1.0), [-3.0, -4.0, -2.0])


def test_held_out_summary_counts_confident_errors_by_kind():
    from train.command_calibration import summary

    probs = np.array([[0.95, 0.03, 0.02],   # label 0, right
                      [0.02, 0.03, 0.95],   # rejected a label-0 clip at 0.95: confidently wrong
                      [0.05, 0.03, 0.92],   # none of these, right
                      [0.30, 0.60, 0.10]])  # label 1 for a none clip, but unsure
    s = summary(probs, np.array([0, 0, 2, 2]))
    assert s["confident_wrong_rate"] == 0.25 and s["command_accuracy"] == 0.5
    assert s["rejection_confident_wrong_rate"] == 0.5 and s["acceptance_confident_wrong_rate"] == 0.0


def test_a_voice_the_fit_has_not_heard_gets_a_softer_cross_fitted_temperature():
    """Five persons whose words Whisper hears well and one whose words it often mishears: fitted in-sample, the
    temperature averages over all six; scored out of fold, the mishearing person meets a fit that never heard them."""
    from train.command_calibration import Rows, fit_for_new_persons, fit_parameters

    rng = np.random.default_rng(0)
    n_per, k = 24, 3
    persons = np.repeat([f"p{i}" for i in range(6)], n_per)
    target = np.tile(np.arange(k + 1), 6 * n_per // (k + 1))  # labels 0..2 and none of these (3)
    scores = rng.normal(-8.0, 1.0, (len(target), k))
    is_label = target < k
    scores[is_label, target[is_label]] = rng.normal(-2.0, 1.0, is_label.sum())
    misheard = (persons == "p5") & is_label & (rng.random(len(target)) < 0.5)  # p5: a wrong label scores best
    scores[misheard, (target[misheard] + 1) % k] = -1.0
    transcript = np.where(is_label, -6.0, -2.0) + rng.normal(0, 0.5, len(target))
    rows = Rows(scores, np.zeros(k), transcript, np.zeros(len(target)), np.zeros(len(target), bool),
                np.full(len(target), 0.1), target, persons, np.full(len(target), "clean"))
    in_sample = fit_parameters([rows])
    cal, factor = fit_for_new_persons([rows], n_folds=6)
    assert factor > 1.05 and np.isclose(cal.temperature, in_sample.temperature * factor)
    assert cal.rejection_bias == in_sample.rejection_bias and cal.prior_weight == in_sample.prior_weight  # only T moves
    assert (rows.probs(cal).argmax(1) == rows.probs(in_sample).argmax(1)).all()
    two_persons = rows.subset(np.isin(persons, ["p0", "p1"]))
    assert fit_for_new_persons([two_persons])[1] == 1.0  # nobody left to hold out: the in-sample temperature


def test_shipped_calibration_for_tiny_en_was_measured_on_held_out_persons():
    cal = default_calibration("tiny.en")
    assert cal.calibrated and cal.model == "tiny.en"
    assert "traindata" in cal.fitted_on and "evaldata" not in cal.fitted_on
    assert cal.heldout_ece is not None and cal.heldout_ece <= 0.05
    assert cal.heldout["persons"] >= 20 and cal.n >= 400
    assert 0 < cal.conformal_qhat < 1
    assert not default_calibration("base").calibrated  # nothing fitted for it: said so
    for condition in ("clean", "telephone", "noisy"):  # held-out speakers, every clip in each condition
        held = cal.heldout["by_condition"][condition]
        assert held["n"] >= 400 and held["ece"] <= 0.05, (condition, held)
        # at most 1 % of answers wrong with p >= 0.9 (auto-accepted), and a confident "none of these" is not wrong
        # more often than a confident label
        assert held["confident_wrong_rate"] <= 0.01, (condition, held)
        assert held["rejection_confident_wrong_rate"] <= held["acceptance_confident_wrong_rate"], (condition, held)
    assert cal.heldout["temperature_factor"] >= 1 and "cross-fitted" in cal.fitted_on  # T fitted for unheard voices
    assert cal.prior_weight > 0  # the fit found Whisper's content-free prior worth taking off


def test_models_commands_does_not_import_train():
    import ast
    from pathlib import Path

    import models.commands

    tree = ast.parse(Path(models.commands.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.split(".")[0] in ("train", "demos", "bench")]


def test_learned_forms_come_from_transcripts_of_a_label_only():
    from train.command_calibration import ClipScores, LabelledClip, learn_forms

    clips = [LabelledClip(f"c{i}", None, label, "p") for i, label in enumerate(["two", "two", "two", NONE_OF_THESE, NONE_OF_THESE, "yes"])]
    texts = ["to.", "To.", "2.", "Thank you.", "Thank you.", "Yes."]
    scores = {c.id: ClipScores(t, -1.0, 0.1, {}) for c, t in zip(clips, texts)}
    learned = learn_forms(clips, scores, ["two", "yes"])
    assert set(learned) == {"two"} and set(learned["two"]) == {" to.", " To."}  # "2." is the label itself


# ---- the real model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier() -> CommandClassifier:
    return CommandClassifier(LABELS, CommandScorer())


@pytest.mark.slow
@pytest.mark.parametrize("spoken_text, label", [("yes", "yes"), ("stop", "stop"), ("seven", "7")])
def test_spoken_command_comes_back_as_its_class(classifier, spoken, spoken_text, label):
    p = classifier.classify(load(spoken(spoken_text)))
    assert p.classes == LABELS + (NONE_OF_THESE,)
    assert p.label == label, (p.as_label_dict(), p.extra["transcript"])
    assert p.confidence > 0.6
    assert p.calibrated and "traindata" in p.extra["calibrated_on"]
    assert p.prediction_set is not None and label in p.prediction_set
    assert isinstance(p.extra["transcript"], str) and p.decision in tuple(Decision)
    assert abs(p.probs.sum() - 1) < 1e-9


@pytest.mark.slow
def test_content_free_prior_ranks_what_whisper_says_to_noise_first(classifier):
    scorer = classifier.scorer
    forms = [scorer.encode_text(f) for f in (" you", " Thank you.", " stop", " seven")]
    priors = scorer.priors(forms)
    assert min(priors[:2]) > max(priors[2:]) + 1  # "you" and "Thank you." are Whisper's words for no speech
    assert np.array_equal(scorer.priors(forms[::-1]), priors[::-1])  # memoised, same order as asked


@pytest.mark.slow
def test_room_noise_and_an_unknown_word_are_none_of_these(classifier, spoken):
    quiet = classifier.classify(room_noise())
    assert quiet.label == NONE_OF_THESE, (quiet.as_label_dict(), quiet.extra["transcript"])
    word = classifier.classify(load(spoken("elephant")))
    assert word.label == NONE_OF_THESE, (word.as_label_dict(), word.extra["transcript"])


@pytest.mark.slow
def test_silent_or_broken_utterances_get_clear_errors(classifier):
    with pytest.raises(NoSpeechError, match="silent"):
        classifier.classify(np.zeros(SR, np.float32))
    with pytest.raises(NoSpeechError):
        classifier.classify(np.zeros(0, np.float32))
    with pytest.raises(CommandInputError, match="sample rate"):
        classifier.classify(room_noise(), sample_rate=0)
    with pytest.raises(CommandInputError, match="English-only"):
        CommandClassifier(["oui", "да"], classifier.scorer)


@pytest.mark.slow
def test_a_word_cut_shorter_than_0_2_s_is_padded_not_refused(classifier, spoken):
    audio = load(spoken("stop", rate_wpm=260))
    loud = np.flatnonzero(np.abs(audio) > 0.02 * np.abs(audio).max())
    tight = audio[loud[0]: loud[0] + int(0.19 * SR)]  # the word's first 0.19 s, no silence around it
    p = classifier.classify(tight)
    assert p.label == "stop", (p.as_label_dict(), p.extra["transcript"])


@pytest.mark.slow
def test_a_team_refit_from_recordings_is_validated_by_person(spoken, tmp_path):
    """Three espeak voices as three persons record yes/no/stop and an unknown word; the refit holds out persons."""
    from train.command_calibration import fit_command_calibration, store_clips
    from train.samples import SampleStore

    store = SampleStore(tmp_path / "team")
    for voice in ("en-us", "en-gb", "en-us+f3"):
        for word in ("yes", "no", "stop", "banana"):
            wav = spoken(word, voice=voice)
            store.add("audio", "other" if word == "banana" else word, person=voice, data=wav.read_bytes(), suffix=".wav")
    clips = store_clips(tmp_path / "team")
    assert {c.label for c in clips} == {"yes", "no", "stop", NONE_OF_THESE}
    shipped = default_calibration("tiny.en")
    cal, report = fit_command_calibration(clips, [("yes", "no", "stop")], CommandScorer(), fitted_on="team test", n_folds=3,
                                          learn=True, prior=shipped)
    assert report["heldout"]["persons"] == 3 and report["heldout"]["n"] == 12
    assert report["heldout"]["accuracy"] >= 0.75
    assert not cal.calibrated and "too few" in cal.fitted_on and "held-out ECE" in cal.fitted_on  # 12 < 30 recordings
    assert 0.3 < cal.temperature < 3.0  # the prior keeps a tiny fit from running to an extreme
    classifier = CommandClassifier(["yes", "no", "stop"], CommandScorer(), calibration=cal)
    assert classifier.classify(load(spoken("stop"))).label == "stop"
    path = cal.to_json(tmp_path / "cal.json")
    assert CommandCalibration.from_json(path) == cal
