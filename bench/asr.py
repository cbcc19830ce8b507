"""Speech-to-text benchmark: WER offline vs streaming, real-time factor, commit latency.

    python -m bench.asr --data /work/shared/evaldata/speech_asr [--data ../shared/traindata/speech_sentences ...]
                        [--quick] [--model tiny.en [base ...]] [--clock cpu] [--set FIELD=VALUE ...]

Each data folder (a corpus) holds `transcripts.tsv` (path, reference, lang, duration_s, source) and the
clips it names. English clips only (tiny.en is English-only; --langs changes that for multilingual
models); --quick takes jfk.wav and the first 8 LJ Speech clips, else a corpus's first 9 clips.

Every clip is decoded offline once and streamed twice: "before" with the streaming defaults this
project had before issue 20 (PREVIOUS_DEFAULTS: greedy decodes 0.4 s apart, LocalAgreement-2) and
"after" with the current StreamingSettings (plus --set overrides), so one run shows both on the same
clips and the same machine load (--no-before skips the first). Per model and corpus it prints:
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
Last line: one JSON object: the first model's figures on the first corpus ("after" at the top level,
"before" nested), and with several models or corpora every run under "runs".
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_S = 0.1  # s: what capture sources deliver (the browser's period is AppSettings.audio_stream_every_s)
TRAILING_SILENCE_S = 1.5
SETTING_NAMES = ("before", "after")
# The streaming defaults before issue 20 (greedy window decodes 0.4 s apart, LocalAgreement-2 on any word,
# the buffer cut at every committed sentence end, a decode's last word and a sentence end at
# the hypothesis's edge committed like any other): bench.asr runs them as "before" beside the current ones.
# (Decoding loops are cut in both: that is a fix, not a setting.)
PREVIOUS_DEFAULTS: dict[str, Any] = {"min_chunk_s": 0.4, "trim_min_s": 0.0, "agree_prob": 0.0, "beam_size": 1,
                                     "stop_gap_s": float("inf"), "hold_last_sentence_end": False, "decode_share": 0.0,
                                     "keep_committed_s": 0.0}
QUICK = ("jfk/jfk.wav",) + tuple(f"ljspeech/LJ001-{i:04d}.flac" for i in range(1, 9))


@dataclass
class Clip:
    path: Path
    reference: str
    lang: str
    duration_s: float


@dataclass
class Tally:
    """One streaming setting over one corpus."""

    errors: int = 0
    compute_s: float = 0.0  # on the chosen clock
    cpu_s: float = 0.0  # CPU seconds, all threads
    streams: list = field(default_factory=list)  # models.asr_replay.StreamTimings per clip

    @property
    def latencies_s(self) -> list[float]:
        return [w.latency_s for s in self.streams for w in s.words]


def read_clips(data: Path, langs: set[str], quick: bool, every: int = 1) -> list[Clip]:
    table = data / "transcripts.tsv"
    if not table.is_file():
        raise SystemExit(f"{table} not found: --data must be a folder with transcripts.tsv (path, reference, lang, duration_s)")
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    clips = [Clip(data / r["path"], r["reference"], r["lang"], float(r["duration_s"])) for r in rows if r["lang"] in langs]
    if quick:
        clips = [c for c in clips if c.path.relative_to(data).as_posix() in QUICK] or clips[:9]
    return clips[::every]


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


def streaming_settings(args: argparse.Namespace, base: dict[str, Any] | None = None) -> Any:
    """StreamingSettings: the defaults (or `base` on top of them), then the command line's overrides."""
    from models.streaming_asr import StreamingSettings

    defaults = replace(StreamingSettings(), **(base or {}))
    overrides = {"min_chunk_s": args.min_chunk_s, "max_window_s": args.max_window_s, "end_of_speech_s": args.end_of_speech_s,
                 "commit_guard_s": args.commit_guard_s, "trim_min_s": args.trim_min_s, "confident_prob": args.confident_prob,
                 "confident_lookahead_s": args.confident_lookahead_s}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(defaults, key):
            raise SystemExit(f"--set {item}: StreamingSettings has no field {key!r}")
        kind = type(getattr(defaults, key))
        if kind is bool and value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise SystemExit(f"--set {item}: {key} is true or false (1/0)")
        overrides[key] = value.lower() in ("1", "true", "yes", "on") if kind is bool else kind(value)
    return defaults if base is not None else replace(defaults, **overrides)


