"""Model bundles: what training hands to the live pipelines (written by train.bundle_writer), and how they load and run.

A bundle is a folder:

    bundle.json   {"format": 1, "task": "image"|"landmarks"|"text"|"tabular", "backend": ...,
                   "classes": [...], "temperature": T, "conformal_qhat": q|null, "coverage": 0.9|null,
                   "policy": {"accept_at": 0.9, "abstain_below": null}, "input": {...task-specific...}}
    model.pkl     fastai `learn.export()` (absent for zero-shot text bundles)
    zeroshot.npz  zero-shot text only: description embeddings (C, 384) and the descriptions
    card.json     model card (split used, metrics with intervals, calibration, diagnosis, counts)
    card.md       the same, for people; plus learning_curves.png / reliability.png when trained

Backends ("backend" in bundle.json) and the items `predict_probs` takes:
    vision    image: list of (H, W, 3) uint8 RGB arrays or image paths; resized (squash) to
              input.size and normalised with input.mean/std, exactly as in training validation
    vector    landmarks: (N, D) float array or list of (D,) vectors (normalisation is inside the model);
              text: list[str], embedded with models.embeddings.TextEmbedder first (or an (N, 384)
              array of such embeddings)
    zeroshot  text: list[str]; logits = cosine similarity to each class description
    tabular   tabular: list of {question: answer} dicts or a pandas DataFrame

Probabilities are calibrated: softmax(logits / temperature). Hot swap: `load_bundle` returns a
new object and never mutates one in use; a `BundleSlot` swaps the reference under a lock.
"""
from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.prediction import Prediction, RoutingPolicy, make_prediction, softmax

BUNDLE_FORMAT = 1
TASKS = ("image", "landmarks", "text", "tabular")
BACKENDS = ("vision", "vector", "zeroshot", "tabular")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BundleError(ValueError):
    """The folder is not a usable bundle; the message says what to do."""


