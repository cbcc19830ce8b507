"""What every tab of the page shares: settings, the per-process context, lazy model loading.

The page comes up in seconds because nothing here loads a model at import or at build time:
`ModelHub.get(name)` loads on first use, once per process, under a lock per model, and records
its progress so the page can show "loading whisper-tiny.en (3 s)". Models are shared by every
user (read-only weights, thread-safe inference); anything that carries state across frames or
chunks (face tracks, the streaming transcriber's buffer) is created per user session and lives
in that user's `gr.State`.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demos.monitor import Monitor, MonitorSettings
from demos.review import ReviewQueue, ReviewSettings


def default_data_dir() -> Path:
    home = Path(os.environ.get("LIVELEARNER_HOME", Path.home() / ".cache" / "livelearner"))
    return home / "app"


@dataclass(frozen=True)
class AppSettings:
    data_dir: Path = field(default_factory=default_data_dir)  # samples/, review/, bundles/ live here
    stream_every_s: float = 0.1  # webcam frame period sent by the browser (10 fps)
    audio_stream_every_s: float = 0.5  # microphone chunk period
    stream_time_limit_s: int = 600  # one streaming session holds a worker at most this long
    max_streams: int = 16  # simultaneous webcam / microphone streams (one worker each)
    max_concurrency: int = 8  # other events (buttons, uploads) running at once
    queue_max_size: int = 64  # waiting events beyond this are refused ("queue full"), not piled up
    max_file_size: str = "25mb"  # upload limit enforced by Gradio before our code runs
    cache_delete: tuple[int, int] = (300, 600)  # (every s, older than s): Gradio's temporary files removed
    asr_model: str = "tiny.en"  # Whisper model of the streaming transcriber ("tiny.en", "base", a .pt path)
    preload: tuple[str, ...] = ("emotion",)  # models loaded in the background right after start
    review: ReviewSettings = ReviewSettings()
    monitor: MonitorSettings = MonitorSettings()


@dataclass
class LoadStatus:
    state: str = "not loaded"  # "not loaded" | "loading" | "ready" | "failed"
    started_s: float = 0.0
    seconds: float = 0.0
    error: str = ""


class ModelHub:
    """Lazy, thread-safe, load-once registry of shared models (name -> loader)."""

    def __init__(self, loaders: dict[str, Callable[[], Any]]):
        self._loaders = dict(loaders)
        self._models: dict[str, Any] = {}
        self._status: dict[str, LoadStatus] = {name: LoadStatus() for name in loaders}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in loaders}

    def get(self, name: str) -> Any:
        if name in self._models:
            return self._models[name]
        if name not in self._loaders:
            raise KeyError(f"Unknown model {name!r}; known: {', '.join(self._loaders)}")
        with self._locks[name]:
            if name in self._models:  # loaded by another thread while we waited
                return self._models[name]
            status = self._status[name]
            status.state, status.started_s, status.error = "loading", time.monotonic(), ""
            try:
                model = self._loaders[name]()
            except Exception as e:
                status.state, status.error = "failed", f"{type(e).__name__}: {e}"
                status.seconds = time.monotonic() - status.started_s
                raise
            status.state, status.seconds = "ready", time.monotonic() - status.started_s
            self._models[name] = model
            return model

    def status_markdown(self) -> str:
        parts = []
        for name, s in self._status.items():
            if s.state == "loading":
                parts.append(f"{name}: loading… ({time.monotonic() - s.started_s:.0f} s)")
            elif s.state == "ready":
                parts.append(f"{name}: ready ({s.seconds:.1f} s)")
            elif s.state == "failed":
                parts.append(f"**{name}: failed** ({s.error})")
        return "Models — " + " · ".join(parts) if parts else "Models load on first use."

    def preload(self, names: tuple[str, ...]) -> threading.Thread:
        """Load `names` in a background thread (failures are shown in the status line)."""

        def run() -> None:
            for name in names:
                try:
                    self.get(name)
                except Exception as e:  # shown in status_markdown; the page keeps working
                    warnings.warn(f"Could not preload {name}: {e}")

        thread = threading.Thread(target=run, name="livelearner-preload", daemon=True)
        thread.start()
        return thread


class AppContext:
    """Everything shared by every user of one running app."""

    def __init__(self, settings: AppSettings, hub: ModelHub | None = None):
        from demos import engines
        from train.samples import SampleStore

        self.settings = settings
        data_dir = Path(settings.data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"Cannot create the app data folder {data_dir}: {e}. Pass --data-dir to a writable folder.") from e
        self.samples = SampleStore(data_dir / "samples")
        self.review = ReviewQueue(data_dir / "review", settings.review)
        self.monitor = Monitor(settings.monitor)
        self.bundles_dir = data_dir / "bundles"
        self.bundles_dir.mkdir(exist_ok=True)
        self.hub = hub if hub is not None else ModelHub(engines.loaders(settings))
        self._slots: dict[str, Any] = {}  # task -> models.bundle.BundleSlot of the deployed team model
        self._deploy_lock = threading.Lock()
        self._load_deployed()
        # recover resolutions that did not reach the sample store (crash between the two writes)
        self.review.sync_samples(self.sample_from_review)

    # --- deployed team models (hot-swappable) ------------------------------------------------

    @property
    def _deployed_file(self) -> Path:
        return self.bundles_dir / "deployed.json"

    def _load_deployed(self) -> None:
        from models.bundle import BundleSlot

        if not self._deployed_file.exists():
            return
        for task, path in json.loads(self._deployed_file.read_text()).items():
            try:
                slot = BundleSlot()
                slot.swap(path)
                self._slots[task] = slot
            except Exception as e:  # a deleted or broken bundle must not stop the app
                warnings.warn(f"Deployed {task} model at {path} could not be loaded ({e}); deploy another one.")

    def bundle(self, task: str):
        """The deployed team model for `task` ("image", "landmarks", "text", "tabular") or None."""
        slot = self._slots.get(task)
        return slot.current if slot is not None else None

    def deploy(self, task: str, path: Path) -> None:
        """Load the bundle at `path` and make it live (frames in flight finish on the old one)."""
        from models.bundle import BundleSlot

        with self._deploy_lock:
            slot = self._slots.get(task) or BundleSlot()
            slot.swap(path)  # raises BundleError and keeps the old model on a bad bundle
            self._slots[task] = slot
            current = json.loads(self._deployed_file.read_text()) if self._deployed_file.exists() else {}
            current[task] = str(Path(path).resolve())
            tmp = self._deployed_file.with_suffix(".json.part")
            tmp.write_text(json.dumps(current, indent=1))
            os.replace(tmp, self._deployed_file)

    def sample_from_review(self, item) -> str:
        """Review sink: a resolved review item becomes a labelled training sample."""
        meta = {"person": item.person or "unknown", "session": item.session or "review"}
        value = item.load_input()
        if item.kind == "image" and value is not None:
            return self.samples.add_image(value, item.label, **meta).id
        if item.kind == "json" and isinstance(value, dict) and "landmarks" in value:
            return self.samples.add_landmarks(value["landmarks"], item.label, **meta).id
        if item.kind == "json" and isinstance(value, dict):
            return self.samples.add_tabular(value, item.label, **meta).id
        if item.kind == "text" and isinstance(value, str):
            return self.samples.add_text(value, item.label, **meta).id
        if item.kind == "audio" and item.input_path is not None:
            return self.samples.add("audio", item.label, data=item.input_path.read_bytes(), suffix=".wav", **meta).id
        raise ValueError(f"Review item {item.id} has no usable input to turn into a sample.")


def new_session_id() -> str:
    return uuid.uuid4().hex[:8]


def user_error(message: str, e: BaseException | None = None):
    """A gr.Error (shown as a toast in the page) without importing gradio at module import."""
    import gradio as gr

    err = gr.Error(message)
    if e is not None:
        err.__cause__ = e
    return err
