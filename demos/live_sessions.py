"""Which live connection belongs to which page: a token per page, naming that page's session states.

A page's first event (its load, or a control changed before the load was answered: both can arrive in
either order on a busy server) files the page's WebcamState and SpeakState under its Gradio session,
with a fresh random token and the login name; every later event of that session gets the same objects
(so the Train tab, Explain, Review and the live connection all see one state). The live WebSocket
(demos/live_transport.py) must present the token, from a connection logged in as the same user; a
token is never shown on the page and is forgotten when the page's session ends (gr.State's delete
callback) or when more than MAX_PAGES pages are open (the oldest is dropped).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_PAGES = 256  # open pages remembered per server; a teammate's 257th tab drops the oldest one
TOKEN_BYTES = 24


@dataclass
class LivePage:
    """One open page: its session states and who loaded it."""

    webcam: Any  # demos.tab_webcam.WebcamState
    speak: Any  # demos.tab_speak.SpeakState
    user: str | None  # Gradio login name (None without --auth)
    token: str = ""
    session: str | None = None  # Gradio's session hash (None: a script's session, see open_page)
    opened_s: float = field(default_factory=time.monotonic)
    connections: int = 0  # live connections open now


class LivePages:
    """token -> LivePage, bounded, thread-safe (page loads run in Gradio's workers, sockets in its loop)."""

    def __init__(self, max_pages: int = MAX_PAGES) -> None:
        self.max_pages = max_pages
        self._pages: OrderedDict[str, LivePage] = OrderedDict()
        self._by_session: dict[str, str] = {}  # Gradio session hash -> token
        self._lock = threading.Lock()

    def page_for(self, session: str | None, user: str | None, make: Callable[[], tuple[Any, Any]]) -> LivePage:
        """The page of this Gradio session, filed on first use with the states `make()` returns."""
        with self._lock:
            token = self._by_session.get(session) if session else None
            if token in self._pages and self._pages[token].user == user:
                return self._pages[token]
            webcam, speak = make()
            token = secrets.token_urlsafe(TOKEN_BYTES)
            page = LivePage(webcam, speak, user, token, session)
            self._pages[token] = page
            if session:
                self._by_session[session] = token
            while len(self._pages) > self.max_pages:
                _, old = self._pages.popitem(last=False)
                self._by_session.pop(old.session, None)
        webcam.live_token = speak.live_token = token
        return page

    def open_page(self, webcam: Any, speak: Any, user: str | None) -> str:
        """File states that belong to no page session (a script's); returns their token."""
        return self.page_for(None, user, lambda: (webcam, speak)).token

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
                page = self._pages.pop(token, None)
                if page is not None and page.session:
                    self._by_session.pop(page.session, None)

    def __len__(self) -> int:
        return len(self._pages)
