"""Browser input: what Gradio streaming events deliver, as the same items local sources yield.

    gr.Image(sources=["webcam"], streaming=True, type="numpy")  -> (H, W, 3) uint8 RGB per event
    gr.Audio(sources=["microphone"], streaming=True, type="numpy") -> (sample_rate, (N,) or (N, C) int16)

One `BrowserVideo` / `BrowserAudio` per browser session (keep it in gr.State): it numbers frames,
timestamps them on arrival, and turns audio into contiguous 16 kHz mono chunks with stream positions,
resampling across chunk edges without clicks. Handlers stay plain functions, testable without a browser.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from capture.audio import StreamResampler, as_float32_mono
from capture.items import AUDIO_SAMPLE_RATE, AudioChunk, VideoFrame
from capture.source import CaptureError

FPS_WINDOW = 30  # frames over which the arrival rate is measured


def image_to_rgb(image: Any) -> np.ndarray:
    """A Gradio image (numpy RGB/RGBA/grey, float in [0, 1] or uint8, or PIL) -> (H, W, 3) uint8 RGB."""
    x = np.asarray(image)
    if x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4) or x.size == 0:
        raise CaptureError(f"Browser sent an image of shape {x.shape}; expected (height, width, 3). "
                           "Use gr.Image(type='numpy') for the webcam component.")
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    x = x[:, :, :3]
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise CaptureError("Browser sent an image with NaN/inf pixels; reload the page.")
        x = np.clip(x * 255.0 if x.max() <= 1.0 else x, 0, 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


class BrowserVideo:
    """Frames from a Gradio webcam stream -> VideoFrame (index in arrival order, monotonic time)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self._times: deque[float] = deque(maxlen=FPS_WINDOW)

    def push(self, image: Any) -> VideoFrame | None:
        """One streaming event's image -> VideoFrame; None when the event carried no image."""
        if image is None:
            return None
        now = time.monotonic()
        frame = VideoFrame(image_to_rgb(image), now, self.frames, None, "browser")
        self.frames += 1
        self._times.append(now)
        return frame

    @property
    def fps(self) -> float:
        """Arrival rate over the last FPS_WINDOW frames (what the browser actually manages to send)."""
        t = self._times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0


class BrowserAudio:
    """Chunks from a Gradio microphone stream -> contiguous 16 kHz mono AudioChunks.

    The browser's rate (usually 48 kHz) is converted with a streaming polyphase resampler, so the
    concatenated output equals resampling the whole recording at once. `start_s` counts 16 kHz
    samples from the start of the stream; call `reset()` when the user starts a new recording.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._resampler: StreamResampler | None = None
        self.sample_rate: int | None = None  # the browser's rate, once known
        self._out_samples = 0
        self.chunks = 0

    def push(self, payload: tuple[int, np.ndarray] | None) -> AudioChunk | None:
        """One streaming event's (sample_rate, data) -> AudioChunk; None if it added no output yet."""
        if payload is None:
            return None
        try:
            sample_rate, data = payload
        except (TypeError, ValueError) as e:
            raise CaptureError(f"Browser audio must be (sample_rate, samples), got {type(payload).__name__}. "
                               "Use gr.Audio(type='numpy', streaming=True).") from e
        sample_rate = int(sample_rate)
        if sample_rate <= 0:
            raise CaptureError(f"Browser audio came with sample rate {sample_rate}; reload the page.")
        if np.asarray(data).size == 0:
            return None  # browsers send an empty chunk when recording stops
        samples = as_float32_mono(data, sample_rate, what=f"browser audio ({sample_rate} Hz)")
        if sample_rate != self.sample_rate:
            self._resampler = StreamResampler(sample_rate, AUDIO_SAMPLE_RATE)
            self.sample_rate = sample_rate
        out = self._resampler.push(samples)
        if len(out) == 0:
            return None
        chunk = AudioChunk(out, AUDIO_SAMPLE_RATE, self._out_samples / AUDIO_SAMPLE_RATE, time.monotonic(), "browser")
        self._out_samples += len(out)
        self.chunks += 1
        return chunk

    def flush(self) -> AudioChunk | None:
        """The resampler's last few samples at the end of a recording (then reset)."""
        if self._resampler is None:
            return None
        out = self._resampler.flush()
        start_s = self._out_samples / AUDIO_SAMPLE_RATE
        self.reset()
        return AudioChunk(out, AUDIO_SAMPLE_RATE, start_s, time.monotonic(), "browser") if len(out) else None
