"""`livelearner capture` on files, headless, and its error for a missing camera."""
from __future__ import annotations

import re

from demos.cli import main
from capture_helpers import write_video


def test_video_preview_headless_prints_fps_and_drops(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = write_video(tmp_path / "clip.mp4", frames=45)
    assert main(["capture", "--video", str(video), "--seconds", "1.2"]) == 0
    out = capsys.readouterr().out
    assert "No display found" in out
    fps = [float(x) for x in re.findall(r"([\d.]+)/s captured", out)]
    assert fps and abs(fps[0] - 30) < 3 and "dropped=0" in out


def test_audio_meter_on_a_file(spoken, capsys):
    assert main(["capture", "--audio", str(spoken("level check")), "--fast"]) == 0
    out = capsys.readouterr().out
    levels = [float(x) for x in re.findall(r"(-?[\d.]+) dBFS", out)]
    assert levels and max(levels) > -30 and min(levels) < -50  # speech and espeak's silent tail
    assert "done:" in out and "#" in out


def test_missing_camera_is_a_clean_error(capsys):
    assert main(["capture", "--video", "7"]) == 1
    assert "No camera at index 7" in capsys.readouterr().err
