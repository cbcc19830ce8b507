"""`livelearner listen`: live speech to text in the terminal.

    livelearner listen                      # default microphone
    livelearner listen --file talk.flac     # a file replayed in real time, through the same code
    livelearner listen --file talk.flac --fast --model base

Committed text (final, never changes) is printed normally; the partial hypothesis after it is
dimmed and may still change. Each finished sentence is printed on its own line with its time,
its confidence score (not calibrated: fitted on synthetic speech) and a warning when Whisper
probably made it up.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from typing import Any, TextIO

DIM, RESET, CLEAR_LINE = "\033[2m", "\033[0m", "\r\033[K"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("listen", help="live speech to text in the terminal (mic or a file)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", default=None, metavar="F", help="transcribe this audio file instead of the microphone")
    p.add_argument("--fast", action="store_true", help="with --file: replay as fast as possible instead of real time")
    p.add_argument("--model", default="tiny.en", help="tiny.en (default), base, or an upstream size (small, medium, ...: needs internet)")
    p.add_argument("--language", default=None, help="force a language for multilingual models (e.g. de); default: detect")
    p.add_argument("--device", default=None, help="microphone: sounddevice index or name")
    p.add_argument("--vad", default="auto", choices=("auto", "silero", "energy", "off"), help="voice activity detector")
    p.add_argument("--min-chunk-s", type=float, default=None, help="decode again after this much new audio (lower: faster text, more CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for Whisper")
    p.add_argument("--seconds", type=float, default=None, help="stop after this much audio")
    p.set_defaults(func=run)


def build(args: argparse.Namespace) -> Any:
    """The streaming processor the flags ask for; UserFacingError when the model cannot be had."""
    from dataclasses import replace

    from demos.cli import UserFacingError
    from models.streaming_asr import StreamingASR, StreamingSettings
    from models.transcriber import Transcriber, TranscriberSettings

    try:
        transcriber = Transcriber(TranscriberSettings(model=args.model, language=args.language, threads=args.threads))
    except (ValueError, OSError, RuntimeError) as e:
        raise UserFacingError(f"could not load Whisper {args.model!r}: {e}") from e
    settings = replace(StreamingSettings(vad=args.vad), **({"min_chunk_s": args.min_chunk_s} if args.min_chunk_s else {}))
    return StreamingASR(transcriber, settings)


class Printer:
    """Committed + dimmed partial text on one live line (a TTY); finished sentences on their own lines."""

    def __init__(self, out: TextIO):
        self.out = out
        self.live = out.isatty()

    def show(self, asr: Any, update: Any) -> None:
        for seg in update.segments:
            flag = "  [probably hallucinated]" if seg.confidence.hallucinated else ""
            self._line(f"{seg.start_s:7.1f}s  {seg.text}  (confidence {seg.confidence.confidence:.2f}, uncalibrated score){flag}")
        if self.live:
            width = shutil.get_terminal_size().columns - 1
            committed, partial = asr.open_text, update.partial_text
            text = f"{committed} {DIM}{partial}{RESET}" if partial else committed
            overflow = len(committed) + len(partial) + 1 - width
            if overflow > 0:
                text = "…" + (f"{committed} {DIM}{partial}{RESET}" if partial else committed)[overflow + 1 :]
            self.out.write(CLEAR_LINE + text)
            self.out.flush()

    def _line(self, text: str) -> None:
        self.out.write((CLEAR_LINE if self.live else "") + text + "\n")
        self.out.flush()


def catch_up(source: Any, asr: Any) -> None:
    """Insert the chunks that queued while Whisper was busy, so each decode sees all audio so far."""
    for _ in range(source.stats().queued):
        try:
            chunk = source.read(0)
        except TimeoutError:
            return
        if chunk is None:
            return
        asr.insert_audio(chunk)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from capture.audio import AudioSettings, open_audio
    from capture.source import CaptureError
    from demos.cli import UserFacingError

    warnings.filterwarnings("ignore", message="No CUDA GPU")
    if args.fast and not args.file:
        raise UserFacingError("--fast only applies to --file (a microphone delivers in real time)")
    asr = build(args)
    printer = Printer(out)
    source_name = args.file or "the microphone"
    settings = AudioSettings(realtime=not args.fast, device=args.device)
    compute_s, t0 = 0.0, time.perf_counter()
    try:
        source = open_audio(args.file, settings)
    except CaptureError as e:
        raise UserFacingError(str(e)) from e
    print(f"listening to {source_name} with Whisper {args.model} (Ctrl-C to stop)", file=sys.stderr)
    try:
        with source:
            while (chunk := source.read()) is not None:
                asr.insert_audio(chunk)
                if not args.fast:
                    catch_up(source, asr)
                update = asr.process_iter()
                compute_s += update.compute_s
                printer.show(asr, update)
                if args.seconds is not None and update.stream_time_s >= args.seconds:
                    break
    except CaptureError as e:
        raise UserFacingError(str(e)) from e
    except KeyboardInterrupt:
        pass
    final = asr.finish()
    compute_s += final.compute_s
    printer.show(asr, final)
    if printer.live:
        out.write(CLEAR_LINE)
    audio_s = final.stream_time_s
    print(f"\n{final.committed_text}" if final.committed_text else "\n(no speech heard)", file=out)
    rtf = f", real-time factor {compute_s / audio_s:.2f}" if audio_s > 0 else ""
    print(f"{audio_s:.1f} s of audio in {time.perf_counter() - t0:.1f} s, decoding {compute_s:.1f} s{rtf}", file=sys.stderr)
    return 0
