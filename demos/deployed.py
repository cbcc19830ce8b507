"""The team models that are live: which bundle serves each task, kept across restarts.

Only bundles in the app's own folder (DATA_DIR/bundles: what the Train tab wrote, or what the owner
copied there) can be deployed, and the page names them, never a server path: a name is one folder
name, its resolved path (symlinks followed) must stay inside the folder, and so must every file in
it. A bundle holding a Python pickle (a fastai export) is never loaded from the page: unpickling can
run code. `deployed.json` records the live bundle per task by folder name; a bundle that no longer
loads is skipped with a warning at start, so a deleted folder cannot stop the app.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

LIVE_VISION_NAME = {"image": "team image model", "landmarks": "team sign model"}  # hub names of the live pipelines
DEPLOYED_FILE = "deployed.json"
BUNDLE_SPEC = "bundle.json"
MAX_NAME_CHARS = 200


class DeployError(ValueError):
    """The named bundle cannot be deployed from the page; the message says why and what to do."""


class DeployedModels:
    """Bundle folders under `root` and the one deployed per task (hot-swapped by reference)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._live: dict[str, Any] = {}  # task -> models.bundle.Bundle
        self._lock = threading.Lock()

    def bundle(self, task: str) -> Any:
        return self._live.get(task)

    def names(self, task: str | None = None) -> list[str]:
        """Deployable bundle folders (newest first), optionally only those of one task."""
        found = []
        for folder in self.root.iterdir():
            try:
                path = self.resolve(folder.name)
                spec = json.loads((path / BUNDLE_SPEC).read_text())
            except (DeployError, OSError, ValueError):
                continue
            if task is None or spec.get("task") == task:
                found.append((path.stat().st_mtime, folder.name))
        return [name for _, name in sorted(found, reverse=True)]

    def resolve(self, name: str) -> Path:
        """The folder of bundle `name`, checked: inside root, a bundle, no pickle, no file leaving it."""
        name = (name or "").strip()
        if not name:
            raise DeployError("Choose a trained model from the list first.")
        if len(name) > MAX_NAME_CHARS or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("."):
            raise DeployError("Choose a model from the list: the page deploys only models in the app's own "
                              "bundles folder, by name.")
        root = self.root.resolve()
        path = (root / name).resolve()
        if path.parent != root or not path.is_dir():
            raise DeployError(f"No model named {name!r} in the app's bundles folder; train one, or ask the owner "
                              "to copy it there.")
        if not (path / BUNDLE_SPEC).is_file():
            raise DeployError(f"{name} is not a model bundle (no {BUNDLE_SPEC}).")
        for file in path.rglob("*"):
            if not file.resolve().is_relative_to(path):
                raise DeployError(f"{name} holds a link that leaves its folder; it is not deployed.")
            if file.suffix == ".pkl":
                raise DeployError(f"{name} holds a Python pickle ({file.name}), which can run code when loaded: the "
                                  "page never loads one. Retrain it here, or load it with the CLI's --trust-pickle "
                                  "if you trust who made it.")
        return path

    def deploy(self, task: str, name: str) -> Any:
        """Load bundle `name` for `task` and make it live; the old one stays live on any error."""
        return self._deploy(task, name, record=True)

    def _deploy(self, task: str, name: str, record: bool) -> Any:
        from models.bundle import load_bundle

        path = self.resolve(name)
        with self._lock:
            bundle = load_bundle(path)  # no pickle: a format-1 bundle is refused (BundleError)
            if bundle.task != task:
                raise DeployError(f"{name} is a {bundle.task} model, not for the {task} task; choose the matching task.")
            self._live[task] = bundle
            if record:
                self._save()
        return bundle

    def restore(self) -> list[str]:
        """Load the bundles deployed before the last stop -> the tasks made live again."""
        file = self.root / DEPLOYED_FILE
        if not file.exists():
            return []
        try:
            recorded = json.loads(file.read_text())
        except (OSError, ValueError) as e:
            warnings.warn(f"{file} is unreadable ({e}); no team model is live. Deploy one from the Train tab.")
            return []
        restored = []
        for task, name in recorded.items():
            try:
                self._deploy(task, Path(str(name)).name, record=False)  # older files kept a full path: only its folder name counts
                restored.append(task)
            except Exception as e:  # a deleted or broken bundle must not stop the app
                warnings.warn(f"Deployed {task} model {name} could not be loaded ({e}); deploy another one.")
        return restored

    def _save(self) -> None:
        current = {task: bundle.root.name for task, bundle in self._live.items()}
        tmp = self.root / (DEPLOYED_FILE + ".part")
        tmp.write_text(json.dumps(current, indent=1))
        os.replace(tmp, self.root / DEPLOYED_FILE)
