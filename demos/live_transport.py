"""The live connection between a page and the models: a WebSocket on Gradio's own server (same origin, same
port, so a LAN address and a share link carry it like the page).

    ws(s)://HOST/livelearner/live?kind=video&token=T     numbered JPEG frames up, result data down
    ws(s)://HOST/livelearner/live?kind=audio&token=T     numbered PCM chunks up, transcript data down

Why a WebSocket and not Gradio's stream event: the stream event keeps only the newest pending chunk
while the handler is busy, which loses speech, and it sends an annotated image back for every frame.
Why not WebRTC: teammates reach the page through a share link, and WebRTC's media needs a TURN server
to cross their networks; a WebSocket goes wherever the page's own HTTPS goes. Measured before choosing:
see the commit and README.

Access, exactly as for the page: with --auth, the connection must carry the page's login cookie
(Gradio's own token), and a page token (demos/live_sessions.py) that the page got when it loaded
under that login; a server on localhost accepts only pages served from localhost (Gradio's CORS rule).
Anything else is refused before the connection opens and counted on the Monitor tab.

Video: at most one frame is processed per connection at a time and one waits; a newer frame replaces the
waiting one (answered with "skipped", so the page frees its slot). The page keeps at most
MAX_IN_FLIGHT frames unanswered, so frames go up at the rate the server keeps pace with. Frames of all
connections run in one thread pool; the shared classifier batches those that meet (models/batching.py).

Audio: every chunk is handed, in order, to the session's SpeechWorker (demos/tab_speak.live_audio);
nothing is dropped while decoding is busy. Each decode's result is sent back as it is ready.

Bounds: message size and content (capture/wire.py), frames per second, audio seconds per wall second
(a page cannot send faster than a microphone records, with slack for catching up after a stall), and
the speech backlog. A bad message gets {"type": "error", "message": ...} and the stream goes on.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from capture.wire import AudioMessage, FrameMessage, WireError, decode_frame, parse_binary, parse_text
from demos import tab_speak, tab_webcam
from demos.context import AppContext

LIVE_PATH = "/livelearner/live"
KINDS = ("video", "audio")
MAX_FRAMES_PER_S = 60  # frames accepted per connection per second; more are refused
AUDIO_RATE_SLACK = 1.5  # audio seconds accepted per wall second (a microphone sends 1.0)
AUDIO_BURST_S = 40.0  # plus this much: a page sends what it buffered (up to 30 s) after reconnecting
VIEW_EVERY_S = 1.0  # while recording, the transcript view is also sent this often (how far behind)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "[::1]", "::1")
REFUSED = 1008  # WebSocket close code "policy violation"


def routes(ctx: AppContext) -> list[Any]:
    """The live route, for Gradio's FastAPI app (demos/app.py passes it to launch)."""
    from starlette.routing import WebSocketRoute

    async def live(websocket: Any) -> None:
        await serve(ctx, websocket)

    return [WebSocketRoute(LIVE_PATH, live)]


def page_states(ctx: AppContext, webcam: Any, speak: Any, request: Any) -> Any:
    """This browser session's LivePage (its states and token), made by whichever of its events comes first."""
    def make() -> tuple[Any, Any]:
        return (webcam if isinstance(webcam, tab_webcam.WebcamState) else tab_webcam.WebcamState(),
                speak if isinstance(speak, tab_speak.SpeakState) else tab_speak.SpeakState())

    return ctx.live_pages.page_for(getattr(request, "session_hash", None), getattr(request, "username", None), make)


def open_page(ctx: AppContext, webcam: Any, speak: Any, task: str, person: str, mode: str, labels_text: str,
              commands_text: str, request: Any = None) -> tuple[Any, Any, dict, dict]:
    """A page loaded: its session states with the page's current choices, and its token for the two live
    components (never shown). request: the gr.Request (session and login)."""
    page = page_states(ctx, webcam, speak, request)
    tab_webcam.set_live_choice(ctx, page.webcam, task, person)
    tab_speak.set_live_choice(page.speak, mode, labels_text, commands_text, person)
    return page.webcam, page.speak, {"token": page.token}, {"token": page.token}


def webcam_choice(ctx: AppContext, webcam: Any, task: str, person: str, request: Any = None) -> Any:
    """The task menu or the name changed: the page's live camera uses them from its next frame."""
    return tab_webcam.set_live_choice(ctx, page_states(ctx, webcam, None, request).webcam, task, person)


