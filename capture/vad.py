"""Voice activity: where in a 16 kHz stream someone is speaking.

The silero VAD model (an ONNX file whose path the caller gives: `models.vad_model.load_vad` fetches it
from the model store; run with onnxruntime) scores each 32 ms frame; an energy detector with an adaptive noise floor stands in (with a warning) when
the model is not available. The same hysteresis turns either score into speech segments, silero's
way: speech starts when a frame scores above `threshold`, ends after `min_silence_s` below
`threshold - 0.15`, and segments shorter than `min_speech_s` are dropped.

    vad = VoiceActivityDetector(VadSettings(model_path=SILERO_ONNX))   # or models.vad_model.load_vad()
    vad.segments(samples)            # whole array -> [SpeechSegment(start_s, end_s), ...]
    for chunk in source:             # streaming: finished segments as they end
        for seg in vad.push(chunk): ...
        vad.active_start_s           # not None while speech is going on
    vad.finish()                     # close a segment still open at the end
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from capture.items import AUDIO_SAMPLE_RATE, AudioChunk
from capture.source import CaptureError

FRAME_SAMPLES = 512  # 32 ms at 16 kHz: the frame silero scores
CONTEXT_SAMPLES = 64  # silero v5/v6 see the last 64 samples of the previous frame too
FRAME_S = FRAME_SAMPLES / AUDIO_SAMPLE_RATE


@dataclass(frozen=True)
class VadSettings:
    backend: str = "auto"  # "silero", "energy", or "auto" (silero, else energy with a warning)
    threshold: float = 0.5  # frame speech probability that starts speech
    neg_threshold: float | None = None  # ... and below which silence counts (None: threshold - 0.15)
    min_speech_s: float = 0.25  # shorter bursts are not speech (clicks, coughs)
    min_silence_s: float = 0.25  # a pause this long ends a segment
    speech_pad_s: float = 0.03  # widen each segment by this on both sides
    energy_margin_db: float = 15.0  # energy fallback: frames this far above the noise floor are speech
    model_path: Path | None = None  # silero ONNX file (None: none given; "auto" then uses the energy detector)


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float  # stream position (seconds), same clock as AudioChunk.start_s
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class FrameScorer(Protocol):
    name: str

    def __call__(self, frame: np.ndarray) -> float: ...  # (512,) float32 -> speech probability
    def reset(self) -> None: ...


class SileroScorer:
    """silero VAD ONNX model, one 512-sample frame at a time, recurrent state carried across frames."""

    name = "silero"

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # a 32 ms frame is tiny; threads only add overhead and contention
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CaptureError(f"{path} is not a usable silero VAD ONNX model ({e}). Delete it and run "
                               "`livelearner models fetch silero-vad`.") from e
        self._sr = np.array(AUDIO_SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame])[None, :]  # (1, 64 + 512)
        prob, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = frame[-CONTEXT_SAMPLES:]
        return float(prob[0, 0])


class EnergyScorer:
    """Fallback: frame level against a noise floor that drops at once and rises slowly (~0.5 dB/s)."""

    name = "energy"
    FLOOR_START_DB = -55.0  # assume a quiet room until the stream shows its floor
    FLOOR_RISE_DB = 0.016  # per frame
    FLOOR_MIN_DB = -90.0
    SILENT_DB = -60.0  # never speech below this (digital silence, far-off noise)

    def __init__(self, margin_db: float) -> None:
        self.margin_db = margin_db
        self.reset()

    def reset(self) -> None:
        self.floor_db = self.FLOOR_START_DB

    def __call__(self, frame: np.ndarray) -> float:
        level_db = 10.0 * np.log10(float(np.mean(frame * frame)) + 1e-12)
        self.floor_db = max(self.FLOOR_MIN_DB, min(self.floor_db + self.FLOOR_RISE_DB, level_db))
        if level_db < self.SILENT_DB:
            return 0.0
        return float(1.0 / (1.0 + np.exp(-(level_db - self.floor_db - self.margin_db) / 2.0)))


def _silero_path(settings: VadSettings) -> Path:
    if settings.model_path is None:
        # Capture never fetches models: the caller gives the file (models.vad_model.load_vad does).
        raise CaptureError("no silero VAD model file given (VadSettings.model_path)")
    return Path(settings.model_path)


class VoiceActivityDetector:
    """Speech segments of a 16 kHz mono stream, offline (`segments`) or streaming (`push`/`finish`)."""

    def __init__(self, settings: VadSettings = VadSettings()) -> None:
        self.settings = settings
        self.scorer: FrameScorer
        if settings.backend not in ("auto", "silero", "energy"):
            raise ValueError(f"VadSettings.backend must be auto, silero or energy, got {settings.backend!r}")
        if settings.backend == "energy":
            self.scorer = EnergyScorer(settings.energy_margin_db)
        else:
            try:
                self.scorer = SileroScorer(_silero_path(settings))
            except Exception as e:  # noqa: BLE001 - any failure to get the model falls back (auto) or explains
                if settings.backend == "silero":
                    raise CaptureError(f"silero VAD is not available ({e}). Build the detector with "
                                       "models.vad_model.load_vad (it fetches the model: `livelearner models fetch "
                                       "silero-vad`) or use VadSettings(backend='energy').") from e
                warnings.warn(f"silero VAD unavailable ({type(e).__name__}: {e}); using the energy-based "
                              "detector, which mistakes loud noise for speech.", stacklevel=2)
                self.scorer = EnergyScorer(settings.energy_margin_db)
        self.neg_threshold = (settings.threshold - 0.15 if settings.neg_threshold is None
                              else settings.neg_threshold)
        self.reset()

    @property
    def backend(self) -> str:
        return self.scorer.name

    def reset(self) -> None:
        """Forget the stream: the next push starts at position 0 (or at the chunk's start_s)."""
        self.scorer.reset()
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet filling a frame
        self._pos_s: float | None = None  # stream position of _pending[0]
        self._start_s: float | None = None  # start of the open segment
        self._silence_from_s: float | None = None  # where the current pause began, inside a segment
        self._last_end_s = 0.0
        self.last_prob = 0.0  # speech probability of the latest frame (for a live indicator)

    @property
    def active_start_s(self) -> float | None:
        """Start (padded) of the speech going on now, or None in silence."""
        if self._start_s is None:
            return None
        return max(self._last_end_s, self._start_s - self.settings.speech_pad_s)

    def push(self, chunk: AudioChunk | np.ndarray) -> list[SpeechSegment]:
        """Feed audio (an AudioChunk, or (N,) float32 16 kHz); return segments that ended in it."""
        if isinstance(chunk, AudioChunk):
            if chunk.sample_rate != AUDIO_SAMPLE_RATE:
                raise ValueError(f"VAD needs {AUDIO_SAMPLE_RATE} Hz audio, got {chunk.sample_rate} Hz; "
                                 "capture sources and capture.resample give 16 kHz.")
            samples = chunk.samples
            if self._pos_s is None:
                self._pos_s = chunk.start_s
            elif abs(chunk.start_s - (self._pos_s + len(self._pending) / AUDIO_SAMPLE_RATE)) > FRAME_S:
                self._pending = np.zeros(0, dtype=np.float32)  # samples were dropped upstream: re-anchor
                self._pos_s = chunk.start_s
        else:
            samples = np.asarray(chunk, dtype=np.float32)
            if self._pos_s is None:
                self._pos_s = 0.0
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        finished = []
        n_frames = len(buf) // FRAME_SAMPLES
        for i in range(n_frames):
            frame = np.ascontiguousarray(buf[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], dtype=np.float32)
            self.last_prob = self.scorer(frame)
            seg = self._step(self._pos_s + i * FRAME_S, self.last_prob)
            if seg is not None:
                finished.append(seg)
        self._pending = buf[n_frames * FRAME_SAMPLES :].copy()
        self._pos_s += n_frames * FRAME_S
        return finished

    def _step(self, t_s: float, prob: float) -> SpeechSegment | None:
        s = self.settings
        if prob >= s.threshold:
            self._silence_from_s = None
            if self._start_s is None:
                self._start_s = t_s
            return None
        if self._start_s is None or prob >= self.neg_threshold:
            return None
        if self._silence_from_s is None:
            self._silence_from_s = t_s
        if t_s + FRAME_S - self._silence_from_s >= s.min_silence_s:
            return self._close(self._silence_from_s)
        return None

    def _close(self, end_s: float) -> SpeechSegment | None:
        start_s, self._start_s, self._silence_from_s = self._start_s, None, None
        if start_s is None or end_s - start_s < self.settings.min_speech_s:
            return None
        pad = self.settings.speech_pad_s
        seg = SpeechSegment(max(self._last_end_s, start_s - pad, 0.0), end_s + pad)
        self._last_end_s = seg.end_s
        return seg

    def finish(self) -> list[SpeechSegment]:
        """End of stream: close the open segment (if long enough) and reset."""
        end_s = self._silence_from_s
        if end_s is None and self._pos_s is not None:
            end_s = self._pos_s + len(self._pending) / AUDIO_SAMPLE_RATE
        seg = self._close(end_s) if self._start_s is not None and end_s is not None else None
        self.reset()
        return [seg] if seg is not None else []

    def segments(self, samples: np.ndarray) -> list[SpeechSegment]:
        """All speech segments of a whole (N,) float32 16 kHz array (resets the stream state)."""
        self.reset()
        found = self.push(np.asarray(samples, dtype=np.float32))
        return found + self.finish()
