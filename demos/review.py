"""The human-in-the-loop review queue: uncertain predictions wait here for a teammate.

A prediction the model routed to review (`Prediction.decision`, taken once by
`models.prediction.make_prediction`: a top-class probability in the review band, or a pipeline's
own reason such as a hand partly outside the frame) is saved together with its input and the
reason it was queued. The queue never re-decides: what the page draws as "review" is what is
queued, and an abstention (e.g. a hallucinated transcript) never is. A reviewer confirms the
predicted label or corrects it; every resolution is attributed to the reviewer, and a resolved
item becomes a labelled training sample (through a callback the app wires to `train.samples`).
Each item records the person in its input, so a teammate can see their own queue
(`pending(person=...)`) while a reviewer sees everyone's (`pending()`).

Durability: SQLite in WAL mode with `synchronous=FULL`; the input file is written atomically
(temp file, fsync, rename) *before* the row that points at it is committed, so a crash at any
point leaves either no item or a complete one. A resolved item records the id of the sample it
became; items resolved but not yet turned into samples (a crash between the two stores) are
picked up again by `sync_samples`.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.prediction import Decision, Prediction, RoutingPolicy
from train.samples import atomic_write_bytes

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,               -- 'emotion', 'sign', 'text', 'tabular', a team model name
    kind TEXT NOT NULL,               -- input kind: 'image', 'audio', 'text', 'json'
    input_path TEXT,                  -- file under media/ (images, audio); NULL for text/json
    input_text TEXT,                  -- text or JSON input inline
    predicted TEXT NOT NULL,
    confidence REAL NOT NULL,
    prediction_json TEXT NOT NULL,    -- Prediction.to_dict()
    person TEXT,                      -- who is in the input (for grouped splits later)
    session TEXT,                     -- browser session that produced it
    created_s REAL NOT NULL,          -- wall clock (time.time())
    status TEXT NOT NULL DEFAULT 'pending',   -- 'pending' | 'confirmed' | 'corrected' | 'skipped'
    label TEXT,                       -- final label given by the reviewer
    reviewer TEXT,
    resolved_s REAL,
    sample_id TEXT,                   -- id in the sample store once turned into a training sample
    reason TEXT                       -- why it was queued (Prediction.reason)
);
CREATE INDEX IF NOT EXISTS items_status ON items(status, created_s);
"""
MIGRATIONS = (("reason", "ALTER TABLE items ADD COLUMN reason TEXT"),)  # columns added since the first version

PENDING = "pending"
RATE_LIMIT_KEYS = 1000  # (session, task, track) keys remembered before expired ones are pruned
RESOLVED_STATES = ("confirmed", "corrected")


@dataclass(frozen=True)
class ReviewSettings:
    # The app's routing policy (`--accept-at`): the pipelines make their Predictions with `policy`,
    # so the same thresholds decide what is drawn and what is queued.
    accept_at: float = 0.9  # top-class probability at or above which a prediction is auto-accepted
    abstain_below: float | None = None  # below this nobody can say (None: RoutingPolicy default)
    min_interval_s: float = 2.0  # at most one item per (session, task, track) in this interval
    max_pending: int = 5000  # beyond this, new items are refused (the queue stays bounded)

    @property
    def policy(self) -> RoutingPolicy:
        return RoutingPolicy(accept_at=self.accept_at, abstain_below=self.abstain_below)

    @staticmethod
    def needs_review(prediction: Prediction) -> bool:
        """The prediction's own decision (never recomputed here)."""
        return prediction.decision is Decision.REVIEW


@dataclass(frozen=True)
class ReviewItem:
    id: int
    task: str
    kind: str
    input_path: Path | None
    input_text: str | None
    predicted: str
    confidence: float
    prediction: dict[str, Any]
    person: str | None
    session: str | None
    created_s: float
    status: str
    label: str | None
    reviewer: str | None
    resolved_s: float | None
    sample_id: str | None
    reason: str  # why it was queued

    @property
    def classes(self) -> list[str]:
        return list(self.prediction.get("probs", {}).keys())

    def load_input(self) -> np.ndarray | str | dict | None:
        """The saved input: RGB uint8 image (H, W, 3), float32 16 kHz audio, text or a dict."""
        if self.kind == "image" and self.input_path is not None:
            import cv2

            bgr = cv2.imread(str(self.input_path), cv2.IMREAD_COLOR)
            return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.kind == "audio" and self.input_path is not None:
            import soundfile

            samples, _ = soundfile.read(str(self.input_path), dtype="float32")
            return samples
        if self.kind == "json" and self.input_text is not None:
            return json.loads(self.input_text)
        return self.input_text


# A callback that turns a resolved item into a training sample; returns the sample id.
SampleSink = Callable[[ReviewItem], str]