def speak_choice(ctx: AppContext, speak: Any, mode: str, labels_text: str, commands_text: str, person: str,
                 request: Any = None) -> Any:
    """Mode, classes, commands or name changed: the page's live microphone uses them from its next chunk."""
    return tab_speak.set_live_choice(page_states(ctx, None, speak, request).speak, mode, labels_text, commands_text,
                                     person)


def open_script_session(ctx: AppContext, task: str, person: str = "", request: Any = None) -> str:
    """The `live_session` API endpoint: a token for a script (gradio_client and the like) to use the live
    connection as a page does, with its own session (its own face tracks and transcript)."""
    webcam = tab_webcam.set_live_choice(ctx, None, task or "emotion", person)
    speak = tab_speak.set_live_choice(None, "meaning", tab_speak.DEFAULT_LABELS, tab_speak.DEFAULT_COMMANDS, person)
    return ctx.live_pages.open_page(webcam, speak, getattr(request, "username", None))


def close_page(ctx: AppContext, state: Any) -> None:
    """A page's session ended (gr.State's delete callback): its token is forgotten."""
    ctx.live_pages.close_page(getattr(state, "live_token", None))


def login_of(websocket: Any) -> tuple[bool, str | None]:
    """(allowed, user) by the rules Gradio applies to the page: no auth -> allowed; with auth, the login
    cookie Gradio set must name a logged-in user."""
    app = websocket.scope.get("app")
    if getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None:
        return True, None
    cookie_id = getattr(app, "cookie_id", "")
    token = websocket.cookies.get(f"access-token-{cookie_id}") or websocket.cookies.get(f"access-token-unsecure-{cookie_id}")
    user = getattr(app, "tokens", {}).get(token)
    return user is not None, user


