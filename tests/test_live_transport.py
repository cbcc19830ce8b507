"""The live WebSocket on a real running app: who may connect, and what a bad message gets.

A script client (websockets) plays the page: it gets a page token the way a loaded page does
(LivePages.open_page), logs in through Gradio's own /login when the app has --auth, and sends the
page's binary messages (capture/wire.py).
"""
from __future__ import annotations

import json
import socket
import struct
import time
import urllib.parse
import urllib.request

import cv2
import numpy as np
import pytest
from skimage import data
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from capture.wire import pack
from demos import tab_speak, tab_webcam

pytestmark = pytest.mark.slow  # starts the app and loads the emotion model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from demos.app import build_demo
    from demos.context import AppSettings

    settings = AppSettings(data_dir=tmp_path_factory.mktemp("app"), preload=())
    demo = build_demo(settings)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                auth=[("ana", "secret"), ("bob", "other")], run_history=False)
    yield port, demo.livelearner_context
    demo.close()


def login(port: int, user: str, password: str) -> str:
    """Gradio's /login -> the Cookie header a logged-in page sends."""
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/login", data=body)) as r:
        cookies = [c.split(";")[0] for c in r.headers.get_all("set-cookie")]
    return "; ".join(cookies)


def page_token(ctx, user: str | None) -> tuple[str, tab_webcam.WebcamState, tab_speak.SpeakState]:
    webcam, speak = tab_webcam.WebcamState(), tab_speak.SpeakState()
    return ctx.live_pages.open_page(webcam, speak, user), webcam, speak


def url(port: int, kind: str, token: str) -> str:
    return f"ws://127.0.0.1:{port}/livelearner/live?" + urllib.parse.urlencode({"kind": kind, "token": token})


def jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes()


def receive(ws, kind: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] == kind:
            return message


def test_connections_without_the_pages_login_or_token_are_refused(app):
    port, ctx = app
    token, *_ = page_token(ctx, "ana")
    refused_before = ctx.monitor.counts().get("live/connections_refused", 0)
    cookie = login(port, "ana", "secret")
    attempts = [
        dict(uri=url(port, "video", token)),  # no login cookie
        dict(uri=url(port, "video", "made-up-token"), additional_headers={"Cookie": cookie}),  # not a page's token
        dict(uri=url(port, "video", token), additional_headers={"Cookie": login(port, "bob", "other")}),  # bob's login
        dict(uri=url(port, "teleport", token), additional_headers={"Cookie": cookie}),  # no such stream
        dict(uri=url(port, "video", token), additional_headers={"Cookie": cookie, "Origin": "http://evil.example"}),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidStatus) as e:
            connect(**attempt, open_timeout=10).close()
        assert e.value.response.status_code == 403, attempt
    assert ctx.monitor.counts()["live/connections_refused"] - refused_before == len(attempts)
    # the page's own login and token: accepted
    with connect(url(port, "video", token), additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "ping", "t": 1}))
        assert receive(ws, "pong")["t"] == 1
    ctx.live_pages.close_page(token)  # a closed page's token is refused from then on
    with pytest.raises(InvalidStatus):
        connect(url(port, "video", token), additional_headers={"Cookie": cookie}, open_timeout=10).close()


def test_bad_messages_get_a_clear_error_and_the_stream_goes_on(app):
    port, ctx = app
    token, webcam, _ = page_token(ctx, "ana")
    cookie = login(port, "ana", "secret")
    face = data.astronaut()
    with connect(url(port, "video", token), additional_headers={"Cookie": cookie}, open_timeout=10,
                 max_size=2**20) as ws:
        bad = [
            (b"\x00\x01", "too short"),
            (struct.pack(">I", 50_000) + b"{}", "malformed header"),
            (struct.pack(">I", 5) + b"nope!" + b"x", "not JSON"),
            (pack({"type": "audio", "seq": 0, "sample_rate": 16000}, b"\x00\x00"), "carries frame messages"),
            (pack({"type": "frame", "seq": -4, "t_capture_ms": 0}, jpeg(face)), "bad 'seq'"),
            (pack({"type": "frame", "seq": 1, "t_capture_ms": 0}, b"not a jpeg at all"), "not a readable image"),
            (pack({"type": "frame", "seq": 2, "t_capture_ms": 0}, b"\xff" * 3_000_000), "refused"),
        ]
        for message, words in bad:
            ws.send(message)
            error = receive(ws, "error")
            assert words in error["message"], (words, error)
        ws.send("{not json")
        assert "not JSON" in receive(ws, "error")["message"]
        # the same connection still answers a good frame with data, not an image
        ws.send(pack({"type": "frame", "seq": 3, "t_capture_ms": 123.5}, jpeg(face)))
        result = receive(ws, "result")
        assert result["seq"] == 3 and result["t_capture_ms"] == 123.5
        assert [p["label"] for p in result["predictions"]] == ["happy"]
    assert webcam.last_predictions and webcam.last_predictions[0].label == "happy"  # what Train/Explain read


def test_audio_out_of_order_and_gaps_are_told_and_counted(app, spoken):
    import soundfile

    port, ctx = app
    token, _, speak = page_token(ctx, "ana")
    cookie = login(port, "ana", "secret")
    samples, rate = soundfile.read(spoken("Hello there."), dtype="int16")
    chunks = [samples[i:i + rate // 10] for i in range(0, len(samples), rate // 10)]
    with connect(url(port, "audio", token), additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start"}))
        for seq in (0, 1, 2):
            ws.send(pack({"type": "audio", "seq": seq, "sample_rate": rate, "t_capture_ms": 0}, chunks[seq].tobytes()))
        ws.send(pack({"type": "audio", "seq": 1, "sample_rate": rate, "t_capture_ms": 0}, chunks[1].tobytes()))
        assert "late or repeated" in receive(ws, "error")["message"]
        ws.send(pack({"type": "audio", "seq": 2, "sample_rate": rate, "t_capture_ms": 0}, b"\x00"))  # half a sample
        assert "whole 16-bit samples" in receive(ws, "error")["message"]
        for seq in range(6, len(chunks)):  # 3, 4, 5 never arrive
            ws.send(pack({"type": "audio", "seq": seq, "sample_rate": rate, "t_capture_ms": 0}, chunks[seq].tobytes()))
        ws.send(json.dumps({"type": "stop"}))
        final = receive(ws, "speech")
        while not final.get("final"):
            final = receive(ws, "speech")
    assert final["chunks_lost"] == 3 and final["gaps"] == 1
    assert final["chunks_received"] == len(chunks) - 3
    assert final["received_s"] == pytest.approx((len(samples) - 3 * (rate // 10)) / rate, abs=0.01)


def test_a_script_gets_its_own_live_session_under_its_login(app):
    """gradio_client's `live_session` endpoint: a token bound to the script's login, usable only with it."""
    from gradio_client import Client

    port, ctx = app
    token = Client(f"http://127.0.0.1:{port}/", auth=("ana", "secret"), verbose=False).predict(
        "emotion", "script", api_name="/live_session")
    with connect(url(port, "video", token), additional_headers={"Cookie": login(port, "ana", "secret")},
                 open_timeout=10) as ws:
        ws.send(pack({"type": "frame", "seq": 0, "t_capture_ms": 1.0}, jpeg(data.astronaut())))
        assert [p["label"] for p in receive(ws, "result")["predictions"]] == ["happy"]
    with pytest.raises(InvalidStatus):  # bob cannot use ana's session
        connect(url(port, "video", token), additional_headers={"Cookie": login(port, "bob", "other")},
                open_timeout=10).close()
