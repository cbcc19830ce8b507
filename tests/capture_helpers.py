"""Small real media and thread checks shared by the capture tests."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

FPS = 30


def write_video(path: Path, frames: int = 45, fps: int = FPS, size: tuple[int, int] = (64, 48)) -> Path:
    """An mp4 whose frame i is red on the left (BGR 0,0,255) with a brightness bar encoding i."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(frames):
        img = np.zeros((height, width, 3), np.uint8)
        img[:, : width // 2] = (0, 0, 255)  # red in BGR
        img[:, width // 2 :] = min(255, i * 5)
        writer.write(img)
    writer.release()
    return path


def capture_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("capture-") or t.name.startswith("fake-")}


def wait_no_capture_threads(before: set[threading.Thread], timeout_s: float = 3.0) -> set[threading.Thread]:
    """Threads started since `before` still alive after `timeout_s` (empty set = no leak)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leaked = capture_threads() - before
        if not leaked:
            return set()
        time.sleep(0.02)
    return capture_threads() - before
