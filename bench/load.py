"""Load test of the page: N simultaneous gradio_client users streaming webcam frames at 10 fps.

    python -m bench.load --data ../shared/evaldata [--quick] [--clients 8] [--duration-s 300]

Starts `livelearner app` on 127.0.0.1 (loopback only) in a subprocess, then runs N client threads.
Each client has its own session (its own face tracks) and calls the page's `/webcam_frame` endpoint
(the same handler as the browser's webcam stream) with frames of DATA/face_video (else generated
ones) at `--fps`, like a camera: a frame is submitted on every tick unless `--max-in-flight` frames
are still pending, in which case that frame is skipped and counted (the browser stream likewise has
one frame processing and keeps only the newest one waiting). Latency is submit to result.

Reported: results per second per client, latency (send to result) median and p95 per minute (to
see whether it stays flat), the server's RSS over time, and the same figures as one JSON line last.
--quick: 2 clients for 30 s.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAMES = 30  # distinct frames cycled by every client
FRAME_SIZE = (640, 480)  # (width, height) sent, like a webcam
STARTUP_TIMEOUT_S = 180.0  # how long the server may take to come up and load the emotion model


@dataclass
class ClientStats:
    sent: int = 0
    skipped: int = 0  # frames whose time passed while the previous one was in flight
    errors: int = 0  # calls the server answered with an error (or never answered)
    # calls gradio_client gave up on when its event stream closed between two overlapping submissions
    # (a client-side race: the server had nothing pending yet and closed the stream); not server failures
    client_cancelled: int = 0
    results: list[tuple[float, float]] = field(default_factory=list)  # (finish time s since start, latency ms)
    error_messages: list[str] = field(default_factory=list)  # "at T s: Type: message", first few


def face_frames(data: Path | None, folder: Path) -> list[Path]:
    """JPEG files of FRAMES frames: from DATA/face_video/*.mp4 if present, else drawn faces."""
    import cv2

    images = []
    videos = sorted((data / "face_video").glob("*.mp4")) if data else []
    if videos:
        cap = cv2.VideoCapture(str(videos[0]))
        while len(images) < FRAMES:
            ok, bgr = cap.read()
            if not ok:
                break
            images.append(bgr)
        cap.release()
    if not images:
        from skimage import data as skdata

        face = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
        images = [np.roll(face, 4 * i, axis=1) for i in range(FRAMES)]  # a face moving slowly
    paths = []
    for i, bgr in enumerate(images):
        h, w = bgr.shape[:2]
        scale = min(FRAME_SIZE[0] / w, FRAME_SIZE[1] / h)
        small = cv2.resize(bgr, (int(w * scale), int(h * scale)))
        canvas = np.zeros((FRAME_SIZE[1], FRAME_SIZE[0], 3), np.uint8)
        y0, x0 = (FRAME_SIZE[1] - small.shape[0]) // 2, (FRAME_SIZE[0] - small.shape[1]) // 2
        canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        path = folder / f"frame{i:02d}.jpg"
        cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, data_dir: Path, max_streams: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "demos", "app", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--max-streams", str(max_streams)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_ready(proc: subprocess.Popen, url: str) -> None:
    """Wait for the page, then for one frame to go through (the emotion model loaded)."""
    from gradio_client import Client, handle_file

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    lines: list[str] = []

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the app exited:\n" + "".join(lines[-30:]))
        if any("livelearner is up" in line for line in lines):
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("the app did not come up:\n" + "".join(lines[-30:]))
    warm = Client(url, verbose=False, download_files=False)
    warm.predict(handle_file(str(_WARM_FRAME[0])), api_name="/webcam_frame")


_WARM_FRAME: list[Path] = []


def run_client(url: str, frames: list[Path], fps: float, stop_at: float, t0: float, stats: ClientStats,
               max_in_flight: int) -> None:
    """Tick at `fps`; submit the tick's frame unless `max_in_flight` frames are still pending (then skip it)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    period = 1.0 / fps
    lock = threading.Lock()
    in_flight = [0]
    all_done = threading.Event()
    all_done.set()

    def finished(job, started: float) -> None:
        from concurrent.futures import CancelledError

        done = time.monotonic()
        try:
            job.result()
            stats.results.append((done - t0, (done - started) * 1000.0))
        except CancelledError:
            stats.client_cancelled += 1
        except Exception as e:  # counted and reported, the client goes on
            stats.errors += 1
            if len(stats.error_messages) < 3:
                stats.error_messages.append(f"at {done - t0:.0f} s: {type(e).__name__}: {e}")
        with lock:
            in_flight[0] -= 1
            if in_flight[0] == 0:
                all_done.set()

    tick = 0
    while True:
        due = t0 + tick * period
        now = time.monotonic()
        if due >= stop_at:
            break
        if now < due:
            time.sleep(due - now)
        with lock:
            busy = in_flight[0] >= max_in_flight
            if not busy:
                in_flight[0] += 1
                all_done.clear()
        if busy:
            stats.skipped += 1  # the camera's frame is dropped, as the browser stream keeps only the newest
        else:
            started = time.monotonic()
            stats.sent += 1
            job = client.submit(handle_file(str(frames[tick % len(frames)])), api_name="/webcam_frame")
            job.add_done_callback(lambda j, s=started: finished(j, s))
        tick += 1
    all_done.wait(timeout=30)


def client_process(url: str, frames: list[Path], fps: float, stop_at: float, t0: float,
                   max_in_flight: int) -> ClientStats:
    """One simulated teammate in its own process (spawned; returns its stats)."""
    stats = ClientStats()
    run_client(url, frames, fps, stop_at, t0, stats, max_in_flight)
    return stats


def _children_cpu_s() -> float:
    """CPU seconds of this process plus its finished children (the client processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def sample_rss(pid: int, t0: float, stop: threading.Event, out: list[tuple[float, float]], every_s: float) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            return
        out.append((time.monotonic() - t0, rss / 2**20))
        stop.wait(every_s)


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the server process and its children so far."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def per_minute(all_results: list[tuple[float, float]], duration_s: float) -> list[dict[str, float]]:
    rows = []
    for m in range(int(np.ceil(duration_s / 60))):
        lat = np.array([ms for t, ms in all_results if m * 60 <= t < (m + 1) * 60])
        if len(lat):
            rows.append({"minute": m + 1, "results": int(len(lat)), "latency_median_ms": float(np.median(lat)),
                         "latency_p95_ms": float(np.percentile(lat, 95))})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="evaluation data folder (uses DATA/face_video/*.mp4)")
    p.add_argument("--quick", action="store_true", help="2 clients for 30 s")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration-s", type=float, default=300.0)
    p.add_argument("--fps", type=float, default=10.0, help="frames per second each client sends")
    p.add_argument("--max-in-flight", type=int, default=2,
                   help="frames a client may have pending (the browser stream: one processing, one waiting)")
    p.add_argument("--url", default=None, help="drive an already running local app instead of starting one")
    args = p.parse_args(argv)
    clients, duration_s = (2, 30.0) if args.quick else (args.clients, args.duration_s)

    work = Path(tempfile.mkdtemp(prefix="livelearner-load-"))
    frames = face_frames(args.data, work)
    _WARM_FRAME.append(frames[0])
    proc = None
    if args.url:
        url = args.url
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = start_server(port, work / "app", max_streams=max(16, clients))
    try:
        print(f"starting the app and loading the emotion model ({url})…", flush=True)
        if proc is not None:
            wait_ready(proc, url)
        t0 = time.monotonic()
        rss: list[tuple[float, float]] = []
        stop = threading.Event()
        if proc is not None:
            threading.Thread(target=sample_rss, args=(proc.pid, t0, stop, rss, max(1.0, duration_s / 60)),
                             daemon=True).start()
        cpu_start_s = server_cpu_s(proc.pid) if proc is not None else None
        load_start = os.getloadavg()[0]
        own_start = _children_cpu_s()
        print(f"{clients} clients (one process each, like teammates' machines) x {args.fps:g} fps "
              f"for {duration_s:.0f} s…", flush=True)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(clients) as pool:
            stats = pool.starmap(client_process, [(url, frames, args.fps, t0 + duration_s, t0, args.max_in_flight)
                                                  for _ in range(clients)])
        stop.set()
        cpu_used_s = server_cpu_s(proc.pid) - cpu_start_s if proc is not None else None
        load_end = os.getloadavg()[0]
        client_cpu_s = _children_cpu_s() - own_start
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    rates = [len(s.results) / duration_s for s in stats]
    all_results = sorted(r for s in stats for r in s.results)
    lat = np.array([ms for _, ms in all_results]) if all_results else np.array([float("nan")])
    minutes = per_minute(all_results, duration_s)
    rss_mb = [mb for _, mb in rss]
    summary = {
        "clients": clients, "duration_s": duration_s, "fps_sent_per_client": args.fps,
        "results_per_s_per_client_median": float(np.median(rates)),
        "results_per_s_per_client_min": float(min(rates)),
        "results_per_s_total": float(sum(rates)),
        "latency_median_ms": float(np.median(lat)), "latency_p95_ms": float(np.percentile(lat, 95)),
        "frames_skipped_total": int(sum(s.skipped for s in stats)),
        "errors_total": int(sum(s.errors for s in stats)),
        "client_cancelled_total": int(sum(s.client_cancelled for s in stats)),
        "per_minute": minutes,
        "rss_start_mb": rss_mb[0] if rss_mb else None, "rss_end_mb": rss_mb[-1] if rss_mb else None,
        "rss_max_mb": max(rss_mb) if rss_mb else None,
        "rss_second_half_growth_mb": (rss_mb[-1] - rss_mb[len(rss_mb) // 2]) if len(rss_mb) > 2 else None,
        "server_cpu_ms_per_result": (cpu_used_s * 1000 / max(1, len(all_results))) if cpu_used_s else None,
        "server_cpu_cores_used": (cpu_used_s / duration_s) if cpu_used_s else None,
        "client_cpu_cores_used": client_cpu_s / duration_s,
        "cpu_count": os.cpu_count(), "load_average_1min_start": load_start, "load_average_1min_end": load_end,
    }
    print(f"\nper client results/s: {', '.join(f'{r:.1f}' for r in rates)} "
          f"(median {summary['results_per_s_per_client_median']:.1f}, target >= 8)")
    print(f"latency median {summary['latency_median_ms']:.0f} ms, p95 {summary['latency_p95_ms']:.0f} ms; "
          f"{summary['frames_skipped_total']} frames skipped (newest-only), {summary['errors_total']} errors, "
          f"{summary['client_cancelled_total']} calls dropped by gradio_client's stream-close race")
    for row in minutes:
        print(f"  minute {row['minute']}: {row['results']} results, median {row['latency_median_ms']:.0f} ms, "
              f"p95 {row['latency_p95_ms']:.0f} ms")
    if rss_mb:
        every = max(1, len(rss) // 10)
        print("server RSS over time: " + ", ".join(f"{t:.0f} s {mb:.0f} MB" for t, mb in rss[::every]))
        print(f"server RSS: start {rss_mb[0]:.0f} MB, end {rss_mb[-1]:.0f} MB, max {max(rss_mb):.0f} MB")
    if cpu_used_s:
        print(f"server CPU: {summary['server_cpu_ms_per_result']:.1f} ms per result, "
              f"{summary['server_cpu_cores_used']:.2f} of {os.cpu_count()} cores (the clients: "
              f"{summary['client_cpu_cores_used']:.2f} cores); machine load average "
              f"{load_start:.1f} -> {load_end:.1f} (other processes compete for the same cores)")
    for s in stats:
        for msg in s.error_messages:
            print(f"  error: {msg}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
