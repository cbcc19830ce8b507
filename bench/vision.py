"""Speed of the live vision pipelines on a replayed video at 640x480.

    python -m bench.vision --data ../shared/evaldata [--quick] [--pipelines emotion,sign]

For each pipeline, the clips in DATA/face_video/*.mp4 (decoded once, letterboxed to 640x480) are run
1. as fast as possible: frame after frame on one thread -> fps, latency (median, p95), CPU use;
2. in real time: a camera-like thread submits a frame every 1/30 s to the LiveLoop (inference on
   its own thread, stale frames dropped) -> share of frames processed, drops, end-to-end latency
   from capture to prediction (median, p95), CPU use.
The face video has no hand, so "sign" there measures the palm detector searching every frame;
"sign_hand" replays a generated clip of a moving drawn hand (landmark tracking, the usual case).
CPU use is process CPU time / wall time, in % of one core (200% = both cores of this machine).
The machine is shared: the 1-minute load average is printed beside the figures.
The last line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import psutil

FRAME_SIZE = (640, 480)  # (width, height) every clip is resized to
CAMERA_FPS = 30.0  # pace of the real-time replay
WARMUP_FRAMES = 10  # first frames of each run, not measured (lazy initialisation, caches)


def letterbox(bgr: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Fit into `size` keeping the aspect ratio, grey bars around: squashing a face changes its emotion
    (the 528x592 clip squashed to 640x480 reads "angry"; at its own aspect "sad"/"neutral")."""
    w, h = size
    scale = min(w / bgr.shape[1], h / bgr.shape[0])
    nw, nh = round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)
    out = np.full((h, w, 3), 114, np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def load_clips(data: Path, max_frames: int | None) -> list[np.ndarray]:
    """Frames (RGB, letterboxed to 640x480) of every clip in DATA/face_video, concatenated."""
    clips = sorted((data / "face_video").glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no .mp4 in {data / 'face_video'}: pass --data the evaluation data folder")
    frames = []
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(letterbox(bgr), cv2.COLOR_BGR2RGB))
        cap.release()
    return frames


def hand_clip(n_frames: int) -> list[np.ndarray]:
    """A drawn open hand sweeping left to right and back, 640x480 RGB."""
    from bench.synthetic import draw_hand

    xs = 320 + 120 * np.sin(np.linspace(0, 2 * np.pi, n_frames))
    return [draw_hand(cx=float(x), seed=0) for x in xs]


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def run_fast(pipeline, frames: list[np.ndarray]) -> tuple[dict[str, float], Counter]:
    """Every frame, one after another, as fast as possible; also counts the labels shown."""
    for i, f in enumerate(frames[:WARMUP_FRAMES]):
        pipeline.process(f, -100.0 + i)
    proc = psutil.Process()
    lat, found, labels = [], 0, Counter()
    cpu0, t0 = _cpu_s(proc), time.perf_counter()
    for f in frames:
        ts = time.monotonic()
        preds = pipeline.process(f, ts)
        lat.append((time.monotonic() - ts) * 1000)
        found += bool(preds)
        labels.update(p.label if p.decision.value != "abstain" else "?" for p in preds[:1])
    wall = time.perf_counter() - t0
    return {"fps": len(frames) / wall, "latency_median_ms": float(np.median(lat)),
            "latency_p95_ms": float(np.percentile(lat, 95)),
            "cpu_percent": 100 * (_cpu_s(proc) - cpu0) / wall, "found_fraction": found / len(frames)}, labels


def run_realtime(pipeline, frames: list[np.ndarray], fps: float = CAMERA_FPS) -> dict[str, float]:
    """A camera thread submits a frame every 1/fps s; the LiveLoop drops what it cannot keep up with."""
    from demos.live_loop import LiveLoop

    latencies: list[float] = []
    loop = LiveLoop(pipeline, on_result=lambda r: latencies.append(r.end_to_end_ms))
    proc = psutil.Process()

    def camera() -> None:
        start = time.monotonic()
        for i, f in enumerate(frames):
            target = start + i / fps
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            loop.submit(f, time.monotonic())

    with loop:
        for i, f in enumerate(frames[:WARMUP_FRAMES]):
            pipeline.process(f, -200.0 + i)
        cpu0, t0 = _cpu_s(proc), time.perf_counter()
        cam = threading.Thread(target=camera, name="bench-camera")
        cam.start()
        cam.join()
        loop.wait_idle(10.0)
        wall = time.perf_counter() - t0
    s = loop.stats()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"processed_fraction": s.processed / max(s.submitted, 1), "dropped": float(s.dropped),
            "errors": float(s.errors), "latency_median_ms": float(np.median(lat)),
            "latency_p95_ms": float(np.percentile(lat, 95)), "cpu_percent": 100 * (_cpu_s(proc) - cpu0) / wall}


def bench_pipeline(name: str, pipeline, frames: list[np.ndarray]) -> dict[str, float]:
    fast, labels = run_fast(pipeline, frames)
    real = run_realtime(pipeline, frames)
    print(f"{name:10s} fast:     {fast['fps']:6.1f} fps  latency median {fast['latency_median_ms']:5.1f} ms  "
          f"p95 {fast['latency_p95_ms']:5.1f} ms  CPU {fast['cpu_percent']:4.0f}%  "
          f"(found in {fast['found_fraction']:.0%} of frames; labels {dict(labels.most_common(3))})")
    print(f"{name:10s} realtime: {real['processed_fraction']:6.1%} of {CAMERA_FPS:.0f} fps frames processed, "
          f"{real['dropped']:.0f} dropped  capture->prediction median {real['latency_median_ms']:5.1f} ms  "
          f"p95 {real['latency_p95_ms']:5.1f} ms  CPU {real['cpu_percent']:4.0f}%", flush=True)
    out = {f"{name}_{k}": v for k, v in fast.items()}
    out.update({f"{name}_realtime_{k}": v for k, v in real.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="evaluation data folder (holds face_video/)")
    parser.add_argument("--quick", action="store_true", help="first 90 frames only (~3 s of video)")
    parser.add_argument("--pipelines", default="emotion,sign,sign_hand",
                        help="comma-separated: emotion, sign (on the face video), sign_hand (drawn hand clip)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # the packaged-MLP and CPU notices are known here
    from models.pipelines import EmotionPipeline, SignPipeline

    frames = load_clips(args.data, 90 if args.quick else None)
    print(f"{len(frames)} frames at {FRAME_SIZE[0]}x{FRAME_SIZE[1]} from {args.data / 'face_video'}; "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, float] = {"frames": float(len(frames)), "cpu_cores": float(os.cpu_count() or 0)}
    for name in [n.strip() for n in args.pipelines.split(",") if n.strip()]:
        if name == "emotion":
            pipe, clip = EmotionPipeline(), frames
        elif name == "sign":
            pipe, clip = SignPipeline(), frames
        elif name == "sign_hand":
            pipe, clip = SignPipeline(), hand_clip(len(frames))
        else:
            raise SystemExit(f"unknown pipeline {name!r}: use emotion, sign, sign_hand")
        results.update(bench_pipeline(name, pipe, clip))
        pipe.close()
    results["load_average_1m"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
