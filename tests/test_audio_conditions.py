"""Recording conditions made from a clip (train.audio_conditions): each does what its name says, repeatably."""
from __future__ import annotations

import numpy as np
import pytest

from train.audio_conditions import CONDITIONS, apply_condition, condition_seed, speech_power

SR = 16_000


def word_in_silence(seed: int = 0) -> np.ndarray:
    """1 s: 0.3 s of near silence, a 0.4 s 'word' (harmonics of 150 Hz up to 6 kHz, with an envelope), silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * SR)) / SR
    word = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 40)) * np.hanning(len(t))
    audio = rng.normal(0, 1e-4, SR)
    audio[int(0.3 * SR): int(0.7 * SR)] += 0.3 * word / np.abs(word).max()
    return audio.astype(np.float32)


def band_energy(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    f = np.fft.rfftfreq(len(audio), 1 / SR)
    return float(spectrum[(f >= low_hz) & (f < high_hz)].sum())


def test_every_condition_is_float32_in_range_and_repeatable():
    audio = word_in_silence()
    for c in CONDITIONS:
        out = apply_condition(c, audio, condition_seed("clip-1", c))
        assert out.dtype == np.float32 and np.abs(out).max() <= 1.0 and len(out) > 0.3 * SR
        assert np.array_equal(out, apply_condition(c, audio, condition_seed("clip-1", c)))
    assert condition_seed("clip-1", "noisy") != condition_seed("clip-2", "noisy")
    with pytest.raises(ValueError, match="choose from"):
        apply_condition("underwater", audio, 0)


def test_telephone_keeps_the_voice_band_only():
    audio = word_in_silence()
    out = apply_condition("telephone", audio, 1)
    assert band_energy(out, 4200, 8000) < 0.01 * band_energy(audio, 4200, 8000)  # nothing above 8 kHz sampling allows
    assert band_energy(out, 500, 3000) > 0.5 * band_energy(audio, 500, 3000)


def test_noise_sits_10_to_20_db_below_the_speech():
    audio = word_in_silence()
    for seed in range(5):
        noise = apply_condition("noisy", audio, seed).astype(np.float64) - audio
        snr_db = 10 * np.log10(speech_power(audio) / np.mean(noise**2))
        assert 9.5 <= snr_db <= 20.5, snr_db


def test_onset_cut_starts_at_the_word_and_reverb_keeps_the_length():
    audio = word_in_silence()
    cut = apply_condition("onset", audio, 3)
    assert 0.35 * SR < len(cut) < 0.5 * SR  # the 0.4 s word, at most 20 ms before and 50 ms after
    assert np.abs(cut[: int(0.03 * SR)]).max() > 0.01  # speech within its first 30 ms
    wet = apply_condition("reverb", audio, 3)
    assert len(wet) == len(audio) and np.abs(wet[int(0.72 * SR):int(0.8 * SR)]).max() > 10 * np.abs(audio[int(0.72 * SR):int(0.8 * SR)]).max()
