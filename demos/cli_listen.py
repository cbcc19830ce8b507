"""`livelearner listen`: live speech to text in the terminal.

    livelearner listen                      # default microphone
    livelearner listen --file talk.flac     # a file replayed in real time, through the same code
    livelearner listen --file talk.flac --fast --model base
    livelearner listen --commands "yes, no, stop, go"          # spoken commands, scored on the audio
    livelearner listen --classes "question, greeting: saying hello, complaint"   # the meaning of each sentence

Committed text (final, never changes) is printed normally; the partial hypothesis after it is
dimmed and may still change. Each finished sentence is printed on its own line with its time,
its confidence score (not calibrated: fitted on synthetic speech) and a warning when Whisper
probably made it up.

Classifying what was said (the Speak tab's two modes):
- --commands: the audio of each utterance the voice activity detector closes is scored against the
  commands (models.commands: Whisper's decoder scores each command's text; "none of these" when it is
  none of them), calibrated by the shipped calibration or --command-calibration (a team's, fitted with
  python -m train.command_calibration --store ...);
- --classes or --text-model: each finished sentence's text is classified, zero-shot by MiniLM
  against the class descriptions (uncalibrated) or by a trained text bundle.
Each prints the class with its probability, the 90% prediction set, the decision and what the
probability is calibrated on.
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
    what = p.add_mutually_exclusive_group()
    what.add_argument("--commands", default=None, metavar="W", help="commands mode: words to listen for, comma-separated")
    what.add_argument("--classes", default=None, metavar="C",
                      help="meaning mode, zero-shot: 'label: description' separated by commas")
    what.add_argument("--text-model", default=None, metavar="DIR", help="meaning mode: a trained text bundle folder")
    p.add_argument("--command-calibration", default=None, metavar="JSON",
                   help="commands mode: a team calibration (python -m train.command_calibration --store ...)")
    p.add_argument("--accept-at", type=float, default=0.9, help="accept a class at or above this probability")
    p.set_defaults(func=run)


def build(args: argparse.Namespace) -> Any:
    """The streaming driver the flags ask for; UserFacingError when the model cannot be had."""
    from dataclasses import replace

    from demos.cli import UserFacingError
    from demos.speech_session import build_vad
    from models.asr_replay import StreamDriver
    from models.streaming_asr import StreamingASR, StreamingSettings
    from models.transcriber import Transcriber, TranscriberSettings

    try:
        transcriber = Transcriber(TranscriberSettings(model=args.model, language=args.language, threads=args.threads))
    except (ValueError, OSError, RuntimeError) as e:
        raise UserFacingError(f"could not load Whisper {args.model!r}: {e}") from e
    settings = replace(StreamingSettings(vad=args.vad), **({"min_chunk_s": args.min_chunk_s} if args.min_chunk_s else {}))
    return StreamDriver(StreamingASR(transcriber, settings, vad=build_vad(settings.vad)), clock="live")


def build_classifier(args: argparse.Namespace, transcriber: Any) -> tuple[str, Any]:
    """("commands" | "meaning" | "", the classifier) the flags ask for; UserFacingError for bad input."""
    from demos.cli import UserFacingError
    from models.prediction import RoutingPolicy

    if not 0.0 < args.accept_at <= 1.0:
        raise UserFacingError(f"--accept-at must be a probability in (0, 1], got {args.accept_at}")
    policy = RoutingPolicy(accept_at=args.accept_at)
    if args.commands is not None:
        from models.commands import CommandCalibration, CommandClassifier, CommandInputError, CommandScorer, CommandScorerSettings

        try:
            calibration = CommandCalibration.from_json(args.command_calibration) if args.command_calibration else None
            scorer = CommandScorer(CommandScorerSettings(model=args.model, threads=args.threads), model=transcriber.model)
            labels = [c.strip() for c in args.commands.split(",")]
            return "commands", CommandClassifier(labels, scorer, calibration=calibration, policy=policy)
        except CommandInputError as e:
            raise UserFacingError(f"--commands: {e}") from e
    if args.classes is not None or args.text_model is not None:
        from models.embeddings import load_text_embedder

        if args.text_model is not None:
            from models.bundle import BundleError, load_bundle

            try:
                bundle = load_bundle(args.text_model)
            except (BundleError, OSError) as e:
                raise UserFacingError(f"--text-model: {e}") from e
            if bundle.task != "text":
                raise UserFacingError(f"--text-model: {args.text_model} is a {bundle.task} model, not a text model")
            bundle.use_embedder(load_text_embedder())
            return "meaning", bundle
        from demos.speech_session import zero_shot_bundle

        classes: dict[str, str] = {}
        for part in args.classes.split(","):
            label, _, desc = part.partition(":")
            if label.strip():
                classes[label.strip()] = desc.strip() or label.strip()
        if len(classes) < 2:
            raise UserFacingError("--classes: give at least two classes separated by commas, e.g. 'question, greeting'")
        return "meaning", zero_shot_bundle(load_text_embedder(), classes, policy)
    return "", None


class Printer:
    """Committed + dimmed partial text on one live line (a TTY); finished sentences on their own lines."""

    def __init__(self, out: TextIO):
        self.out = out
        self.live = out.isatty()

    def show(self, asr: Any, update: Any) -> None:
        for seg in update.segments:
            flag = "  [probably hallucinated]" if seg.confidence.hallucinated else ""
            self.line(f"{seg.start_s:7.1f}s  {seg.text}  (confidence {seg.confidence.confidence:.2f}, uncalibrated score){flag}")
        if self.live:
            width = shutil.get_terminal_size().columns - 1
            committed, partial = asr.open_text, update.partial_text
            text = f"{committed} {DIM}{partial}{RESET}" if partial else committed
            overflow = len(committed) + len(partial) + 1 - width
            if overflow > 0:
                text = "…" + (f"{committed} {DIM}{partial}{RESET}" if partial else committed)[overflow + 1 :]
            self.out.write(CLEAR_LINE + text)
            self.out.flush()

    def line(self, text: str) -> None:
        self.out.write((CLEAR_LINE if self.live else "") + text + "\n")
        self.out.flush()


def catch_up(source: Any, driver: Any, on_chunk: Any) -> None:
    """Insert the chunks that queued while Whisper was busy, so each decode sees all audio so far."""
    for _ in range(source.stats().queued):
        try:
            chunk = source.read(0)
        except TimeoutError:
            return
        if chunk is None:
            return
        driver.insert(chunk)
        on_chunk(chunk)


class Classifying:
    """What was said -> a class: each finished sentence (meaning) or each closed utterance (commands)."""

    def __init__(self, mode: str, classifier: Any, printer: Printer):
        from demos.speech_session import UtteranceCutter

        self.mode, self.classifier, self.printer = mode, classifier, printer
        self.utterances = UtteranceCutter() if mode == "commands" else None

    def add(self, chunk: Any) -> None:
        if self.utterances is not None:
            self.utterances.add(chunk.samples, chunk.start_s)

    def show(self, driver: Any, update: Any) -> None:
        from demos.speech_session import classify_utterance
        from demos.tab_speak import describe, fold_asr_confidence

        if self.mode == "meaning":
            for seg in update.segments:
                if seg.text.strip():
                    p = self.classifier.predictions([seg.text.strip()], timestamp_s=seg.start_s)[0]
                    p = fold_asr_confidence(p, seg.confidence.confidence, seg.confidence.hallucinated, self.classifier.policy)
                    self.printer.line("   " + describe(p, "meaning", seg.text.strip()).replace("**", ""))
        elif self.utterances is not None:
            utterance = self.utterances.watch(update, driver.asr.buffer_s)
            if utterance is not None:
                p = classify_utterance(self.classifier, utterance)
                where = f"{utterance.start_s:7.1f}s  "
                self.printer.line(where + ("no speech (too short or silent)" if p is None
                                           else describe(p, "commands", "").replace("**", "")))


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from capture.audio import AudioSettings, open_audio
    from capture.source import CaptureError
    from demos.cli import UserFacingError

    warnings.filterwarnings("ignore", message="No CUDA GPU")
    if args.fast and not args.file:
        raise UserFacingError("--fast only applies to --file (a microphone delivers in real time)")
    driver = build(args)
    mode, classifier = build_classifier(args, driver.asr.transcriber)
    printer = Printer(out)
    classifying = Classifying(mode, classifier, printer) if mode else None
    on_chunk = classifying.add if classifying is not None else (lambda chunk: None)
    source_name = args.file or "the microphone"
    settings = AudioSettings(realtime=not args.fast, device=args.device)
    t0 = time.perf_counter()
    try:
        source = open_audio(args.file, settings)
    except CaptureError as e:
        raise UserFacingError(str(e)) from e
    print(f"listening to {source_name} with Whisper {args.model}"
          + (f", {mode} mode" if mode else "") + " (Ctrl-C to stop)", file=sys.stderr)
    try:
        with source:
            while (chunk := source.read()) is not None:
                driver.insert(chunk)
                on_chunk(chunk)
                if not args.fast:
                    catch_up(source, driver, on_chunk)
                update = driver.process()
                printer.show(driver.asr, update)
                if classifying is not None:
                    classifying.show(driver, update)
                if args.seconds is not None and update.stream_time_s >= args.seconds:
                    break
    except CaptureError as e:
        raise UserFacingError(str(e)) from e
    except KeyboardInterrupt:
        pass
    final = driver.finish()
    printer.show(driver.asr, final)
    if classifying is not None:
        classifying.show(driver, final)
    if printer.live:
        out.write(CLEAR_LINE)
    audio_s = final.stream_time_s
    compute_s = driver.timings.cost_s
    print(f"\n{final.committed_text}" if final.committed_text else "\n(no speech heard)", file=out)
    rtf = f", real-time factor {compute_s / audio_s:.2f}" if audio_s > 0 else ""
    print(f"{audio_s:.1f} s of audio in {time.perf_counter() - t0:.1f} s, decoding {compute_s:.1f} s{rtf}", file=sys.stderr)
    return 0