def run_corpus(transcriber: Any, corpus: str, clips: list[Clip], settings: dict[str, Any], args: argparse.Namespace) -> dict:
    """Offline once per clip, then each streaming setting on the same clips: {"offline": ..., name: figures}."""
    from whisper.normalizers import EnglishTextNormalizer

    from capture.audio import load_audio
    from models.asr_replay import transcribe_stream
    from models.streaming_asr import StreamingASR

    normalise = EnglishTextNormalizer()
    now = timer(args.clock)
    tallies = {name: Tally() for name in settings}
    errors_offline = ref_words = 0
    audio_s = compute_offline_s = cpu_offline_s = 0.0
    print(f"\n{corpus}: {len(clips)} clips, {transcriber.settings.model} ({transcriber.engine_name} streaming, {args.threads} threads, "
          f"clock={args.clock}); WER offline / {' / '.join(settings)}")
    for clip in clips:
        audio = load_audio(clip.path)
        ref = normalise(clip.reference).split()
        t0, c0 = now(), time.process_time()
        offline = transcriber.transcribe(audio)
        compute_offline_s += now() - t0
        cpu_offline_s += time.process_time() - c0
        e_off = word_errors(ref, normalise(offline.text).split())
        errors_offline += e_off
        ref_words += len(ref)
        audio_s += len(audio) / 16000
        line = f"  {clip.path.name:30s} {len(audio) / 16000:5.1f} s  WER {e_off / max(1, len(ref)):5.1%}"
        texts = []
        for name, s in settings.items():
            final, timings, _ = transcribe_stream(StreamingASR(transcriber, s), audio, chunk_s=args.chunk_s, clock=args.clock,
                                                  trailing_silence_s=TRAILING_SILENCE_S)
            e_str = word_errors(ref, normalise(final.committed_text).split())
            t = tallies[name]
            t.errors += e_str
            t.compute_s += timings.cost_s
            t.cpu_s += timings.cpu_s
            t.streams.append(timings)
            latencies = [w.latency_s for w in timings.words]
            line += f" / {e_str / max(1, len(ref)):5.1%} (latency {statistics.median(latencies) if latencies else float('nan'):.2f} s)"
            texts.append(f"     {name}: {final.committed_text}")
        print(line, flush=True)
        if args.verbose:
            print("\n".join([f"     ref: {clip.reference}", f"     offline: {offline.text}"] + texts))
    out: dict[str, Any] = {"corpus": corpus, "n_clips": len(clips), "audio_s": round(audio_s, 2), "ref_words": ref_words,
                           "wer_offline": round(100 * errors_offline / max(1, ref_words), 2),
                           "rtf_offline": round(compute_offline_s / audio_s, 3), "cpu_rtf_offline": round(cpu_offline_s / audio_s, 3)}
    for name, s in settings.items():
        out[name] = streaming_figures(tallies[name], s, audio_s, ref_words, args.chunk_s)
    return out


def streaming_figures(t: Tally, settings: Any, audio_s: float, ref_words: int, chunk_s: float) -> dict[str, Any]:
    from models.asr_replay import latency_breakdown

    lat = np.array(t.latencies_s) if t.latencies_s else np.array([np.nan])
    return {
        "wer_streaming": round(100 * t.errors / max(1, ref_words), 2),
        "rtf_streaming": round(t.compute_s / audio_s, 3),
        "cpu_rtf_streaming": round(t.cpu_s / audio_s, 3),
        "commit_latency_median_s": round(float(np.median(lat)), 3),
        "commit_latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "committed_words": len(t.latencies_s),
        "chunk_s": chunk_s,
        **asdict(settings),
        **{f"breakdown_{k}": v for k, v in latency_breakdown(t.streams).items()},
    }


def print_breakdown(r: dict) -> None:
    b = {k.removeprefix("breakdown_"): (float("nan") if v is None else v) for k, v in r.items() if k.startswith("breakdown_")}
    print(f"  where the latency goes (medians over words; settings: chunk period {r['chunk_s']:.2f} s, min_chunk_s {r['min_chunk_s']:.2f},"
          f" commit_guard_s {r['commit_guard_s']:.2f}, end_of_speech_s {r['end_of_speech_s']:.2f}, confident_prob {r['confident_prob']:.2f}):")
    print(f"    waiting for audio (min_chunk_s, chunk period, a busy decoder)  {b['audio_wait_median_s']:.2f} s")
    print(f"    waiting for confirmation (2nd decode, guard, end of speech)   {b['confirm_wait_median_s']:.2f} s")
    print(f"    decode per window: median {b['decode_median_s']:.3f} s, p95 {b['decode_p95_s']:.3f} s"
          f" (window median {b['window_median_s']:.1f} s, {b['decodes_per_audio_s']:.2f} decodes per audio second)")
    for reason, what in (("agreed", "decodes agreed"), ("confident", "one confident decode"), ("pause", "end of speech (pause)"),
                         ("end", "end of stream"), ("forced", "buffer full")):
        if b[f"share_{reason}"]:
            print(f"    {what:28s} {b[f'share_{reason}']:6.1%} of words, latency median {b[f'latency_{reason}_median_s']:.2f} s")


