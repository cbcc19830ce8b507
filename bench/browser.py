"""The live page as a user gets it: headless Chromium with a fake camera (the face video) and a fake
microphone (a speech clip), on this machine, optionally with busy processes beside it (a loaded laptop).

    python -m bench.browser --data ../shared/evaldata [--quick] [--cpu-hogs 4] [--runs 5] [--video-s 20]

Starts the app in this process (loopback only), opens the page in Chromium and measures what the page
itself records (window.livelearner, demos/web/):
- camera: results drawn per second, capture-in-the-page to overlay-drawn latency (median, p95), and the
  page's own video frame rate (frames presented by the <video> element);
- microphone, `--runs` times on a fresh page each: the fake microphone's clip is recorded to its end and
  stopped; audio seconds the page sent vs the server received, chunks lost (sequence gaps), and the time
  from the end of the sentence (in the clip) to its last words in the committed transcript on the page;
  words of the reference missing from the final transcript (deletions, by edit-distance alignment).
DATA: face_video/*.mp4 and speech_asr/jfk/jfk.wav with speech_asr/transcripts.tsv; without them a still
photo and an espeak-ng sentence are used. The last line is one JSON object. --quick: 6 s of video, 1 run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.chromium import fake_microphone, free_port, launch_chromium, speech_end_s, video_to_y4m

# Without --data, an espeak-ng sentence whose last words tiny.en reads the same wherever its decodes fall. It was
# "Hello, can you help me with my homework?", which tiny.en reads "my own work" or "my home work" in most replays
# (the sentence looped, recording from 10 offsets 0.25 s apart: "my homework" in 3; "in the kitchen" below: all 9),
# so the smoke test failed by chance (2 of 7 runs on one setting), not for the transport it checks.
FALLBACK_SENTENCE = "Please turn on the lights in the kitchen."
WAIT_S = 120.0  # page and models coming up on a loaded 2-core CPU


def media(data: Path | None, folder: Path) -> tuple[Path, Path, str]:
    """(face video or photo, speech clip, its transcript) from DATA, else made here."""
    import csv

    videos = sorted((data / "face_video").glob("*.mp4")) if data else []
    clip = data / "speech_asr" / "jfk" / "jfk.wav" if data else None
    if videos:
        face = videos[0]
    else:
        import cv2
        from skimage import data as skdata

        face = folder / "face.png"
        cv2.imwrite(str(face), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    if clip is not None and clip.exists():
        with open(data / "speech_asr" / "transcripts.tsv", newline="") as f:
            reference = next(r["reference"] for r in csv.DictReader(f, delimiter="\t") if r["path"] == "jfk/jfk.wav")
        return face, clip, reference
    clip = folder / "sentence.wav"
    subprocess.run(["espeak-ng", "-w", str(clip), FALLBACK_SENTENCE], check=True)
    return face, clip, FALLBACK_SENTENCE


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c in " '" else " " for c in text.lower()).split()


def deletions(reference: list[str], hypothesis: list[str]) -> int:
    """Reference words with no counterpart in the hypothesis, by a minimal edit alignment (WER's deletions)."""
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), int)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1,
                             cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]))
    i, j, deleted = n, m, 0
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            i, deleted = i - 1, deleted + 1
        else:
            j -= 1
    return deleted


