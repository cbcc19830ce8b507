"""Personality questionnaire benchmark: the Questions tab's trait model on countries it never saw.

    python -m bench.personality --data /work/shared/traindata [--bundle DIR] [--quick]

DATA holds personality_questionnaire/ (answers.csv, items.tsv), or is that folder. The respondents are split by
country exactly as the recipe split them (train.personality_recipe.country_split with the seed and shares on
the bundle's card); only the TEST countries are scored, and the run stops if any of them is among the countries
the bundle was trained or calibrated on. Targets: high/low by the training medians on the card.

- fixed 10: the shipped short form (two items per trait) answered, nothing else: accuracy per trait and its
  mean (acc_fixed10_mean), 15-bin ECE per trait and the worst (ece_fixed10_max), 90% set coverage per trait;
- adaptive: each person asked by the tab's rule (models.personality: the item with the lowest expected trait
  entropy next), their real answers given: accuracy (mean over traits) after 1..20 questions
  (acc_adaptive_at_K); questions_adaptive_fixed_length_for_fixed10_accuracy = the fewest questions, the same for
  everyone, whose mean accuracy reaches acc_fixed10_mean (null if 20 do not);
  questions_adaptive_for_fixed10_accuracy = the MEAN number of questions per person when each person is asked
  until the five traits' mean calibrated confidence reaches a threshold c (at most 20): the lowest mean over
  thresholds c (0.700, 0.705, ... 0.985) whose accuracy reaches acc_fixed10_mean (null if none does); c and that
  accuracy are printed too. Computed on the test people (a property of the curve, not used by the model).
`--quick`: the first 200 test respondents only. Last line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

QUICK_PEOPLE = 200
N_MAX = 20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.personality", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding personality_questionnaire/")
    parser.add_argument("--bundle", type=Path, default=None, help="questionnaire bundle (default: the shipped one)")
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_PEOPLE} test respondents only")
    args = parser.parse_args(argv)
    import torch

    from models.bundle import load_bundle
    from models.shipped import shipped_bundle
    from train.calibration import ece, empirical_coverage
    from models.personality import simulate_adaptive
    from train.personality_recipe import country_split, question_curve, read_responses

    torch.set_num_threads(1)  # small matrices, shared machine
    warnings.filterwarnings("ignore", category=FutureWarning)
    started, load = time.perf_counter(), os.getloadavg()[0]
    folder = args.data / "personality_questionnaire" if (args.data / "personality_questionnaire").is_dir() else args.data
    bundle = load_bundle(args.bundle or shipped_bundle("personality"))
    card = bundle.card
    detail, recipe = card["split_detail"], card["recipe"]
    data = read_responses(folder)
    _, _, test_idx = country_split(data.countries, recipe["test_frac"], recipe["calibration_frac"], detail["seed"])
    seen = set(detail["train"]["countries"]) | set(detail["calibration"]["countries"])
    leaked = sorted(set(data.countries[test_idx]) & seen)
    if leaked:
        raise SystemExit(f"test countries {leaked} were used to train or calibrate {bundle.root}; this data cannot "
                         "measure it on new countries")
    if args.quick:
        test_idx = test_idx[:QUICK_PEOPLE]
    qn = bundle.questionnaire
    if [it.id for it in data.questionnaire.items] != list(qn.ids):
        raise SystemExit(f"{folder / 'items.tsv'} does not list the model's items {', '.join(qn.ids[:3])}, ...")
    medians = np.array([card["labels"]["medians"][t] for t in qn.traits])
    values, targets = data.values[test_idx], (data.scores()[test_idx] > medians).astype(int)  # (N, K), (N, H)
    print(f"{bundle.root.name}: {len(test_idx)} respondents from {len(set(data.countries[test_idx]))} test countries "
          f"(held out from training and calibration); load {load:.2f}", flush=True)

    _, p_adaptive = simulate_adaptive(bundle, values, N_MAX)  # (N, 20, H)
    curve = question_curve(bundle, values, targets, N_MAX, p_adaptive=p_adaptive)
    short = curve["short_form"]
    acc_fixed = np.array(short["accuracy"][-1])  # (H,) after all 10 short-form items
    answered = np.zeros(values.shape, bool)
    answered[:, [qn.ids.index(i) for i in qn.short_form]] = True
    p_high = bundle.head_probs(qn.encode_matrix(values, answered))  # (N, H)
    coverage = [empirical_coverage(np.stack([1 - p_high[:, h], p_high[:, h]], 1), targets[:, h],
                                   bundle.heads[h].conformal_qhat)[0] for h in range(len(qn.traits))]
    adaptive = np.array(curve["adaptive"]["accuracy"]).mean(axis=1)  # (N_MAX,)
    adaptive_confidence = np.array(curve["adaptive"]["confidence"]).mean(axis=1)  # (N_MAX,)
    ece_adaptive_7 = [ece(np.stack([1 - p_adaptive[:, 6, h], p_adaptive[:, 6, h]], 1), targets[:, h])
                      for h in range(len(qn.traits))]
    reach = np.flatnonzero(adaptive >= acc_fixed.mean())
    needed_fixed_length = int(reach[0] + 1) if len(reach) else None
    stopped = stopping_rule(p_adaptive, targets, float(acc_fixed.mean()))

    print(f"fixed short form ({', '.join(qn.short_form)}):")
    for h, t in enumerate(qn.traits):
        print(f"  {t:18s} accuracy {acc_fixed[h]:.3f}  ECE {short['ece'][h]:.3f}  90% sets cover {coverage[h]:.3f}")
    print(f"  mean accuracy {acc_fixed.mean():.3f}, worst ECE {max(short['ece']):.3f}")
    print("adaptive (mean accuracy over the five traits after K questions):")
    print("  " + "  ".join(f"{k + 1}:{a:.3f}" for k, a in enumerate(adaptive)))
    print("  mean confidence: " + "  ".join(f"{k + 1}:{c:.3f}" for k, c in enumerate(adaptive_confidence)))
    print(f"  after 7 questions: worst ECE {max(ece_adaptive_7):.3f}")
    print(f"  the same number for everyone: reaches the fixed form's {acc_fixed.mean():.3f} after "
          f"{needed_fixed_length or f'more than {N_MAX}'} questions")
    if stopped:
        print(f"  asked until the mean confidence reaches {stopped['threshold']:.3f}: {stopped['mean_questions']:.2f} "
              f"questions per person on average (median {stopped['median_questions']:.0f}, "
              f"{stopped['capped_share']:.1%} stopped at {N_MAX}), accuracy {stopped['accuracy']:.3f}")
    else:
        print(f"  no confidence threshold reaches the fixed form's accuracy within {N_MAX} questions")
    seconds = time.perf_counter() - started
    print(f"{seconds:.0f} s, load {load:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
    out = {"acc_fixed10_mean": float(acc_fixed.mean()), "ece_fixed10_max": float(max(short["ece"])),
           "acc_adaptive_at_10_mean": float(adaptive[9]),
           "questions_adaptive_for_fixed10_accuracy": stopped["mean_questions"] if stopped else None,
           "questions_adaptive_fixed_length_for_fixed10_accuracy": needed_fixed_length,
           "adaptive_stop_confidence": stopped["threshold"] if stopped else None,
           "acc_adaptive_stopped_mean": stopped["accuracy"] if stopped else None,
           **{f"acc_adaptive_at_{k + 1}": float(a) for k, a in enumerate(adaptive)},
           "acc_fixed10": dict(zip(qn.traits, acc_fixed.tolist())), "ece_fixed10": dict(zip(qn.traits, short["ece"])),
           "coverage90_fixed10_min": float(min(coverage)), "ece_adaptive_at_7_max": float(max(ece_adaptive_7)), "n_respondents": int(len(test_idx)),
           "n_countries": len(set(data.countries[test_idx])), "quick": bool(args.quick),
           "seconds": round(seconds, 1), "load_1min": round(load, 2)}
    print(json.dumps(out))


def stopping_rule(p_high: np.ndarray, targets: np.ndarray, goal: float) -> dict[str, float] | None:
    """Each person asked until the mean confidence over the traits reaches c (p_high (N, n, H) after each question,
    targets (N, H)): the threshold with the fewest questions on average whose accuracy reaches `goal`, or None."""
    confidence = np.maximum(p_high, 1 - p_high).mean(axis=-1)  # (N, n)
    correct = ((p_high > 0.5) == targets[:, None, :].astype(bool)).mean(axis=-1)  # (N, n)
    n, n_max = confidence.shape
    best = None
    for c in np.arange(0.700, 0.99, 0.005):
        hit = confidence >= c
        last = np.where(hit.any(axis=1), hit.argmax(axis=1), n_max - 1)  # index of the last question asked
        accuracy = float(correct[np.arange(n), last].mean())
        if accuracy >= goal and (best is None or last.mean() + 1 < best["mean_questions"]):
            best = {"threshold": round(float(c), 3), "mean_questions": float(last.mean() + 1),
                    "median_questions": float(np.median(last + 1)), "accuracy": accuracy,
                    "capped_share": float((~hit.any(axis=1)).mean())}
    return best


if __name__ == "__main__":
    main()
