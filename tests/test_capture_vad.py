"""Voice activity on speech-silence-speech built from espeak-ng: silero (real model) and energy fallback."""
from __future__ import annotations

import numpy as np
import pytest

from capture import AudioChunk, CaptureError, load_audio
from capture.vad import SpeechSegment, VadSettings, VoiceActivityDetector

SR = 16_000


@pytest.fixture
def speech_silence_speech(spoken):
    """(samples, [(start_s, end_s) of each spoken part]) with 2 s of quiet noise between the parts."""
    first = load_audio(spoken("the first sentence is spoken here"))
    second = load_audio(spoken("and then a second one follows"))
    quiet = np.zeros(2 * SR, np.float32)
    x = np.concatenate([quiet[: SR // 2], first, quiet, second, quiet[: SR // 2]])
    x += np.random.default_rng(0).normal(0, 0.002, len(x)).astype(np.float32)  # a room is never silent
    a0 = 0.5
    b0 = a0 + len(first) / SR + 2.0
    return x, [(a0, a0 + len(first) / SR), (b0, b0 + len(second) / SR)]


def silero() -> VoiceActivityDetector:
    from models.vad_model import load_vad  # the store fetches the model; capture only takes its path

    return load_vad(VadSettings(backend="silero"))


def check_segments(segments: list[SpeechSegment], truth: list[tuple[float, float]]) -> None:
    assert len(segments) == 2, segments
    for seg, (start_s, end_s) in zip(segments, truth):
        # espeak pads each file with ~0.1-0.3 s of silence: the detected speech lies inside, close to the edges
        assert start_s - 0.1 <= seg.start_s <= start_s + 0.4, (seg, start_s)
        assert end_s - 0.6 <= seg.end_s <= end_s + 0.3, (seg, end_s)
    gap_start, gap_end = truth[0][1] + 0.3, truth[1][0] - 0.1  # inside the 2 s pause
    assert segments[0].end_s < gap_start and segments[1].start_s > gap_end


@pytest.mark.parametrize("backend", ["silero", "energy"])
def test_vad_finds_both_spoken_parts(speech_silence_speech, backend):
    x, truth = speech_silence_speech
    vad = silero() if backend == "silero" else VoiceActivityDetector(VadSettings(backend="energy"))
    assert vad.backend == backend
    check_segments(vad.segments(x), truth)


def test_streaming_matches_offline_and_reports_ongoing_speech(speech_silence_speech):
    x, truth = speech_silence_speech
    vad = silero()
    offline = vad.segments(x)
    streamed, active_seen = [], []
    for i in range(0, len(x), 1600):  # 0.1 s chunks as a source delivers them
        streamed += vad.push(AudioChunk(x[i : i + 1600], SR, i / SR))
        active_seen.append((i / SR, vad.active_start_s))
    streamed += vad.finish()
    flat = lambda segs: [t for s in segs for t in (s.start_s, s.end_s)]  # noqa: E731
    assert flat(streamed) == pytest.approx(flat(offline))
    mid_first = (truth[0][0] + truth[0][1]) / 2
    in_speech = [a for t, a in active_seen if abs(t - mid_first) < 0.1]
    assert in_speech and in_speech[0] == pytest.approx(offline[0].start_s)
    assert all(a is None for t, a in active_seen if truth[0][1] + 0.8 < t < truth[1][0] - 0.1)


def test_silence_and_noise_give_no_speech():
    noise = np.random.default_rng(1).normal(0, 0.01, 3 * SR).astype(np.float32)
    assert silero().segments(noise) == []
    assert silero().segments(np.zeros(SR, np.float32)) == []


def test_missing_model_falls_back_to_energy_with_warning(tmp_path):
    not_a_model = tmp_path / "silero_vad.onnx"
    not_a_model.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="energy-based detector"):
        vad = VoiceActivityDetector(VadSettings(model_path=not_a_model))
    assert vad.backend == "energy"
    with pytest.raises(CaptureError, match="backend='energy'"):
        VoiceActivityDetector(VadSettings(backend="silero", model_path=not_a_model))


def test_capture_never_fetches_a_model_itself():
    """Without a model file, capture does not reach into the model store: silero is refused, auto degrades."""
    with pytest.raises(CaptureError, match="load_vad"):
        VoiceActivityDetector(VadSettings(backend="silero"))
    with pytest.warns(UserWarning, match="energy-based detector"):
        assert VoiceActivityDetector(VadSettings(backend="auto")).backend == "energy"
    assert silero().backend == "silero"
