"""Recording conditions made from clean clips: what another microphone, room or line does to a spoken word.

A calibration fitted on one corpus's microphones is sure of itself on that corpus only. Fitting (and
measuring) it on the same training clips as a telephone, a noisy room, a quiet or hot input, a reverberant
room and a recorder that starts late shows whether its probabilities still hold on a new device. Each
condition is a function of the clip and a seed, so the same clip always comes out the same (scores can be
cached by clip id and condition).

    audio_8k_band = apply_condition("telephone", audio_16k, seed=7)
"""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

SAMPLE_RATE = 16_000
CONDITIONS = ("clean", "telephone", "noisy", "gain", "reverb", "onset")
TELEPHONE_BAND_HZ = (300.0, 3400.0)  # the classic voice channel, sampled at 8 kHz
MU_LAW = 255  # G.711 companding, 8 bits
NOISE_SNR_DB = (10.0, 20.0)  # speech to noise, over the speech frames
GAIN_DB = (-24.0, 12.0)  # a quiet input to one that clips
RT60_S = (0.2, 0.7)  # small to large room
ONSET_DB = -30.0  # a 10 ms frame this far below the clip's loudest frame is not yet speech
FRAME_S = 0.01


def condition_seed(clip_id: str, condition: str) -> int:
    """Stable seed of (clip, condition): the same clip always gets the same noise, room and gain."""
    return zlib.crc32(f"{clip_id}|{condition}".encode())


def _frame_db(audio: np.ndarray) -> np.ndarray:
    """(N,) -> (frames,) level of each 10 ms frame in dB."""
    n = int(FRAME_S * SAMPLE_RATE)
    frames = audio[: len(audio) // n * n].reshape(-1, n) if len(audio) >= n else audio[None]
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)


def speech_power(audio: np.ndarray) -> float:
    """Mean power of the frames within 20 dB of the loudest: the speech, not the pauses around it."""
    db = _frame_db(audio)
    loud = db >= db.max() - 20
    return float(np.mean(10 ** (db[loud] / 10)))


def telephone(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Band-passed to 300-3400 Hz, down to 8 kHz, mu-law companded to 8 bits, and back to 16 kHz."""
    sos = butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    narrow = resample_poly(sosfilt(sos, audio), 1, 2)  # (N / 2,) at 8 kHz
    x = np.clip(narrow, -1, 1)
    companded = np.sign(x) * np.log1p(MU_LAW * np.abs(x)) / np.log1p(MU_LAW)
    quantised = np.round(companded * 127) / 127
    expanded = np.sign(quantised) * ((1 + MU_LAW) ** np.abs(quantised) - 1) / MU_LAW
    return resample_poly(expanded, 2, 1)[: len(audio)]


def noise_like(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) unit-power noise: white, pink (1/f), brown (1/f^2) or mains hum with hiss."""
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) + 0.3 * white
    else:
        spectrum = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
        x = np.fft.irfft(spectrum / (np.sqrt(f) if kind == "pink" else f), n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def noisy(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White, pink, brown noise or hum at 10-20 dB below the speech."""
    snr_db = rng.uniform(*NOISE_SNR_DB)
    noise = noise_like(str(rng.choice(["white", "pink", "brown", "hum"])), len(audio), rng)
    return audio + noise * np.sqrt(speech_power(audio) / 10 ** (snr_db / 10))


def gain(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """-24 to +12 dB; what goes past full scale clips, as a hot input does."""
    return np.clip(audio * 10 ** (rng.uniform(*GAIN_DB) / 20), -1, 1)


def reverb(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolved with a room: a direct path, then exponentially decaying noise (RT60 0.2-0.7 s)."""
    rt60_s = rng.uniform(*RT60_S)
    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = rng.standard_normal(n) * 10 ** (-3 * t / rt60_s) * 0.3  # -60 dB after rt60_s
    rir[0] = 1.0
    wet = fftconvolve(audio, rir)[: len(audio)]
    return wet * (np.abs(audio).max() / (np.abs(wet).max() + 1e-12))


def onset(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cut tight: from 0-20 ms before the first speech frame to 0-50 ms after the last (no lead-in, no tail)."""
    db = _frame_db(audio)
    speech = np.flatnonzero(db >= db.max() + ONSET_DB)
    if not len(speech):
        return audio
    frame = int(FRAME_S * SAMPLE_RATE)
    start = max(0, speech[0] * frame - int(rng.uniform(0, 0.02) * SAMPLE_RATE))
    end = min(len(audio), (speech[-1] + 1) * frame + int(rng.uniform(0, 0.05) * SAMPLE_RATE))
    return audio[start:end]


TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "telephone": telephone, "noisy": noisy, "gain": gain, "reverb": reverb, "onset": onset,
}


def apply_condition(condition: str, audio: np.ndarray, seed: int) -> np.ndarray:
    """(N,) float32 16 kHz audio as recorded in `condition` (see CONDITIONS); "clean" returns it unchanged."""
    if condition == "clean":
        return audio
    if condition not in TRANSFORMS:
        raise ValueError(f"unknown recording condition {condition!r}: choose from {', '.join(CONDITIONS)}")
    out = TRANSFORMS[condition](np.asarray(audio, dtype=np.float64), np.random.default_rng(seed))
    return np.clip(out, -1, 1).astype(np.float32)
