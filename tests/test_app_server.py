"""`livelearner app` as users meet it: password rules, share-link failure, bad uploads, kill -9.

The server runs as a real subprocess; a teammate is a gradio_client with the printed password.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from demos.cli import UserFacingError
from demos.cli_app import needs_password, parse_auth

pytestmark = pytest.mark.slow
STARTUP_S = 120


def test_password_rules():
    assert not needs_password("127.0.0.1", False) and not needs_password("localhost", False)
    assert needs_password("0.0.0.0", False) and needs_password("127.0.0.1", True)
    assert parse_auth("team:s3cret") == ("team", "s3cret")
    for bad in ("team", ":pw", "team:"):
        with pytest.raises(UserFacingError, match="USER:PASSWORD"):
            parse_auth(bad)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str]) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "demos", "app", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + STARTUP_S
    while not any("Press Ctrl+C" in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the app did not come up:\n" + "".join(lines))
        time.sleep(0.2)
    return proc, lines


def test_share_without_internet_bad_uploads_and_kill_9(tmp_path):
    from gradio_client import Client, handle_file

    data_dir = tmp_path / "app"
    port = free_port()
    proc, lines = start_app(["--share", "--port", str(port), "--data-dir", str(data_dir), "--max-file-size", "1mb",
                             "--accept-at", "1.0", "--no-preload"])
    try:
        out = "".join(lines)
        user = re.search(r"user: (\S+)", out).group(1)
        password = re.search(r"password: (\S+)", out).group(1)
        assert "Could not create a share link" in out and "--host 0.0.0.0" in out  # no internet here
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception):
            Client(url, verbose=False)  # no password, no page
        client = Client(url, auth=(user, password), verbose=False, download_files=False)

        # bad input: a text file as a photo, a file over the upload limit; the server keeps answering
        notes = tmp_path / "notes.jpg"
        notes.write_text("not an image")
        with pytest.raises(Exception, match="not a readable image"):
            client.predict(handle_file(str(notes)), "emotion", "ana", api_name="/photo")
        huge = tmp_path / "huge.png"
        huge.write_bytes(b"\x89PNG" + os.urandom(2 * 2**20))
        with pytest.raises(Exception):
            client.predict(handle_file(str(huge)), "emotion", "ana", api_name="/photo")

        # work that must survive: samples (acknowledged one by one) and review items from frames
        acknowledged = []
        for i in range(6):
            msg = client.predict(f"{1 + i % 5},2,3,4,5,4,3,2", "outgoing" if i % 2 else "reserved", "ana",
                                 api_name="/questions_save")
            acknowledged.append(re.search(r"Saved sample (\w+)", msg).group(1))
        face = tmp_path / "face.jpg"
        cv2.imwrite(str(face), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        _, probs, info, *_ = client.predict(handle_file(str(face)), api_name="/webcam_frame")
        assert "happy" in info  # --accept-at 1.0: routed to review
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown
        proc.wait()

    from demos.review import ReviewQueue
    from train.samples import SampleStore

    store = SampleStore(data_dir / "samples")
    for sample_id in acknowledged:
        assert store.get(sample_id).kind == "tabular"
    review = ReviewQueue(data_dir / "review")
    items = review.pending(task="emotion")
    assert items and items[0].load_input().shape == (224, 224, 3)
