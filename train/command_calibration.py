"""Fit the spoken-command classifier's calibration (temperature, rejection, prior weights), validated on held-out persons.

`models.commands` turns Whisper's label scores into probabilities with eight numbers (temperature,
rejection and match biases, no-speech weight, rejection scale and cap, and the weights of Whisper's
content-free prior on the labels and on the transcript) and a conformal threshold. They are fitted here,
by likelihood, on recordings that are NOT evaluation data; the temperature is then refitted on out-of-fold
scores (each training person scored by a fit without them), since it is meant for voices the fit has not
heard. Their error is measured on persons held out of the whole fit (group k-fold by person, the cross-fit
nested inside each fold): a calibration is only called calibrated with that figure beside it.

Two sources:
- the shipped tiny.en calibration: `../shared/traindata/speech_commands_v0.01_sample` (30 words:
  10 commands, 10 digits, 10 others, ~38 speakers). Two label sets are scored: the 10 commands and the
  10 digits; every clip of a word outside the set is a "none of these" example for it, plus synthetic
  noise clips (white, pink, brown noise and hum at -70..-30 dBFS) as silence;
- a team's own voice recordings (`SampleStore`, kind "audio", with label and person): the labels are
  the team's, recordings labelled "none"/"other"/"unknown"/"silence" are none-of-these examples, and
  the surface forms are also learned from the team's transcripts (if Whisper writes "two" as "to.",
  " to." becomes a form of "two"), learned on the training persons of each fold only.

    python -m train.command_calibration --speech-commands ../shared/traindata/speech_commands_v0.01_sample \\
        --out models/calibration/commands_tiny_en.json
    python -m train.command_calibration --store my_project --out my_project/commands_calibration.json
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from models.commands import (NONE_OF_THESE, CommandCalibration, CommandClassifier, CommandScorer, CommandScorerSettings,
                             NoSpeechError, label_scores, normalise, surface_forms)
from models.prediction import RoutingPolicy, softmax
from train.audio_conditions import CONDITIONS, apply_condition, condition_seed
from train.calibration import ece, empirical_coverage, conformal_qhat

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NONE_ALIASES = {NONE_OF_THESE, "none", "other", "unknown", "_unknown_", "silence", "_silence_", "noise"}
SAMPLE_RATE = 16_000
N_FOLDS = 5  # group k-fold by person
MAX_LEARNED_FORMS = 4  # per label
MIN_FORM_COUNT = 2  # a transcript becomes a form of a label after this many of its recordings
COVERAGE = 0.9  # target of the prediction sets
# Share of the fit's weight given to none-of-these examples, whatever the data's mix (Speech Commands has 2
# non-command clips per command clip). With the content-free prior in the scores, on persons held out of the
# traindata fit (every clip clean, telephone, noisy): 0.3 gave accuracy on label words 0.972 / 0.944 / 0.933 with
# ECE <= 0.029 and unknown words rejected >= 0.95; 0.5 gave 0.956 / 0.922 / 0.911 (false rejects 4-8%) at ECE <= 0.019
# (both with the in-sample temperature; cross-fitted, 0.3 gives the same answers at ECE <= 0.039).
NONE_SHARE = 0.3
# Recording conditions of the shipped fit (train.audio_conditions): every clip clean, on a telephone line and in
# noise (the conditions bench.commands reports: each then has all 301 clips by all speakers, where a third gave
# figures that moved by 0.03 with which clips fell in it), and once more in one of: another gain, a room, cut
# tight. Four scorings per clip (1204), about 1 s each on this shared 2-core machine.
EVERY_CLIP = ("clean", "telephone", "noisy")
ROTATED = ("gain", "reverb", "onset")
MAX_REJECTION_CAP = 20.0  # log units: the fit starts here (no cap in effect) and may lower it
PRIOR_EXAMPLES = 20.0  # a prior calibration counts as this many recordings (team refits start from the shipped one)
MIN_CALIBRATION_CLIPS = 30  # fewer recordings than this (or a single person) are not called calibrated
MIN_CROSS_FIT_PERSONS = 3  # fewer persons than this: the temperature stays as fitted in-sample (nobody to hold out)
MAX_LOG_TEMPERATURE_FACTOR = 2.0  # the cross-fitted temperature stays within e^-2..e^2 of the in-sample one


@dataclass(frozen=True)
class LabelledClip:
    id: str  # unique, stable: the cache key (a path or a sample id, with "|condition" unless clean)
    audio: np.ndarray | None  # (N,) float32 16 kHz; None: read from `path` when needed
    label: str  # a label, or NONE_OF_THESE
    person: str
    path: Path | None = None
    condition: str = "clean"  # recording condition made from the clip (train.audio_conditions)


def in_conditions(clips: Sequence[LabelledClip], conditions: Sequence[str], rotate: Sequence[str] = ()) -> list[LabelledClip]:
    """Each clip once per recording condition in `conditions`, and once more in one of `rotate` (clip k in
    rotate[k % len(rotate)]: a condition listed twice gets twice the share). The person stays the same, so
    person folds keep all of a person's versions together."""
    for c in (*conditions, *rotate):
        if c not in CONDITIONS:
            raise ValueError(f"unknown recording condition {c!r}: choose from {', '.join(CONDITIONS)}")

    def version(clip: LabelledClip, c: str) -> LabelledClip:
        return replace(clip, id=clip.id if c == "clean" else f"{clip.id}|{c}", condition=c)

    every = [version(clip, c) for c in conditions for clip in clips]
    return every + ([version(clip, rotate[k % len(rotate)]) for k, clip in enumerate(clips)] if rotate else [])


