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
