"""Which live connection belongs to which page: a token per page, naming that page's session states.

When a page loads, `open_page` gives it a fresh random token and files the page's WebcamState and
SpeakState (the same objects its gr.State holds, so the Train tab, Explain and Review see what the live
connection did) under it, with the login name the page was loaded with. The live WebSocket
(demos/live_transport.py) must present that token, from a connection logged in as the same user; a
token is never shown on the page and is forgotten when the page's session ends (gr.State's delete
callback) or when more than MAX_PAGES pages are open (the oldest is dropped).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_PAGES = 256  # open pages remembered per server; a teammate's 257th tab drops the oldest one
TOKEN_BYTES = 24


@dataclass
class LivePage:
    """One open page: its session states and who loaded it."""

    webcam: Any  # demos.tab_webcam.WebcamState
    speak: Any  # demos.tab_speak.SpeakState
    user: str | None  # Gradio login name (None without --auth)
    opened_s: float = field(default_factory=time.monotonic)
    connections: int = 0  # live connections open now


class LivePages:
    """token -> LivePage, bounded, thread-safe (page loads run in Gradio's workers, sockets in its loop)."""

    def __init__(self, max_pages: int = MAX_PAGES) -> None:
        self.max_pages = max_pages
        self._pages: OrderedDict[str, LivePage] = OrderedDict()
        self._lock = threading.Lock()

    def open_page(self, webcam: Any, speak: Any, user: str | None) -> str:
        """File a page's states; returns its token (also stored on both states as `live_token`)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            old = getattr(webcam, "live_token", None)
            if old:
                self._pages.pop(old, None)
            self._pages[token] = LivePage(webcam, speak, user)
            while len(self._pages) > self.max_pages:
                self._pages.popitem(last=False)
        webcam.live_token = speak.live_token = token
        return token

    def find(self, token: str | None, user: str | None) -> LivePage | None:
        """The page with this token, if it was opened by `user`; None otherwise."""
        if not token or len(token) > 4 * TOKEN_BYTES:
            return None
        with self._lock:
            page = self._pages.get(token)
        if page is None or page.user != user:
            return None
        return page

    def close_page(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._pages.pop(token, None)

    def __len__(self) -> int:
        return len(self._pages)
