"""Audio sources: the microphone (sounddevice) and audio files, both as 16 kHz mono float32 chunks.

I/O lives here only (as in openai/whisper's `load_audio`): everything downstream takes arrays.
Any common file format, rate and channel count is accepted; soundfile decodes what it can and ffmpeg
the rest (m4a, webm, mp4 sound tracks). Channels are averaged and the rate is converted with a
polyphase filter (`scipy.signal.resample_poly`), never by dropping samples.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.signal import resample_poly

from capture.buffers import AudioRing, DropPolicy
from capture.items import AUDIO_SAMPLE_RATE, AudioChunk
from capture.source import CaptureError, Source

FILTER_HALF_WIDTH = 10  # resample_poly's default half-length, in units of max(up, down) taps


# ---------------------------------------------------------------------------------------------------
# Arrays: dtype, channels, rate


def as_float32_mono(samples: Any, sample_rate: int, *, what: str = "audio") -> np.ndarray:
    """Any PCM array -> (N,) float32 mono in [-1, 1] at the same rate; checks and explains bad input.

    Accepts (N,) or (N, C) (or channels-first (C, N) with C <= 8), of float or int8/uint8/int16/int32.
    Raises CaptureError on empty or NaN/inf audio; warns on 8-bit, under-16 kHz or multi-channel audio.
    """
    x = np.asarray(samples)
    if x.size == 0:
        raise CaptureError(f"{what} is empty (0 samples). Check the microphone or file actually recorded sound.")
    if x.ndim == 2 and x.shape[0] <= 8 < x.shape[1]:
        x = x.T  # channels-first -> (N, C)
    if x.ndim not in (1, 2):
        raise CaptureError(f"{what} has shape {x.shape}; expected (samples,) or (samples, channels).")
    kind = x.dtype.kind
    if kind == "f":
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).sum())
            raise CaptureError(f"{what} contains {bad} NaN/inf samples of {x.size}: the recording or the code "
                               "that produced it is broken. Record again or check the conversion step.")
    elif x.dtype == np.uint8:
        warnings.warn(f"{what} is 8-bit: coarse (48 dB dynamic range); recognition will suffer. "
                      "Record at 16-bit or better.", stacklevel=2)
        x = (x.astype(np.float32) - 128.0) / 128.0
    elif kind == "i":
        bits = x.dtype.itemsize * 8
        if bits == 8:
            warnings.warn(f"{what} is 8-bit: coarse; record at 16-bit or better.", stacklevel=2)
        x = x.astype(np.float32) / float(2 ** (bits - 1))
    else:
        raise CaptureError(f"{what} has sample type {x.dtype}; expected float or integer PCM.")
    if x.ndim == 2:
        channels = x.shape[1]
        if channels > 2:
            warnings.warn(f"{what} has {channels} channels; averaging them to mono. For speech, a mono or "
                          "stereo recording of the speaker is better.", stacklevel=2)
        x = x.mean(axis=1, dtype=np.float32) if channels > 1 else x[:, 0]
    if sample_rate < AUDIO_SAMPLE_RATE:
        warnings.warn(f"{what} is sampled at {sample_rate} Hz (below 16 kHz): nothing above {sample_rate // 2} Hz "
                      "was recorded, so upsampling cannot restore it and recognition will be worse. "
                      "Record at 16 kHz or more if you can.", stacklevel=2)
    return np.ascontiguousarray(x, dtype=np.float32)


def _ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    f = Fraction(int(to_rate), int(from_rate))
    return f.numerator, f.denominator


def resample(samples: np.ndarray, from_rate: int, to_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """(N,) float32 at `from_rate` -> (ceil(N * to/from),) float32 at `to_rate` (polyphase, anti-aliased)."""
    if from_rate == to_rate:
        return samples.astype(np.float32, copy=False)
    up, down = _ratio(from_rate, to_rate)
    return resample_poly(samples, up, down).astype(np.float32)


class StreamResampler:
    """Resample a stream block by block with exactly the output `resample` gives on the whole signal.

    Each block is filtered with enough input on both sides for the filter, so there are no clicks at
    block edges; the price is a latency of `pad` input samples (< 2 ms at common rates).
    """

    def __init__(self, from_rate: int, to_rate: int = AUDIO_SAMPLE_RATE) -> None:
        self.from_rate, self.to_rate = int(from_rate), int(to_rate)
        self.up, self.down = _ratio(self.from_rate, self.to_rate)
        half_in = FILTER_HALF_WIDTH * max(self.up, self.down) / self.up + 2  # filter reach, input samples
        self.pad = math.ceil(half_in / self.down) * self.down  # a multiple of `down`: outputs align exactly
        self._buf = np.zeros(0, dtype=np.float32)  # input from `_buf_start` on
        self._buf_start = 0  # absolute input index of _buf[0]
        self._done = 0  # absolute input index up to which output was produced

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed (N,) input samples; return the output that is now final (may be empty)."""
        if self.up == self.down:
            return samples.astype(np.float32, copy=False)
        self._buf = np.concatenate([self._buf, samples.astype(np.float32, copy=False)])
        end = self._buf_start + len(self._buf)
        block_end = self._done + (end - self.pad - self._done) // self.down * self.down
        if block_end <= self._done:
            return np.zeros(0, dtype=np.float32)
        return self._run(block_end, block_end + self.pad)

    def flush(self) -> np.ndarray:
        """Output for the rest of the input (as if it were followed by silence); then reset."""
        if self.up == self.down:
            return np.zeros(0, dtype=np.float32)
        end = self._buf_start + len(self._buf)
        out = self._run(end, end) if end > self._done else np.zeros(0, dtype=np.float32)
        self.__init__(self.from_rate, self.to_rate)
        return out

    def _run(self, block_end: int, seg_end: int) -> np.ndarray:
        seg_start = max(self._buf_start, self._done - self.pad)
        seg = self._buf[seg_start - self._buf_start : seg_end - self._buf_start]
        y = resample_poly(seg, self.up, self.down)
        first = (self._done - seg_start) * self.up // self.down
        last = first + math.ceil((block_end - self._done) * self.up / self.down)
        self._done = block_end
        keep_from = max(self._buf_start, self._done - self.pad)
        self._buf = self._buf[keep_from - self._buf_start :]
        self._buf_start = keep_from
        return y[first:last].astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int  # Hz, as stored in the file
    channels: int
    duration_s: float
    encoding: str  # e.g. "WAV PCM_16", "FLAC PCM_24", "ffmpeg aac"