class ReviewQueue:
    """Thread-safe; one connection per call so Gradio worker threads can share one queue."""

    def __init__(self, folder: Path, settings: ReviewSettings = ReviewSettings()):
        self.folder = Path(folder)
        self.media = self.folder / "media"
        self.settings = settings
        try:
            self.media.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"Cannot create the review folder {self.folder}: {e}. Pass a writable --data-dir.") from e
        self.db_path = self.folder / "review.sqlite"
        self._lock = threading.Lock()
        self._last_added: dict[tuple[str | None, str, int | None], float] = {}
        with self._connect() as db:
            db.executescript(SCHEMA)
            have = {row["name"] for row in db.execute("PRAGMA table_info(items)")}
            for column, sql in MIGRATIONS:
                if column not in have:
                    db.execute(sql)

    def _connect(self) -> "_ClosingConnection":
        db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.row_factory = sqlite3.Row
        return _ClosingConnection(db)

    # --- writing -------------------------------------------------------------------------------

    def offer(self, task: str, prediction: Prediction, item: np.ndarray | str | dict, **origin: Any) -> int | None:
        """Save `item` if the prediction was routed to review; returns the item id or None.
        `origin`: `add`'s keywords (person, session, sample_rate).

        Rate-limited per (session, task, track) so a face that stays uncertain for ten seconds
        of video gives a handful of items, not a hundred.
        """
        if not self.settings.needs_review(prediction):
            return None
        key = (origin.get("session"), task, prediction.track_id)
        now = time.monotonic()
        with self._lock:
            last = self._last_added.get(key)
            if last is not None and now - last < self.settings.min_interval_s:
                return None
            if len(self._last_added) >= RATE_LIMIT_KEYS:  # forget expired keys: bounded memory
                self._last_added = {k: t for k, t in self._last_added.items()
                                    if now - t < self.settings.min_interval_s}
            self._last_added[key] = now
        if self.count(PENDING) >= self.settings.max_pending:
            return None
        return self.add(task, prediction, item, **origin)

    def add(
        self,
        task: str,
        prediction: Prediction,
        item: np.ndarray | str | dict,
        *,
        person: str | None = None,
        session: str | None = None,
        sample_rate: int = 16000,
    ) -> int:
        """Save one item unconditionally (the input file first, then the row)."""
        kind, path, text = self._store_input(item, sample_rate)
        pred = prediction.to_dict()
        reason = prediction.reason or f"routed to {prediction.decision.value}"
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(
                "INSERT INTO items (task, kind, input_path, input_text, predicted, confidence,"
                " prediction_json, person, session, created_s, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (task, kind, path, text, prediction.label, prediction.confidence,
                 json.dumps(pred, default=_json_default), person, session, time.time(), reason),
            )
            db.execute("COMMIT")
            return int(cur.lastrowid)

    def resolve(self, item_id: int, reviewer: str, label: str | None = None, *, sink: SampleSink | None = None) -> ReviewItem:
        """Confirm (label None or equal to the prediction) or correct an item; attribute it to `reviewer`.

        With `sink`, the resolved item is turned into a training sample and the sample id stored.
        """
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise ValueError("Enter your name as reviewer first, so reviews can be attributed.")
        current = self.get(item_id)
        if current is None:
            raise KeyError(f"No review item {item_id}; refresh the queue.")
        if current.status != PENDING:
            raise ValueError(f"Item {item_id} was already {current.status} by {current.reviewer}.")
        final = (label or current.predicted).strip()
        if current.classes and final not in current.classes:
            # a new class is allowed (the team may be adding one), but never an empty label
            if not final:
                raise ValueError("The corrected label is empty; type a class name.")
        status = "confirmed" if final == current.predicted else "corrected"
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(
                "UPDATE items SET status=?, label=?, reviewer=?, resolved_s=? WHERE id=? AND status=?",
                (status, final, reviewer, time.time(), item_id, PENDING),
            )
            db.execute("COMMIT")
        if cur.rowcount != 1:
            raise ValueError(f"Item {item_id} was resolved by someone else meanwhile; refresh the queue.")
        if sink is not None:
            self.sync_samples(sink, only=item_id)
        resolved = self.get(item_id)
        assert resolved is not None
        return resolved

    def skip(self, item_id: int, reviewer: str) -> None:
        """Drop an item nobody can label (e.g. no face in the crop), attributed like a review."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE items SET status='skipped', reviewer=?, resolved_s=? WHERE id=? AND status=?",
                (reviewer or "anonymous", time.time(), item_id, PENDING),
            )
            db.execute("COMMIT")

    def sync_samples(self, sink: SampleSink, *, only: int | None = None) -> list[str]:
        """Turn resolved items without a sample id into samples (also recovers after a crash)."""
        query = "SELECT * FROM items WHERE status IN ('confirmed','corrected') AND sample_id IS NULL"
        args: tuple = ()
        if only is not None:
            query += " AND id=?"
            args = (only,)
        with self._connect() as db:
            rows = [self._item(r) for r in db.execute(query, args).fetchall()]
        made = []
        for item in rows:
            sample_id = str(sink(item))
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE items SET sample_id=? WHERE id=?", (sample_id, item.id))
                db.execute("COMMIT")
            made.append(sample_id)
        return made

    # --- reading -------------------------------------------------------------------------------

    def get(self, item_id: int) -> ReviewItem | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM items WHERE id=?", (int(item_id),)).fetchone()
        return None if row is None else self._item(row)

    def pending(self, limit: int = 50, task: str | None = None, person: str | None = None) -> list[ReviewItem]:
        """Oldest first, so nothing waits forever. person: only the items of that teammate's inputs
        (their own queue); None: everyone's (a reviewer's view)."""
        query, args = "SELECT * FROM items WHERE status='pending'", []
        if task:
            query += " AND task=?"
            args.append(task)
        if person:
            query += " AND person=?"
            args.append(person)
        query += " ORDER BY created_s, id LIMIT ?"
        args.append(int(limit))
        with self._connect() as db:
            return [self._item(r) for r in db.execute(query, args).fetchall()]

    def count(self, status: str | None = None, person: str | None = None) -> int:
        """Items (in `status`, of `person`'s inputs when given)."""
        query, args = "SELECT COUNT(*) FROM items WHERE 1=1", []
        if status is not None:
            query += " AND status=?"
            args.append(status)
        if person:
            query += " AND person=?"
            args.append(person)
        with self._connect() as db:
            return int(db.execute(query, args).fetchone()[0])

    def by_reviewer(self) -> dict[str, dict[str, int]]:
        """{reviewer: {'confirmed': n, 'corrected': n, 'skipped': n}}: who did the reviewing."""
        out: dict[str, dict[str, int]] = {}
        with self._connect() as db:
            for row in db.execute(
                "SELECT reviewer, status, COUNT(*) AS n FROM items WHERE reviewer IS NOT NULL GROUP BY reviewer, status"
            ):
                out.setdefault(row["reviewer"], {})[row["status"]] = int(row["n"])
        return out

    def created_per_minute(self, since_s: float | None = None) -> list[tuple[float, int]]:
        """[(minute start, wall clock s), items created] for the review-rate plot."""
        query = "SELECT CAST(created_s / 60 AS INTEGER) * 60 AS minute, COUNT(*) FROM items"
        args: tuple = ()
        if since_s is not None:
            query += " WHERE created_s >= ?"
            args = (since_s,)
        query += " GROUP BY minute ORDER BY minute"
        with self._connect() as db:
            return [(float(m), int(n)) for m, n in db.execute(query, args).fetchall()]

    # --- internals -----------------------------------------------------------------------------

    def _item(self, row: sqlite3.Row) -> ReviewItem:
        return ReviewItem(
            id=int(row["id"]), task=row["task"], kind=row["kind"],
            input_path=self.folder / row["input_path"] if row["input_path"] else None,
            input_text=row["input_text"], predicted=row["predicted"], confidence=float(row["confidence"]),
            prediction=json.loads(row["prediction_json"]), person=row["person"], session=row["session"],
            created_s=float(row["created_s"]), status=row["status"], label=row["label"],
            reviewer=row["reviewer"], resolved_s=row["resolved_s"], sample_id=row["sample_id"],
            reason=row["reason"] or "",
        )

    def _store_input(self, item: np.ndarray | str | dict, sample_rate: int) -> tuple[str, str | None, str | None]:
        """Write the input (atomically for files); returns (kind, relative path, inline text)."""
        if isinstance(item, str):
            return "text", None, item
        if isinstance(item, dict):
            return "json", None, json.dumps(item, default=_json_default)
        arr = np.asarray(item)
        if arr.ndim == 3 and arr.shape[2] in (3, 4) or arr.ndim == 2 and arr.dtype == np.uint8:
            import cv2

            rgb = arr if arr.ndim == 3 else np.stack([arr] * 3, axis=-1)  # (H, W, 3)
            ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"Could not encode an image of shape {arr.shape} for review.")
            return "image", self._write_media(png.tobytes(), ".png"), None
        if arr.ndim == 1:
            import io

            import soundfile

            buf = io.BytesIO()
            soundfile.write(buf, arr.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
            return "audio", self._write_media(buf.getvalue(), ".wav"), None
        raise ValueError(f"Cannot save an input of shape {arr.shape} for review (expected an image or mono audio).")

    def _write_media(self, data: bytes, suffix: str) -> str:
        """Write an input file under media/ atomically and durably; returns its path relative to the queue folder."""
        rel = f"media/{uuid.uuid4().hex}{suffix}"
        atomic_write_bytes(self.folder / rel, data)
        return rel


class _ClosingConnection:
    """`with` closes the connection (sqlite3's own context manager only ends a transaction)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._db.close()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
