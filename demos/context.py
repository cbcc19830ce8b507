"""What every tab of the page shares: settings, the loaded models (ModelHub), the per-process context.

The page comes up in seconds because nothing here loads a model at import or at build time:
`ModelHub.get(name)` loads on first use, once per process, under a lock per model, and records
its progress so the page can show "loading whisper-tiny.en (3 s)". The hub holds every loaded
model (read-only weights, shared by all users); a user's session (demos/vision_session.py,
demos/speech_session.py) holds only its own state (face tracks, the transcriber's buffer) and is
built from the hub's models. Deploying a team model replaces its hub entry and raises that
entry's generation; open sessions notice on their next frame and rebuild their cheap state.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demos.deployed import LIVE_VISION_NAME, DeployedModels
from demos.live_sessions import LivePages
from demos.monitor import Monitor, MonitorSettings
from demos.review import ReviewQueue, ReviewSettings


def default_data_dir() -> Path:
    home = Path(os.environ.get("LIVELEARNER_HOME", Path.home() / ".cache" / "livelearner"))
    return home / "app"


@dataclass(frozen=True)
class AppSettings:
    data_dir: Path = field(default_factory=default_data_dir)  # samples/, review/, bundles/ live here
    stream_time_limit_s: int = 600  # this machine's camera (Webcam tab) runs at most this long per click
    max_streams: int = 16  # live frames / audio chunks handled at once (threads of the live connection)
    max_concurrency: int = 8  # other events (buttons, uploads) running at once
    queue_max_size: int = 64  # waiting events beyond this are refused ("queue full"), not piled up
    max_file_size: str = "25mb"  # upload limit enforced by Gradio before our code runs
    cache_delete: tuple[int, int] = (300, 600)  # (every s, older than s): Gradio's temporary files removed
    asr_model: str = "tiny.en"  # Whisper model of the streaming transcriber ("tiny.en", "base", a .pt path)
    # models loaded in the background right after start, in this order (the Speak tab's three included,
    # so the first utterance is transcribed and classified without a load wait)
    preload: tuple[str, ...] = ("emotion", "asr", "text-embedder", "command-scorer")
    local_camera: bool = True  # the page may open this machine's camera (off when served to others)
    review: ReviewSettings = ReviewSettings()
    monitor: MonitorSettings = MonitorSettings()


@dataclass(frozen=True)
class VisionModel:
    """A hub entry for a vision task: the shared model and the pipeline spec sessions build from it."""

    spec: str  # models.pipelines.build_pipeline's task: "emotion", "sign", "sign:DIR", an image bundle folder
    shared: Any  # models.pipelines.SharedVision: weights and graphs every session of this task uses


@dataclass
class LoadStatus:
    state: str = "not loaded"  # "not loaded" | "loading" | "ready" | "failed"
    started_s: float = 0.0
    seconds: float = 0.0
    error: str = ""


class ModelHub:
    """Lazy, thread-safe, load-once registry of shared models (name -> loader).

    `loads[name]` counts loader runs (one per process, plus one per replacement); `generation(name)`
    rises each time an entry is replaced, so sessions built from the old model can tell.
    """

    def __init__(self, loaders: dict[str, Callable[[], Any]]):
        self._loaders = dict(loaders)
        self._models: dict[str, Any] = {}
        self._status: dict[str, LoadStatus] = {name: LoadStatus() for name in loaders}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in loaders}
        self._generations: dict[str, int] = {name: 0 for name in loaders}
        self.loads: dict[str, int] = {name: 0 for name in loaders}

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
            self.loads[name] += 1
            try:
                model = self._loaders[name]()
            except Exception as e:
                status.state, status.error = "failed", f"{type(e).__name__}: {e}"
                status.seconds = time.monotonic() - status.started_s
                raise
            status.state, status.seconds = "ready", time.monotonic() - status.started_s
            self._models[name] = model
            return model

    def add(self, name: str, loader: Callable[[], Any]) -> None:
        """Register one more model (a loader that may itself `get` others from this hub)."""
        self._loaders[name] = loader
        self._status.setdefault(name, LoadStatus())
        self._locks.setdefault(name, threading.Lock())
        self._generations.setdefault(name, 0)
        self.loads.setdefault(name, 0)

    def __contains__(self, name: str) -> bool:
        return name in self._loaders

    def generation(self, name: str) -> int:
        return self._generations[name]

    def replace(self, name: str) -> None:
        """Forget `name`'s model (its loader reads the new one on next use) and raise its generation."""
        with self._locks[name]:
            self._models.pop(name, None)
            self._status[name] = LoadStatus()
            self._generations[name] += 1

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


class HubEmbedder:
    """The hub's one MiniLM behind `encode`, loaded on first use: what deployed text bundles embed with."""

    def __init__(self, hub: ModelHub):
        self._hub = hub

    def encode(self, texts: list[str]) -> Any:
        return self._hub.get("text-embedder").encode(texts)