class Bundle:
    """A loaded model bundle. Read-only after loading, so threads may share it."""

    def __init__(self, root: Path, spec: dict[str, Any], learner: Any = None, zeroshot: np.ndarray | None = None):
        self.root = root
        self.spec = spec
        self.task: str = spec["task"]
        self.backend: str = spec["backend"]
        self.classes: tuple[str, ...] = tuple(spec["classes"])
        self.temperature = float(spec.get("temperature", 1.0))
        self.conformal_qhat: float | None = spec.get("conformal_qhat")
        self.coverage: float | None = spec.get("coverage")
        pol = spec.get("policy") or {}
        self.policy = RoutingPolicy(accept_at=float(pol.get("accept_at", 0.9)), abstain_below=pol.get("abstain_below"))
        self.input: dict[str, Any] = spec.get("input", {})
        self.learner = learner
        self._zeroshot = zeroshot  # (C, 384) description embeddings
        self._embedder = None
        self._lock = threading.Lock()  # one lazy embedder load even when frames race
        self.loaded_at_s = time.time()

    @property
    def card(self) -> dict[str, Any]:
        path = self.root / "card.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def calibrated(self) -> bool:
        return bool(self.spec.get("calibrated", self.temperature != 1.0))

    def use_embedder(self, embedder: Any) -> None:
        """Share an already loaded models.embeddings.TextEmbedder (text bundles) instead of loading one."""
        with self._lock:
            self._embedder = embedder

    # ---- inference -------------------------------------------------------------------------------
    def predict_logits(self, items: Any) -> np.ndarray:
        """Uncalibrated logits, (N, C) float64."""
        import torch

        if self.backend == "zeroshot":
            emb = self._embed(list(items))  # (N, 384), L2-normalised
            return emb.astype(np.float64) @ self._zeroshot.T.astype(np.float64)  # (N, C) cosine similarities
        if self.backend == "tabular":
            return _tabular_logits(self.learner, items)
        if self.backend == "vision":
            x = self._image_batch(items)  # (N, 3, H, W) float32 normalised
        elif self.task == "text" and not _is_numeric(items):
            x = torch.from_numpy(self._embed(list(items)))  # (N, 384)
        else:
            x = torch.as_tensor(np.asarray(items, dtype=np.float32).reshape(len(items), -1))
            dim = self.input.get("dim")
            if dim is not None and x.shape[1] != dim:
                raise BundleError(f"this {self.task} model takes {dim} numbers per item, got {x.shape[1]}")
        model = self.learner.model
        model.eval()
        with torch.inference_mode():
            return model(x).double().numpy()

    def predict_probs(self, items: Any) -> np.ndarray:
        """Calibrated probabilities, (N, C) float64, rows sum to 1."""
        if len(items) == 0:
            return np.zeros((0, len(self.classes)))
        return softmax(self.predict_logits(items), self.temperature)

    def predictions(self, items: Any, **meta: Any) -> list[Prediction]:
        """One `Prediction` per item, with conformal set and routing decision. `meta` (timestamp_s,
        box, track_id, ...) is passed to every Prediction; latency_ms is filled in (per item)."""
        t0 = time.perf_counter()
        probs = self.predict_probs(items)
        latency_ms = (time.perf_counter() - t0) * 1000 / max(len(probs), 1)
        meta.setdefault("latency_ms", latency_ms)
        return [make_prediction(self.classes, p, policy=self.policy, conformal_qhat=self.conformal_qhat,
                                coverage=self.coverage, calibrated=self.calibrated, **meta) for p in probs]

    def predict(self, item: Any, **meta: Any) -> Prediction:
        return self.predictions([item], **meta)[0]

    # ---- helpers ---------------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if self._embedder is None:
                from models.embeddings import load_text_embedder

                self._embedder = load_text_embedder()
        return np.asarray(self._embedder.encode(texts), dtype=np.float32)  # (N, 384)

    def _image_batch(self, items: Sequence[Any]):
        import torch
        from PIL import Image

        h, w = self.input.get("size", (224, 224))
        mean = np.asarray(self.input.get("mean", IMAGENET_MEAN), dtype=np.float32)
        std = np.asarray(self.input.get("std", IMAGENET_STD), dtype=np.float32)
        batch = []
        for item in items:
            img = load_rgb(item) if isinstance(item, (str, os.PathLike)) else np.asarray(item)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            if img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
                raise BundleError(f"images must be (H, W, 3) RGB uint8, got shape {img.shape}")
            # PIL's bilinear squash, exactly as fastai's Resize(method="squash") did in training
            img = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((w, h), Image.BILINEAR))
            batch.append((img.astype(np.float32) / 255.0 - mean) / std)
        x = np.stack(batch).transpose(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
        return torch.from_numpy(np.ascontiguousarray(x))


def _is_numeric(items: Any) -> bool:
    """True for an (N, D) array of numbers (e.g. text already embedded), False for a list of strings."""
    return isinstance(items, np.ndarray) and np.issubdtype(items.dtype, np.number)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file (decoded by PIL, as fastai does); a clear error if it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise BundleError(f"{path} is not a readable image (corrupt or not an image)") from e


def _tabular_logits(learner: Any, items: Any) -> np.ndarray:
    import pandas as pd
    import torch
    from fastai.callback.progress import ProgressCallback  # noqa: F401  (adds Learner.no_bar)

    df = items if isinstance(items, pd.DataFrame) else pd.DataFrame(list(items))
    for col in learner.dls.cont_names:
        if col not in df:
            raise BundleError(f"the answers lack the question {col!r} this model was trained on")
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in learner.dls.cat_names:
        if col.endswith("_na"):
            continue
        if col not in df:
            raise BundleError(f"the answers lack the question {col!r} this model was trained on")
        df[col] = df[col].astype(str)
    dl = learner.dls.test_dl(df)
    with learner.no_bar(), learner.no_logging():
        logits, _ = learner.get_preds(dl=dl, act=lambda t: t)
    return torch.as_tensor(logits).double().numpy()


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load a bundle folder (a new object each call: swap by reference for hot reload)."""
    root = Path(path)
    spec_path = root / "bundle.json"
    if not spec_path.is_file():
        raise BundleError(f"{root} is not a model bundle (no bundle.json); train one with `livelearner train`")
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{spec_path} is not valid JSON; re-export the bundle") from e
    if spec.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{root}: bundle format {spec.get('format')!r}, this version reads {BUNDLE_FORMAT}")
    if spec.get("backend") not in BACKENDS or not spec.get("classes"):
        raise BundleError(f"{spec_path} lacks a known backend or its classes; re-export the bundle")
    learner, zs = None, None
    if spec["backend"] == "zeroshot":
        zs = np.load(root / "zeroshot.npz")["embeddings"].astype(np.float32)  # (C, 384)
    else:
        learner = _load_learner(root / "model.pkl")
    return Bundle(root, spec, learner, zs)


def _load_learner(path: Path) -> Any:
    from fastai.learner import load_learner

    if not path.is_file():
        raise BundleError(f"{path} is missing; re-export the bundle")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*insecure pickle.*")
            learner = load_learner(path, cpu=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise BundleError(f"{path} is not a loadable fastai export ({type(e).__name__}: {e}); re-export it") from e
    learner.model.eval()
    return learner


class BundleSlot:
    """Holds the bundle a live pipeline uses; `swap` loads the new one fully, then replaces the
    reference, so frames in flight finish on the old model and the next frame uses the new one."""

    def __init__(self, bundle: Bundle | None = None):
        self._bundle = bundle
        self._lock = threading.Lock()

    @property
    def current(self) -> Bundle | None:
        return self._bundle

    def swap(self, path: str | os.PathLike) -> Bundle | None:
        """Load `path` and make it current; returns the previous bundle. On a bad bundle, raises
        BundleError and keeps the current one."""
        new = load_bundle(path)
        with self._lock:
            old, self._bundle = self._bundle, new
        return old
