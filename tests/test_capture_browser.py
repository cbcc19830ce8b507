"""Gradio streaming payloads become the same VideoFrame / AudioChunk items as local sources."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from capture import CaptureError, load_audio, resample
from capture.browser import BrowserAudio, BrowserVideo

SR = 16_000


def test_webcam_images_of_every_shape_become_rgb_frames():
    video = BrowserVideo()
    rgb = data.astronaut()  # (512, 512, 3) uint8 RGB, what gr.Image(type="numpy") sends
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    grey = data.camera()
    as_float = rgb.astype(np.float32) / 255.0
    frames = [video.push(x) for x in (rgb, rgba, grey, as_float)]
    assert video.push(None) is None
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert all(f.image.shape[2] == 3 and f.image.dtype == np.uint8 for f in frames)
    assert np.array_equal(frames[0].image, rgb) and np.array_equal(frames[1].image, rgb)
    assert np.abs(frames[3].image.astype(int) - rgb).max() <= 1
    assert np.array_equal(frames[2].image[..., 1], grey)
    assert all(b.timestamp_s >= a.timestamp_s for a, b in zip(frames, frames[1:]))
    with pytest.raises(CaptureError, match="expected \\(height, width, 3\\)"):
        video.push(np.zeros((4, 4, 7), np.uint8))


def test_browser_microphone_chunks_become_contiguous_16k_audio(spoken):
    speech = load_audio(spoken("hello from the browser"))
    at_48k = resample(speech, SR, 48_000)
    pcm = np.round(np.clip(at_48k, -1, 1) * 32767).astype(np.int16)
    stereo = np.stack([pcm, pcm], axis=1)  # (N, 2) int16, as gradio hands a stereo mic
    audio = BrowserAudio()
    chunks = []
    for i in range(0, len(stereo), 4800):  # 0.1 s events
        chunk = audio.push((48_000, stereo[i : i + 4800]))
        if chunk is not None:
            chunks.append(chunk)
    assert audio.push((48_000, np.zeros(0, np.int16))) is None
    last = audio.flush()
    chunks += [last] if last is not None else []
    assert all(c.sample_rate == SR for c in chunks)
    assert all(b.start_s == pytest.approx(a.end_s) for a, b in zip(chunks, chunks[1:]))
    out = np.concatenate([c.samples for c in chunks])
    assert len(out) == pytest.approx(len(speech), abs=2)
    assert np.abs(out - resample(pcm.astype(np.float32) / 32768, 48_000, SR)).max() < 1e-4


def test_browser_audio_rejects_nan_and_malformed_payloads():
    audio = BrowserAudio()
    with pytest.raises(CaptureError, match="NaN"):
        audio.push((48_000, np.full(480, np.nan, np.float32)))
    with pytest.raises(CaptureError, match="sample_rate, samples"):
        audio.push(np.zeros(10))


def test_numbered_chunks_detect_gaps_and_refuse_late_ones():
    """The page numbers every 0.1 s chunk: a missing number is a gap (counted; the run before it is flushed and
    the audio after it starts a new stream at 0), a number already passed is refused without changing anything."""
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(48_000) * 3000).astype(np.int16)  # 1 s at 48 kHz
    chunks = [pcm[i:i + 4800] for i in range(0, len(pcm), 4800)]  # seq 0..9
    audio = BrowserAudio()
    out = []
    for seq in (0, 1, 2, 3):
        arrival = audio.push_numbered(seq, 48_000, chunks[seq])
        assert not arrival.gap and arrival.before_gap is None
        out += [arrival.chunk] if arrival.chunk is not None else []
    with pytest.raises(CaptureError, match="late or repeated"):
        audio.push_numbered(2, 48_000, chunks[2])
    arrival = audio.push_numbered(7, 48_000, chunks[7])  # 4, 5, 6 never arrived
    assert arrival.gap and arrival.lost_chunks == 3
    run = out + [arrival.before_gap]
    assert run[0].start_s == 0.0 and all(b.start_s == pytest.approx(a.end_s) for a, b in zip(run, run[1:]))
    assert sum(len(c.samples) for c in run) == pytest.approx(4 * 1600, abs=2)  # all of 0-3, nothing invented
    assert arrival.chunk.start_s == 0.0  # after the gap: a new stream, not stitched on at 0.4 s
    for seq in (8, 9):
        assert not audio.push_numbered(seq, 48_000, chunks[seq]).gap
    assert (audio.received_chunks, audio.lost_chunks, audio.gaps, audio.refused) == (7, 3, 1, 1)
    assert audio.received_s == pytest.approx(0.7)
    audio.reset()  # a new recording numbers from 0 again; the session's counts stay
    assert not audio.push_numbered(0, 48_000, chunks[0]).gap and audio.lost_chunks == 3


def test_wire_messages_are_parsed_and_bounded():
    from capture.wire import MAX_FRAME_PIXELS, AudioMessage, FrameMessage, WireError, decode_frame, pack, \
        parse_binary, parse_text

    pcm = np.arange(-800, 800, dtype=np.int16)
    audio = parse_binary(pack({"type": "audio", "seq": 5, "sample_rate": 16000, "t_capture_ms": 1.5}, pcm.tobytes()), "audio")
    assert isinstance(audio, AudioMessage) and audio.seq == 5 and np.array_equal(audio.samples, pcm)
    import cv2

    ok, jpg = cv2.imencode(".jpg", data.astronaut()[..., ::-1])
    frame = parse_binary(pack({"type": "frame", "seq": 0, "t_capture_ms": 3}, jpg.tobytes()), "frame")
    assert isinstance(frame, FrameMessage) and decode_frame(frame).shape == (512, 512, 3)
    big = np.zeros((1100, 2000, 3), np.uint8)  # over MAX_FRAME_PIXELS: refused from the header, not decoded
    assert 1100 * 2000 > MAX_FRAME_PIXELS
    ok, big_jpg = cv2.imencode(".jpg", big)
    with pytest.raises(WireError, match="megapixels"):
        decode_frame(parse_binary(pack({"type": "frame", "seq": 1, "t_capture_ms": 0}, big_jpg.tobytes()), "frame"))
    for header, payload, words in [
        ({"type": "audio", "seq": 1, "sample_rate": 16000}, b"\x00" * 40_000, "at most 1 s"),
        ({"type": "audio", "seq": 1, "sample_rate": 100}, b"\x00\x00", "sample_rate"),
        ({"type": "audio", "seq": True, "sample_rate": 16000}, b"\x00\x00", "seq"),
        ({"type": "audio", "seq": 1, "sample_rate": 16000, "t_capture_ms": "soon"}, b"", "t_capture_ms"),
    ]:
        with pytest.raises(WireError, match=words):
            parse_binary(pack(header, payload), "audio")
    assert parse_text('{"type": "stop"}') == {"type": "stop"}
    with pytest.raises(WireError, match="Unknown control"):
        parse_text('{"type": "rm -rf"}')
