"""`livelearner capture`: see what the camera or microphone (or a file standing in) delivers.

    livelearner capture --video 0            # preview window with measured fps and drops
    livelearner capture --video clip.mp4     # same, replayed in real time (--fast: as fast as possible)
    livelearner capture --audio              # level meter of the default microphone
    livelearner capture --audio speech.flac  # level meter of a file replayed in real time

Without a display (ssh, CI) the video preview prints fps and drop counts once a second instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

METER_WIDTH = 40  # characters of the level bar
METER_FLOOR_DB = -60.0  # dBFS shown as an empty bar
REPORT_EVERY_S = 1.0  # headless video: one stats line per second


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("capture", help="preview camera/mic/file capture (fps, drops, level)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--video", metavar="0|FILE|FOLDER|URL", help="camera index, video file, image folder or stream URL")
    what.add_argument("--audio", nargs="?", const="mic", metavar="FILE", help="microphone (default) or an audio file")
    p.add_argument("--device", default=None, help="microphone: sounddevice index or name (see the error list)")
    p.add_argument("--fast", action="store_true", help="files: replay as fast as possible instead of real time")
    p.add_argument("--loop", action="store_true", help="files: start again at the end")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until the end or Ctrl-C)")
    p.add_argument("--no-window", action="store_true", help="video: print stats instead of opening a window")
    p.set_defaults(func=run)


def has_display() -> bool:
    """A window can open: always on macOS/Windows, on Linux only with X11 or Wayland."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    from capture import CaptureError
    from demos.cli import UserFacingError

    try:
        if args.video is not None:
            return preview_video(args)
        return meter_audio(args)
    except CaptureError as e:
        raise UserFacingError(str(e)) from e


def preview_video(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from capture import VideoSettings, open_video

    settings = VideoSettings(realtime=not args.fast, loop=args.loop)
    window = not args.no_window and has_display()
    t0 = last_report = time.monotonic()
    with open_video(args.video, settings) as source:
        if not window and not args.no_window:
            print("No display found: printing fps and drops instead of a preview window.", file=out)
        for frame in source:
            now = time.monotonic()
            if window and not _show(frame, source.stats()):
                break
            if not window and now - last_report >= REPORT_EVERY_S:
                print(f"{source.name}: {frame.width}x{frame.height} {source.stats().line()}", file=out, flush=True)
                last_report = now
            if args.seconds is not None and now - t0 >= args.seconds:
                break
        stats = source.stats()
    if window:
        import cv2

        cv2.destroyAllWindows()
    print(f"{source.name}: done after {time.monotonic() - t0:.1f} s: {stats.line()}", file=out)
    return 0


def _show(frame, stats) -> bool:
    """Draw the frame with fps/drops; False when the user closes the window or presses q / Esc."""
    import cv2

    bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
    text = f"{stats.capture_fps:5.1f} fps  dropped {stats.dropped}  #{frame.index}"
    cv2.putText(bgr, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(bgr, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    title = "livelearner capture (q to quit)"
    cv2.imshow(title, bgr)
    key = cv2.waitKey(1) & 0xFF
    return key not in (ord("q"), 27) and cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) >= 1


def level_bar(rms_db: float, peak_db: float) -> str:
    """'[#########.......|....]' : filled to the RMS level, '|' at the peak, over METER_FLOOR_DB..0 dBFS."""
    def cells(db: float) -> int:
        return int(round(max(0.0, min(1.0, 1 - db / METER_FLOOR_DB)) * METER_WIDTH))

    bar = ["#" if i < cells(rms_db) else "." for i in range(METER_WIDTH)]
    peak = cells(peak_db)
    if 0 < peak <= METER_WIDTH:
        bar[peak - 1] = "|"
    return "[" + "".join(bar) + "]"


def meter_audio(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    import numpy as np

    from capture import AudioSettings, open_audio

    device = int(args.device) if args.device is not None and str(args.device).isdigit() else args.device
    settings = AudioSettings(chunk_s=0.05, realtime=not args.fast, loop=args.loop, device=device)
    spec = None if args.audio == "mic" else args.audio
    live = out.isatty()
    t0 = time.monotonic()
    printed_at = -1.0
    with open_audio(spec, settings) as source:
        for chunk in source:
            x = chunk.samples
            rms_db = 10 * np.log10(float(np.mean(x * x)) + 1e-12)
            peak_db = 20 * np.log10(float(np.abs(x).max()) + 1e-12)
            stats = source.stats()
            line = (f"{chunk.start_s:7.2f} s {level_bar(rms_db, peak_db)} {rms_db:6.1f} dBFS "
                    f"peak {peak_db:6.1f}  dropped {stats.dropped}")
            if live:
                print("\r" + line, end="", file=out, flush=True)
            elif chunk.start_s - printed_at >= 0.5 or args.fast:  # a log, not a flood
                print(line, file=out)
                printed_at = chunk.start_s
            if args.seconds is not None and time.monotonic() - t0 >= args.seconds:
                break
        stats = source.stats()
    overflows = getattr(source, "overflows", 0)
    print(("\n" if live else "") + f"{source.name}: done: {stats.line()} overflows={overflows}", file=out)
    return 0
