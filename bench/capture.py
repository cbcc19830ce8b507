"""Capture benchmark: overhead per video frame and per audio block, and memory over a long replay.

    python -m bench.capture --data /work/shared/evaldata [--quick]

Uses face_video/*.mp4 and a speech file under speech_asr/ from the data folder when present (else
generates a video with OpenCV and a 44.1 kHz stereo tone+noise file). Figures, medians:
  - video: decode alone, a frame through VideoFileSource end to end, and what capture adds to a decoded
    frame (BGR->RGB, the item, queue put/get, thread hand-over latency). On a shared CPU the end-to-end
    figure moves with other load; the overhead figure is the one to compare.
  - audio: the PortAudio callback (what must never be slow), the mic thread's chunk path with 48 -> 16 kHz
    resampling, a browser chunk (48 kHz int16 -> 16 kHz), and silero VAD per 32 ms frame.
  - memory: RSS after warm-up and after a 10-minute (--quick: 1-minute) accelerated replay of the
    video and the audio (through the file sources, browser adapter and streaming VAD). Must not grow.
Last line: one JSON object with the same figures.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import psutil
import sounddevice as sd
import soundfile as sf

from capture import (AUDIO_SAMPLE_RATE, AudioFileSource, AudioSettings, MicrophoneSource, StreamResampler,
                     VideoFileSource, VideoSettings, load_audio, resample)
from capture.browser import BrowserAudio
from capture.buffers import AudioRing, BoundedQueue
from capture.items import VideoFrame
from capture.video import to_rgb
from capture.vad import FRAME_SAMPLES, VoiceActivityDetector
from models.vad_model import load_vad

RSS_GROWTH_LIMIT_MB = 10.0  # more than this over the long replay counts as a leak ...
RSS_SECOND_HALF_LIMIT_MB = 1.0  # ... and so does any growth once allocators have settled (second half)


def find_media(data: Path | None, workdir: Path) -> tuple[Path, Path]:
    """(video, audio) from the data folder, or generated into `workdir`."""
    videos = sorted((data / "face_video").glob("*.mp4")) if data else []
    audios = []
    if data and (data / "speech_asr").is_dir():
        audios = sorted((data / "speech_asr").rglob("*.flac")) + sorted((data / "speech_asr").rglob("*.wav"))
    video = videos[0] if videos else generate_video(workdir / "generated.mp4")
    audio = audios[0] if audios else generate_audio(workdir / "generated.wav")
    return video, audio


def generate_video(path: Path, seconds: float = 10.0, fps: int = 30) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    rng = np.random.default_rng(0)
    for i in range(int(seconds * fps)):
        img = rng.integers(0, 40, (480, 640, 3), dtype=np.uint8)
        cv2.circle(img, (320 + int(150 * np.sin(i / 15)), 240), 80, (60, 120, 200), -1)
        writer.write(img)
    writer.release()
    return path


def generate_audio(path: Path, seconds: float = 11.0, sample_rate: int = 44_100) -> Path:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    x = x + np.random.default_rng(0).normal(0, 0.01, len(t))
    sf.write(path, np.stack([x, x], axis=1).astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def median_ms(times_s: list[float]) -> float:
    return 1000.0 * statistics.median(times_s)


def bench_video(video: Path, frames: int) -> dict[str, float]:
    cap = cv2.VideoCapture(str(video))
    decode = []
    while len(decode) < frames:
        t0 = time.perf_counter()
        ok, _ = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        decode.append(time.perf_counter() - t0)
    cap.release()
    ok, bgr = cv2.VideoCapture(str(video)).read()
    queue: BoundedQueue[VideoFrame] = BoundedQueue(2)
    work = []  # what capture adds to each decoded frame: BGR->RGB, the item, queue put and get
    for i in range(frames):
        t0 = time.perf_counter()
        queue.put(VideoFrame(to_rgb(bgr), time.monotonic(), i))
        queue.get(0)
        work.append(time.perf_counter() - t0)
    per_frame, latency = [], []
    with VideoFileSource(video, VideoSettings(realtime=False, loop=True, queue_size=2)) as source:
        last = time.perf_counter()
        for _ in range(frames):
            frame = source.read(timeout_s=5)
            now = time.perf_counter()
            per_frame.append(now - last)
            latency.append(time.monotonic() - frame.timestamp_s)
            last = now
    h, w = frame.height, frame.width
    return {
        "video_width_px": w, "video_height_px": h, "video_frames": frames,
        "video_decode_per_frame_ms": median_ms(decode),
        "video_source_per_frame_ms": median_ms(per_frame),
        "video_overhead_per_frame_ms": median_ms(work) + median_ms(latency),
        "video_handover_latency_ms": median_ms(latency),
    }


def bench_audio(audio: Path, blocks: int) -> dict[str, float]:
    mic = MicrophoneSource(AudioSettings())  # never started: only its callback is timed
    rng = np.random.default_rng(0)
    block = rng.normal(0, 0.1, (512, 1)).astype(np.float32)  # 32 ms at 16 kHz, as PortAudio hands it
    flags = sd.CallbackFlags()
    callback = []
    for i in range(blocks):
        if i % 100 == 0:
            mic.ring.read(mic.ring.available(), timeout_s=0)  # keep the ring from wrapping
        t0 = time.perf_counter()
        mic._callback(block, 512, None, flags)
        callback.append(time.perf_counter() - t0)

    ring, resampler = AudioRing(48_000 * 5), StreamResampler(48_000)  # the mic thread's path at 48 kHz
    chunk_48k = rng.normal(0, 0.1, 4800).astype(np.float32)  # 0.1 s
    mic_chunk = []
    for _ in range(blocks // 3):
        ring.write(chunk_48k)
        t0 = time.perf_counter()
        _, x = ring.read(4800, timeout_s=0)
        resampler.push(x)
        mic_chunk.append(time.perf_counter() - t0)

    browser = BrowserAudio()
    pcm = (chunk_48k * 32767).astype(np.int16)
    browser_chunk = []
    for _ in range(blocks // 3):
        t0 = time.perf_counter()
        browser.push((48_000, pcm))
        browser_chunk.append(time.perf_counter() - t0)

    speech = load_audio(audio)
    vad = load_vad()
    vad_frame = []
    for i in range(0, min(len(speech), 600 * FRAME_SAMPLES) - FRAME_SAMPLES, FRAME_SAMPLES):
        t0 = time.perf_counter()
        vad.push(speech[i : i + FRAME_SAMPLES])
        vad_frame.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    load_audio(audio)
    load_s = time.perf_counter() - t0
    file_chunk = []
    with AudioFileSource(audio, AudioSettings(realtime=False, loop=True)) as source:
        last = time.perf_counter()
        for _ in range(blocks // 3):
            source.read(timeout_s=5)
            now = time.perf_counter()
            file_chunk.append(now - last)
            last = now
    return {
        "audio_file": audio.name, "audio_file_duration_s": len(speech) / AUDIO_SAMPLE_RATE,
        "audio_load_resample_ms": 1000 * load_s,
        "mic_callback_per_block_us": 1000 * median_ms(callback),
        "mic_chunk_48k_to_16k_per_100ms_ms": median_ms(mic_chunk),
        "browser_chunk_48k_int16_per_100ms_ms": median_ms(browser_chunk),
        "file_source_per_100ms_chunk_ms": median_ms(file_chunk),
        "vad_backend": vad.backend, "vad_per_32ms_frame_ms": median_ms(vad_frame),
    }


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def replay_video(video: Path, media_s: float, rss_series: list[float]) -> tuple[float, float, int]:
    """Fast looped replay of `media_s` seconds of video; RSS appended every 10%. -> (wall_s, fps, dropped)."""
    t0 = time.perf_counter()
    with VideoFileSource(video, VideoSettings(realtime=False, loop=True, queue_size=4)) as source:
        n = int(media_s * source.fps)
        for i in range(n):
            source.read(timeout_s=5)
            if (i + 1) % max(1, n // 10) == 0:
                rss_series.append(rss_mb())
        dropped = source.stats().dropped
    wall_s = time.perf_counter() - t0
    return wall_s, n / wall_s, dropped


def replay_audio(audio: Path, media_s: float, rss_series: list[float], browser: BrowserAudio,
                 vad: VoiceActivityDetector) -> tuple[float, int, int]:
    """Fast looped replay through the file source, the browser adapter (as 48 kHz int16) and streaming VAD."""
    t0 = time.perf_counter()
    segments = 0
    with AudioFileSource(audio, AudioSettings(realtime=False, loop=True, chunk_s=0.1)) as source:
        n = int(media_s / 0.1)
        for i in range(n):
            chunk = source.read(timeout_s=5)
            pcm = (resample(chunk.samples, AUDIO_SAMPLE_RATE, 48_000) * 32767).astype(np.int16)
            browser.push((48_000, pcm))
            segments += len(vad.push(chunk))
            if (i + 1) % max(1, n // 10) == 0:
                rss_series.append(rss_mb())
        dropped = source.stats().dropped
    return time.perf_counter() - t0, dropped, segments


def long_replay(video: Path, audio: Path, media_s: float) -> dict[str, object]:
    """Warm up (10% of the length), then replay `media_s` s of video and of audio; RSS before, during, after."""
    browser, vad = BrowserAudio(), load_vad()
    warm: list[float] = []
    replay_video(video, media_s / 10, warm)
    replay_audio(audio, media_s / 10, warm, browser, vad)
    before = rss_mb()
    series: list[float] = []
    video_s, video_fps, video_dropped = replay_video(video, media_s, series)
    audio_s, audio_dropped, segments = replay_audio(audio, media_s, series, browser, vad)
    after = rss_mb()
    return {
        "replay_media_s": media_s, "replay_video_wall_s": video_s, "replay_audio_wall_s": audio_s,
        "replay_video_fps": video_fps, "replay_dropped": video_dropped + audio_dropped,
        "replay_vad_segments": segments, "rss_before_mb": before, "rss_after_mb": after,
        "rss_max_mb": max(series + [after]), "rss_growth_mb": after - before,
        "rss_trend_mb": series[-1] - series[0],  # first to last 10% mark of the long replay
        "rss_second_half_growth_mb": series[-1] - series[len(series) // 2],  # a leak keeps growing here
        "rss_series_mb": [round(x, 1) for x in series],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="data folder (face_video/, speech_asr/)")
    parser.add_argument("--quick", action="store_true", help="1-minute replay and fewer repeats")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)  # e.g. "no GPU"; the figures say what ran
    with tempfile.TemporaryDirectory() as tmp:
        video, audio = find_media(args.data, Path(tmp))
        print(f"video: {video}\naudio: {audio}")
        rss_start = rss_mb()
        results: dict[str, object] = {"quick": args.quick}
        results.update(bench_video(video, 150 if args.quick else 600))
        r = results
        print(f"video {r['video_width_px']}x{r['video_height_px']}: decode alone {r['video_decode_per_frame_ms']:.2f} "
              f"ms/frame; through VideoFileSource {r['video_source_per_frame_ms']:.2f} ms/frame (decode runs in the "
              f"capture thread); capture overhead {r['video_overhead_per_frame_ms']:.3f} ms/frame (BGR->RGB, item, "
              f"queue, thread hand-over {r['video_handover_latency_ms']:.3f} ms)")
        results.update(bench_audio(audio, 600 if args.quick else 3000))
        print(f"audio: mic callback {r['mic_callback_per_block_us']:.1f} us/block (512 samples); mic chunk 48->16 kHz "
              f"{r['mic_chunk_48k_to_16k_per_100ms_ms']:.3f} ms/100 ms; browser chunk "
              f"{r['browser_chunk_48k_int16_per_100ms_ms']:.3f} ms/100 ms; file source "
              f"{r['file_source_per_100ms_chunk_ms']:.3f} ms/chunk; {r['vad_backend']} VAD "
              f"{r['vad_per_32ms_frame_ms']:.3f} ms/32 ms frame; load+resample {r['audio_file']} "
              f"({r['audio_file_duration_s']:.1f} s) {r['audio_load_resample_ms']:.0f} ms")
        results.update(long_replay(video, audio, 60.0 if args.quick else 600.0))
        results["rss_start_mb"] = rss_start
        results["rss_ok"] = bool(r["rss_growth_mb"] < RSS_GROWTH_LIMIT_MB
                                 and r["rss_second_half_growth_mb"] < RSS_SECOND_HALF_LIMIT_MB)
        print(f"replay of {r['replay_media_s']:.0f} s media: video {r['replay_video_wall_s']:.1f} s wall "
              f"({r['replay_video_fps']:.0f} fps), audio+browser+VAD {r['replay_audio_wall_s']:.1f} s wall; "
              f"RSS after warm-up {r['rss_before_mb']:.1f} MB, every 10% {r['rss_series_mb']}, after "
              f"{r['rss_after_mb']:.1f} MB (growth {r['rss_growth_mb']:+.1f} MB since warm-up, "
              f"{r['rss_trend_mb']:+.1f} MB first to last mark, {r['rss_second_half_growth_mb']:+.1f} MB over the second half; "
              f"{'ok' if r['rss_ok'] else 'GROWING'})")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()}))
    return 0 if results["rss_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
