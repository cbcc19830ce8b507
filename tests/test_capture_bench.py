"""bench.capture runs on generated media and ends with its JSON line; memory does not grow."""
from __future__ import annotations

import json

import pytest

from bench import capture as bench_capture


@pytest.mark.slow
def test_bench_capture_quick_on_generated_media(capsys):
    assert bench_capture.main(["--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["rss_ok"] is True and figures["replay_dropped"] == 0
    assert 0 < figures["video_overhead_per_frame_ms"] < 5
    assert 0 < figures["mic_callback_per_block_us"] < 1000  # far below the 32 ms a block lasts
    assert figures["replay_media_s"] == 60.0 and figures["vad_backend"] == "silero"
    assert any("capture overhead" in line for line in lines[:-1])
