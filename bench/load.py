"""Load test of the live page: N teammates sending webcam frames at once, over the live connection or
over the older one-frame-per-call API (Gradio's queue), side by side.

    python -m bench.load --data ../shared/evaldata [--quick] [--clients 4] [--sweep 1,2,4,8]
                         [--transport live|api|both] [--duration-s 60] [--fps 30]

Starts `livelearner app` on 127.0.0.1 (loopback only) in a subprocess, then runs N client processes
(like teammates' machines). Each has its own session (its own face tracks) and offers frames of
DATA/face_video (else generated ones) at `--fps`, like a camera, as JPEG (quality 80, 640x480):
- live: the page's transport (demos/live_transport.py): a token from the `live_session` API, then the
  WebSocket; a frame goes up on a camera tick unless `--max-in-flight` are unanswered (the page's rule),
  and the result comes back as data. Latency is send to result.
- api: the `/webcam_frame` gradio_client endpoint (the same handler the old stream event used; the
  stream event itself is gone from the page), same in-flight rule; the result includes an annotated image.
Reported per transport and client count: results per second per client (median and slowest client),
latency median and p95, frames skipped (newest-only), errors, the server's CPU per result, and its RSS
over time. The last line is one JSON object; --sweep adds `<transport>_<n>_<figure>` keys.
--quick: 2 clients for 10 s on each transport.
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


def run_live_client(url: str, frames: list[bytes], fps: float, stop_at: float, t0: float, stats: ClientStats,
                    max_in_flight: int, person: str) -> None:
    """The page's rule over the live WebSocket: on each camera tick send the newest frame unless
    max_in_flight are unanswered; every answer (result, skipped, error) frees a slot."""
    from gradio_client import Client
    from websockets.sync.client import connect

    from capture.wire import pack

    token = Client(url, verbose=False).predict("emotion", person, api_name="/live_session")
    ws_url = url.replace("http://", "ws://").rstrip("/") + f"/livelearner/live?kind=video&token={token}"
    sent_at: dict[int, float] = {}
    lock = threading.Lock()
    with connect(ws_url, open_timeout=30, max_size=2**22) as ws:
        def receive() -> None:
            while True:
                try:
                    message = json.loads(ws.recv())
                except Exception:  # closed
                    return
                done = time.monotonic()
                with lock:
                    started = sent_at.pop(message.get("seq"), None)
                if message["type"] == "result" and started is not None:
                    stats.results.append((done - t0, (done - started) * 1000.0))
                elif message["type"] == "skipped":
                    stats.skipped += 1
                elif message["type"] == "error":
                    stats.errors += 1
                    if len(stats.error_messages) < 3:
                        stats.error_messages.append(f"at {done - t0:.0f} s: {message.get('message')}")

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        period, tick, seq = 1.0 / fps, 0, 0
        while True:
            due = t0 + tick * period
            if due >= stop_at:
                break
            if time.monotonic() < due:
                time.sleep(due - time.monotonic())
            with lock:
                busy = len(sent_at) >= max_in_flight
                if not busy:
                    sent_at[seq] = time.monotonic()
            if busy:
                stats.skipped += 1
            else:
                ws.send(pack({"type": "frame", "seq": seq, "t_capture_ms": 0.0}, frames[tick % len(frames)]))
                stats.sent += 1
                seq += 1
            tick += 1
        deadline = time.monotonic() + 10
        while sent_at and time.monotonic() < deadline:  # the last answers
            time.sleep(0.05)


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


def client_process(transport: str, url: str, frames: list[Path], fps: float, stop_at: float, t0: float,
                   max_in_flight: int, person: str) -> ClientStats:
    """One simulated teammate in its own process (spawned; returns its stats)."""
    stats = ClientStats()
    if transport == "live":
        jpegs = [f.read_bytes() for f in frames]
        run_live_client(url, jpegs, fps, stop_at, t0, stats, max_in_flight, person)
    else:
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


def run_load(transport: str, url: str, frames: list[Path], clients: int, duration_s: float, fps: float,
             max_in_flight: int, server_pid: int | None) -> dict:
    """One run: `clients` processes on `transport` for `duration_s` -> figures (and the raw stats)."""
    t0 = time.monotonic() + 3.0  # the clients start together once their connections are up
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    if server_pid is not None:
        threading.Thread(target=sample_rss, args=(server_pid, t0, stop, rss, max(1.0, duration_s / 60)),
                         daemon=True).start()
    cpu_start_s = server_cpu_s(server_pid) if server_pid is not None else None
    load_start = os.getloadavg()[0]
    own_start = _children_cpu_s()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(clients) as pool:
        stats = pool.starmap(client_process, [(transport, url, frames, fps, t0 + duration_s, t0, max_in_flight,
                                               f"bench{i}") for i in range(clients)])
    stop.set()
    cpu_used_s = server_cpu_s(server_pid) - cpu_start_s if server_pid is not None else None
    rates = [len(s.results) / duration_s for s in stats]
    all_results = sorted(r for s in stats for r in s.results)
    lat = np.array([ms for _, ms in all_results]) if all_results else np.array([float("nan")])
    rss_mb = [mb for _, mb in rss]
    return {
        "transport": transport, "clients": clients, "duration_s": duration_s, "fps_offered_per_client": fps,
        "results_per_s_per_client_median": round(float(np.median(rates)), 2),
        "results_per_s_per_client_min": round(float(min(rates)), 2),
        "results_per_s_total": round(float(sum(rates)), 2),
        "latency_median_ms": round(float(np.median(lat)), 1), "latency_p95_ms": round(float(np.percentile(lat, 95)), 1),
        "frames_skipped_total": int(sum(s.skipped for s in stats)),
        "errors_total": int(sum(s.errors for s in stats)),
        "client_cancelled_total": int(sum(s.client_cancelled for s in stats)),
        "per_minute": per_minute(all_results, duration_s),
        "rss_start_mb": rss_mb[0] if rss_mb else None, "rss_end_mb": rss_mb[-1] if rss_mb else None,
        "rss_max_mb": max(rss_mb) if rss_mb else None,
        "rss_second_half_growth_mb": (rss_mb[-1] - rss_mb[len(rss_mb) // 2]) if len(rss_mb) > 2 else None,
        "server_cpu_ms_per_result": round(cpu_used_s * 1000 / max(1, len(all_results)), 1) if cpu_used_s else None,
        "server_cpu_cores_used": round(cpu_used_s / duration_s, 2) if cpu_used_s else None,
        "client_cpu_cores_used": round((_children_cpu_s() - own_start) / duration_s, 2),
        "load_average_1min_start": load_start, "load_average_1min_end": os.getloadavg()[0],
        "error_messages": [m for s in stats for m in s.error_messages][:5],
    }


def print_run(r: dict) -> None:
    print(f"  {r['transport']:>4} x{r['clients']}: {r['results_per_s_per_client_median']:5.1f} results/s per client "
          f"(slowest {r['results_per_s_per_client_min']:.1f}), latency median {r['latency_median_ms']:.0f} ms, "
          f"p95 {r['latency_p95_ms']:.0f} ms; {r['frames_skipped_total']} skipped, {r['errors_total']} errors, "
          f"server CPU {r['server_cpu_ms_per_result']} ms/result; load {r['load_average_1min_start']:.1f}"
          f"->{r['load_average_1min_end']:.1f}", flush=True)
    for message in r["error_messages"]:
        print(f"      error: {message}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="evaluation data folder (uses DATA/face_video/*.mp4)")
    p.add_argument("--quick", action="store_true", help="2 clients for 10 s on each transport")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--sweep", default="", help="client counts to run one after another, e.g. 1,2,4,8")
    p.add_argument("--transport", choices=("live", "api", "both"), default="both")
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--fps", type=float, default=30.0, help="frames per second each client's camera offers")
    p.add_argument("--max-in-flight", type=int, default=2,
                   help="frames a client may have unanswered (the page's rule: one processing, one waiting)")
    p.add_argument("--url", default=None, help="drive an already running local app instead of starting one")
    args = p.parse_args(argv)
    counts = [2] if args.quick else ([int(n) for n in args.sweep.split(",")] if args.sweep else [args.clients])
    duration_s = 10.0 if args.quick else args.duration_s
    transports = ["live", "api"] if args.transport == "both" else [args.transport]

    work = Path(tempfile.mkdtemp(prefix="livelearner-load-"))
    frames = face_frames(args.data, work)
    _WARM_FRAME.append(frames[0])
    proc = None
    if args.url:
        url = args.url
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = start_server(port, work / "app", max_streams=max(16, max(counts)))
    runs = []
    try:
        print(f"starting the app and loading the emotion model ({url})…", flush=True)
        if proc is not None:
            wait_ready(proc, url)
        print(f"clients (one process each) offering {args.fps:g} frames/s of 640x480 JPEG, at most "
              f"{args.max_in_flight} unanswered, {duration_s:.0f} s per run; {os.cpu_count()} cores:", flush=True)
        for n in counts:
            for transport in transports:
                runs.append(run_load(transport, url, frames, n, duration_s, args.fps, args.max_in_flight,
                                     proc.pid if proc is not None else None))
                print_run(runs[-1])
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    print("\nside by side (results/s per client, slowest client; latency median / p95 ms):")
    print("clients | " + " | ".join(f"{t:>28}" for t in transports))
    for n in counts:
        cells = []
        for t in transports:
            r = next(r for r in runs if r["transport"] == t and r["clients"] == n)
            cells.append(f"{r['results_per_s_per_client_median']:5.1f} ({r['results_per_s_per_client_min']:4.1f}) "
                         f"{r['latency_median_ms']:5.0f} / {r['latency_p95_ms']:5.0f}")
        print(f"{n:>7} | " + " | ".join(f"{c:>28}" for c in cells))
    main_run = next((r for r in runs if r["transport"] == transports[0] and r["clients"] == counts[-1]), runs[-1])
    summary = {k: v for k, v in main_run.items() if k not in ("error_messages",)}
    for r in runs:
        for key in ("results_per_s_per_client_median", "results_per_s_per_client_min", "latency_median_ms",
                    "latency_p95_ms", "errors_total", "server_cpu_ms_per_result"):
            summary[f"{r['transport']}_{r['clients']}_{key}"] = r[key]
    summary["cpu_count"] = os.cpu_count()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
