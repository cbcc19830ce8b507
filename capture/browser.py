"""Browser input: frames and audio a page sends, as the same items local sources yield.

    live page (capture/wire.py): numbered JPEG frames, numbered int16 PCM chunks (the page's AudioWorklet)
    gradio_client / API calls: an image (numpy RGB) per call; (sample_rate, int16 array) per chunk

One `BrowserVideo` / `BrowserAudio` per browser session: it numbers frames, timestamps them on
arrival, and turns audio into contiguous 16 kHz mono chunks with stream positions, resampling across
chunk edges without clicks. Numbered audio (`push_numbered`) is checked against its sequence number:
a chunk that never arrived is a gap, counted and cut (the run before it is flushed and the next run
starts a new stream at 0), never stitched silently; a late or repeated chunk is refused. Handlers stay
plain functions, testable without a browser.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
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


@dataclass(frozen=True)
class AudioArrival:
    """What one numbered chunk added: the run's tail before a gap (if any), the gap, and new audio."""

    before_gap: AudioChunk | None  # the resampler's last samples of the run a gap ended
    lost_chunks: int  # chunks that never arrived just before this one (0: contiguous)
    chunk: AudioChunk | None  # this chunk's 16 kHz audio (None: nothing final yet)

    @property
    def gap(self) -> bool:
        return self.lost_chunks > 0


class BrowserAudio:
    """Chunks from a page's microphone -> contiguous 16 kHz mono AudioChunks.

    The browser's rate (usually 48 kHz) is converted with a streaming polyphase resampler, so the
    concatenated output equals resampling the whole recording at once. `start_s` counts 16 kHz
    samples from the start of the stream; call `reset()` when the user starts a new recording.
    """

    def __init__(self) -> None:
        # counted over the whole session (every recording): what the Monitor and the page show
        self.lost_chunks = 0  # chunks that never arrived
        self.gaps = 0  # places where chunks went missing
        self.refused = 0  # late or repeated chunks (sequence number already passed)
        self.received_chunks = 0
        self.received_s = 0.0  # browser audio received, seconds at its own rate
        self.reset()

    def reset(self) -> None:
        """A new recording: positions restart at 0 and sequence numbers at 0."""
        self._resampler: StreamResampler | None = None
        self.sample_rate: int | None = None  # the browser's rate, once known
        self._out_samples = 0
        self.chunks = 0
        self.next_seq = 0  # the sequence number expected next (push_numbered)

    def push_numbered(self, seq: int, sample_rate: int, samples: np.ndarray) -> AudioArrival:
        """Chunk number `seq` of this recording -> AudioArrival. CaptureError for a late or repeated chunk
        (nothing is changed: the stream goes on with the next one)."""
        if seq < self.next_seq:
            self.refused += 1
            raise CaptureError(f"Audio chunk {seq} arrived after chunk {self.next_seq - 1} (late or repeated): ignored.")
        lost, before_gap = seq - self.next_seq, None
        if lost:  # the run before the gap ends here; the next run is a new stream from 0
            self.lost_chunks += lost
            self.gaps += 1
            before_gap = self._flush_run()
        self.next_seq = seq + 1
        self.received_chunks += 1
        self.received_s += len(samples) / float(sample_rate)
        return AudioArrival(before_gap, lost, self.push((sample_rate, samples)))

    def _flush_run(self) -> AudioChunk | None:
        out = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
        chunk = (AudioChunk(out, AUDIO_SAMPLE_RATE, self._out_samples / AUDIO_SAMPLE_RATE, time.monotonic(), "browser")
                 if len(out) else None)
        self._resampler, self.sample_rate, self._out_samples = None, None, 0
        return chunk

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
        chunk = self._flush_run()
        self.reset()
        return chunk