def wait_for(check, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception:  # element not there yet, page re-rendering
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def click(driver, selector: str) -> None:
    driver.execute_script(f"document.querySelector({selector!r}).click()")


CAMERA_STATS_JS = """
const c = window.livelearner && window.livelearner.camera;
return c ? {results: c.results, latencies: c.latencies.length, displayed: c.displayedFrames, errors: c.errors,
            now: performance.now(), last_error: c.lastError} : null;
"""


def measure_camera(driver, url: str, seconds: float) -> dict:
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(lambda: driver.find_element(By.ID, "live-camera"), "the page")
    click(driver, "#live-camera .ll-start")
    wait_for(lambda: (driver.execute_script(CAMERA_STATS_JS) or {}).get("results", 0) >= 3, "the first results")
    time.sleep(1.0)  # past the first frames
    a = driver.execute_script(CAMERA_STATS_JS)
    time.sleep(seconds)
    b = driver.execute_script(CAMERA_STATS_JS)
    window_s = (b["now"] - a["now"]) / 1000
    latencies = driver.execute_script("return window.livelearner.camera.latencies")[a["latencies"]:b["latencies"]]
    click(driver, "#live-camera .ll-stop")
    return {"overlay_results_per_s": (b["results"] - a["results"]) / window_s,
            "overlay_latency_median_ms": float(np.median(latencies)) if latencies else None,
            "overlay_latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
            "display_fps": (b["displayed"] - a["displayed"]) / window_s,
            "camera_errors": b["errors"], "camera_last_error": b["last_error"]}


def measure_microphone(driver, url: str, wav: Path, sentence_end_s: float, reference: str) -> dict:
    """One recording on a fresh page: the whole fake-microphone file, then Stop."""
    import soundfile
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(lambda: driver.find_element(By.ID, "live-camera"), "the page")
    driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Speak')]").click()
    wait_for(lambda: driver.find_element(By.ID, "live-mic"), "the Speak tab")
    ref_words = words(reference)
    phrase = " ".join(ref_words[-3:])  # the sentence's last words
    driver.execute_script(f"window.__watch = [{phrase!r}]; window.__seen = {{}};")
    click(driver, "#live-mic .ll-record")
    wait_for(lambda: driver.execute_script("return window.__mic_opened.length"), "the microphone")
    opened_ms = driver.execute_script("return window.__mic_opened[window.__mic_opened.length - 1]")
    file_s = soundfile.info(wav).duration
    try:
        wait_for(lambda: phrase in driver.execute_script("return window.__seen"), "the sentence's last words",
                 sentence_end_s + 30)
    except TimeoutError:
        pass  # reported as missing: first_text is None for this run
    seen = driver.execute_script(f"return window.__seen[{phrase!r}]")
    remaining_s = file_s - (driver.execute_script("return performance.now()") - opened_ms) / 1000
    time.sleep(max(0.0, remaining_s) + 0.3)
    click(driver, "#live-mic .ll-stop")
    view = wait_for(lambda: (driver.execute_script("return window.livelearner.mic.lastView") or {}).get("final")
                    and driver.execute_script("return window.livelearner.mic.lastView"), "the final transcript", 90)
    mic = driver.execute_script("return window.livelearner.mic")
    said = words(view["committed"])
    return {"first_text_after_sentence_s": (seen - opened_ms) / 1000 - sentence_end_s if seen else None,
            "audio_seconds_sent": mic["samplesSent"] / mic["sampleRate"],
            "audio_seconds_received": view["received_s"], "audio_chunks_lost": view["chunks_lost"],
            "audio_chunks_sent": mic["chunksSent"], "audio_chunks_received": view["chunks_received"],
            "page_dropped_chunks": mic["dropped"], "words_deleted": deletions(ref_words, said[:len(ref_words) + 5]),
            "transcript": view["committed"][:300]}


def start_hogs(k: int) -> list[subprocess.Popen]:
    """k busy processes (each keeps a core busy), like a laptop running a video call beside the page."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="evaluation data folder (face_video/, speech_asr/)")
    p.add_argument("--quick", action="store_true", help="6 s of video, one recording")
    p.add_argument("--cpu-hogs", type=int, default=0, help="busy processes started beside the page for the run")
    p.add_argument("--runs", type=int, default=5, help="recordings, each on a fresh page")
    p.add_argument("--video-s", type=float, default=20.0, help="seconds the camera is measured")
    args = p.parse_args(argv)
    runs, video_s = (1, 6.0) if args.quick else (args.runs, args.video_s)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    from demos.app import build_demo
    from demos.context import AppSettings

    work = Path(tempfile.mkdtemp(prefix="livelearner-browser-"))
    face, clip, reference = media(args.data, work)
    y4m = video_to_y4m(face, work, fps=30, seconds=10)
    wav, ends = fake_microphone([clip], work, pad_s=0.5, gap_s=3.0)
    settings = AppSettings(data_dir=work / "app", preload=("emotion", "asr", "text-embedder"))
    demo = build_demo(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                run_history=False)
    ctx = demo.livelearner_context
    print(f"loading the models ({', '.join(settings.preload)})…", flush=True)
    ctx.hub.preload(settings.preload).join()
    hogs = start_hogs(args.cpu_hogs)
    driver = None
    try:
        time.sleep(1.0 if hogs else 0.0)
        load_start = os.getloadavg()[0]
        driver = launch_chromium(work, y4m, wav)
        camera = measure_camera(driver, url, video_s)
        print(f"camera ({face.name}, 30 fps fake device): {camera['overlay_results_per_s']:.1f} results drawn/s, "
              f"capture->overlay median {camera['overlay_latency_median_ms']:.0f} ms (p95 "
              f"{camera['overlay_latency_p95_ms']:.0f} ms), the page's video {camera['display_fps']:.1f} fps, "
              f"{camera['camera_errors']} errors", flush=True)
        recordings = []
        for i in range(runs):
            r = measure_microphone(driver, url, wav, ends[0], reference)
            recordings.append(r)
            first = r["first_text_after_sentence_s"]
            print(f"recording {i + 1}: sent {r['audio_seconds_sent']:.2f} s, received {r['audio_seconds_received']:.2f} s, "
                  f"{r['audio_chunks_lost']} chunks lost; sentence's last words on the page "
                  f"{'never' if first is None else f'{first:.2f} s'} after it ended; {r['words_deleted']} reference "
                  f"words missing; “{r['transcript'][:90]}”", flush=True)
        load_end = os.getloadavg()[0]
    finally:
        if driver is not None:
            driver.quit()
        for hog in hogs:
            hog.kill()
        demo.close()
    firsts = [r["first_text_after_sentence_s"] for r in recordings]
    summary = {
        "audio_seconds_sent": round(sum(r["audio_seconds_sent"] for r in recordings), 3),
        "audio_seconds_received": round(sum(r["audio_seconds_received"] for r in recordings), 3),
        "audio_chunks_lost": int(sum(r["audio_chunks_lost"] for r in recordings)),
        "audio_chunks_sent": int(sum(r["audio_chunks_sent"] for r in recordings)),
        "audio_chunks_received": int(sum(r["audio_chunks_received"] for r in recordings)),
        "overlay_results_per_s": round(camera["overlay_results_per_s"], 2),
        "overlay_latency_median_ms": camera["overlay_latency_median_ms"] and round(camera["overlay_latency_median_ms"], 1),
        "overlay_latency_p95_ms": camera["overlay_latency_p95_ms"] and round(camera["overlay_latency_p95_ms"], 1),
        "display_fps": round(camera["display_fps"], 2),
        "first_text_after_sentence_s": (round(statistics.median(firsts), 3) if firsts and None not in firsts else None),
        "first_text_after_sentence_runs_s": [None if f is None else round(f, 3) for f in firsts],
        "words_deleted_total": int(sum(r["words_deleted"] for r in recordings)),
        "runs": runs, "cpu_hogs": args.cpu_hogs, "video_s": video_s, "camera_errors": camera["camera_errors"],
        "cpu_count": os.cpu_count(), "load_average_1min_start": load_start, "load_average_1min_end": load_end,
    }
    print(f"\naudio: {summary['audio_seconds_sent']:.2f} s sent, {summary['audio_seconds_received']:.2f} s received, "
          f"{summary['audio_chunks_lost']} chunks lost over {runs} recording(s) with {args.cpu_hogs} busy processes; "
          f"first text after the sentence (median): {summary['first_text_after_sentence_s']} s; load average "
          f"{load_start:.1f} -> {load_end:.1f} on {os.cpu_count()} cores")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