@dataclass(frozen=True)
class ClipScores:
    transcript: str
    transcript_logprob: float
    no_speech_prob: float
    form_logprobs: dict[str, float]  # surface form -> summed token log-prob
    transcript_prior: float = 0.0  # the transcript's log-prob on content-free audio (CommandScorer.priors)


# ---- data ----------------------------------------------------------------------------------------
def refuse_evaldata(path: Path) -> None:
    if "evaldata" in Path(path).resolve().parts:
        raise ValueError(f"{path} is evaluation data: calibration is never fitted on it (use ../shared/traindata)")


def speech_commands_clips(folder: str | Path) -> list[LabelledClip]:
    """labels.csv (path,label,person) of a Speech Commands sample -> clips (audio read lazily)."""
    folder = Path(folder)
    refuse_evaldata(folder)
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [LabelledClip(row["path"], None, row["label"], row["person"], folder / row["path"]) for row in rows]


def synthetic_silence(n: int, seed: int = 0) -> list[LabelledClip]:
    """n one-second clips without speech: white, pink, brown noise or mains hum at -70..-30 dBFS."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        kind = ("white", "pink", "brown", "hum")[i % 4]
        white = rng.standard_normal(SAMPLE_RATE)
        if kind == "white":
            x = white
        elif kind == "hum":
            t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
            x = np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t) + 0.3 * white
        else:  # pink (1/f) or brown (1/f^2) by shaping the spectrum
            spectrum = np.fft.rfft(white)
            f = np.maximum(np.fft.rfftfreq(SAMPLE_RATE), 1.0 / SAMPLE_RATE)
            x = np.fft.irfft(spectrum / (np.sqrt(f) if kind == "pink" else f), SAMPLE_RATE)
        level_dbfs = rng.uniform(-70, -30)
        x = x / np.sqrt(np.mean(x**2)) * 10 ** (level_dbfs / 20)
        clips.append(LabelledClip(f"synthetic-{kind}-{i}", np.clip(x, -1, 1).astype(np.float32), NONE_OF_THESE,
                                  f"synthetic-noise-{i}"))
    return clips


def store_clips(root: str | Path) -> list[LabelledClip]:
    """A team's voice recordings (SampleStore kind 'audio'); none-like labels become NONE_OF_THESE."""
    from train.samples import SampleStore

    refuse_evaldata(Path(root))
    store = SampleStore(root)
    clips = []
    for s in store.samples("audio"):
        label = NONE_OF_THESE if normalise(s.label) in NONE_ALIASES or s.label in NONE_ALIASES else s.label
        clips.append(LabelledClip(s.id, None, label, s.person, s.path))
    if not clips:
        raise ValueError(f"{root} holds no audio recordings: record each command a few times (Train tab, microphone)")
    return clips


def clip_audio(clip: LabelledClip) -> np.ndarray:
    if clip.audio is not None:
        audio = clip.audio
    else:
        from capture.audio import load_audio

        audio = load_audio(clip.path, SAMPLE_RATE)
    base_id = clip.id.rsplit("|", 1)[0] if clip.condition != "clean" else clip.id
    return apply_condition(clip.condition, audio, condition_seed(base_id, clip.condition))


