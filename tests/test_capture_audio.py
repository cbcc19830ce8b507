"""Audio files and the microphone path: resampling, real-time replay, the callback seam, bad input."""
from __future__ import annotations

import subprocess
import threading
import time
import warnings

import numpy as np
import pytest
import soundfile as sf
import sounddevice as sd

from capture import (AudioFileSource, AudioSettings, CaptureError, MicrophoneSource, StreamResampler,
                     as_float32_mono, load_audio, resample)
from capture_helpers import capture_threads

SR = 16_000


def tone(sample_rate: int, seconds: float, freq_hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    x = 0.5 * np.sin(2 * np.pi * freq_hz * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sample_rate)[spectrum.argmax()])


def test_resampling_44k_stereo_preserves_duration_and_pitch(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, tone(44_100, 2.5, channels=2), 44_100, subtype="PCM_16")
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == pytest.approx(2.5 * SR, abs=1)
    assert peak_hz(x, SR) == pytest.approx(440, abs=2)
    assert np.abs(x[SR:-SR]).max() == pytest.approx(0.5, abs=0.01), "polyphase filter keeps the level"


@pytest.mark.parametrize("rate", [48_000, 44_100, 22_050, 8_000])
def test_stream_resampler_matches_whole_signal(rate):
    rng = np.random.default_rng(rate)
    x = rng.standard_normal(rate).astype(np.float32)
    r = StreamResampler(rate, SR)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2500))
        out.append(r.push(x[i : i + n]))
        i += n
    out.append(r.flush())
    assert np.allclose(np.concatenate(out), resample(x, rate, SR), atol=1e-5)


def test_spoken_file_replays_in_real_time_in_contiguous_chunks(spoken):
    path = spoken("one two three four")
    whole = load_audio(path)
    before = capture_threads()
    t0 = time.monotonic()
    with AudioFileSource(path, AudioSettings(chunk_s=0.1, realtime=True)) as source:
        chunks = list(source)
    elapsed_s = time.monotonic() - t0
    assert capture_threads() - before == set()
    duration_s = len(whole) / SR
    assert elapsed_s == pytest.approx(duration_s, abs=0.25), "real-time replay takes as long as the audio"
    assert all(b.start_s == pytest.approx(a.end_s) for a, b in zip(chunks, chunks[1:]))
    times = [c.timestamp_s for c in chunks]
    assert all(b > a for a, b in zip(times, times[1:]))
    # each chunk is released when it would have been recorded: its release time minus its end in the
    # recording is the same for all (measured against the median, so one late wake-up, e.g. of the first
    # chunk on a loaded machine, does not shift the others)
    offsets = np.array([c.timestamp_s - c.end_s for c in chunks])
    lateness = np.abs(offsets - np.median(offsets))
    assert float(np.median(lateness)) < 0.01 and lateness.max() < 0.1, lateness.round(3)
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), whole)


def test_fast_replay_and_slow_consumer_drops(spoken):
    path = spoken("testing the audio replay")
    t0 = time.monotonic()
    with AudioFileSource(path, AudioSettings(realtime=False, queue_size=2)) as source:
        fast = list(source)
    assert time.monotonic() - t0 < 0.5 and source.stats().dropped == 0
    with AudioFileSource(path, AudioSettings(chunk_s=0.05, realtime=True, queue_size=2)) as source:
        slow = []
        for chunk in source:
            slow.append(chunk)
            time.sleep(0.2)
        stats = source.stats()
    n_samples = sum(len(c.samples) for c in fast)
    assert stats.captured == -(-n_samples // 800) and stats.max_queued <= 2
    assert stats.delivered == len(slow) and stats.delivered + stats.dropped == stats.captured
    assert stats.dropped > stats.captured // 2, "a consumer 4x slower than real time loses most chunks"


def test_ffmpeg_decodes_what_soundfile_cannot(tmp_path):
    path = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=300:d=1.5:sample_rate=48000",
                    "-c:a", "aac", str(path)], check=True)
    x = load_audio(path)
    assert len(x) / SR == pytest.approx(1.5, abs=0.05) and peak_hz(x, SR) == pytest.approx(300, abs=3)


