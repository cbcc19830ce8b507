"""`livelearner watch` headless on a generated video: an annotated video comes out, fps is printed."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "astronaut.mp4"
    frame = cv2.cvtColor(cv2.resize(skimage_data.astronaut(), (640, 480)), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for i in range(24):
        writer.write(np.roll(frame, 3 * i, axis=1))
    writer.release()
    return path


def test_watch_writes_an_annotated_video_and_prints_fps(astronaut_clip, tmp_path, capsys, monkeypatch):
    from demos.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "annotated.mp4"
    assert main(["watch", "--source", str(astronaut_clip), "--task", "emotion", "--fast", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fps" in text and "latency median" in text and "24 frames processed, 0 dropped" in text
    cap = cv2.VideoCapture(str(out))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    cap.release()
    assert ok and frames == 24
    # the overlay is there: an accept-green box line around the face region
    green = (first[..., 1].astype(int) - first[..., 2]) > 120
    assert green[40:200, 250:420].sum() > 100


def test_watch_explains_bad_tasks_and_sources(astronaut_clip, tmp_path, capsys):
    from demos.cli import main

    corrupt = tmp_path / "broken.pkl"
    corrupt.write_bytes(b"nope" * 100)
    assert main(["watch", "--source", str(astronaut_clip), "--task", str(corrupt), "--no-window"]) == 1
    assert "can run code when loaded" in capsys.readouterr().err  # refused unread: not called broken
    assert main(["watch", "--source", str(astronaut_clip), "--task", str(corrupt), "--no-window",
                 "--trust-pickle"]) == 1
    assert "export the learner again" in capsys.readouterr().err
    assert main(["watch", "--source", str(astronaut_clip), "--task", "poetry", "--no-window"]) == 1
    assert "unknown task" in capsys.readouterr().err
    assert main(["watch", "--source", str(tmp_path / "missing.mp4"), "--no-window"]) == 1
    assert capsys.readouterr().err.strip()