# ---- scoring (the slow part: Whisper once or twice per clip) -------------------------------------
def score_clips(scorer: CommandScorer, clips: Sequence[LabelledClip], forms: Sequence[str],
                cache: dict[str, dict] | None = None, progress: Callable[[str], None] = lambda s: None) -> dict[str, ClipScores]:
    """Each clip's greedy transcript and the log-prob of every form; `cache` (id -> dict) is read and extended."""
    cache = {} if cache is None else cache
    out: dict[str, ClipScores] = {}
    t0 = time.perf_counter()
    for k, clip in enumerate(clips):
        known = cache.get(clip.id)
        missing = [f for f in forms if known is None or f not in known["forms"]]
        if known is None or missing:
            try:
                scored = scorer.score(clip_audio(clip), [scorer.encode_text(f) for f in missing])
                entry = known or {"transcript": scored.transcript, "transcript_logprob": scored.transcript_logprob,
                                  "no_speech_prob": scored.no_speech_prob, "transcript_prior": scored.transcript_prior,
                                  "forms": {}}
                entry["forms"].update({f: float(lp) for f, lp in zip(missing, scored.form_logprobs)})
            except NoSpeechError:  # digital silence: the classifier refuses it before scoring, so it is not fitted
                entry = {"transcript": "", "transcript_logprob": None, "no_speech_prob": None, "forms": {}}
            cache[clip.id] = entry
        entry = cache[clip.id]
        if entry["transcript_logprob"] is not None:
            if entry.get("transcript_prior") is None:  # a cache from before priors: the decoder alone, on the text
                text = entry["transcript"].strip()
                entry["transcript_prior"] = float(scorer.priors([scorer.encode_text(" " + text) if text else []])[0])
            out[clip.id] = ClipScores(entry["transcript"], entry["transcript_logprob"], entry["no_speech_prob"],
                                      entry["forms"], entry["transcript_prior"])
        if (k + 1) % 25 == 0:
            progress(f"scored {k + 1}/{len(clips)} clips ({(time.perf_counter() - t0) / (k + 1):.2f} s each)")
    return out


def learn_forms(clips: Sequence[LabelledClip], scores: dict[str, ClipScores], labels: Sequence[str]) -> dict[str, list[str]]:
    """Transcripts that stand for a label: written for its recordings more often than for any other class.

    Keys are normalised labels (as `CommandCalibration.extra_forms`); values are transcripts as Whisper
    wrote them (every spelling seen, most frequent first), with the leading space its decoder writes.
    """
    keys = {normalise(label) for label in labels}
    counts: dict[str, dict[str, int]] = {}  # normalised transcript -> class -> count
    spelled: dict[str, dict[str, int]] = {}  # normalised transcript -> spelling -> count
    for clip in clips:
        text = scores[clip.id].transcript.strip() if clip.id in scores else ""
        key = normalise(text)
        if not key or key in keys:
            continue
        cls = normalise(clip.label) if normalise(clip.label) in keys else NONE_OF_THESE
        counts.setdefault(key, {}).setdefault(cls, 0)
        counts[key][cls] += 1
        spelled.setdefault(key, {}).setdefault(" " + text, 0)
        spelled[key][" " + text] += 1
    learned: dict[str, list[tuple[int, str]]] = {}
    for key, by_class in counts.items():
        best = max(by_class, key=by_class.get)
        runner_up = max([v for c, v in by_class.items() if c != best], default=0)
        if best != NONE_OF_THESE and by_class[best] >= MIN_FORM_COUNT and by_class[best] > runner_up:
            learned.setdefault(best, []).extend((n, text) for text, n in spelled[key].items())
    return {k: [t for _, t in sorted(v, reverse=True)[:MAX_LEARNED_FORMS]] for k, v in learned.items()}


def candidate_forms(clips: Sequence[LabelledClip], scores: dict[str, ClipScores], labels: Sequence[str]) -> list[str]:
    """Every transcript of a recording of a label: a superset of what `learn_forms` can pick in any fold."""
    keys = {normalise(label) for label in labels}
    return list(dict.fromkeys(" " + scores[c.id].transcript.strip() for c in clips
                              if c.id in scores and normalise(c.label) in keys and normalise(scores[c.id].transcript)))