def print_corpus(r: dict) -> None:
    print(f"\n{r['corpus']}: {r['model']} on {r['device']} ({r['engine']} streaming), {r['n_clips']} clips, {r['audio_s']:.0f} s of audio, "
          f"{r['ref_words']} words; {r['clock']} clock, {r['threads']} thread(s)")
    print(f"  offline: WER {r['wer_offline']:.2f}%, real-time factor {r['rtf_offline']:.3f}, CPU s per audio s {r['cpu_rtf_offline']:.3f}")
    for name in SETTING_NAMES:
        if name in r:
            f = r[name]
            print(f"  streaming {name:6s}: WER {f['wer_streaming']:.2f}% ({f['wer_streaming'] - r['wer_offline']:+.2f} vs offline), "
                  f"commit latency median {f['commit_latency_median_s']:.2f} s, p95 {f['commit_latency_p95_s']:.2f} s, "
                  f"CPU s per audio s {f['cpu_rtf_streaming']:.3f}, real-time factor {f['rtf_streaming']:.3f}")
    print_breakdown(r["after"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asr", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", action="extend", required=True,
                        help="one or more folders with transcripts.tsv and the clips (repeat --data or list several)")
    parser.add_argument("--quick", action="store_true", help="jfk + 8 LJ Speech clips (else the first 9) per corpus")
    parser.add_argument("--every", type=int, default=1, help="every Nth clip of each corpus (a loaded machine: 3)")
    parser.add_argument("--model", nargs="+", default=["tiny.en"], help="store names (tiny.en, base) or upstream sizes")
    parser.add_argument("--langs", default="en", help="comma-separated languages of clips to use")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per decode (1: best on a shared 2-core machine)")
    parser.add_argument("--engine", choices=("auto", "torch", "ct2"), default="auto", help="streaming decoder (offline is always openai-whisper)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what a process_iter call costs on the virtual clock")
    parser.add_argument("--no-before", action="store_true", help="skip the streaming run with the previous defaults")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any StreamingSettings field")
    parser.add_argument("--min-chunk-s", type=float, default=None, help="override StreamingSettings.min_chunk_s")
    parser.add_argument("--max-window-s", type=float, default=None, help="override StreamingSettings.max_window_s")
    parser.add_argument("--end-of-speech-s", type=float, default=None, help="override StreamingSettings.end_of_speech_s")
    parser.add_argument("--commit-guard-s", type=float, default=None, help="override StreamingSettings.commit_guard_s")
    parser.add_argument("--trim-min-s", type=float, default=None, help="override StreamingSettings.trim_min_s")
    parser.add_argument("--confident-prob", type=float, default=None, help="override StreamingSettings.confident_prob")
    parser.add_argument("--confident-lookahead-s", type=float, default=None, help="override StreamingSettings.confident_lookahead_s")
    parser.add_argument("--chunk-s", type=float, default=CHUNK_S, help="chunk period in s (capture 0.1; the browser's audio_stream_every_s)")
    parser.add_argument("--verbose", action="store_true", help="print reference and every transcript per clip")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="No CUDA GPU")
    from capture.audio import load_audio
    from models.transcriber import Transcriber, TranscriberSettings

    corpora = {}
    for folder in args.data:
        clips = read_clips(folder, set(args.langs.split(",")), args.quick, args.every)
        if not clips:
            raise SystemExit(f"no clips in {folder} for languages {args.langs}")
        corpora[folder.resolve().name] = clips
    settings = {} if args.no_before else {"before": streaming_settings(args, PREVIOUS_DEFAULTS)}
    settings["after"] = streaming_settings(args)
    load = os.getloadavg()[0]
    results = []
    for model in args.model:
        transcriber = Transcriber(TranscriberSettings(model=model, threads=args.threads, engine=args.engine))
        warm = load_audio(next(iter(corpora.values()))[0].path)[: 3 * 16000]
        transcriber.transcribe(warm)  # first calls compile numba's DTW and warm the allocator
        transcriber.decode_window(warm)
        for corpus, clips in corpora.items():
            r = run_corpus(transcriber, corpus, clips, settings, args)
            results.append({"model": model, "device": str(transcriber.placement.device), "engine": transcriber.engine_name,
                            "threads": args.threads, "clock": args.clock, **r})
    load_end = os.getloadavg()[0]
    for r in results:
        print_corpus(r)
    print(f"  load average (1 min) at start {load:.1f}, at end {load_end:.1f}, on {os.cpu_count()} CPUs")
    first = results[0]
    summary = {**{k: v for k, v in first.items() if k not in SETTING_NAMES}, **first["after"], "rtf": first["after"]["rtf_streaming"],
               "load_avg_1min": round(load, 2), "load_avg_1min_end": round(load_end, 2)}
    if "before" in first:
        summary["before"] = first["before"]
    if len(results) > 1:
        summary["runs"] = results  # one per model and corpus
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