def test_poor_audio_is_used_with_warnings_that_say_what_to_do(tmp_path):
    path = tmp_path / "poor.wav"
    sf.write(path, tone(8_000, 1.0, channels=6), 8_000, subtype="PCM_U8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = load_audio(path)
    text = " | ".join(str(w.message) for w in caught)
    assert "8-bit" in text and "6 channels" in text and "8000 Hz" in text and "Record" in text
    assert len(x) == SR and peak_hz(x, SR) == pytest.approx(440, abs=3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), SR), "empty"),
        (lambda p: sf.write(p, np.full(1000, np.nan, np.float32), SR, subtype="FLOAT"), "NaN"),
        (lambda p: p.write_bytes(b"RIFF" + bytes(range(256)) * 8), "corrupt or not in an audio format"),
    ],
    ids=["missing", "zero-bytes", "zero-samples", "nan", "corrupt"],
)
def test_bad_audio_files_explain_themselves(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(CaptureError, match=message):
        load_audio(path)


def test_pcm_arrays_of_every_kind_become_float_mono():
    ramp = np.linspace(-1, 1, 1000, endpoint=False)
    cases = {
        "int16": (ramp * 32768).astype(np.int16),
        "int32": (ramp * 2**31).astype(np.int32),
        "float64 stereo": np.stack([ramp, ramp], axis=1),
        "channels-first": np.stack([ramp, ramp]),
    }
    for name, pcm in cases.items():
        x = as_float32_mono(pcm, SR, what=name)
        assert x.dtype == np.float32 and x.shape == (1000,) and np.allclose(x, ramp, atol=1e-4), name
    with pytest.warns(UserWarning, match="8-bit"):
        x = as_float32_mono(((ramp + 1) * 128).astype(np.uint8), SR)
    assert np.allclose(x, ramp, atol=1 / 128)
    with pytest.raises(CaptureError, match="empty"):
        as_float32_mono(np.zeros(0, np.int16), SR)
    with pytest.raises(CaptureError, match="1000 NaN/inf samples"):
        as_float32_mono(np.full(1000, np.nan), SR)


def test_unsupported_format_names_the_fix(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is text, not sound\n" * 20)
    with pytest.raises(CaptureError, match=r"ffmpeg -i notes.txt -ar 16000 -ac 1 out.wav"):
        load_audio(path)


def test_microphone_callback_copies_blocks_and_counts_overflows():
    mic = MicrophoneSource(AudioSettings(ring_s=0.1))  # ring of 1600 samples; nothing opened
    block = np.linspace(-1, 1, 512, dtype=np.float32)[:, None]  # (frames, channels) as PortAudio hands it
    mic._callback(block, 512, None, sd.CallbackFlags())
    mic._callback(block * 0.5, 512, None, sd.CallbackFlags(sd._lib.paInputOverflow))
    assert mic.callbacks == 2 and mic.overflows == 1
    pos, got = mic.ring.read(1024, timeout_s=0)
    assert pos == 0 and np.array_equal(got, np.concatenate([block[:, 0], block[:, 0] * 0.5]))
    stereo = np.stack([block[:, 0], -block[:, 0]], axis=1)
    for _ in range(4):  # 2048 samples into a 1600-sample ring nobody reads
        mic._callback(stereo, 512, None, sd.CallbackFlags())
    assert mic.ring.overwritten_samples == 448 and mic.ring.available() == 1600
    assert np.allclose(mic.ring.read(512, timeout_s=0)[1], 0.0)  # stereo averaged to mono


class FakeInputStream:
    """sounddevice.InputStream-like: a thread calls the callback with a sine at real-time pace."""

    def __init__(self, callback, sample_rate, plugged, block=512):
        self.callback, self.rate, self.plugged, self.block = callback, sample_rate, plugged, block
        self._run = threading.Event()
        self.thread: threading.Thread | None = None
        self.closed = False

    def start(self):
        if not self.plugged[0]:
            raise sd.PortAudioError("device unavailable")
        self._run.set()
        self.thread = threading.Thread(target=self._loop, name="fake-portaudio", daemon=True)
        self.thread.start()

    def _loop(self):
        n = 0
        t0 = time.monotonic()
        while self._run.is_set() and self.plugged[0]:
            t = (n + np.arange(self.block)) / self.rate
            self.callback((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None], self.block, None,
                          sd.CallbackFlags())
            n += self.block
            time.sleep(max(0.0, t0 + n / self.rate - time.monotonic()))

    def stop(self):
        self._run.clear()
        if self.thread is not None:
            self.thread.join(1)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("device_rate", [16_000, 48_000])
def test_microphone_thread_delivers_16k_chunks_and_stops_cleanly(device_rate):
    plugged, streams = [True], []

    def factory(settings, callback):
        streams.append(FakeInputStream(callback, device_rate, plugged))
        return streams[-1], device_rate, 1

    before = capture_threads()
    with MicrophoneSource(AudioSettings(chunk_s=0.1), stream_factory=factory) as mic:
        chunks = [mic.read(timeout_s=1) for _ in range(6)]
    assert capture_threads() - before == set() and streams[0].closed
    assert all(c.sample_rate == SR for c in chunks)
    assert all(b.start_s == pytest.approx(a.end_s) for a, b in zip(chunks, chunks[1:]))
    x = np.concatenate([c.samples for c in chunks])
    assert len(x) == pytest.approx(0.6 * SR, abs=0.01 * SR)
    assert peak_hz(x, SR) == pytest.approx(440, abs=5)


def test_microphone_unplugged_errors_within_two_seconds():
    plugged = [True]

    def factory(settings, callback):
        return FakeInputStream(callback, SR, plugged), SR, 1

    mic = MicrophoneSource(AudioSettings(chunk_s=0.05), stream_factory=factory).start()
    mic.read(timeout_s=1)
    plugged[0] = False
    t0 = time.monotonic()
    with pytest.raises(CaptureError, match="microphone stopped sending audio"):
        while True:
            mic.read()
    assert time.monotonic() - t0 < 2.0 and mic.stats().retries >= 1
    mic.stop()


def test_microphone_that_cannot_start_is_closed_and_explained():
    streams = []

    def factory(settings, callback):
        streams.append(FakeInputStream(callback, SR, [False]))
        return streams[-1], SR, 1

    with pytest.raises(CaptureError, match="Could not start the microphone .*device unavailable"):
        MicrophoneSource(stream_factory=factory).start()
    assert streams[0].closed


def test_no_input_device_lists_devices():
    try:
        sd.query_devices(kind="input")
        pytest.skip("this machine has a microphone; the no-device message cannot be provoked")
    except (ValueError, sd.PortAudioError):
        pass
    with pytest.raises(CaptureError, match="No input device.*Devices sounddevice sees"):
        MicrophoneSource().start()


MIC_ON_NULL_DEVICE = """
import json, threading, sounddevice as sd
from capture import AudioSettings, MicrophoneSource
if not any(d["max_input_channels"] > 0 for d in sd.query_devices()):
    print(json.dumps({"skip": "ALSA null device not visible to PortAudio"}))
    raise SystemExit
settings = AudioSettings(chunk_s=0.1, queue_size=4)
with MicrophoneSource(settings) as mic:  # the real sounddevice InputStream, opened on ALSA's null device
    chunks = [mic.read(timeout_s=2) for _ in range(20)]
    stats = mic.stats()
    rate = mic.device_rate
threads = [t.name for t in threading.enumerate() if t.name.startswith("capture-")]
print(json.dumps({"rate": rate, "lengths": [len(c.samples) for c in chunks], "starts": [c.start_s for c in chunks],
                  "dropped": stats.dropped,
                  "max_queued": stats.max_queued, "callbacks": mic.callbacks, "threads": threads}))
"""


def test_real_input_stream_on_alsa_null_device(tmp_path):
    """The real sounddevice path (device query, InputStream, callback, stop) on ALSA's null capture device.

    The null device delivers silence as fast as PortAudio asks (not at real-time pace), so the consumer
    here is "slow" and the queue must drop and count. Skipped where PortAudio has no ALSA.
    """
    import json
    import os
    import sys

    (tmp_path / ".asoundrc").write_text('pcm.!default { type plug slave.pcm "nullpcm" }\npcm.nullpcm { type null }\n')
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", MIC_ON_NULL_DEVICE], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["rate"] in (16_000, 44_100, 48_000) and result["callbacks"] > 0
    assert all(n == pytest.approx(1600, abs=2) for n in result["lengths"])  # 0.1 s at 16 kHz
    assert result["starts"] == sorted(result["starts"])  # (the samples: the null device hands uninitialised memory)
    assert result["max_queued"] <= 4 and result["threads"] == []