@dataclass(frozen=True)
class Rows:
    """One row per (clip, label set): what the calibration is fitted on."""

    label_scores: np.ndarray  # (N, K) log-sum-exp over each label's forms
    label_priors: np.ndarray  # (K,) the same on content-free audio
    transcript_logprob: np.ndarray  # (N,)
    transcript_prior: np.ndarray  # (N,) on content-free audio
    transcript_is_label: np.ndarray  # (N,) bool
    no_speech_prob: np.ndarray  # (N,)
    target: np.ndarray  # (N,) index of the true class; K = none of these
    person: np.ndarray  # (N,) str
    condition: np.ndarray  # (N,) str: recording condition

    def logits(self, cal: CommandCalibration) -> np.ndarray:
        return cal.logits(self.label_scores, self.transcript_logprob, self.transcript_is_label, self.no_speech_prob,
                          self.label_priors, self.transcript_prior)

    def probs(self, cal: CommandCalibration) -> np.ndarray:
        return softmax(self.logits(cal), cal.temperature)

    def subset(self, keep: np.ndarray) -> "Rows":
        """The rows where `keep` (N,) is true; label_priors, one per label, stay as they are."""
        per_row = ("label_scores", "transcript_logprob", "transcript_prior", "transcript_is_label", "no_speech_prob",
                   "target", "person", "condition")
        return replace(self, **{name: getattr(self, name)[keep] for name in per_row})


def build_rows(clips: Sequence[LabelledClip], scores: dict[str, ClipScores], labels: Sequence[str],
               extra_forms: dict[str, list[str]], form_priors: dict[str, float]) -> Rows:
    """Rows of one label set; form_priors: content-free log-prob of every form (CommandScorer.priors)."""
    keys = [normalise(label) for label in labels]
    forms, owner = [], []
    for i, label in enumerate(labels):
        for f in dict.fromkeys(surface_forms(label) + tuple(extra_forms.get(keys[i], ()))):
            forms.append(f)
            owner.append(i)
    used = [c for c in clips if c.id in scores]
    ls = np.array([label_scores(np.array([scores[c.id].form_logprobs[f] for f in forms]), owner, len(labels)) for c in used])
    target = np.array([keys.index(normalise(c.label)) if normalise(c.label) in keys else len(labels) for c in used])
    priors = label_scores(np.array([form_priors[f] for f in forms]), owner, len(labels))
    return Rows(ls.reshape(len(used), len(labels)), priors, np.array([scores[c.id].transcript_logprob for c in used]),
                np.array([scores[c.id].transcript_prior for c in used]),
                np.array([normalise(scores[c.id].transcript) in keys for c in used]),
                np.array([scores[c.id].no_speech_prob for c in used]), target,
                np.array([c.person for c in used]), np.array([c.condition for c in used]))


# ---- fitting -------------------------------------------------------------------------------------
def fit_parameters(row_sets: Sequence[Rows], none_share: float | None = None,
                   prior: CommandCalibration | None = None) -> CommandCalibration:
    """Temperature, the two biases, the no-speech weight, the rejection scale and cap, and the two prior
    weights minimising the negative log-likelihood of the rows.

    none_share: weight none-of-these rows so that they make up this share of the total weight (the share
    of non-commands expected in use); None: as they come in the data.
    prior: start from these parameters and pull towards them as PRIOR_EXAMPLES recordings would (a
    Gaussian prior): a team's few recordings move the shipped calibration only as far as they justify.
    """
    weights = [_row_weights(rows, row_sets, none_share) for rows in row_sets]
    theta0 = (np.array([math.log(prior.temperature), prior.rejection_bias, prior.match_bias, prior.no_speech_weight,
                        math.log(prior.rejection_scale), min(prior.rejection_cap, MAX_REJECTION_CAP), prior.prior_weight,
                        prior.transcript_prior_weight])
              if prior is not None else np.array([0.0, 0.0, 0.0, 0.0, 0.0, MAX_REJECTION_CAP, 0.0, 0.0]))
    n_rows = sum(len(r.target) for r in row_sets)
    pull = PRIOR_EXAMPLES / max(n_rows, 1) if prior is not None else 0.0

    def nll(theta: np.ndarray) -> float:
        cal = _parameters(theta)
        kept = [(rows, w) for rows, w in zip(row_sets, weights) if len(rows.target)]
        return (_weighted_nll([rows.logits(cal) / cal.temperature for rows, _ in kept], [rows.target for rows, _ in kept],
                              [w for _, w in kept]) + 0.5 * pull * float(((theta - theta0) ** 2).sum()))

    theta = theta0
    for _ in range(2):  # Nelder-Mead in 8 dimensions stalls on a shrunken simplex: restart it once where it stopped
        theta = minimize(nll, theta, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 4000}).x
    return _parameters(theta)


