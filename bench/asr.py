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
  process_iter and finish call, VAD included), on the chosen clock; and `cpu_rtf_streaming`:
  CPU seconds of all threads of this process per audio second, whatever the clock.
- commit latency: for each committed word, time of commit minus the word's end in the audio
  (Whisper's own word timestamp), median and p95.
- where the latency goes (models.asr_replay.WordTiming, medians over words): waiting for audio
  (min_chunk_s, the chunk period, a decode in progress), waiting for confirmation (a second
  agreeing decode, the commit guard, the end of speech), the committing decode; decode time per
  window; and the share of words committed by each rule (two decodes agreed, one confident decode,
  a pause, the end of the stream, a full buffer) with their median latencies.

Streaming runs through models.asr_replay (the one streaming driver) on a virtual clock: it starts
at 0 with the audio; a process call sees only the chunks recorded by then and advances the clock
by what it cost (wall time by default; --clock cpu uses this process's CPU time, all threads, i.e.
what an otherwise idle machine would need when other programs share this one). Each clip is
followed by 1.5 s of silence, as a live microphone keeps sending audio after the speaker stops,
then finish(). --chunk-s is the chunk period (capture: 0.1 s; the browser: audio_stream_every_s).
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

CHUNK_S = 0.1  # s: what capture sources deliver (the browser's period is AppSettings.audio_stream_every_s)
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
    cpu_offline_s: float = 0.0  # CPU seconds, all threads
    cpu_streaming_s: float = 0.0
    streams: list = field(default_factory=list)  # models.asr_replay.StreamTimings per clip

    @property
    def latencies_s(self) -> list[float]:
        return [w.latency_s for s in self.streams for w in s.words]


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


def streaming_settings(args: argparse.Namespace):
    from models.streaming_asr import StreamingSettings

    overrides = {"min_chunk_s": args.min_chunk_s, "max_window_s": args.max_window_s, "end_of_speech_s": args.end_of_speech_s,
                 "commit_guard_s": args.commit_guard_s, "trim_min_s": args.trim_min_s, "confident_prob": args.confident_prob,
                 "confident_lookahead_s": args.confident_lookahead_s}
    return replace(StreamingSettings(), **{k: v for k, v in overrides.items() if v is not None})


def run_model(name: str, clips: list[Clip], args: argparse.Namespace) -> dict:
    from whisper.normalizers import EnglishTextNormalizer

    from capture.audio import load_audio
    from models.asr_replay import latency_breakdown, transcribe_stream
    from models.streaming_asr import StreamingASR
    from models.transcriber import Transcriber, TranscriberSettings

    transcriber = Transcriber(TranscriberSettings(model=name, threads=args.threads, engine=args.engine))
    settings = streaming_settings(args)
    normalise = EnglishTextNormalizer()
    now = timer(args.clock)
    warm = load_audio(clips[0].path)[: 3 * 16000]
    transcriber.transcribe(warm)  # first calls compile numba's DTW and warm the allocator
    transcriber.decode_window(warm)
    tally = Tally()
    print(f"\n{name} on {transcriber.placement.device}, streaming engine {transcriber.engine_name} ({args.threads} threads,"
          f" clock={args.clock}): {len(clips)} clips")
    for clip in clips:
        audio = load_audio(clip.path)
        ref = normalise(clip.reference).split()
        t0, c0 = now(), time.process_time()
        offline = transcriber.transcribe(audio)
        tally.compute_offline_s += now() - t0
        tally.cpu_offline_s += time.process_time() - c0
        asr = StreamingASR(transcriber, settings)
        final, timings, _ = transcribe_stream(asr, audio, chunk_s=args.chunk_s, clock=args.clock, trailing_silence_s=TRAILING_SILENCE_S)
        e_off = word_errors(ref, normalise(offline.text).split())
        e_str = word_errors(ref, normalise(final.committed_text).split())
        tally.errors_offline += e_off
        tally.errors_streaming += e_str
        tally.ref_words += len(ref)
        tally.audio_s += len(audio) / 16000
        tally.compute_streaming_s += timings.cost_s
        tally.cpu_streaming_s += timings.cpu_s
        tally.streams.append(timings)
        latencies = [w.latency_s for w in timings.words]
        lat = f"{statistics.median(latencies):.2f}" if latencies else "-"
        print(f"  {clip.path.name:22s} {len(audio) / 16000:5.1f} s  WER off {e_off / max(1, len(ref)):5.1%} str {e_str / max(1, len(ref)):5.1%}"
              f"  stream rtf {timings.cost_s / (len(audio) / 16000):.2f}  latency med {lat} s")
        if args.verbose:
            print(f"     ref: {clip.reference}\n     off: {offline.text}\n     str: {final.committed_text}")
    lat = np.array(tally.latencies_s) if tally.latencies_s else np.array([np.nan])
    breakdown = latency_breakdown(tally.streams)
    return {
        "model": name,
        "device": str(transcriber.placement.device),
        "engine": transcriber.engine_name,
        "threads": args.threads,
        "clock": args.clock,
        "n_clips": len(clips),
        "audio_s": round(tally.audio_s, 2),
        "ref_words": tally.ref_words,
        "wer_offline": round(100 * tally.errors_offline / max(1, tally.ref_words), 2),
        "wer_streaming": round(100 * tally.errors_streaming / max(1, tally.ref_words), 2),
        "rtf_offline": round(tally.compute_offline_s / tally.audio_s, 3),
        "rtf_streaming": round(tally.compute_streaming_s / tally.audio_s, 3),
        "cpu_rtf_offline": round(tally.cpu_offline_s / tally.audio_s, 3),
        "cpu_rtf_streaming": round(tally.cpu_streaming_s / tally.audio_s, 3),
        "commit_latency_median_s": round(float(np.median(lat)), 3),
        "commit_latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "committed_words": len(tally.latencies_s),
        "min_chunk_s": settings.min_chunk_s,
        "max_window_s": settings.max_window_s,
        "end_of_speech_s": settings.end_of_speech_s,
        "commit_guard_s": settings.commit_guard_s,
        "trim_min_s": settings.trim_min_s,
        "confident_prob": settings.confident_prob,
        "confident_lookahead_s": settings.confident_lookahead_s,
        "chunk_s": args.chunk_s,
        **{f"breakdown_{k}": v for k, v in breakdown.items()},
    }


def print_breakdown(r: dict) -> None:
    b = {k.removeprefix("breakdown_"): (float("nan") if v is None else v) for k, v in r.items() if k.startswith("breakdown_")}
    print(f"  where the latency goes (medians over words; settings: chunk period {r['chunk_s']:.2f} s, min_chunk_s {r['min_chunk_s']:.2f},"
          f" commit_guard_s {r['commit_guard_s']:.2f}, end_of_speech_s {r['end_of_speech_s']:.2f}, confident_prob {r['confident_prob']:.2f}):")
    print(f"    waiting for audio (min_chunk_s, chunk period, a busy decoder)  {b['audio_wait_median_s']:.2f} s")
    print(f"    waiting for confirmation (2nd decode, guard, end of speech)   {b['confirm_wait_median_s']:.2f} s")
    print(f"    decode per window: median {b['decode_median_s']:.3f} s, p95 {b['decode_p95_s']:.3f} s"
          f" (window median {b['window_median_s']:.1f} s, {b['decodes_per_audio_s']:.2f} decodes per audio second)")
    for reason, what in (("agreed", "two decodes agreed"), ("confident", "one confident decode"), ("pause", "end of speech (pause)"),
                         ("end", "end of stream"), ("forced", "buffer full")):
        if b[f"share_{reason}"]:
            print(f"    {what:28s} {b[f'share_{reason}']:6.1%} of words, latency median {b[f'latency_{reason}_median_s']:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asr", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with transcripts.tsv and the clips")
    parser.add_argument("--quick", action="store_true", help="jfk + 8 LJ Speech clips")
    parser.add_argument("--model", nargs="+", default=["tiny.en"], help="store names (tiny.en, base) or upstream sizes")
    parser.add_argument("--langs", default="en", help="comma-separated languages of clips to use")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per decode (1: best on a shared 2-core machine)")
    parser.add_argument("--engine", choices=("auto", "torch", "ct2"), default="auto", help="streaming decoder (offline is always openai-whisper)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what a process_iter call costs on the virtual clock")
    parser.add_argument("--min-chunk-s", type=float, default=None, help="override StreamingSettings.min_chunk_s")
    parser.add_argument("--max-window-s", type=float, default=None, help="override StreamingSettings.max_window_s")
    parser.add_argument("--end-of-speech-s", type=float, default=None, help="override StreamingSettings.end_of_speech_s")
    parser.add_argument("--commit-guard-s", type=float, default=None, help="override StreamingSettings.commit_guard_s")
    parser.add_argument("--trim-min-s", type=float, default=None, help="override StreamingSettings.trim_min_s")
    parser.add_argument("--confident-prob", type=float, default=None, help="override StreamingSettings.confident_prob")
    parser.add_argument("--confident-lookahead-s", type=float, default=None, help="override StreamingSettings.confident_lookahead_s")
    parser.add_argument("--chunk-s", type=float, default=CHUNK_S, help="chunk period in s (capture 0.1; the browser's audio_stream_every_s)")
    parser.add_argument("--verbose", action="store_true", help="print reference and both transcripts per clip")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="No CUDA GPU")
    clips = read_clips(args.data, set(args.langs.split(",")), args.quick)
    if not clips:
        raise SystemExit(f"no clips in {args.data} for languages {args.langs}")
    load = os.getloadavg()[0]
    results = [run_model(m, clips, args) for m in args.model]
    load_end = os.getloadavg()[0]
    for r in results:
        print(f"\n{r['model']} on {r['device']} ({r['engine']} streaming), {r['n_clips']} clips, {r['audio_s']:.0f} s of audio, {r['ref_words']} words")
        print(f"  WER offline {r['wer_offline']:.2f}%   streaming {r['wer_streaming']:.2f}%")
        print(f"  real-time factor offline {r['rtf_offline']:.3f}   streaming {r['rtf_streaming']:.3f}  ({r['clock']} clock, {r['threads']} threads)")
        print(f"  CPU seconds per audio second (all threads): offline {r['cpu_rtf_offline']:.3f}   streaming {r['cpu_rtf_streaming']:.3f}")
        print(f"  commit latency median {r['commit_latency_median_s']:.2f} s   p95 {r['commit_latency_p95_s']:.2f} s  ({r['committed_words']} words)")
        print_breakdown(r)
    print(f"  load average (1 min) at start {load:.1f}, at end {load_end:.1f}, on {os.cpu_count()} CPUs")
    summary = {**results[0], "rtf": results[0]["rtf_streaming"], "load_avg_1min": round(load, 2), "load_avg_1min_end": round(load_end, 2)}
    if len(results) > 1:
        summary["models"] = results
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