def hub_loaders(settings: AppSettings, deployed: DeployedModels) -> dict[str, Callable[[], Any]]:
    """The ModelHub's table: every model the page uses, each loaded once per process."""

    def builtin_vision(task: str) -> Callable[[], VisionModel]:
        def load() -> VisionModel:
            from models.pipelines import load_shared

            shared = load_shared(task)
            use_app_policy(shared.classifier, settings)
            batch_across_sessions(shared)
            return VisionModel(task, shared)

        return load

    def team_vision(task: str) -> Callable[[], VisionModel]:
        def load() -> VisionModel:
            from models.pipelines import load_shared

            bundle = deployed.bundle(task)
            if bundle is None:
                raise LookupError(f"no {task} model is deployed")
            spec = str(bundle.root) if task == "image" else f"sign:{bundle.root}"
            shared = load_shared(spec, bundle=bundle)
            use_app_policy(shared.classifier, settings)
            batch_across_sessions(shared)
            return VisionModel(spec, shared)

        return load

    def asr() -> Any:
        from models.transcriber import Transcriber, TranscriberSettings

        return Transcriber(TranscriberSettings(model=settings.asr_model))

    def text_embedder() -> Any:
        from models.embeddings import load_text_embedder

        return load_text_embedder()

    def personality() -> Any:
        from models.personality import PersonalityModel
        from models.shipped import shipped_bundle

        path = shipped_bundle("personality")
        if path is None:
            raise LookupError("the shipped personality model is missing from this installation")
        model = PersonalityModel.load(path)
        use_app_policy(model.bundle, settings)
        return model

    loaders: dict[str, Callable[[], Any]] = {"emotion": builtin_vision("emotion"), "sign": builtin_vision("sign")}
    loaders.update({name: team_vision(task) for task, name in LIVE_VISION_NAME.items()})
    loaders.update({"asr": asr, "text-embedder": text_embedder, "personality": personality})
    return loaders


def use_app_policy(model: Any, settings: AppSettings) -> None:
    """Route `model`'s predictions with the app's policy (`--accept-at`), so what the page draws and what
    the Review tab queues follow the same thresholds, whatever the model was saved with."""
    if hasattr(model, "policy"):
        model.policy = settings.review.policy


def batch_across_sessions(shared: Any) -> None:
    """Frames of several users waiting at once go through the shared classifier as one batch."""
    from models.batching import BatchingClassifier

    shared.classifier = BatchingClassifier(shared.classifier)


class AppContext:
    """Everything shared by every user of one running app."""

    def __init__(self, settings: AppSettings, hub: ModelHub | None = None):
        from train.samples import SampleStore

        self.settings = settings
        data_dir = Path(settings.data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"Cannot create the app data folder {data_dir}: {e}. Pass --data-dir to a writable folder.") from e
        self.samples = SampleStore(data_dir / "samples")
        self.review = ReviewQueue(data_dir / "review", settings.review)
        self.monitor = Monitor(settings.monitor, state_dir=data_dir / "monitor")  # references kept across restarts
        self.monitor.install_shipped_references()  # the packaged emotion model's, unless some are kept already
        self.deployed = DeployedModels(data_dir / "bundles")
        self.bundles_dir = self.deployed.root
        self.hub = hub if hub is not None else ModelHub(hub_loaders(settings, self.deployed))
        self.embedder = HubEmbedder(self.hub)
        if "command-scorer" not in self.hub:  # spoken commands, scored on the hub's one Whisper model
            self.hub.add("command-scorer", self._load_command_scorer)
        self.command_calibration_path = data_dir / "commands" / "calibration.json"  # the team's (Train tab)
        self.live_pages = LivePages()  # which live connection belongs to which open page
        # live frames and audio chunks are handled here: the server's event loop never waits on a model
        self.live_workers = ThreadPoolExecutor(max_workers=settings.max_streams + 2, thread_name_prefix="livelearner-live")
        for task in self.deployed.restore():
            self._went_live(task)
        # recover resolutions that did not reach the sample store (crash between the two writes)
        self.review.sync_samples(self.sample_from_review)

    def _load_command_scorer(self) -> Any:
        from models.commands import CommandScorer, CommandScorerSettings

        transcriber = self.hub.get("asr")
        return CommandScorer(CommandScorerSettings(model=self.settings.asr_model), model=transcriber.model)

    def command_calibration(self) -> tuple[Any, float | None]:
        """(the team's CommandCalibration or None for the shipped one, its file's mtime as a cache key)."""
        from models.commands import CommandCalibration, CommandInputError

        path = self.command_calibration_path
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None, None
        try:
            return CommandCalibration.from_json(path), mtime
        except CommandInputError as e:
            warnings.warn(f"team command calibration ignored: {e}")
            return None, None

    def bundle(self, task: str) -> Any:
        """The deployed team model for `task` ("image", "landmarks", "text", "tabular") or None."""
        return self.deployed.bundle(task)

    def deploy(self, task: str, name: str) -> Any:
        """Make the bundle `name` (a folder in bundles/) live for every session, open ones included.

        Raises DeployError (bad name, outside the folder, a pickle) or BundleError; the old model stays live."""
        bundle = self.deployed.deploy(task, name)
        self._went_live(task)
        return bundle

    def _went_live(self, task: str) -> None:
        bundle = self.deployed.bundle(task)
        if bundle is not None:
            use_app_policy(bundle, self.settings)
        if bundle is not None and bundle.task == "text":
            bundle.use_embedder(self.embedder)  # the hub's one MiniLM, not a second copy
        if task in LIVE_VISION_NAME:
            self.hub.replace(LIVE_VISION_NAME[task])  # open webcam sessions rebuild on their next frame

    def sample_from_review(self, item: Any) -> str:
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


def user_error(message: str, e: BaseException | None = None) -> Exception:
    """A gr.Error (shown as a toast in the page) without importing gradio at module import."""
    import gradio as gr

    err = gr.Error(message)
    if e is not None:
        err.__cause__ = e
    return err