def fit_for_new_persons(row_sets: Sequence[Rows], none_share: float | None = None,
                        prior: CommandCalibration | None = None, n_folds: int = N_FOLDS) -> tuple[CommandCalibration, float]:
    """`fit_parameters`, with the temperature then cross-fitted for persons the fit has not heard; returns the
    calibration and the factor by which its temperature was multiplied (1 with fewer than MIN_CROSS_FIT_PERSONS).

    In-sample, the eight numbers are fitted to the margins of the very persons they are measured on; a new
    person's mishearings are not among them, so in-sample temperature is too sharp for a new voice, and by how
    much depends on who was in the fit (on the shipped recipe's person folds it ranged 0.35..0.79: 0.35 where
    the two speakers Whisper mishears most were held out). So each training person's rows are scored by a fit
    WITHOUT that person (group k-fold within the training persons, the same eight numbers refitted per fold),
    and the factor is the one temperature multiplier minimising the weighted negative log-likelihood of those
    out-of-fold rows (the figures of the sign model's calibration are made the same way). Only the temperature
    moves: which class wins does not change.
    """
    cal = fit_parameters(row_sets, none_share, prior)
    persons = sorted({str(p) for rows in row_sets for p in rows.person})
    if len(persons) < MIN_CROSS_FIT_PERSONS:
        return cal, 1.0
    logits, targets, weights = [], [], []
    for fold in person_folds(persons, n_folds):
        inner = fit_parameters([r.subset(~np.isin(r.person, list(fold))) for r in row_sets], none_share, prior)
        for rows in row_sets:
            held = rows.subset(np.isin(rows.person, list(fold)))
            logits.append(held.logits(inner) / inner.temperature)  # (n, K + 1): this label set's width
            targets.append(held.target)
            weights.append(_row_weights(held, row_sets, none_share))

    def nll(log_factor: float) -> float:
        return _weighted_nll([z / math.exp(log_factor) for z in logits], targets, weights)

    log_factor = minimize_scalar(nll, bounds=(-MAX_LOG_TEMPERATURE_FACTOR, MAX_LOG_TEMPERATURE_FACTOR), method="bounded").x
    factor = math.exp(float(log_factor))
    return replace(cal, temperature=cal.temperature * factor), factor


def _parameters(theta: np.ndarray) -> CommandCalibration:
    """The fitted vector (log temperature, biases, no-speech weight, log scale, cap, prior weights) as a calibration."""
    return CommandCalibration(temperature=math.exp(float(np.clip(theta[0], math.log(0.05), math.log(20.0)))),
                              rejection_bias=float(theta[1]), match_bias=float(theta[2]), no_speech_weight=float(theta[3]),
                              rejection_scale=float(np.exp(np.clip(theta[4], -4, 2))),
                              rejection_cap=float(np.clip(theta[5], 0.0, MAX_REJECTION_CAP)),
                              prior_weight=float(theta[6]), transcript_prior_weight=float(theta[7]))


