"""The sample store: every captured or imported example, with who, when and what label.

One folder holds `samples.sqlite` (one row per sample) and `files/` (images, audio clips).
Small payloads (hand landmarks, transcripts, questionnaire answers) live inline in the row as JSON.

Durability rules (a crash or a bad file must never lose what was saved before):
- files are written to a temporary name in the same folder, fsynced, then renamed (atomic on POSIX);
- rows are written in one transaction per call; a failed import rolls back its rows and removes
  the files it had written, so the store is exactly as it was before the call;
- bad inputs (corrupt or oversized image, unknown kind, empty or overlong label, non-finite numbers) are
  refused with a message saying what to do; labels, persons and sessions lose control characters;
- relabelling and removing are recorded in an `edits` table with who did it (`history()`).

    store = SampleStore("my_project")
    store.add_image(frame_rgb, "happy", person="ana", session="mon-1")
    store.import_folder("photos/")            # photos/<label>/*.jpg
    store.counts()                            # per class and per person
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
import unicodedata
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

KINDS = ("image", "landmarks", "audio", "text", "tabular")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
UNKNOWN = "unknown"  # person/session when the source does not say
PERSON_COLUMNS = ("person", "signer", "subject", "speaker")  # CSV column names read as the person

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    person TEXT NOT NULL,
    session TEXT NOT NULL,
    captured_at REAL NOT NULL,      -- wall-clock seconds since the epoch
    path TEXT,                      -- relative to the store root, for file samples
    payload TEXT                    -- JSON, for inline samples
);
CREATE INDEX IF NOT EXISTS samples_kind ON samples(kind);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS edits (
    at REAL NOT NULL,               -- wall-clock seconds since the epoch
    sample_id TEXT NOT NULL,
    action TEXT NOT NULL,           -- "relabel" | "remove"
    old_label TEXT,
    new_label TEXT,
    by TEXT NOT NULL,               -- who did it (a user name, "cli", ...)
    detail TEXT                     -- JSON: what a removed sample was
);
"""
MAX_LABEL_CHARS = 64  # labels, persons, sessions: a name, not a paragraph
MAX_TEXT_CHARS = 5000  # a text sample
MAX_ABS_NUMBER = 1e12  # tabular/landmark numbers beyond this are typos or overflow bait (1e308 squared is inf)


class StoreError(ValueError):
    """Bad input for the store; the message says what to do. Nothing saved before is changed."""


