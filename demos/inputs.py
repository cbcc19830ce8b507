"""What users send the page, checked and bounded before any work: uploaded files, typed text, numbers.

A share link hands the page to everyone who has it, so every handler takes its input through here:
an image's pixel count is read from its header before a pixel is decoded, an audio file's duration
before its samples, text is stripped of control characters and refused past a length, numbers are
range-checked. Every refusal is a user_error in the project's words; none names a server path
(uploads sit in Gradio's temporary folder, which is nobody's business) or shows a traceback.
"""
from __future__ import annotations

import json
import math
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from capture.images import MAX_IMAGE_PIXELS
from demos.context import user_error
from train.samples import MAX_LABEL_CHARS  # class, person and session names: the sample store's limit

MAX_AUDIO_S = 300.0  # length of an uploaded recording (Whisper on a 2-core CPU: about 1 s per 3 s of audio)
MAX_PHRASE_CHARS = 500  # a typed phrase saved as a text sample (the store takes up to MAX_TEXT_CHARS)
MAX_LABELS_TEXT_CHARS = 2000  # the Speak tab's "label: description" list
FFPROBE_TIMEOUT_S = 20.0


def clean_text(value: Any, what: str, max_chars: int = MAX_LABEL_CHARS, *, required: bool = False) -> str:
    """One line of text: control and format characters (and line breaks) become spaces, runs of spaces one,
    outer spaces stripped; refused past max_chars. (The sample store strips the same characters again.)"""
    text = "" if value is None else str(value)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text).strip()
    text = " ".join(text.split())  # runs of spaces (from removed characters) become one
    if len(text) > max_chars:
        raise user_error(f"The {what} is {len(text)} characters long; keep it to {max_chars}.")
    if required and not text:
        raise user_error(f"Type the {what} first.")
    return text


def check_int(value: Any, what: str, low: int, high: int) -> int | None:
    """A whole number in [low, high], or None when empty; a clear error otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise user_error(f"The {what} must be a whole number from {low} to {high}.") from None
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise user_error(f"The {what} must be a whole number from {low} to {high} (got {value!r}).")
    return int(number)


def read_image_file(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An uploaded image -> (H, W, 3) uint8 RGB; its size is checked from the header before decoding."""
    from capture.images import ImageError, read_image_rgb

    try:
        return read_image_rgb(path, max_pixels, name=_shown_name(Path(path)))
    except ImageError as e:  # names only the file, never the server's upload folder
        raise user_error(f"{e}. Upload a JPEG or PNG photo.", e) from e


def audio_duration_s(path: Path) -> float | None:
    """The duration a file's header declares (soundfile, else ffprobe), or None if neither can tell."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, sf.LibsndfileError, TypeError):
        pass
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                             capture_output=True, text=True, timeout=FFPROBE_TIMEOUT_S, check=False)
        return float(json.loads(out.stdout or "{}").get("format", {}).get("duration"))
    except (OSError, subprocess.TimeoutExpired, ValueError, TypeError):
        return None


def read_audio_file(path: str | Path, max_s: float = MAX_AUDIO_S) -> np.ndarray:
    """An uploaded recording -> (N,) float32 16 kHz mono; its duration is checked before decoding."""
    from capture.audio import load_audio
    from capture.items import AUDIO_SAMPLE_RATE
    from capture.source import CaptureError

    path = Path(path)
    name = _shown_name(path)
    duration = audio_duration_s(path) if path.is_file() else None
    if duration is None:
        raise user_error(f"{name} could not be read as audio; upload a WAV, FLAC, MP3 or OGG recording.")
    if duration == 0:  # a well-formed header with no samples: not "unreadable"
        raise user_error(f"{name} holds no audio samples; record again.")
    if not math.isfinite(duration) or duration > max_s:
        raise user_error(f"{name} lasts {duration:.0f} s; recordings up to {max_s:.0f} s are transcribed here. "
                         "Cut it, or use `livelearner listen --file FILE` on your machine.")
    try:
        samples = load_audio(path)
    except (CaptureError, ValueError, OSError) as e:
        raise user_error(f"{name} could not be read as audio; upload a WAV, FLAC, MP3 or OGG recording.", e) from e
    if samples.size == 0:
        raise user_error(f"{name} holds no audio samples; record again.")
    if samples.size > max_s * AUDIO_SAMPLE_RATE * 1.01:  # the header undersold it
        raise user_error(f"{name} is longer than {max_s:.0f} s; cut it and upload again.")
    return samples


def _shown_name(path: Path) -> str:
    """The file's own name (never its folder: uploads live in the server's temporary folder)."""
    return clean_text(path.name, "file name", 10_000)[:80] or "the file"