def _weighted_nll(logits: Sequence[np.ndarray], targets: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> float:
    """Weighted mean negative log-likelihood over label sets of different widths: logits[k] (n_k, K_k + 1)
    already divided by the temperature, targets[k] (n_k,), weights[k] (n_k,)."""
    total, n = 0.0, 0.0
    for z, t, w in zip(logits, targets, weights):
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        total -= (w * logp[np.arange(len(t)), t]).sum()
        n += w.sum()
    return total / max(n, 1e-12)


def _row_weights(rows: Rows, row_sets: Sequence[Rows], none_share: float | None) -> np.ndarray:
    """1 for every row, or none-of-these rows scaled so that they hold `none_share` of the pooled weight."""
    if none_share is None:
        return np.ones(len(rows.target))
    n_none = sum(int((r.target == r.label_scores.shape[1]).sum()) for r in row_sets)
    n_label = sum(len(r.target) for r in row_sets) - n_none
    scale = (n_label / max(n_none, 1)) * none_share / (1 - none_share) if n_label else 1.0
    return np.where(rows.target == rows.label_scores.shape[1], scale, 1.0)


def person_folds(persons: Sequence[str], n_folds: int, seed: int = 0) -> list[set[str]]:
    """Persons shuffled and dealt into n_folds groups."""
    unique = sorted(set(persons))
    np.random.default_rng(seed).shuffle(unique)
    return [set(unique[k::n_folds]) for k in range(min(n_folds, len(unique)))]


def summary(probs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Accuracy, ECE, reject rates and confident errors of (N, K + 1) probabilities (none of these is last).

    accuracy: over all rows; command_accuracy: over rows of a label (none of these counted wrong), as
    bench.commands reports it. confident_wrong_rate: rows answered wrongly with p >= the routing's accept
    threshold (auto-accepted mistakes); rejection_/acceptance_confident_wrong_rate: the same share among
    confident "none of these" answers and among confident label answers.
    """
    pred = probs.argmax(axis=1)
    top = probs.max(axis=1)
    none_idx = probs.shape[1] - 1
    is_none = target == none_idx
    wrong, sure = pred != target, top >= RoutingPolicy().accept_at
    sure_reject, sure_accept = sure & (pred == none_idx), sure & (pred != none_idx)
    nan = float("nan")
    return {
        "n": int(len(target)),
        "accuracy": float((pred == target).mean()),
        "command_accuracy": float((pred[~is_none] == target[~is_none]).mean()) if (~is_none).any() else nan,
        "ece": ece(probs, target),
        "reject_unknown_rate": float((pred[is_none] == none_idx).mean()) if is_none.any() else nan,
        "false_reject_rate": float((pred[~is_none] == none_idx).mean()) if (~is_none).any() else nan,
        "confident_wrong_rate": float((wrong & sure).mean()),
        "rejection_confident_wrong_rate": float(wrong[sure_reject].mean()) if sure_reject.any() else 0.0,
        "acceptance_confident_wrong_rate": float(wrong[sure_accept].mean()) if sure_accept.any() else 0.0,
    }


def fit_command_calibration(clips: Sequence[LabelledClip], tasks: Sequence[Sequence[str]], scorer: CommandScorer, *,
                            fitted_on: str, learn: bool = False, n_folds: int = N_FOLDS, coverage: float = COVERAGE,
                            none_share: float | None = NONE_SHARE, prior: CommandCalibration | None = None,
                            cache: dict[str, dict] | None = None,
                            progress: Callable[[str], None] = lambda s: None) -> tuple[CommandCalibration, dict[str, Any]]:
    """Fit on all clips; measure by group k-fold over persons (forms, biases and thresholds fitted per fold,
    the temperature cross-fitted within each fold's training persons: `fit_for_new_persons`).

    tasks: label sets to score; a clip whose label is not in a set is a none-of-these example for it.
    learn: learn extra surface forms from the transcripts (team recordings); needs a second Whisper pass.
    none_share, prior: see `fit_parameters`. With fewer than MIN_CALIBRATION_CLIPS clips the result is
    not called calibrated (its held-out error is still measured and stored).
    """
    labels_all = list(dict.fromkeys(label for task in tasks for label in task))
    base_forms = list(dict.fromkeys(f for label in labels_all for f in surface_forms(label)))
    progress(f"scoring {len(clips)} clips against {len(base_forms)} surface forms of {len(labels_all)} labels")
    scores = score_clips(scorer, clips, base_forms, cache, progress)
    if learn:
        extra = [f for f in candidate_forms(clips, scores, labels_all) if f not in base_forms]
        if extra:
            progress(f"scoring {len(extra)} learned forms: {extra}")
            scores = score_clips(scorer, clips, base_forms + extra, cache, progress)
    scored_forms = list(dict.fromkeys(f for entry in scores.values() for f in entry.form_logprobs))
    priors = dict(zip(scored_forms, scorer.priors([scorer.encode_text(f) for f in scored_forms])))  # one decoder batch
    persons = sorted({c.person for c in clips if c.id in scores})
    heldout_probs: list[np.ndarray] = []
    heldout_target: list[np.ndarray] = []
    heldout_condition: list[np.ndarray] = []
    covered: list[float] = []
    set_sizes: list[float] = []
    factors: list[float] = []  # per fold: the cross-fitted temperature over the in-sample one
    width = max(len(task) for task in tasks) + 1  # held-out label sets are pooled at this width
    for fold in person_folds(persons, n_folds):
        train = [c for c in clips if c.person not in fold]
        test = [c for c in clips if c.person in fold]
        forms = learn_forms(train, scores, labels_all) if learn else {}
        fit_rows = [build_rows(train, scores, task, forms, priors) for task in tasks]
        cal, factor = fit_for_new_persons(fit_rows, none_share, prior, n_folds)
        factors.append(factor)
        fit_probs = [(r.probs(cal), r.target) for r in fit_rows]
        qhat = _pooled_qhat(fit_probs, coverage)
        for task in tasks:
            rows = build_rows(test, scores, task, forms, priors)
            p = rows.probs(cal)
            heldout_probs.append(_pad(p, width))
            heldout_target.append(np.where(rows.target == len(task), width - 1, rows.target))
            heldout_condition.append(rows.condition)
            cov, size = empirical_coverage(p, rows.target, qhat)
            covered.append(cov * len(rows.target))
            set_sizes.append(size * len(rows.target))
    probs, target = np.concatenate(heldout_probs), np.concatenate(heldout_target)
    condition = np.concatenate(heldout_condition)
    heldout = summary(probs, target)
    by_condition = {c: summary(probs[condition == c], target[condition == c]) for c in dict.fromkeys(condition.tolist())}
    heldout.update(coverage=coverage, set_coverage=float(sum(covered) / len(target)),
                   set_size_mean=float(sum(set_sizes) / len(target)), folds=min(n_folds, len(persons)),
                   persons=len(persons), fold_temperature_factors=[round(f, 3) for f in factors])
    forms = learn_forms(clips, scores, labels_all) if learn else {}
    row_sets = [build_rows(clips, scores, task, forms, priors) for task in tasks]
    fitted, factor = fit_for_new_persons(row_sets, none_share, prior, n_folds)
    qhat = _pooled_qhat([(r.probs(fitted), r.target) for r in row_sets], coverage)
    n_rows = int(sum(len(r.target) for r in row_sets))
    enough = len(scores) >= MIN_CALIBRATION_CLIPS and len(persons) >= 2
    verdict = (f"held-out ECE {heldout['ece']:.3f} on persons left out ({heldout['folds']}-fold by person)" if enough else
               f"NOT calibrated: {len(scores)} recordings by {len(persons)} person(s) are too few (record at least "
               f"{MIN_CALIBRATION_CLIPS}, by 2 or more people); held-out ECE {heldout['ece']:.3f}")
    cal = replace(
        fitted, conformal_qhat=qhat, coverage=coverage, calibrated=enough, model=scorer.settings.model,
        fitted_on=(f"{fitted_on}; none of these weighted {'as it comes' if none_share is None else f'to {none_share:.0%}'}"
                   f"{'; starting from ' + prior.model + ' shipped calibration' if prior is not None else ''}"
                   f"{f'; temperature cross-fitted over persons (x{factor:.2f} the in-sample one)' if factor != 1.0 else ''}"
                   f"; {verdict}"),
        n=n_rows, heldout_ece=heldout["ece"], extra_forms=forms,
        heldout={**heldout, "temperature_factor": round(factor, 3), "by_condition": by_condition})
    return cal, {"heldout": heldout, "by_condition": by_condition, "n_clips": len(scores),
                 "skipped_silent": len(clips) - len(scores)}


def _pooled_qhat(prob_targets: Sequence[tuple[np.ndarray, np.ndarray]], coverage: float) -> float:
    """Conformal threshold on the pooled scores 1 - p(true class) of several label sets."""
    true_p = np.concatenate([p[np.arange(len(t)), t] for p, t in prob_targets])
    # conformal_qhat takes (N, C) probs; a (N, 1) column of p(true) with labels 0 gives the same scores.
    return conformal_qhat(true_p[:, None], np.zeros(len(true_p), dtype=int), coverage)


def _pad(probs: np.ndarray, width: int) -> np.ndarray:
    """(N, K + 1) -> (N, width): labels first, zeros, none of these last (to pool label sets of different sizes)."""
    out = np.zeros((len(probs), width))
    out[:, : probs.shape[1] - 1] = probs[:, :-1]
    out[:, -1] = probs[:, -1]
    return out


# ---- command line --------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--speech-commands", type=Path, help="a Speech Commands sample with labels.csv (path,label,person)")
    src.add_argument("--store", type=Path, help="a SampleStore folder with audio recordings (label, person)")
    ap.add_argument("--out", type=Path, required=True, help="where to write the calibration JSON")
    ap.add_argument("--model", default="tiny.en", help="Whisper model (default tiny.en)")
    ap.add_argument("--silence", type=int, default=24, help="synthetic noise clips added as silence (default 24)")
    ap.add_argument("--cache", type=Path, help="JSON file of raw scores, reused and extended between runs")
    ap.add_argument("--no-learn", action="store_true", help="team data: do not learn surface forms from transcripts")
    ap.add_argument("--none-share", type=float, default=NONE_SHARE,
                    help=f"weight share of none-of-these examples in the fit (default {NONE_SHARE}: as much as the commands)")
    ap.add_argument("--conditions", default=None,
                    help=f"recording conditions made from every clip, comma-separated, from {','.join(CONDITIONS)} "
                         f"(default: {','.join(EVERY_CLIP)} for --speech-commands, clean for --store)")
    ap.add_argument("--rotate", default=None, help="conditions that each get a share of the clips "
                                                   f"(default: {','.join(ROTATED)} for --speech-commands, none for --store)")
    args = ap.parse_args(argv)
    conditions = (args.conditions or (",".join(EVERY_CLIP) if args.speech_commands else "clean")).split(",")
    rotate = [c for c in (args.rotate or (",".join(ROTATED) if args.speech_commands else "")).split(",") if c]
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.is_file() else {}
    scorer = CommandScorer(CommandScorerSettings(model=args.model))
    if args.speech_commands:
        clips = speech_commands_clips(args.speech_commands) + synthetic_silence(args.silence)
        tasks, learn, prior = [COMMAND_WORDS, DIGIT_WORDS], False, None
        persons = len({c.person for c in clips if not c.person.startswith("synthetic")})
        fitted_on = (f"{args.speech_commands.name} (traindata: {len(clips) - args.silence} clips of 30 words by {persons} "
                     f"speakers; label sets = 10 commands and 10 digits, other words as unknown) + {args.silence} "
                     f"synthetic noise clips as silence; each as recorded {', '.join(conditions)}"
                     f"{' and each once more in one of ' + ', '.join(dict.fromkeys(rotate)) if rotate else ''}")
    else:
        clips = store_clips(args.store)
        tasks = [sorted({c.label for c in clips if c.label != NONE_OF_THESE})]
        learn = not args.no_learn
        fitted_on = f"team recordings in {args.store} ({len(clips)} clips, labels {', '.join(tasks[0])})"
        prior = CommandClassifier(tasks[0], scorer).calibration  # also refuses unusable labels before the long run
        prior = prior if prior.calibrated else None
    clips = in_conditions(clips, conditions, rotate)
    try:
        cal, report = fit_command_calibration(clips, tasks, scorer, fitted_on=fitted_on, learn=learn, cache=cache,
                                              none_share=args.none_share, prior=prior,
                                              progress=lambda s: print(s, file=sys.stderr, flush=True))
    finally:
        if args.cache:
            args.cache.write_text(json.dumps(cache))
    cal.to_json(args.out)
    h = report["heldout"]
    qhat = "none (too few recordings for sets)" if cal.conformal_qhat is None else f"{cal.conformal_qhat:.3f}"
    print(f"temperature {cal.temperature:.3f}, rejection bias {cal.rejection_bias:+.2f}, match bias {cal.match_bias:+.2f}, "
          f"no-speech weight {cal.no_speech_weight:+.2f}, prior weights {cal.prior_weight:.2f} (labels) "
          f"{cal.transcript_prior_weight:.2f} (transcript), qhat {qhat}")
    print(f"held-out persons: accuracy {h['accuracy']:.3f}, ECE {h['ece']:.3f}, unknown rejected {h['reject_unknown_rate']:.3f}, "
          f"false rejects {h['false_reject_rate']:.3f}, {COVERAGE:.0%} sets cover {h['set_coverage']:.3f} "
          f"(mean size {h['set_size_mean']:.2f}), n={h['n']}")
    for c, figures in report["by_condition"].items():
        print(f"  {c:10s} accuracy {figures['accuracy']:.3f} (on label words {figures['command_accuracy']:.3f}), ECE "
              f"{figures['ece']:.3f}, confidently wrong {figures['confident_wrong_rate']:.3f} (of confident rejections "
              f"{figures['rejection_confident_wrong_rate']:.3f}, of confident acceptances {figures['acceptance_confident_wrong_rate']:.3f})")
    if cal.extra_forms:
        print(f"learned forms: {cal.extra_forms}")
    print(f"wrote {args.out}")
    print(json.dumps({"temperature": cal.temperature, "rejection_bias": cal.rejection_bias, "match_bias": cal.match_bias,
                      "no_speech_weight": cal.no_speech_weight, "rejection_scale": cal.rejection_scale,
                      "prior_weight": cal.prior_weight, "transcript_prior_weight": cal.transcript_prior_weight,
                      **{f"{c}_{k}": v for c, figures in report["by_condition"].items() for k, v in figures.items()},
                      "conformal_qhat": cal.conformal_qhat, **{f"heldout_{k}": v for k, v in h.items()},
                      "n_clips": report["n_clips"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