@dataclass(frozen=True)
class Sample:
    id: str
    kind: str  # one of KINDS
    label: str
    person: str
    session: str
    captured_at: float  # seconds since the epoch
    path: Path | None = None  # absolute path of the file, for image/audio samples
    payload: Any = None  # landmarks: list[float]; text: str; tabular: dict[str, value]


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)  # sample ids
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)

    def __str__(self) -> str:
        lines = [f"imported {len(self.added)} samples, skipped {len(self.skipped)}"]
        lines += [f"  skipped {src}: {why}" for src, why in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more")
        return "\n".join(lines)


def check_image_file(path: Path) -> None:
    """Raise StoreError unless `path` decodes as an image of at most capture.images.MAX_IMAGE_PIXELS
    (the size is read from the header first, so a decompression bomb is refused before decoding)."""
    from capture.images import ImageError, read_image_rgb

    try:
        read_image_rgb(path)
    except ImageError as e:
        raise StoreError(str(e)) from e


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    """Write `dest` so that a crash leaves either the old file (or none) or the complete new one: a temporary
    sibling is written and fsynced, renamed into place, and the folder fsynced so the rename itself lasts."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _strip_control(text: str, keep: str = "") -> str:
    """`text` without control/format characters (Unicode category C*: NUL, escapes, bidi overrides), but `keep`."""
    return "".join(ch for ch in text if ch in keep or not unicodedata.category(ch).startswith("C"))


def _clean(name: Any, what: str, max_chars: int = MAX_LABEL_CHARS) -> str:
    """A label/person/session: control characters removed, stripped, non-empty, at most `max_chars`."""
    text = _strip_control("" if name is None else str(name)).strip()
    if not text:
        raise StoreError(f"empty {what}: every sample needs a {what}")
    if len(text) > max_chars:
        raise StoreError(f"the {what} {text[:20]!r}... is {len(text)} characters long; at most {max_chars} are "
                         "allowed (a short name, not a sentence)")
    return text


def _clean_text(text: Any) -> str:
    """A text sample: control characters removed (tabs and newlines kept), non-empty, at most MAX_TEXT_CHARS."""
    cleaned = _strip_control("" if text is None else str(text), keep="\t\n").strip()
    if not cleaned:
        raise StoreError("empty text: every text sample needs some words")
    if len(cleaned) > MAX_TEXT_CHARS:
        raise StoreError(f"the text is {len(cleaned)} characters long; at most {MAX_TEXT_CHARS} are allowed")
    return cleaned


def check_number(value: Any, what: str) -> None:
    """StoreError when `value` reads as a number that is not finite or beyond +-MAX_ABS_NUMBER
    (an empty answer is allowed: it is missing, and training says how many were filled in)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        return  # a word: a categorical answer
    if not np.isfinite(number) or abs(number) > MAX_ABS_NUMBER:
        raise StoreError(f"{what} is {value!r}: numbers must be finite and within +-{MAX_ABS_NUMBER:g}; fix or "
                         "leave the cell empty")


def _clean_answers(answers: dict[Any, Any]) -> dict[str, Any]:
    if not answers:
        raise StoreError("tabular answers must be a non-empty {question: answer} mapping")
    out = {}
    for k, v in answers.items():
        question = _clean(k, "question name")
        check_number(v, f"the answer to {question!r}")
        out[question] = _strip_control(v).strip() if isinstance(v, str) else v
    return out


class SampleStore:
    """SQLite + files store of labelled samples. Safe to reopen; one writer at a time."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "files").mkdir(exist_ok=True)
        self.db_path = self.root / "samples.sqlite"
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")  # readers (the app's tabs) never block the writer
        db.execute("PRAGMA synchronous=FULL")  # a committed sample survives a power cut
        try:
            with db:  # one transaction: commit on success, roll back on any error
                yield db
        finally:
            db.close()

    # ---- writing ---------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator["_Batch"]:
        """All-or-nothing group of additions: on any error no row is kept and new files are removed."""
        b = _Batch(self)
        try:
            yield b
            with self._db() as db:
                db.executemany("INSERT INTO samples VALUES (?,?,?,?,?,?,?,?)", b.rows)
        except BaseException:
            for rel in b.files:
                (self.root / rel).unlink(missing_ok=True)
            raise

    def add(self, kind: str, label: str, *, person: str = UNKNOWN, session: str = UNKNOWN,
            captured_at: float | None = None, payload: Any = None, data: bytes | None = None,
            suffix: str = "") -> Sample:
        """Add one sample: a file (`data` bytes + `suffix`) or an inline JSON `payload`."""
        with self.batch() as b:
            sid = b.add(kind, label, person=person, session=session, captured_at=captured_at,
                        payload=payload, data=data, suffix=suffix)
        return self.get(sid)

    def add_image(self, image_rgb: np.ndarray, label: str, **meta: Any) -> Sample:
        """image_rgb: (H, W, 3) uint8 RGB, as capture/ and Gradio give frames. Saved as PNG."""
        import cv2

        img = np.asarray(image_rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
            raise StoreError(f"an image must be (H, W, 3) RGB, got shape {img.shape}")
        ok, buf = cv2.imencode(".png", cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))
        if not ok:
            raise StoreError("could not encode the image as PNG")
        return self.add("image", label, data=buf.tobytes(), suffix=".png", **meta)

    def add_landmarks(self, values: Sequence[float] | np.ndarray, label: str, **meta: Any) -> Sample:
        """values: flat (D,) floats, e.g. 21 hand landmarks x (x, y, z) = 63."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise StoreError("landmarks must be a non-empty vector of finite numbers (no hand found?)")
        return self.add("landmarks", label, payload=[float(x) for x in v], **meta)

    def add_text(self, text: str, label: str, **meta: Any) -> Sample:
        return self.add("text", label, payload=_clean_text(text), **meta)

    def add_tabular(self, answers: dict[str, Any], label: str, **meta: Any) -> Sample:
        return self.add("tabular", label, payload=_clean_answers(answers), **meta)

    def relabel(self, sample_id: str, label: str, *, by: str) -> Sample:
        """Give sample `sample_id` a new label; recorded in the edits log as done `by` someone. Returns it."""
        label, by = _clean(label, "label"), _clean(by, "name of who relabels")
        _check_label_chars(label)
        with self._db() as db:
            row = db.execute("SELECT label FROM samples WHERE id=?", (sample_id,)).fetchone()
            if row is None:
                raise StoreError(f"no sample with id {sample_id!r}")
            db.execute("UPDATE samples SET label=? WHERE id=?", (label, sample_id))
            db.execute("INSERT INTO edits VALUES (?,?,?,?,?,?,?)",
                       (time.time(), sample_id, "relabel", row[0], label, by, None))
        return self.get(sample_id)

    def remove(self, sample_id: str, *, by: str) -> None:
        """Delete sample `sample_id` (its row and file); the edits log keeps what it was and who removed it."""
        by = _clean(by, "name of who removes")
        s = self.get(sample_id)
        detail = {"kind": s.kind, "person": s.person, "session": s.session, "captured_at": s.captured_at,
                  "path": s.path.relative_to(self.root).as_posix() if s.path is not None else None}
        with self._db() as db:
            db.execute("DELETE FROM samples WHERE id=?", (sample_id,))
            db.execute("INSERT INTO edits VALUES (?,?,?,?,?,?,?)",
                       (time.time(), sample_id, "remove", s.label, None, by, json.dumps(detail)))
        if s.path is not None and s.path.resolve().is_relative_to(self.root.resolve()):  # a row naming a file
            s.path.unlink(missing_ok=True)  # outside the store (a hand-edited or hostile store) leaves it alone

    def history(self, sample_id: str | None = None) -> list[dict[str, Any]]:
        """Relabels and removals, oldest first: {at, sample_id, action, old_label, new_label, by, detail}."""
        q, args = "SELECT * FROM edits", ()
        if sample_id is not None:
            q, args = q + " WHERE sample_id=?", (sample_id,)
        with self._db() as db:
            rows = db.execute(q + " ORDER BY at", args).fetchall()
        keys = ("at", "sample_id", "action", "old_label", "new_label", "by", "detail")
        return [dict(zip(keys, r[:-1]), detail=json.loads(r[-1]) if r[-1] else None) for r in rows]

    # ---- reading ---------------------------------------------------------------------------
    def _row(self, r: tuple) -> Sample:
        sid, kind, label, person, session, t, rel, payload = r
        return Sample(sid, kind, label, person, session, float(t),
                      self.root / rel if rel else None, json.loads(payload) if payload is not None else None)

    def get(self, sample_id: str) -> Sample:
        with self._db() as db:
            r = db.execute("SELECT * FROM samples WHERE id=?", (sample_id,)).fetchone()
        if r is None:
            raise StoreError(f"no sample with id {sample_id!r}")
        return self._row(r)

    def samples(self, kind: str | None = None, *, exclude: Iterable[str] = ()) -> list[Sample]:
        """Samples in capture order (then id), optionally of one kind and minus some ids."""
        q, args = "SELECT * FROM samples", ()
        if kind is not None:
            q, args = q + " WHERE kind=?", (kind,)
        with self._db() as db:
            rows = db.execute(q + " ORDER BY captured_at, id", args).fetchall()
        skip = set(exclude)
        return [self._row(r) for r in rows if r[0] not in skip]

    def __len__(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def counts(self, kind: str | None = None) -> dict[str, dict[str, int]]:
        """{"class": {label: n}, "person": {person: n}, "session": {...}, "person_class": {"p/label": n}}."""
        out: dict[str, dict[str, int]] = {"class": {}, "person": {}, "session": {}, "person_class": {}}
        for s in self.samples(kind):
            for key, val in (("class", s.label), ("person", s.person), ("session", s.session),
                             ("person_class", f"{s.person}/{s.label}")):
                out[key][val] = out[key].get(val, 0) + 1
        return out

    # ---- small key/value metadata (the locked test set lives here) -------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._db() as db:
            r = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(r[0]) if r else default

    def set_meta(self, key: str, value: Any) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # ---- import / export ---------------------------------------------------------------------
    def import_folder(self, folder: str | os.PathLike, *, kind: str = "image",
                      person_pattern: str | None = None, meta_csv: str | os.PathLike | None = None,
                      session: str | None = None) -> ImportReport:
        """Import `folder/<label>/<file>` (images or audio clips).

        person/session come from, in order: `meta_csv` (columns path,label[,person,session,captured_at];
        path relative to `folder`; the person column may also be called signer/subject/speaker), a regex `person_pattern` with named groups `person`/`session`
        matched against the path relative to `folder` (e.g. r"(?P<person>[^_/]+)_"), else "unknown".
        Unreadable files are skipped and listed in the report; a label in `meta_csv` that disagrees
        with the folder name is an error (nothing is imported).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise StoreError(f"{folder} is not a folder; give a folder with one sub-folder per label")
        suffixes = IMAGE_SUFFIXES if kind == "image" else AUDIO_SUFFIXES
        files = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in suffixes and p.is_file())
        if not files:
            raise StoreError(f"no {kind} files found as {folder}/<label>/<file> ({', '.join(suffixes)})")
        table = _read_meta_csv(Path(meta_csv), folder) if meta_csv else {}
        mismatched = [f"{rel}: csv says {row['label']!r}, folder says {Path(rel).parent.name!r}"
                      for rel, row in table.items() if row.get("label") and row["label"] != Path(rel).parent.name]
        if mismatched:
            raise StoreError("labels in the CSV do not match the folder names; fix one of them:\n  "
                             + "\n  ".join(mismatched[:10]))
        rx = re.compile(person_pattern) if person_pattern else None
        report = ImportReport()
        with self.batch() as b:
            for p in files:
                rel = p.relative_to(folder).as_posix()
                row = table.get(rel, {})
                m = rx.search(rel) if rx else None
                groups = m.groupdict() if m else {}
                try:
                    if kind == "image":
                        check_image_file(p)
                    sid = b.add(kind, p.parent.name,
                                person=_person(row) or groups.get("person") or UNKNOWN,
                                session=row.get("session") or groups.get("session") or session or UNKNOWN,
                                captured_at=float(row["captured_at"]) if row.get("captured_at") else p.stat().st_mtime,
                                data=p.read_bytes(), suffix=p.suffix.lower())
                    report.added.append(sid)
                except (StoreError, OSError) as e:
                    report.skipped.append((rel, str(e)))
        if report.skipped:
            warnings.warn(str(report))
        return report

    def import_csv(self, csv_path: str | os.PathLike, *, kind: str) -> ImportReport:
        """Import rows of a CSV with columns label[,person,session,captured_at] plus the data:
        landmarks: every other column numeric (one feature each); text: a `text` column;
        tabular: every other column is one question. Rows with missing/bad values are skipped."""
        if kind not in ("landmarks", "text", "tabular"):
            raise StoreError(f"import_csv handles landmarks, text or tabular, not {kind!r}; use import_folder")
        path = Path(csv_path)
        rows = _read_csv_rows(path, "label", "a header row with a 'label' column and at least one data row")
        reserved = {"label", "session", "captured_at", "id", *PERSON_COLUMNS}
        features = [c for c in rows[0] if c not in reserved]
        if kind == "text" and "text" not in features:
            raise StoreError(f"{path} needs a 'text' column for text samples")
        report = ImportReport()
        with self.batch() as b:
            for i, row in enumerate(rows, start=2):
                try:
                    if kind == "landmarks":
                        payload: Any = [float(row[c]) for c in features]
                        if not np.all(np.isfinite(payload)):
                            raise StoreError("non-finite landmark value")
                    elif kind == "text":
                        payload = _clean_text(row["text"])
                    else:
                        payload = _clean_answers({c: row[c] for c in features})
                    sid = b.add(kind, row.get("label"), person=_person(row) or UNKNOWN,
                                session=row.get("session") or UNKNOWN,
                                captured_at=float(row["captured_at"]) if row.get("captured_at") else None,
                                payload=payload)
                    report.added.append(sid)
                except (StoreError, ValueError, TypeError) as e:
                    report.skipped.append((f"{path.name}:{i}", str(e)))
        if report.skipped:
            warnings.warn(str(report))
        return report

    def import_session(self, items: Iterable[tuple[str, Any]], *, kind: str, person: str,
                       session: str | None = None) -> ImportReport:
        """Save a recording session: (label, item) pairs captured one after the other by `person`.
        item: image (H,W,3) RGB array, landmarks vector, text, answers dict, or audio bytes (WAV)."""
        session = session or time.strftime("%Y%m%d-%H%M%S")
        report = ImportReport()
        with self.batch() as b:
            for label, item in items:
                meta = dict(person=person, session=session, captured_at=time.time())
                if kind == "image":
                    import cv2

                    img = np.asarray(item)
                    if img.ndim != 3 or img.shape[2] != 3:
                        raise StoreError(f"session image must be (H, W, 3) RGB, got {img.shape}")
                    ok, buf = cv2.imencode(".png", cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))
                    sid = b.add("image", label, data=buf.tobytes(), suffix=".png", **meta)
                elif kind == "audio":
                    sid = b.add("audio", label, data=bytes(item), suffix=".wav", **meta)
                elif kind == "landmarks":
                    v = np.ravel(np.asarray(item, dtype=np.float64))
                    if v.size == 0 or not np.all(np.isfinite(v)):
                        raise StoreError("landmarks must be a non-empty vector of finite numbers (no hand found?)")
                    sid = b.add("landmarks", label, payload=[float(x) for x in v], **meta)
                elif kind == "text":
                    sid = b.add("text", label, payload=_clean_text(item), **meta)
                elif kind == "tabular":
                    sid = b.add("tabular", label, payload=_clean_answers(item), **meta)
                else:
                    raise StoreError(f"unknown sample kind {kind!r}; use one of {KINDS}")
                report.added.append(sid)
        return report

    def export_folder(self, dest: str | os.PathLike, kind: str | None = None) -> Path:
        """Write `dest/<label>/<id><suffix>` for file samples and `dest/<kind>.csv` for inline ones,
        plus `dest/samples.csv` (id,kind,label,person,session,captured_at,path) to re-import with."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        index, inline = [], {}
        for s in self.samples(kind):
            rel = ""
            if s.path is not None:
                rel = f"{s.label}/{s.id}{s.path.suffix}"
                (dest / s.label).mkdir(exist_ok=True)
                shutil.copy2(s.path, dest / rel)
            else:
                inline.setdefault(s.kind, []).append(s)
            index.append([s.id, s.kind, s.label, s.person, s.session, s.captured_at, rel])
        _write_csv(dest / "samples.csv", ["id", "kind", "label", "person", "session", "captured_at", "path"], index)
        for k, rows in inline.items():
            _write_csv(dest / f"{k}.csv", *_inline_table(k, rows))
        return dest


class _Batch:
    """Collects rows and written files for SampleStore.batch()."""

    def __init__(self, store: SampleStore):
        self.store, self.rows, self.files = store, [], []

    def add(self, kind: str, label: Any, *, person: Any = UNKNOWN, session: Any = UNKNOWN,
            captured_at: float | None = None, payload: Any = None, data: bytes | None = None,
            suffix: str = "") -> str:
        if kind not in KINDS:
            raise StoreError(f"unknown sample kind {kind!r}; use one of {KINDS}")
        label = _clean(label, "label")
        _check_label_chars(label)
        person = _clean(person or UNKNOWN, "person")
        session = _clean(session or UNKNOWN, "session")
        if (data is None) == (payload is None):
            raise StoreError("give either file data or an inline payload for a sample")
        sid = uuid.uuid4().hex[:16]
        rel = None
        if data is not None:
            if not data:
                raise StoreError("empty file: nothing to save")
            rel = f"files/{sid[:2]}/{sid}{suffix}"
            atomic_write_bytes(self.store.root / rel, data)
            self.files.append(rel)
        self.rows.append((sid, kind, label, person, session,
                          float(captured_at if captured_at is not None else time.time()), rel,
                          json.dumps(payload) if payload is not None else None))
        return sid


def _check_label_chars(label: str) -> None:
    if "/" in label or "\\" in label or label.startswith("."):
        raise StoreError(f"label {label!r} cannot contain '/' or '\\' or start with '.' (it names a folder on export)")


def _read_csv_rows(path: Path, required_column: str, needs: str) -> list[dict[str, str]]:
    """All rows of a UTF-8 CSV as dicts; a StoreError saying what `path` needs when unreadable or
    without `required_column`."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise StoreError(f"cannot read {path} as a UTF-8 CSV: {e}") from e
    if not rows or required_column not in rows[0]:
        raise StoreError(f"{path} needs {needs}")
    return rows


def _read_meta_csv(path: Path, folder: Path) -> dict[str, dict[str, str]]:
    rows = _read_csv_rows(path, "path", f"a header with a 'path' column (relative to {folder})")
    return {Path(r["path"]).as_posix(): r for r in rows if r.get("path")}


def _person(row: dict[str, str]) -> str | None:
    """The person column of a metadata CSV, under any of its usual names."""
    return next((row[k] for k in PERSON_COLUMNS if row.get(k)), None)


def _inline_table(kind: str, rows: list[Sample]) -> tuple[list[str], list[list[Any]]]:
    head = ["id", "label", "person", "session", "captured_at"]
    if kind == "text":
        return head + ["text"], [[s.id, s.label, s.person, s.session, s.captured_at, s.payload] for s in rows]
    if kind == "landmarks":
        d = max(len(s.payload) for s in rows)
        return head + [f"f{i}" for i in range(d)], [[s.id, s.label, s.person, s.session, s.captured_at, *s.payload]
                                                    for s in rows]
    cols = sorted({k for s in rows for k in s.payload})
    return head + cols, [[s.id, s.label, s.person, s.session, s.captured_at, *[s.payload.get(c, "") for c in cols]]
                         for s in rows]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
