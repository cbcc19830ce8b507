"""Fit the ASR confidence maps (models/asr_confidence.py) on our own synthetic speech, never on evaldata.

    python -m bench.asr_calibration --out /tmp/asr_calib [--n 160] [--seed 0]
    python -m bench.asr_calibration --make-corpus /tmp/own_asr --n 24   # a folder bench.asr can read
    python -m bench.asr_calibration --quick --out /tmp/asr_calib_smoke   # 5 clips: does it run?

Speech: template sentences spoken by espeak-ng (several voices and rates), some with white or
babble noise mixed in at 20 down to -5 dB SNR, so that Whisper makes real mistakes. Non-speech:
digital silence with hiss, mains hum, white noise, tones and reversed speech (sounds like speech,
means nothing). Every clip goes through the offline transcriber and the streaming processor;
each segment they produce is one example with Whisper's signals as features and two labels:
correct = word error rate against the sentence <= 25%; hallucinated = the audio held no
intelligible speech, or the segment shares under 20% of its words with the sentence.
Two logistic regressions are fitted on a random 70% of the clips (split by clip, so both
transcripts of a clip fall on one side) and reported on the other 30% (Brier score, expected
calibration error, flag precision/recall). Prints the constants to paste into asr_confidence.py.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

SUBJECTS = ("the teacher", "my sister", "our neighbour", "the old man", "a young student", "the driver", "my friend", "the doctor", "the children", "her father")
VERBS = ("carried", "painted", "found", "cleaned", "sold", "bought", "opened", "repaired", "moved", "described")
OBJECTS = ("a heavy box", "the green door", "two small chairs", "the kitchen table", "an old bicycle", "the red car", "a wooden boat", "the garden fence", "three glass bottles", "the broken window")
ENDINGS = ("before lunch", "on Monday morning", "in the rain", "after the meeting", "near the station", "last summer", "with great care", "for the first time", "early in the evening", "without any help")
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc")
SAMPLE_RATE = 16_000
QUICK_N = 5  # clips with --quick: a smoke run (with one label only, fit() gives a constant map)


def sentence(rng: np.random.Generator) -> str:
    words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]
    text = " ".join(str(w) for w in words)
    return text[0].upper() + text[1:] + "."


def speak(text: str, voice: str, rate_wpm: int, workdir: Path) -> np.ndarray:
    """(N,) float32 16 kHz speech from espeak-ng (resampled by sox)."""
    import soundfile as sf

    raw, wav = workdir / "raw.wav", workdir / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(wav)], check=True, capture_output=True)
    audio, _ = sf.read(str(wav), dtype="float32")
    return audio


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    p_s = float(np.mean(speech**2)) + 1e-12
    p_n = float(np.mean(noise**2)) + 1e-12
    out = speech + noise * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    return (out / max(1.0, float(np.abs(out).max()))).astype(np.float32)


def make_clip(rng: np.random.Generator, workdir: Path) -> tuple[np.ndarray, str]:
    """One clip and its reference text ("" for non-speech). About 1/4 non-speech, 1/4 noisy speech."""
    pad = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    kind = rng.choice(["clean", "clean", "noisy", "noisy", "silence", "hum", "noise", "tone", "reversed"], p=[0.25, 0.1, 0.2, 0.2, 0.05, 0.05, 0.05, 0.05, 0.05])
    text = sentence(rng)
    speech = speak(text, str(rng.choice(VOICES)), int(rng.integers(120, 230)), workdir)
    n = len(speech)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "clean":
        return np.concatenate([pad, speech, pad]), text
    if kind == "noisy":
        if rng.random() < 0.5:
            noise = rng.normal(0, 1, n).astype(np.float32)
        else:  # babble: other sentences, reversed so no words can be recovered from them
            other = speak(sentence(rng), str(rng.choice(VOICES)), 170, workdir)[::-1]
            noise = np.resize(other, n)
        return np.concatenate([pad, mix(speech, noise, float(rng.uniform(-5, 20))), pad]), text
    if kind == "silence":
        return rng.normal(0, 10 ** (rng.uniform(-80, -50) / 20), n).astype(np.float32), ""
    if kind == "hum":
        hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5))
        return (0.05 * hum).astype(np.float32), ""
    if kind == "noise":
        return rng.normal(0, rng.uniform(0.01, 0.2), n).astype(np.float32), ""
    if kind == "tone":
        f = rng.uniform(200, 1200)
        return (0.2 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32), ""
    return np.concatenate([pad, speech[::-1], pad]).astype(np.float32), ""


def word_overlap(hyp: list[str], ref: list[str]) -> float:
    from collections import Counter

    if not hyp:
        return 1.0
    return sum((Counter(hyp) & Counter(ref)).values()) / len(hyp)


def examples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features (M, F), correct (M,), hallucinated (M,), clip index (M,)) from n synthetic clips."""
    import torch
    from whisper.normalizers import EnglishTextNormalizer

    from bench.asr import word_errors
    from models.asr_replay import transcribe_stream
    from models.streaming_asr import StreamingASR
    from models.transcriber import Transcriber, TranscriberSettings

    torch.set_num_threads(1)
    transcriber = Transcriber(TranscriberSettings(model="tiny.en"))
    normalise = EnglishTextNormalizer()
    rng = np.random.default_rng(seed)
    rows: list[tuple[np.ndarray, int, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            audio, text = make_clip(rng, Path(tmp))
            ref = normalise(text).split()
            segments = list(transcriber.transcribe(audio).segments)
            _, _, updates = transcribe_stream(StreamingASR(transcriber), audio, chunk_s=0.1)
            segments += [seg for u in updates for seg in u.segments]
            for seg in segments:
                hyp = normalise(seg.text).split()
                if not hyp:
                    continue
                # A segment may cover part of the sentence: score it against the best-matching span.
                wer = min(word_errors(ref[a : a + len(hyp)], hyp) for a in range(max(1, len(ref) - len(hyp) + 1))) / len(hyp) if ref else 1.0
                correct = int(bool(ref) and wer <= 0.25)
                hallucinated = int(not ref or word_overlap(hyp, ref) < 0.2)
                rows.append((seg.confidence.signals.features(), correct, hallucinated, i))
            print(f"  clip {i + 1}/{n}: {text if text else '(no speech)'} -> {[s.text for s in segments]}", flush=True)
    return (np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), np.array([r[3] for r in rows]))


def fit(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, ...], float]:
    """Logistic regression (standardised, L2); weights returned in raw feature units."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:  # a small --n can give one label only: the best map is then a constant
        warnings.warn(f"only label {int(y[0]) if len(y) else '-'} among {len(y)} examples: constant map; use a larger --n")
        rate = float(np.clip(y.mean() if len(y) else 0.5, 0.01, 0.99))
        return tuple(0.0 for _ in range(x.shape[1])), round(math.log(rate / (1 - rate)), 4)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    w = model.coef_[0] / scale
    b = float(model.intercept_[0] - (model.coef_[0] * mean / scale).sum())
    return tuple(round(float(v), 4) for v in w), round(b, 4)


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean() for b in range(bins) if (idx == b).any()))


def make_corpus(folder: Path, n: int, seed: int) -> None:
    """n clean espeak clips of 2 sentences each, in bench.asr's transcripts.tsv format (for tuning)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            texts = [sentence(rng), sentence(rng)]
            voice, rate = str(rng.choice(VOICES)), int(rng.integers(130, 200))
            parts = [speak(t, voice, rate, Path(tmp)) for t in texts]
            gap = np.zeros(int(rng.uniform(0.1, 0.8) * SAMPLE_RATE), np.float32)
            audio = np.concatenate([np.zeros(4800, np.float32), parts[0], gap, parts[1]])
            name = f"own-{i:03d}.wav"
            sf.write(str(folder / name), audio, SAMPLE_RATE)
            rows.append([name, " ".join(texts), "en", f"{len(audio) / SAMPLE_RATE:.2f}", f"espeak-ng {voice} {rate} wpm"])
    with (folder / "transcripts.tsv").open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["path", "reference", "lang", "duration_s", "source"])
        w.writerows(rows)
    print(f"wrote {n} clips to {folder}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asr_calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the fitted maps (maps.json) and examples")
    parser.add_argument("--make-corpus", type=Path, default=None, help="write a tuning corpus for bench.asr here instead")
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_N} clips (a smoke run: the maps are not worth pasting)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = QUICK_N
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        raise SystemExit("espeak-ng and sox are needed: apt-get install espeak-ng sox")
    warnings.filterwarnings("ignore")
    if args.make_corpus:
        make_corpus(args.make_corpus, args.n, args.seed)
        return
    x, correct, halluc, clip = examples(args.n, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    test_clips = set(rng.permutation(args.n)[: int(0.3 * args.n)].tolist())
    test = np.array([c in test_clips for c in clip])
    report: dict[str, object] = {"n_examples": int(len(x)), "n_test": int(test.sum())}
    from models.asr_confidence import LogisticMap

    maps = {}
    for name, y in (("correct", correct), ("hallucinated", halluc)):
        w, b = fit(x[~test], y[~test])
        p = LogisticMap(w, b)(x[test])
        maps[name] = {"weights": w, "bias": b}
        report[name] = {
            "base_rate_test": round(float(y[test].mean()), 3),
            "brier_test": round(float(np.mean((p - y[test]) ** 2)), 4),
            "brier_base_rate": round(float(np.mean((y[~test].mean() - y[test]) ** 2)), 4),
            "ece_test": round(ece(p, y[test].astype(float)), 4),
            "flag_precision": round(float(y[test][p >= 0.5].mean()) if (p >= 0.5).any() else float("nan"), 3),
            "flag_recall": round(float((p[y[test] == 1] >= 0.5).mean()) if (y[test] == 1).any() else float("nan"), 3),
        }
        print(f"{ {'correct': 'CORRECT_MAP', 'hallucinated': 'HALLUCINATION_MAP'}[name]} = LogisticMap(weights={w}, bias={b})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "maps.json").write_text(json.dumps(maps, indent=1))
        np.savez(args.out / "examples.npz", x=x, correct=correct, hallucinated=halluc, clip=clip)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
