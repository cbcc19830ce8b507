"""The two things capture hands to every pipeline: a video frame and an audio chunk.

Colour order and dtype, once for the whole project: `VideoFrame.image` is (H, W, 3) uint8 **RGB**
(OpenCV's BGR is converted at capture, so mediapipe, fastai and Gradio all get what they expect).
`AudioChunk.samples` is (N,) float32 mono in [-1, 1] at `sample_rate` (16 kHz from every source).

Times: `timestamp_s` is `time.monotonic()` when the item was captured (or, for a file, released
by the replay clock). `media_time_s` / `start_s` are positions in the stream or file, so that
contiguous audio chunks tile exactly (start_s of the next chunk == end_s of this one unless
samples were dropped, which advances start_s by what was lost). A device outage (no samples at
all) does not advance start_s: `timestamp_s` shows the wall-clock gap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AUDIO_SAMPLE_RATE = 16_000  # Hz: what every audio source delivers (Whisper's and silero's rate)


@dataclass(frozen=True, eq=False)
class VideoFrame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    timestamp_s: float  # time.monotonic() at capture
    index: int  # 0, 1, 2, ... in capture order (gaps mean frames dropped before delivery)
    media_time_s: float | None = None  # position in a file (None for a live camera)
    source: str = ""  # where it came from, for logs: "camera:0", "file:clip.mp4", "browser"

    def __post_init__(self) -> None:
        image = self.image
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
            raise ValueError(f"VideoFrame.image must be (H, W, 3) uint8 RGB, got {got}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, eq=False)
class AudioChunk:
    samples: np.ndarray  # (N,) float32 mono in [-1, 1]
    sample_rate: int  # Hz (16000 from every capture source)
    start_s: float  # position of samples[0] in the stream, from sample counts (0.0 = stream start)
    timestamp_s: float = field(default=0.0)  # time.monotonic() when the chunk was captured/released
    source: str = ""  # "mic", "file:speech.wav", "browser"

    def __post_init__(self) -> None:
        s = self.samples
        if not (isinstance(s, np.ndarray) and s.dtype == np.float32 and s.ndim == 1):
            got = f"{type(s).__name__} {getattr(s, 'shape', '')} {getattr(s, 'dtype', '')}"
            raise ValueError(f"AudioChunk.samples must be (N,) float32 mono, got {got}")
        if self.sample_rate <= 0:
            raise ValueError(f"AudioChunk.sample_rate must be positive, got {self.sample_rate}")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s