def origin_allowed(websocket: Any) -> bool:
    """A server on localhost talks only to pages from localhost (what Gradio's CORS middleware enforces
    for HTTP: a web page elsewhere must not drive a local app through its user's browser)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (gradio_client, a script): the login and token still apply
    host = (websocket.headers.get("host") or "").rsplit(":", 1)[0]
    origin_host = urlsplit(origin).hostname or ""
    return host not in LOCAL_HOSTS or origin_host in LOCAL_HOSTS or origin_host == "null"


async def serve(ctx: AppContext, websocket: Any) -> None:
    kind = websocket.query_params.get("kind")
    allowed, user = login_of(websocket)
    page = ctx.live_pages.find(websocket.query_params.get("token"), user) if allowed else None
    if kind not in KINDS or page is None or not origin_allowed(websocket):
        ctx.monitor.count("live/connections_refused")
        await websocket.close(code=REFUSED)  # before accepting: the handshake is refused (HTTP 403)
        return
    await websocket.accept()
    page.connections += 1
    link = VideoLink(ctx, websocket, page.webcam) if kind == "video" else AudioLink(ctx, websocket, page.speak)
    try:
        await link.run()
    finally:
        page.connections -= 1


class _Link:
    """One accepted connection: a receive loop, and sends serialised by a lock."""

    def __init__(self, ctx: AppContext, websocket: Any) -> None:
        self.ctx = ctx
        self.ws = websocket
        self._send_lock = asyncio.Lock()
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        async with self._send_lock:
            try:
                await self.ws.send_json(message)
            except Exception:  # the page went away mid-send
                self.closed = True

    async def error(self, text: str, seq: int | None = None, counter: str = "messages_refused") -> None:
        self.ctx.monitor.count(f"live/{counter}")
        await self.send({"type": "error", "message": text, "seq": seq})

    async def messages(self):
        """Yield ("bytes", data) / ("text", data) until the page disconnects."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.closed = True
                return
            if message.get("bytes") is not None:
                yield "bytes", message["bytes"]
            elif message.get("text") is not None:
                yield "text", message["text"]

    async def control(self, text: str) -> dict[str, Any] | None:
        try:
            control = parse_text(text)
        except WireError as e:
            await self.error(str(e))
            return None
        if control["type"] == "ping":
            await self.send({"type": "pong", "t": control.get("t")})
            return None
        return control

    def run_blocking(self, fn: Any, *args: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(self.ctx.live_workers, fn, *args)


class VideoLink(_Link):
    def __init__(self, ctx: AppContext, websocket: Any, state: Any) -> None:
        super().__init__(ctx, websocket)
        self.state = state
        self.waiting: FrameMessage | None = None
        self.wake = asyncio.Event()
        self.arrivals: deque[float] = deque()

    async def run(self) -> None:
        worker = asyncio.create_task(self._work())
        try:
            async for kind, data in self.messages():
                if kind == "text":
                    await self.control(data)
                    continue
                try:
                    frame = parse_binary(data, "frame")
                except WireError as e:
                    await self.error(str(e), counter="frames_refused")
                    continue
                if not self._within_rate():
                    await self.error(f"More than {MAX_FRAMES_PER_S} frames a second: frame {frame.seq} was refused.",
                                     frame.seq, "frames_refused")
                    continue
                self.ctx.monitor.count("live/frames_received")
                if self.waiting is not None:  # newest only: the older waiting frame is stale
                    self.ctx.monitor.count("live/frames_skipped")
                    await self.send({"type": "skipped", "seq": self.waiting.seq})
                self.waiting = frame
                self.wake.set()
        finally:
            worker.cancel()

    def _within_rate(self) -> bool:
        now = time.monotonic()
        while self.arrivals and now - self.arrivals[0] > 1.0:
            self.arrivals.popleft()
        if len(self.arrivals) >= MAX_FRAMES_PER_S:
            return False
        self.arrivals.append(now)
        return True

    async def _work(self) -> None:
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            frame, self.waiting = self.waiting, None
            if frame is None:
                continue
            try:
                result = await self.run_blocking(self._process, frame)
            except Exception as e:  # gr.Error (a bad frame, no model) or WireError: said on the page
                await self.error(getattr(e, "message", None) or str(e), frame.seq, "frames_refused")
                continue
            await self.send(result)

    def _process(self, frame: FrameMessage) -> dict[str, Any]:
        image = decode_frame(frame)
        return tab_webcam.live_frame(self.ctx, self.state, image, frame.seq, frame.t_capture_ms)


class AudioLink(_Link):
    def __init__(self, ctx: AppContext, websocket: Any, state: Any) -> None:
        super().__init__(ctx, websocket)
        self.state = state
        self.changed = asyncio.Event()
        self.started_s = time.monotonic()
        self.audio_s = 0.0  # audio accepted on this connection

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.state.notify = lambda: loop.call_soon_threadsafe(self.changed.set)
        sender = asyncio.create_task(self._send_views())
        try:
            async for kind, data in self.messages():
                if kind == "text":
                    control = await self.control(data)
                    if control is not None:
                        await self._recording(control["type"])
                    continue
                try:
                    chunk = parse_binary(data, "audio")
                except WireError as e:
                    await self.error(str(e), counter="audio_chunks_refused")
                    continue
                await self._chunk(chunk)
        finally:
            sender.cancel()
            self.state.notify = None

    async def _recording(self, what: str) -> None:
        if what == "start":
            await self.run_blocking(tab_speak.live_start, self.ctx, self.state)
            self.started_s, self.audio_s = time.monotonic(), 0.0
        else:  # stop: let Whisper catch up and commit the rest
            await self.run_blocking(tab_speak.finish, self.ctx, self.state)
            await self.send({**tab_speak.live_view(self.state), "final": True})

    async def _chunk(self, chunk: AudioMessage) -> None:
        seconds = len(chunk.samples) / chunk.sample_rate
        allowed_s = (time.monotonic() - self.started_s) * AUDIO_RATE_SLACK + AUDIO_BURST_S
        if self.audio_s + seconds > allowed_s:
            await self.error(f"Audio arrives faster than a microphone records: chunk {chunk.seq} was refused.",
                             chunk.seq, "audio_chunks_refused")
            return
        try:
            await self.run_blocking(tab_speak.live_audio, self.ctx, self.state, chunk.seq, chunk.sample_rate,
                                    chunk.samples)
        except Exception as e:  # gr.Error: a late chunk, recognition too far behind, a stopped worker
            await self.error(getattr(e, "message", None) or str(e), chunk.seq, "audio_chunks_refused")
            return
        self.audio_s += seconds

    async def _send_views(self) -> None:
        while not self.closed:
            try:
                await asyncio.wait_for(self.changed.wait(), VIEW_EVERY_S)
            except asyncio.TimeoutError:
                if self.state.worker is None:
                    continue  # not recording: nothing changes
            self.changed.clear()
            await self.send(tab_speak.live_view(self.state))