def _ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_streams", "-of", "json",
                          str(path)], capture_output=True, text=True, timeout=30)
    streams = json.loads(out.stdout or "{}").get("streams", []) if out.returncode == 0 else []
    if not streams:
        reason = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "no audio stream in it"
        raise CaptureError(f"ffmpeg cannot read audio from {path}: {reason}.")
    return streams[0]


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, AudioInfo]:
    if shutil.which("ffmpeg") is None:
        raise CaptureError(f"{path.suffix} files need ffmpeg to decode, and ffmpeg is not installed. Install it "
                           "(apt install ffmpeg / brew install ffmpeg) or convert the file to WAV or FLAC.")
    stream = _ffprobe(path)
    rate, channels = int(stream.get("sample_rate", 0)), int(stream.get("channels", 0))
    if rate <= 0 or channels <= 0:
        raise CaptureError(f"{path} has an audio stream without a sample rate or channel count; it is corrupt.")
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
                          "-acodec", "pcm_f32le", "-"], capture_output=True, timeout=600)
    if out.returncode != 0:
        raise CaptureError(f"ffmpeg failed to decode {path}: {out.stderr.decode(errors='replace').strip()[-300:]}")
    data = np.frombuffer(out.stdout, dtype=np.float32)
    data = data[: len(data) // channels * channels].reshape(-1, channels)  # (N, C)
    info = AudioInfo(path, rate, channels, len(data) / rate, f"ffmpeg {stream.get('codec_name', '?')}")
    return data, info


def read_audio(path: str | Path) -> tuple[np.ndarray, AudioInfo]:
    """Decode a file as stored: ((N, C) float32 or int-like array, AudioInfo). Raises CaptureError with advice."""
    import soundfile as sf  # local: libsndfile loads at first use, not at import of capture

    path = Path(path)
    if not path.exists():
        raise CaptureError(f"Audio file not found: {path}. Check the path (relative to {Path.cwd()}).")
    if path.is_dir():
        raise CaptureError(f"{path} is a folder; pass one audio file.")
    if path.stat().st_size == 0:
        raise CaptureError(f"Audio file {path} is empty (0 bytes). Record or copy it again.")
    try:
        info = sf.info(str(path))
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)  # (N, C)
        return data, AudioInfo(path, int(info.samplerate), int(info.channels), float(info.duration),
                               f"{info.format} {info.subtype}")
    except (RuntimeError, sf.LibsndfileError, TypeError) as e:
        sf_error = str(e)
    try:
        return _decode_ffmpeg(path)
    except CaptureError as e:
        raise CaptureError(
            f"Could not read audio from {path} ({path.stat().st_size} bytes): soundfile said '{sf_error}'; "
            f"{e} The file is corrupt or not in an audio format. Convert it with "
            f"`ffmpeg -i {path.name} -ar 16000 -ac 1 out.wav` or pass another file.") from e


