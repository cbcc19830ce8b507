"""What one more webcam session costs: RSS and open time for 1, 2 and 4 sessions, and models loaded.

    python -m bench.sessions --data ../shared/evaldata [--quick] [--frames 5]

Opens webcam sessions through the handler the page calls for every browser frame
(`demos.tab_webcam.process_frame`, no HTTP), each with its own state, and keeps them all open.
A session "opens" on its first frame; open time is that first frame's wall time (for the first
session it includes loading the shared models). Frames come from
DATA/face_video/face_frontal_static_528x592.mp4 (one face).

Counted: the hub's model loads (`ModelHub.loads`) and the model files read from disk while each
session opened (mini-Xception weights, mediapipe graphs: the functions that read them are wrapped).
A session that shares the hub's models opens with no model file read.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

VIDEO = "face_video/face_frontal_static_528x592.mp4"
SESSION_COUNTS = (1, 2, 4)
# what reads a model file from disk: (module, object in it, or "" for the module itself, function)
MODEL_FILE_READERS = (("models.emotion", "", "load_mini_xception"), ("models.faces", "", "_open_mediapipe"),
                      ("models.hands", "HandLandmarks", "__init__"), ("models.bundle", "", "load_bundle"))


def video_frames(data: Path, n: int) -> list[np.ndarray]:
    """The first n frames of the face video as (H, W, 3) uint8 RGB."""
    import cv2

    path = data / VIDEO
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --data the evaluation data folder")
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"{path} holds no readable frame")
    return frames


def count_file_reads() -> dict[str, int]:
    """Wrap the model-file readers that exist in this version of the code; the dict counts calls."""
    import importlib

    counts: dict[str, int] = {}
    for module_name, owner_name, attr in MODEL_FILE_READERS:
        try:
            owner: Any = importlib.import_module(module_name)
        except ModuleNotFoundError:  # not in this version of the code
            continue
        if owner_name:
            owner = getattr(owner, owner_name, None)
        original = getattr(owner, attr, None)
        if original is None:  # not in this version of the code
            continue
        name = ".".join(part for part in (module_name, owner_name, attr) if part)
        counts[name] = 0

        def wrapped(*args: Any, _f: Callable = original, _name: str = name, **kw: Any) -> Any:
            counts[_name] += 1
            return _f(*args, **kw)

        setattr(owner, attr, wrapped)
    return counts


def rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="evaluation data folder (holds face_video/)")
    p.add_argument("--frames", type=int, default=5, help="frames each session processes (default 5)")
    p.add_argument("--task", default="emotion", help="vision task of the sessions (default emotion)")
    p.add_argument("--quick", action="store_true", help="2 frames per session")
    args = p.parse_args(argv)
    n_frames = 2 if args.quick else args.frames

    from demos import tab_webcam
    from demos.context import AppContext, AppSettings

    frames = video_frames(args.data, n_frames)
    reads = count_file_reads()
    ctx = AppContext(AppSettings(data_dir=Path(tempfile.mkdtemp(prefix="livelearner-sessions-")), preload=()))
    rss_start = rss_mb()
    print(f"RSS before any session: {rss_start:.0f} MB ({n_frames} frames per session, task {args.task})")
    states: list[Any] = []
    open_ms: list[float] = []
    reads_per_session: list[int] = []
    rss_at: dict[int, float] = {}
    for target in SESSION_COUNTS:
        while len(states) < target:
            before = sum(reads.values())
            t0 = time.perf_counter()
            _, _, _, state = tab_webcam.process_frame(ctx, frames[0], args.task, None, "bench")
            open_ms.append((time.perf_counter() - t0) * 1000.0)
            reads_per_session.append(sum(reads.values()) - before)
            for frame in frames[1:]:
                _, _, _, state = tab_webcam.process_frame(ctx, frame, args.task, state, "bench")
            states.append(state)
            print(f"session {len(states)}: opened in {open_ms[-1]:.0f} ms, "
                  f"{reads_per_session[-1]} model files read while opening")
        rss_at[target] = rss_mb()
        print(f"{target} session(s) open: RSS {rss_at[target]:.0f} MB")
    hub_loads = getattr(ctx.hub, "loads", None)
    summary = {
        "task": args.task, "frames_per_session": n_frames, "rss_mb_start": round(rss_start, 1),
        "rss_mb_1_session": round(rss_at[1], 1), "rss_mb_2_sessions": round(rss_at[2], 1),
        "rss_mb_4_sessions": round(rss_at[4], 1),
        "rss_mb_per_extra_session": round((rss_at[4] - rss_at[1]) / 3, 1),
        "open_ms_first_session": round(open_ms[0], 1), "open_ms_second_session": round(open_ms[1], 1),
        "open_ms_fourth_session": round(open_ms[3], 1),
        "model_files_read_per_session": reads_per_session,
        "models_loaded_count": sum(hub_loads.values()) if isinstance(hub_loads, dict) else None,
    }
    print(f"each extra session: +{summary['rss_mb_per_extra_session']:.1f} MB, "
          f"opens in {open_ms[1]:.0f} ms (2nd) / {open_ms[3]:.0f} ms (4th); "
          f"model files read per session {reads_per_session}; hub loads {summary['models_loaded_count']}")
    for state in states:
        tab_webcam.close_state(state)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
