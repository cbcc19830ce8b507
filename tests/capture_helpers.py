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


class MjpegServer:
    """A live MJPEG stream over HTTP (like an IP camera or phone-camera app) on 127.0.0.1, at `fps`."""

    def __init__(self, fps: float = 30.0, port: int = 0):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not server.stopping:
                        img = np.zeros((48, 64, 3), np.uint8)
                        img[:, :32] = (0, 0, 255)  # red in BGR
                        img[:, 32:] = server.sent % 256
                        jpg = cv2.imencode(".jpg", img)[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpg) + jpg + b"\r\n")
                        server.sent += 1
                        time.sleep(1 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.stopping = False
        self.sent = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-mjpeg-server", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)