def load_audio(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """Any audio file -> (N,) float32 mono at `sample_rate` (16 kHz default), duration preserved."""
    data, info = read_audio(path)
    if "PCM_U8" in info.encoding or "PCM_S8" in info.encoding:
        warnings.warn(f"{Path(path).name} is 8-bit audio: coarse (48 dB dynamic range), recognition will suffer. "
                      "Record at 16-bit or better.", stacklevel=2)
    mono = as_float32_mono(data, info.sample_rate, what=f"{Path(path).name} ({info.encoding}, "
                                                          f"{info.sample_rate} Hz, {info.channels} ch)")
    return resample(mono, info.sample_rate, sample_rate)


# ---------------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class AudioSettings:
    chunk_s: float = 0.1  # length of each AudioChunk handed out
    queue_size: int = 50  # chunks waiting for the consumer (5 s at 0.1 s chunks)
    policy: DropPolicy | None = None  # None: drop_oldest for the mic and real-time replay, block for fast replay
    realtime: bool = True  # files: release each chunk when it would have been recorded (False: as fast as consumed)
    loop: bool = False  # files: start again at the end (benchmarks)
    device: int | str | None = None  # microphone: sounddevice device index or name (None: system default)
    block_s: float = 0.032  # microphone: PortAudio callback block (512 samples at 16 kHz)
    ring_s: float = 5.0  # microphone: ring buffer between callback and reader
    stall_timeout_s: float = 2.0  # live: a consumer waiting this long without audio gets a CaptureError
    retry_first_s: float = 0.1  # a microphone that stops calling back is re-opened after this, doubling ...
    retry_max_s: float = 0.4  # ... up to this
    give_up_after_s: float = 1.2  # ... and reported as an error after this


def _file_policy(settings: AudioSettings) -> DropPolicy:
    if settings.policy is not None:
        return DropPolicy(settings.policy)
    return DropPolicy.DROP_OLDEST if settings.realtime else DropPolicy.BLOCK


class AudioFileSource(Source[AudioChunk]):
    """An audio file as 16 kHz mono chunks, released at recording pace (`realtime`) or as fast as consumed."""

    def __init__(self, path: str | Path, settings: AudioSettings = AudioSettings()) -> None:
        super().__init__(settings.queue_size, _file_policy(settings))
        self.path = Path(path)
        self.settings = settings
        self.name = f"file:{self.path.name}"
        self.samples = np.zeros(0, dtype=np.float32)  # (N,) the whole file at 16 kHz, once opened

    @property
    def duration_s(self) -> float:
        return len(self.samples) / AUDIO_SAMPLE_RATE

    def _open(self) -> None:
        self.samples = load_audio(self.path)

    def _produce(self) -> None:
        n = max(1, round(self.settings.chunk_s * AUDIO_SAMPLE_RATE))
        start_clock = time.monotonic()
        emitted = 0  # samples handed out, across loops: the stream position
        while not self._stopping.is_set():
            for begin in range(0, len(self.samples), n):
                block = self.samples[begin : begin + n]
                end_s = (emitted + len(block)) / AUDIO_SAMPLE_RATE
                # a mic delivers a block when it has been recorded
                if not self._pace(start_clock + end_s if self.settings.realtime else None):
                    return
                now = time.monotonic()
                self._emit(AudioChunk(block.copy(), AUDIO_SAMPLE_RATE, emitted / AUDIO_SAMPLE_RATE, now, self.name), now)
                emitted += len(block)
            if not self.settings.loop:
                return

    def _release(self) -> None:
        pass


def list_input_devices() -> str:
    """sounddevice's device table as text, for error messages."""
    import sounddevice as sd

    try:
        table = str(sd.query_devices())
    except Exception as e:  # noqa: BLE001 - PortAudio itself may be missing
        return f"(could not list devices: {e})"
    return table.strip() or "(no audio devices at all)"


StreamFactory = Callable[["AudioSettings", Callable[..., None]], tuple[Any, int, int]]


def _open_input_stream(settings: AudioSettings, callback: Callable[..., None]) -> tuple[Any, int, int]:
    """Open a sounddevice InputStream: 16 kHz mono if the device allows, else its own rate/channels.

    Returns (stream, sample_rate, channels). Raises CaptureError listing the devices if none fits.
    """
    import sounddevice as sd

    try:
        info = sd.query_devices(settings.device, "input")
    except (ValueError, sd.PortAudioError) as e:
        raise CaptureError(
            f"No input device{'' if settings.device is None else f' {settings.device!r}'} ({e}). "
            f"Devices sounddevice sees:\n{list_input_devices()}\n"
            "Plug in or enable a microphone (check OS privacy settings), pick one with --device N, "
            "or pass an audio file instead.") from e
    default_rate, max_channels = int(info["default_samplerate"]), max(1, int(info["max_input_channels"]))
    for rate, channels in ((AUDIO_SAMPLE_RATE, 1), (default_rate, 1), (default_rate, max_channels)):
        try:  # 16 kHz mono saves resampling; otherwise the device's own format, converted in the source
            sd.check_input_settings(settings.device, channels=channels, dtype="float32", samplerate=rate)
            break
        except (ValueError, sd.PortAudioError):
            continue
    try:
        stream = sd.InputStream(samplerate=rate, channels=channels, dtype="float32", device=settings.device,
                                blocksize=max(1, round(settings.block_s * rate)), callback=callback)
    except (ValueError, sd.PortAudioError) as e:
        raise CaptureError(f"Could not open the microphone '{info['name']}' at {rate} Hz ({e}). Another program "
                           f"may hold it. Devices:\n{list_input_devices()}") from e
    return stream, rate, channels


class MicrophoneSource(Source[AudioChunk]):
    """The microphone as 16 kHz mono chunks.

    The PortAudio callback (`_callback`) only copies each block into an `AudioRing` and counts
    overflows; the source thread cuts chunks, resamples if the device could not do 16 kHz, and
    re-opens the stream with back-off if callbacks stop (device unplugged). `stream_factory` is the
    seam for tests: it returns an InputStream-like object (start/stop/close) that calls the callback.
    """

    def __init__(self, settings: AudioSettings = AudioSettings(),
                 stream_factory: StreamFactory = _open_input_stream) -> None:
        super().__init__(settings.queue_size, settings.policy or DropPolicy.DROP_OLDEST)
        self.settings = settings
        self.name = "mic" if settings.device is None else f"mic:{settings.device}"
        self._factory = stream_factory
        self._stream: Any = None
        self.device_rate = AUDIO_SAMPLE_RATE
        self.ring = AudioRing(round(settings.ring_s * AUDIO_SAMPLE_RATE))
        self.overflows = 0  # PortAudio reported input overflow (samples lost before they reached us)
        self.callbacks = 0
        self._stall_timeout_s = settings.stall_timeout_s

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio thread: copy (frames, channels) float32 into the ring; nothing that can block or fail."""
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        self.callbacks += 1
        self.ring.write(indata[:, 0] if indata.shape[1] == 1 else indata.mean(axis=1, dtype=np.float32))

    def _start_stream(self) -> None:
        stream, rate, _channels = self._factory(self.settings, self._callback)
        if rate != self.device_rate or self.ring.capacity != round(self.settings.ring_s * rate):
            self.device_rate = rate
            self.ring = AudioRing(round(self.settings.ring_s * rate))
        self.ring.last_write_s = time.monotonic()  # the stall clock starts now
        try:
            stream.start()
        except Exception:
            stream.close()
            raise
        self._stream = stream

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()

    def _open(self) -> None:
        try:
            self._start_stream()
        except CaptureError:
            raise
        except Exception as e:  # noqa: BLE001 - PortAudio errors come in several types
            raise CaptureError(f"Could not start the microphone ({type(e).__name__}: {e}). Another program may "
                               f"hold it, or it was unplugged. Devices:\n{list_input_devices()}") from e

    def _produce(self) -> None:
        ring: AudioRing | None = None
        resampler: StreamResampler | None = None
        chunk_in = expected = 0  # input samples per chunk; absolute ring position we expect next
        out_pos = 0  # output (16 kHz) samples, including overwritten gaps: the stream position
        failing_since: float | None = None
        delay_s = self.settings.retry_first_s
        while not self._stopping.is_set():
            if self.ring is not ring:  # first pass, or re-opened at another rate: a new ring
                ring, expected = self.ring, 0
                resampler = StreamResampler(self.device_rate) if self.device_rate != AUDIO_SAMPLE_RATE else None
                chunk_in = max(1, round(self.settings.chunk_s * self.device_rate))
            got = ring.read(chunk_in, timeout_s=0.05)
            now = time.monotonic()
            if got is None:
                last = ring.last_write_s or now
                if self._stream is not None and now - last < self.settings.retry_first_s + self.settings.block_s * 4:
                    continue
                failing_since = failing_since or now  # callbacks stopped: device gone or stream died
                if now - failing_since > self.settings.give_up_after_s:
                    raise CaptureError(
                        f"The microphone stopped sending audio and did not come back after {self._retries} re-opens "
                        f"in {self.settings.give_up_after_s:g} s. Check it is plugged in and not muted or taken by "
                        f"another program. Devices:\n{list_input_devices()}")
                remaining_s = self.settings.give_up_after_s - (now - failing_since)
                if self._stopping.wait(min(delay_s, remaining_s + 0.01)):
                    return
                delay_s = min(delay_s * 2, self.settings.retry_max_s)
                self._retries += 1
                try:
                    self._close_stream()
                    self._start_stream()
                except Exception:  # noqa: BLE001 - retried until give_up_after_s
                    self._stream = None
                continue
            failing_since, delay_s = None, self.settings.retry_first_s
            pos, block = got
            if pos > expected:  # the reader fell behind and the ring overwrote samples
                out_pos += round((pos - expected) * AUDIO_SAMPLE_RATE / self.device_rate)
                self._extra_dropped += max(1, round((pos - expected) / chunk_in))
                if resampler is not None:
                    out_pos += len(resampler.flush())
            expected = pos + len(block)
            samples = resampler.push(block) if resampler is not None else block
            if len(samples):
                self._emit(AudioChunk(samples, AUDIO_SAMPLE_RATE, out_pos / AUDIO_SAMPLE_RATE, now, self.name), now)
                out_pos += len(samples)

    def _wake(self) -> None:
        self.ring.wake()

    def _release(self) -> None:
        self._close_stream()


def open_audio(spec: str | Path | None = None, settings: AudioSettings | None = None) -> Source[AudioChunk]:
    """A source from a CLI-style spec: None or "mic" for the microphone, else an audio file path."""
    settings = settings or AudioSettings()
    if spec is None or str(spec) == "mic":
        return MicrophoneSource(settings)
    return AudioFileSource(spec, settings)
