"""Speech-to-text benchmark: WER offline vs streaming, real-time factor, commit latency.

    python -m bench.asr --data /work/shared/evaldata/speech_asr [--quick] [--model tiny.en [base ...]]

The data folder holds `transcripts.tsv` (path, reference, lang, duration_s, source) and the clips it
names. English clips only (tiny.en is English-only; --langs changes that for multilingual models);
--quick takes jfk.wav and the first 8 LJ Speech clips.

Per model and device it prints:
- WER of offline decoding (whisper's transcribe over the clip) and of streaming decoding (the
  clip fed in 0.1 s chunks through StreamingASR), both after whisper's EnglishTextNormalizer
  (lower case, no punctuation, numbers as digits on both sides), pooled over clips.
- real-time factor: decode time / audio time, offline and streaming (streaming: every
  process_iter and finish call, VAD included).
- commit latency: for each committed word, time of commit minus the word's end in the audio
  (Whisper's own word timestamp), median and p95.

Real time is simulated by accounting compute honestly: a virtual clock starts at 0 with the audio;
a process_iter call sees only audio whose end is <= the clock, and advances the clock by the time
it took (wall time by default; --clock cpu uses this process's CPU time, i.e. what one dedicated
core would need when other programs share the machine). Each clip is followed by 1.5 s of
silence, as a live microphone keeps sending audio after the speaker stops, then finish().
Last line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

CHUNK_S = 0.1  # what capture sources deliver
TRAILING_SILENCE_S = 1.5
QUICK = ("jfk/jfk.wav",) + tuple(f"ljspeech/LJ001-{i:04d}.flac" for i in range(1, 9))


@dataclass
class Clip:
    path: Path
    reference: str
    lang: str
    duration_s: float


@dataclass
class Tally:
    errors_offline: int = 0
    errors_streaming: int = 0
    ref_words: int = 0
    audio_s: float = 0.0
    compute_offline_s: float = 0.0
    compute_streaming_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)


def read_clips(data: Path, langs: set[str], quick: bool) -> list[Clip]:
    table = data / "transcripts.tsv"
    if not table.is_file():
        raise SystemExit(f"{table} not found: --data must be a folder with transcripts.tsv (path, reference, lang, duration_s)")
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    clips = [Clip(data / r["path"], r["reference"], r["lang"], float(r["duration_s"])) for r in rows if r["lang"] in langs]
    if quick:
        clips = [c for c in clips if c.path.relative_to(data).as_posix() in QUICK] or clips[:9]
    return clips


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    prev = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def timer(clock: str):
    return time.process_time if clock == "cpu" else time.perf_counter


def stream_clip(asr, audio: np.ndarray, clock: str) -> tuple[str, float, list[float]]:
    """Feed audio (+ trailing silence) on a virtual real-time clock; returns (text, compute_s, latencies_s)."""
    from models.transcriber import SAMPLE_RATE

    now = timer(clock)
    speech_end_s = len(audio) / SAMPLE_RATE
    audio = np.concatenate([audio, np.zeros(int(TRAILING_SILENCE_S * SAMPLE_RATE), np.float32)])
    n = int(CHUNK_S * SAMPLE_RATE)
    fed, virtual_s, compute_s, latencies = 0, 0.0, 0.0, []

    def account(update, t0: float) -> None:
        nonlocal virtual_s, compute_s
        dt = now() - t0
        virtual_s += dt
        compute_s += dt
        latencies.extend(virtual_s - min(w.end_s, speech_end_s) for w in update.committed)

    while fed < len(audio):
        available = min(len(audio), int(virtual_s * SAMPLE_RATE) // n * n)
        if available <= fed:  # idle until the next chunk has been "recorded"
            virtual_s = (fed + n) / SAMPLE_RATE
            continue
        t0 = now()
        while fed < available:
            asr.insert_audio(audio[fed : fed + n])
            fed += n
        account(asr.process_iter(), t0)
    t0 = now()
    final = asr.finish()
    account(final, t0)
    return final.committed_text, compute_s, latencies


def run_model(name: str, clips: list[Clip], args: argparse.Namespace) -> dict:
    import torch
    from whisper.normalizers import EnglishTextNormalizer

    from capture.audio import load_audio
    from models.streaming_asr import StreamingASR, StreamingSettings
    from models.transcriber import Transcriber, TranscriberSettings

    transcriber = Transcriber(TranscriberSettings(model=name, threads=args.threads))
    overrides = {"min_chunk_s": args.min_chunk_s, "max_window_s": args.max_window_s, "end_of_speech_s": args.end_of_speech_s,
                 "commit_guard_s": args.commit_guard_s, "trim_min_s": args.trim_min_s}
    settings = replace(StreamingSettings(), **{k: v for k, v in overrides.items() if v is not None})
    normalise = EnglishTextNormalizer()
    now = timer(args.clock)
    warm = load_audio(clips[0].path)[: 3 * 16000]
    transcriber.transcribe(warm)  # first calls compile numba's DTW and warm the allocator
    transcriber.decode_window(warm)
    tally = Tally()
    print(f"\n{name} on {transcriber.placement.device} ({torch.get_num_threads()} threads, clock={args.clock}): {len(clips)} clips")
    for clip in clips:
        audio = load_audio(clip.path)
        ref = normalise(clip.reference).split()
        t0 = now()
        offline = transcriber.transcribe(audio)
        tally.compute_offline_s += now() - t0
        asr = StreamingASR(transcriber, settings)
        text, compute_s, latencies = stream_clip(asr, audio, args.clock)
        e_off = word_errors(ref, normalise(offline.text).split())
        e_str = word_errors(ref, normalise(text).split())
        tally.errors_offline += e_off
        tally.errors_streaming += e_str
        tally.ref_words += len(ref)
        tally.audio_s += len(audio) / 16000
        tally.compute_streaming_s += compute_s
        tally.latencies_s += latencies
        lat = f"{statistics.median(latencies):.2f}" if latencies else "-"
        print(f"  {clip.path.name:22s} {len(audio) / 16000:5.1f} s  WER off {e_off / max(1, len(ref)):5.1%} str {e_str / max(1, len(ref)):5.1%}"
              f"  stream rtf {compute_s / (len(audio) / 16000):.2f}  latency med {lat} s")
        if args.verbose:
            print(f"     ref: {clip.reference}\n     off: {offline.text}\n     str: {text}")
    lat = np.array(tally.latencies_s) if tally.latencies_s else np.array([np.nan])
    return {
        "model": name,
        "device": str(transcriber.placement.device),
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "n_clips": len(clips),
        "audio_s": round(tally.audio_s, 2),
        "ref_words": tally.ref_words,
        "wer_offline": round(100 * tally.errors_offline / max(1, tally.ref_words), 2),
        "wer_streaming": round(100 * tally.errors_streaming / max(1, tally.ref_words), 2),
        "rtf_offline": round(tally.compute_offline_s / tally.audio_s, 3),
        "rtf_streaming": round(tally.compute_streaming_s / tally.audio_s, 3),
        "commit_latency_median_s": round(float(np.median(lat)), 3),
        "commit_latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "committed_words": len(tally.latencies_s),
        "min_chunk_s": settings.min_chunk_s,
        "max_window_s": settings.max_window_s,
        "end_of_speech_s": settings.end_of_speech_s,
        "commit_guard_s": settings.commit_guard_s,
        "trim_min_s": settings.trim_min_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asr", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with transcripts.tsv and the clips")
    parser.add_argument("--quick", action="store_true", help="jfk + 8 LJ Speech clips")
    parser.add_argument("--model", nargs="+", default=["tiny.en"], help="store names (tiny.en, base) or upstream sizes")
    parser.add_argument("--langs", default="en", help="comma-separated languages of clips to use")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best on a shared 2-core machine)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what a process_iter call costs on the virtual clock")
    parser.add_argument("--min-chunk-s", type=float, default=None, help="override StreamingSettings.min_chunk_s")
    parser.add_argument("--max-window-s", type=float, default=None, help="override StreamingSettings.max_window_s")
    parser.add_argument("--end-of-speech-s", type=float, default=None, help="override StreamingSettings.end_of_speech_s")
    parser.add_argument("--commit-guard-s", type=float, default=None, help="override StreamingSettings.commit_guard_s")
    parser.add_argument("--trim-min-s", type=float, default=None, help="override StreamingSettings.trim_min_s")
    parser.add_argument("--verbose", action="store_true", help="print reference and both transcripts per clip")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="No CUDA GPU")
    clips = read_clips(args.data, set(args.langs.split(",")), args.quick)
    if not clips:
        raise SystemExit(f"no clips in {args.data} for languages {args.langs}")
    load = os.getloadavg()[0]
    results = [run_model(m, clips, args) for m in args.model]
    for r in results:
        print(f"\n{r['model']} on {r['device']}, {r['n_clips']} clips, {r['audio_s']:.0f} s of audio, {r['ref_words']} words")
        print(f"  WER offline {r['wer_offline']:.2f}%   streaming {r['wer_streaming']:.2f}%")
        print(f"  real-time factor offline {r['rtf_offline']:.3f}   streaming {r['rtf_streaming']:.3f}  ({r['clock']} clock, {r['threads']} threads)")
        print(f"  commit latency median {r['commit_latency_median_s']:.2f} s   p95 {r['commit_latency_p95_s']:.2f} s  ({r['committed_words']} words)")
    print(f"  load average at start: {load:.1f} on {os.cpu_count()} CPUs")
    summary = {**results[0], "rtf": results[0]["rtf_streaming"], "load_avg_1min": round(load, 2)}
    if len(results) > 1:
        summary["models"] = results
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
