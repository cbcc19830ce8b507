"""Spoken-command benchmark: Whisper scoring the labels on the audio vs transcript + zero-shot text.

    python -m bench.commands --data /work/shared/evaldata [--quick]
    python -m bench.commands --data /work/shared/traindata --conditions clean,telephone,noisy [--quick] [--cache F]

Runs `models.commands.CommandClassifier` with the 10 command words of Speech Commands
(yes, no, up, down, left, right, on, off, stop, go) on `speech_commands/labels.csv`: 250 command clips,
25 clips of other words (_unknown_) and 10 of background noise (_silence_); the last 35 should come
back "none of these". Figures (the shipped calibration, fitted on traindata only):
- accuracy on the 250 command clips, "none of these" counted wrong, with a 95% Wilson interval;
- ece: 15-bin expected calibration error of the 11-class probabilities over all clips (target of an
  unknown or silence clip: none of these); ece_commands over the command clips only;
- confident_wrong_rate: share of all clips answered wrongly with probability >= 0.9;
- reject_unknown_rate (unknown + silence answered none of these), false_reject_rate (command clips
  answered none of these), coverage and mean size of the prediction sets;
- seconds_per_clip: wall time of one classify() (encoder + batched label scoring + greedy transcript);
- the comparison path on the same clips: the same greedy transcript classified by zero-shot MiniLM
  similarity to the label words (text_path_accuracy), and the plain "transcript contains the word" rule.

With --conditions (on traindata, never evaluation data): the shipped calibration's recipe
(train.command_calibration: 10 commands and 10 digits as label sets, other words and synthetic noise as
none of these, every clip clean, on a telephone line and in noise, and once more at another gain, in a
room or cut tight; train.audio_conditions) is fitted 5 times with a fifth of the speakers held out, and
the held-out speakers' answers (one per clip and label set) are reported per condition: `<condition>_accuracy` (clips of label words,
none counted wrong), `<condition>_ece` (all answers), `<condition>_confident_wrong_rate` (answers
wrongly with p >= 0.9), and the same share among confident rejections and among confident acceptances.
Last line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from models.commands import NONE_OF_THESE, CommandClassifier, CommandScorer, CommandScorerSettings, NoSpeechError, normalise
from models.prediction import RoutingPolicy
from train.calibration import ece
from train.evidence import wilson_interval

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
NOT_COMMANDS = ("_unknown_", "_silence_")
LABELS_CSV = Path("speech_commands") / "labels.csv"
CONFIDENT_P = RoutingPolicy().accept_at  # a wrong answer this sure is auto-accepted (the default routing): the costly error
QUICK_PER_CLASS = 3  # clips per command word with --quick (and 5 unknown, 3 silence)
TRAIN_FOLDER = "speech_commands_v0.01_sample"  # under traindata: labels.csv (path, label, person)
SILENCE_CLIPS = 24  # synthetic noise clips added as silence, as train.command_calibration does
QUICK_PERSONS = 5  # with --conditions --quick: the first 5 persons, their first 4 clips each (14 clips in traindata),
QUICK_CLIPS_PER_PERSON = 4  # fitted in the reported conditions only (about 45 scorings: a smoke run, not figures)


def read_clips(data: Path, quick: bool) -> list[tuple[Path, str]]:
    """(path, truth) with truth a command word or NONE_OF_THESE."""
    folder = data / LABELS_CSV.parent if (data / LABELS_CSV).is_file() else data
    with open(folder / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in COMMANDS + NOT_COMMANDS]
    if quick:
        caps = {**{c: QUICK_PER_CLASS for c in COMMANDS}, "_unknown_": 5, "_silence_": 3}
        kept, seen = [], {}
        for r in rows:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            if seen[r["label"]] <= caps[r["label"]]:
                kept.append(r)
        rows = kept
    return [(folder / r["path"], r["label"] if r["label"] in COMMANDS else NONE_OF_THESE) for r in rows]


def text_path(transcripts: list[str], labels: tuple[str, ...]) -> list[str]:
    """Zero-shot MiniLM: the label whose name is most similar to the transcript; '' for an empty transcript."""
    from models.embeddings import load_text_embedder

    embedder = load_text_embedder()
    names = embedder.encode(list(labels))  # (K, 384), unit rows
    out = []
    for text, emb in zip(transcripts, embedder.encode([t or " " for t in transcripts])):
        out.append(labels[int(np.argmax(names @ emb))] if normalise(text) else "")
    return out


def run_conditions(args: argparse.Namespace) -> None:
    """Leave-speakers-out over the training clips, fitted across recording conditions, reported per condition."""
    from train.command_calibration import (COMMAND_WORDS, DIGIT_WORDS, EVERY_CLIP, ROTATED, fit_command_calibration,
                                           in_conditions, speech_commands_clips, synthetic_silence)

    folder = args.data / TRAIN_FOLDER if (args.data / TRAIN_FOLDER / "labels.csv").is_file() else args.data
    report_on = args.conditions.split(",")
    fit_on = list(dict.fromkeys(EVERY_CLIP if args.fit_conditions is None else args.fit_conditions.split(",")))
    rotate = [] if args.fit_conditions is not None else list(ROTATED)
    if args.quick and args.fit_conditions is None:
        fit_on, rotate = list(dict.fromkeys(report_on)), []
    if not set(report_on) <= set(fit_on) | set(rotate):
        raise SystemExit(f"--conditions {args.conditions}: each reported condition must be fitted in "
                         f"({','.join(dict.fromkeys(fit_on + rotate))})")
    clips = speech_commands_clips(folder) + synthetic_silence(SILENCE_CLIPS)  # refuses evaluation data
    if args.quick:
        persons = sorted({c.person for c in clips})[:QUICK_PERSONS]
        kept: dict[str, list] = {p: [] for p in persons}
        for c in clips:
            if c.person in kept and len(kept[c.person]) < QUICK_CLIPS_PER_PERSON:
                kept[c.person].append(c)
        clips = [c for person_clips in kept.values() for c in person_clips]
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.is_file() else {}
    load = os.getloadavg()[0]
    warnings.filterwarnings("ignore", message="No CUDA GPU found")
    scorer = CommandScorer(CommandScorerSettings(model=args.model, threads=args.threads))
    t0 = time.perf_counter()
    try:
        cal, report = fit_command_calibration(in_conditions(clips, fit_on, rotate), [COMMAND_WORDS, DIGIT_WORDS], scorer,
                                              fitted_on=f"{folder.name} in {len(set(fit_on + rotate))} conditions", cache=cache)
    finally:
        if args.cache:
            args.cache.write_text(json.dumps(cache))
    h = report["heldout"]
    print(f"spoken commands, {args.model}: {folder.name} ({len(clips)} clips incl. {SILENCE_CLIPS} synthetic silences, "
          f"{h['persons']} persons, {h['folds']}-fold by person){' [quick]' if args.quick else ''}")
    print(f"  fitted on held-in persons, every clip {', '.join(fit_on)}"
          f"{'; each once more in one of ' + ', '.join(dict.fromkeys(rotate)) if rotate else ''}; "
          "label sets: 10 commands, 10 digits (other words: none of these)")
    print(f"  temperature cross-fitted within each fold's training persons: x{', x'.join(f'{f:.2f}' for f in h['fold_temperature_factors'])} "
          "the in-sample one")
    summary: dict = {"model": args.model, "persons": h["persons"], "folds": h["folds"],
                     "fit_conditions": list(dict.fromkeys(fit_on + rotate)),
                     "fold_temperature_factors": h["fold_temperature_factors"]}
    for c in report_on:
        f = report["by_condition"][c]
        print(f"  {c:10s} accuracy {f['command_accuracy']:.3f} (label words, none counted wrong), ECE {f['ece']:.3f}, "
              f"wrong with p >= {CONFIDENT_P}: {f['confident_wrong_rate']:.3f} of answers (clip x label set; of confident rejections "
              f"{f['rejection_confident_wrong_rate']:.3f}, of confident acceptances {f['acceptance_confident_wrong_rate']:.3f}), "
              f"unknown rejected {f['reject_unknown_rate']:.3f}, false rejects {f['false_reject_rate']:.3f}, n={f['n']}")
        summary.update({f"{c}_accuracy": f["command_accuracy"], f"{c}_ece": f["ece"],
                        f"{c}_confident_wrong_rate": f["confident_wrong_rate"],
                        f"{c}_rejection_confident_wrong_rate": f["rejection_confident_wrong_rate"],
                        f"{c}_acceptance_confident_wrong_rate": f["acceptance_confident_wrong_rate"],
                        f"{c}_reject_unknown_rate": f["reject_unknown_rate"], f"{c}_false_reject_rate": f["false_reject_rate"],
                        f"{c}_n": f["n"]})
    summary.update({"seconds": round(time.perf_counter() - t0, 1), "load_avg_1min": round(load, 2)})
    print(f"  {summary['seconds']:.0f} s; load average at start: {load:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commands", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="evaldata folder (holding speech_commands/labels.csv); with --conditions: traindata")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PER_CLASS} clips per word, 5 unknown, 3 silence; "
                                                             f"with --conditions: the first {QUICK_PERSONS} persons, "
                                                             f"{QUICK_CLIPS_PER_PERSON} clips each, fitted in those conditions")
    parser.add_argument("--model", default="tiny.en", help="Whisper model (default tiny.en)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best on a shared 2-core machine)")
    parser.add_argument("--conditions", default=None,
                        help="leave-speakers-out over the training clips (traindata) in these recording conditions, "
                             "e.g. clean,telephone,noisy")
    parser.add_argument("--fit-conditions", default=None, help="conditions the calibration is fitted in, every clip "
                                                               "(default: as the shipped one, see train.command_calibration)")
    parser.add_argument("--cache", type=Path, default=None, help="JSON file of raw scores, reused and extended "
                                                                 "(train.command_calibration --cache writes the same)")
    args = parser.parse_args(argv)
    if args.conditions:
        run_conditions(args)
        return
    from capture.audio import load_audio

    clips = read_clips(args.data, args.quick)
    load = os.getloadavg()[0]
    warnings.filterwarnings("ignore", message="No CUDA GPU found")
    classifier = CommandClassifier(COMMANDS, CommandScorer(CommandScorerSettings(model=args.model, threads=args.threads)))
    classes = classifier.classes
    classifier.classify(load_audio(clips[0][0]))  # warm-up, not timed
    probs, truths, transcripts, sets, seconds = [], [], [], [], []
    for path, truth in clips:
        audio = load_audio(path)
        t0 = time.perf_counter()
        try:
            p = classifier.classify(audio)
            probs.append(p.probs)
            transcripts.append(p.extra["transcript"])
            sets.append(p.prediction_set or (p.label,))
        except NoSpeechError:  # refused before scoring: the app shows "no speech", i.e. none of these
            probs.append(np.eye(len(classes))[-1])
            transcripts.append("")
            sets.append((NONE_OF_THESE,))
        seconds.append(time.perf_counter() - t0)
        truths.append(classes.index(truth))
    probs_a, y = np.array(probs), np.array(truths)
    pred = probs_a.argmax(axis=1)
    none = len(classes) - 1
    cmd = y != none
    acc = wilson_interval(int((pred[cmd] == y[cmd]).sum()), int(cmd.sum()))
    reject = float((pred[~cmd] == none).mean())
    false_reject = float((pred[cmd] == none).mean())
    confident_wrong = float(np.mean((pred != y) & (probs_a.max(axis=1) >= CONFIDENT_P)))
    covered = float(np.mean([classes[t] in s for t, s in zip(y, sets)]))
    text_pred = text_path([t for t, c in zip(transcripts, cmd) if c], COMMANDS)
    text_acc = wilson_interval(sum(p == classes[t] for p, t in zip(text_pred, y[cmd])), int(cmd.sum()))
    word_rule = [normalise(t) == classes[k] for t, k, c in zip(transcripts, y, cmd) if c]
    cal = classifier.calibration
    summary = {
        "accuracy": acc.value, "accuracy_low": acc.low, "accuracy_high": acc.high,
        "ece": ece(probs_a, y), "ece_commands": ece(probs_a[cmd], y[cmd]),
        "confident_wrong_rate": confident_wrong,
        "reject_unknown_rate": reject, "false_reject_rate": false_reject,
        "set_coverage": covered, "set_size_mean": float(np.mean([len(s) for s in sets])),
        "seconds_per_clip": float(np.mean(seconds)),
        "text_path_accuracy": text_acc.value, "text_path_accuracy_low": text_acc.low, "text_path_accuracy_high": text_acc.high,
        "transcript_equals_word_accuracy": float(np.mean(word_rule)),
        "n_command_clips": int(cmd.sum()), "n_unknown_silence_clips": int((~cmd).sum()),
        "calibrated": cal.calibrated, "temperature": cal.temperature, "rejection_bias": cal.rejection_bias,
        "match_bias": cal.match_bias, "prior_weight": cal.prior_weight,
        "model": args.model, "threads": args.threads, "load_avg_1min": round(load, 2),
    }
    print(f"spoken commands, {args.model}, {len(clips)} clips ({summary['n_command_clips']} commands, "
          f"{summary['n_unknown_silence_clips']} unknown/silence){' [quick]' if args.quick else ''}")
    print(f"  calibration: {cal.fitted_on}")
    print(f"  accuracy (10 words, none counted wrong): {acc}")
    print(f"  ECE (15 bins): {summary['ece']:.3f} all clips, {summary['ece_commands']:.3f} command clips")
    print(f"  answered wrongly with p >= {CONFIDENT_P}: {confident_wrong:.3f} of clips")
    print(f"  unknown/silence rejected: {reject:.3f}   commands falsely rejected: {false_reject:.3f}")
    if cal.coverage:
        print(f"  {cal.coverage:.0%} prediction sets: coverage {covered:.3f}, mean size {summary['set_size_mean']:.2f}")
    print(f"  seconds per clip: {summary['seconds_per_clip']:.2f} ({args.threads} thread(s))")
    print(f"  transcript + zero-shot MiniLM: {text_acc}; transcript is the word: {summary['transcript_equals_word_accuracy']:.3f}")
    print(f"  load average at start: {load:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
