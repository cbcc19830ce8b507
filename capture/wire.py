"""The live page's wire format: what the browser sends over the live WebSocket, parsed and bounded.

Every binary message is one media item with a small JSON header in front:

    [4 bytes: header length N, big-endian uint32][N bytes: UTF-8 JSON header][payload bytes]

    {"type": "frame", "seq": 12, "t_capture_ms": 5321.4, "width": 480, "height": 360}   + JPEG bytes
    {"type": "audio", "seq": 40, "sample_rate": 48000, "t_capture_ms": 5330.0}           + int16 LE PCM

Text messages are JSON control messages: {"type": "start"} / {"type": "stop"} (a recording starts or
ends), {"type": "ping"}. `seq` counts the items of one stream from 0, in capture order, so the server
can tell a missing item (a gap) from a late or repeated one. `t_capture_ms` is the page's own clock
(performance.now()); the server never compares it with its own, it only echoes it back, so the page
can measure capture-to-display latency.

Everything is bounded before it is used: message size, header size, the image's declared pixel count
(read from the JPEG header before decoding) and an audio chunk's duration. A message that breaks a
rule raises `WireError` with a sentence for the page; the connection and the stream go on.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from capture.source import CaptureError

HEADER_PREFIX_BYTES = 4  # big-endian uint32 header length
MAX_HEADER_BYTES = 2_048
MAX_FRAME_BYTES = 2_000_000  # one JPEG frame (a 640x480 webcam frame at quality 0.8 is ~60 KB)
MAX_FRAME_PIXELS = 1920 * 1080  # the page sends at most 640 px wide; more is refused, not decoded
MAX_AUDIO_CHUNK_S = 1.0  # the page sends ~0.1 s chunks
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MAX_TEXT_BYTES = 4_096  # a control message
MAX_SEQ = 2**31 - 1
KINDS = ("frame", "audio")
CONTROLS = ("start", "stop", "ping")


class WireError(CaptureError):
    """A message the server cannot use; the text says what was wrong and is shown on the page."""


@dataclass(frozen=True)
class FrameMessage:
    seq: int
    t_capture_ms: float  # the page's clock, echoed back
    jpeg: bytes


@dataclass(frozen=True)
class AudioMessage:
    seq: int
    t_capture_ms: float
    sample_rate: int
    samples: np.ndarray  # (N,) int16 mono at sample_rate


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    """The binary message the page's script builds (tests and benchmarks use it as the page does)."""
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + payload


def parse_binary(message: bytes, expect: str) -> FrameMessage | AudioMessage:
    """One binary WebSocket message -> FrameMessage or AudioMessage; WireError when it breaks a rule.

    expect: "frame" or "audio", the kind of stream this connection carries.
    """
    limit = MAX_FRAME_BYTES if expect == "frame" else _max_audio_bytes()
    if len(message) > limit + MAX_HEADER_BYTES + HEADER_PREFIX_BYTES:
        raise WireError(f"A {expect} message of {len(message) / 1e6:.1f} MB was refused (limit {limit / 1e6:.1f} MB); "
                        "reload the page: its script sends far smaller ones.")
    if len(message) < HEADER_PREFIX_BYTES:
        raise WireError("A message too short to hold a header was ignored; reload the page.")
    (n,) = struct.unpack(">I", message[:HEADER_PREFIX_BYTES])
    if n > MAX_HEADER_BYTES or HEADER_PREFIX_BYTES + n > len(message):
        raise WireError("A message with a malformed header was ignored; reload the page.")
    try:
        header = json.loads(message[HEADER_PREFIX_BYTES:HEADER_PREFIX_BYTES + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError("A message whose header is not JSON was ignored; reload the page.") from e
    if not isinstance(header, dict) or header.get("type") != expect:
        got = header.get("type") if isinstance(header, dict) else type(header).__name__
        raise WireError(f"This connection carries {expect} messages; a {str(got)[:20]!r} message was ignored.")
    payload = message[HEADER_PREFIX_BYTES + n:]
    seq = _int(header, "seq", 0, MAX_SEQ)
    t_ms = _number(header, "t_capture_ms")
    if expect == "frame":
        if not payload:
            raise WireError(f"Frame {seq} held no image; it was skipped.")
        return FrameMessage(seq, t_ms, payload)
    rate = _int(header, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    if len(payload) % 2:
        raise WireError(f"Audio chunk {seq} is not whole 16-bit samples ({len(payload)} bytes); it was ignored.")
    if len(payload) / 2 / rate > MAX_AUDIO_CHUNK_S:
        raise WireError(f"Audio chunk {seq} holds {len(payload) / 2 / rate:.1f} s (at most {MAX_AUDIO_CHUNK_S:.0f} s "
                        "per chunk); it was refused. Reload the page.")
    return AudioMessage(seq, t_ms, rate, np.frombuffer(payload, dtype="<i2"))


def parse_text(message: str) -> dict[str, Any]:
    """A JSON control message -> dict with a known "type"; WireError otherwise."""
    if len(message) > MAX_TEXT_BYTES:
        raise WireError("A control message over 4 KB was ignored.")
    try:
        control = json.loads(message)
    except json.JSONDecodeError as e:
        raise WireError("A control message that is not JSON was ignored.") from e
    if not isinstance(control, dict) or control.get("type") not in CONTROLS:
        raise WireError(f"Unknown control message ignored (expected type {', '.join(CONTROLS)}).")
    return control


def decode_frame(frame: FrameMessage) -> np.ndarray:
    """The frame's JPEG -> (H, W, 3) uint8 RGB, its pixel count checked from the header first."""
    from capture.images import ImageError, read_image_rgb

    try:
        return read_image_rgb(frame.jpeg, max_pixels=MAX_FRAME_PIXELS, name=f"frame {frame.seq}")
    except ImageError as e:
        raise WireError(f"{e}; it was skipped.") from e


def _max_audio_bytes() -> int:
    return int(MAX_AUDIO_CHUNK_S * MAX_SAMPLE_RATE * 2)


def _int(header: dict, key: str, low: int, high: int) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WireError(f"A message with a bad {key!r} ({str(value)[:20]}) was ignored; expected a whole number "
                        f"from {low} to {high}.")
    return value


def _number(header: dict, key: str) -> float:
    value = header.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise WireError(f"A message with a bad {key!r} was ignored.")
    return float(value)
