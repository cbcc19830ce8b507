"""`livelearner watch`: live vision with the overlay, from a camera, a video file or a stream.

    livelearner watch                                   # camera 0, facial emotion, in a window
    livelearner watch --task sign                       # sign letters (the project's landmark MLP; sign:packaged for the packaged one)
    livelearner watch --task sign:path/to/bundle        # the team's own landmarks model
    livelearner watch --task bears.pkl --region frame   # any fastai-exported image classifier
    livelearner watch --source clip.mp4 --out annotated.mp4 --fast   # every frame, as fast as possible

Inference runs on its own thread over the newest frame; when the model is slower than the camera,
stale frames are dropped (counted), never queued. Without a display the annotated frames go to a
video file (--out, default watch.mp4). fps and latency (capture -> prediction) are printed once a
second and at the end. Only load .pkl files you trust: a pickle runs code when loaded.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

REPORT_EVERY_S = 1.0  # one stats line per second
DEFAULT_OUT = "watch.mp4"  # headless runs write here unless --out is given
WINDOW = "livelearner watch (q to quit)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("watch", help="live emotion / sign / any image model on video, with overlay",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="0", metavar="0|FILE|FOLDER|URL",
                   help="camera index, video file, image folder or stream URL (default: camera 0)")
    p.add_argument("--task", default="emotion", metavar="emotion|sign|sign:BUNDLE|MODEL.pkl|BUNDLE",
                   help="what to recognise (default: emotion)")
    p.add_argument("--region", choices=("frame", "faces"), default="faces",
                   help="image models: classify the whole frame or each detected face (default: faces)")
    p.add_argument("--smoothing", type=int, default=5, metavar="FRAMES",
                   help="average each face's/hand's probabilities over this many frames (1 = off)")
    p.add_argument("--out", default=None, help=f"write the annotated video here (headless default: {DEFAULT_OUT})")
    p.add_argument("--no-window", action="store_true", help="do not open a window even if a display exists")
    p.add_argument("--fast", action="store_true", help="files: process every frame as fast as possible")
    p.add_argument("--loop", action="store_true", help="files: start again at the end")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many captured frames")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a fastai .pkl or format-1 bundle (a pickle can run code when loaded: trusted files only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from capture import CaptureError, VideoSettings, open_video
    from demos.cli import UserFacingError
    from demos.cli_capture import has_display
    from demos.live_loop import LiveLoop
    from models.pipelines import build_pipeline

    if args.smoothing < 1:
        raise UserFacingError("--smoothing must be at least 1 frame")
    try:
        pipeline = build_pipeline(args.task, region=args.region, smoothing_window=args.smoothing,
                                  trust_pickle=args.trust_pickle)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise UserFacingError(f"cannot use --task {args.task}: {e}") from e
    window = has_display() and not args.no_window
    out_path = Path(args.out) if args.out else (None if window else Path(DEFAULT_OUT))
    try:
        source = open_video(args.source, VideoSettings(realtime=not args.fast, loop=args.loop))
        source.start()
    except CaptureError as e:
        pipeline.close()
        raise UserFacingError(str(e)) from e
    print(f"watching {args.source} with {pipeline.name}"
          + (f", writing {out_path}" if out_path else "") + (" (window: press q to quit)" if window else ""),
          file=out, flush=True)
    writer = _Writer(out_path) if out_path else None
    loop = LiveLoop(pipeline).start()
    started = last_report = time.monotonic()
    shown = 0
    try:
        while True:
            frame = source.read(timeout_s=1.0)
            if frame is None:
                break
            loop.submit(frame.image, frame.timestamp_s)
            if args.fast:
                loop.wait_idle(30.0)  # every frame processed, none dropped
            shown = _show(loop, shown, window, writer)
            now = time.monotonic()
            if now - last_report >= REPORT_EVERY_S:
                print(loop.stats().line(), file=out, flush=True)
                last_report = now
            if (args.seconds is not None and now - started >= args.seconds) or \
                    (args.max_frames is not None and frame.index + 1 >= args.max_frames):
                break
            if window and _quit_pressed():
                break
        loop.wait_idle(5.0)
        _show(loop, shown, window, writer)
    except CaptureError as e:
        raise UserFacingError(str(e)) from e
    finally:
        loop.stop()
        source.stop()
        pipeline.close()
        if writer is not None:
            writer.close()
        if window:
            import cv2

            cv2.destroyAllWindows()
    stats = loop.stats()
    print(f"done: {stats.processed} frames processed, {stats.dropped} dropped, {stats.errors} errors; "
          f"{stats.fps:.1f} fps, latency median {stats.latency_median_ms:.1f} ms, p95 {stats.latency_p95_ms:.1f} ms, "
          f"model {stats.model_median_ms:.1f} ms" + (f"; last error: {stats.last_error}" if stats.errors else ""),
          file=out, flush=True)
    if writer is not None:
        print(f"annotated video: {writer.path} ({writer.frames} frames)", file=out, flush=True)
    return 0


def _show(loop, shown: int, window: bool, writer: "_Writer | None") -> int:
    """Draw the newest result if it is new; returns the index of the last result shown."""
    import cv2

    from models.overlay import draw_predictions, draw_status
    from models.pipelines import as_rgb

    result = loop.latest()
    if result is None or result.index == shown:
        return shown
    stats = loop.stats()
    image = draw_predictions(as_rgb(result.image), result.predictions)
    draw_status(image, f"{stats.fps:.0f} fps  {result.end_to_end_ms:.0f} ms  dropped {stats.dropped}")
    if writer is not None:
        writer.write(image)
    if window:
        cv2.imshow(WINDOW, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return result.index


def _quit_pressed() -> bool:
    import cv2

    return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)


class _Writer:
    """Annotated frames (RGB) to an .mp4; frames of another size are resized to the first one's."""

    def __init__(self, path: Path, fps: float = 30.0) -> None:
        self.path, self.fps = path, fps
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None

    def write(self, image_rgb) -> None:
        import cv2

        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (image_rgb.shape[1], image_rgb.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                from demos.cli import UserFacingError

                raise UserFacingError(f"cannot write a video at {self.path}; choose another --out (.mp4)")
        if (image_rgb.shape[1], image_rgb.shape[0]) != self._size:
            image_rgb = cv2.resize(image_rgb, self._size)
        self._writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
