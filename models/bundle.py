"""Model bundles: what training hands to the live pipelines (written by train.bundle_writer), and how they load and run.

A bundle is a folder:

    bundle.json        {"format": 2, "task": "image"|"landmarks"|"text"|"tabular"|"questionnaire", "backend": ...,
                        "classes": [...], "temperature": T, "conformal_qhat": q|null, "coverage": 0.9|null,
                        "calibrated": bool, "calibration": "on what data, and where its error was measured",
                        "policy": {"accept_at": 0.9, "abstain_below": null}, "input": {...task-specific...},
                        "arch": {"name": ..., sizes} (models.architectures), "tabular": {...} (tabular only:
                        preprocessing state, models.tabular_inputs), "heads": [...] (heads only, below)}
    model.safetensors  tensors only: the network's weights (zero-shot text: "embeddings" (C, 384))
    card.json          model card (split used, metrics with intervals, calibration, diagnosis, counts)
    card.md            the same, for people; plus learning_curves.png / reliability.png when trained

Loading a format-2 bundle runs no code from the bundle: the architecture is built here by name and
filled with tensors. Before any memory is spent on it, the declared architecture is built on torch's meta
device and every shape is compared with the safetensors header (read alone); a mismatch, or more than
MAX_PARAMETERS numbers, is refused with a message (`check_declared_model`). Format 1 (a fastai `learn.export()` model.pkl) is a Python pickle, which runs code
when loaded; it loads only with `trust_pickle=True` (the CLI's --trust-pickle).

Backends ("backend" in bundle.json) and the items `predict_probs` takes:
    vision    image: list of (H, W, 3) uint8 RGB arrays or image paths; resized (squash) to
              input.size and normalised with input.mean/std, exactly as in training validation
    vector    landmarks: (N, D) float array or list of (D,) vectors (normalisation is inside the model);
              text: list[str], embedded with models.embeddings (MiniLM) first (or an (N, 384)
              array of such embeddings)
    zeroshot  text: list[str]; logits = cosine similarity to each class description
    tabular   tabular: list of {question: answer} dicts or a pandas DataFrame
    heads     questionnaire: list of {item id: answer} dicts, any subset of the items (or the (N, 2K) encoding of
              models.questionnaire_inputs); several binary heads (e.g. five traits, each "low" or "high"), each
              with its own calibration, "heads": [{"name": ..., "temperature": T, "conformal_qhat": q|null}, ...];
              `head_predictions` gives one Prediction per head (predict_probs and predictions refuse: there is
              no single class to give)

Probabilities are softmax(logits / temperature); each Prediction says whether and on what they were
calibrated (`Bundle.calibration`: e.g. a trained bundle's validation split and n, or "uncalibrated"). Hot swap: `load_bundle` returns a
new object and never mutates one in use; a `BundleSlot` swaps the reference under a lock.
"""
from __future__ import annotations

import json
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.prediction import UNCALIBRATED, Prediction, RoutingPolicy, make_prediction, softmax

BUNDLE_FORMAT = 2  # what train.bundle_writer writes
READABLE_FORMATS = (1, 2)  # 1: fastai pickle (trust_pickle only)
WEIGHTS_FILE = "model.safetensors"
PICKLE_FILE = "model.pkl"  # format 1
TASKS = ("image", "landmarks", "text", "tabular", "questionnaire")
BACKENDS = ("vision", "vector", "zeroshot", "tabular", "heads")
MAX_PARAMETERS = 100_000_000  # numbers in a bundle's tensors (400 MB as float32); the largest shipped has 3.5 M
MAX_HEADER_BYTES = 100_000_000  # a safetensors JSON header larger than this is refused (safetensors' own limit)
SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BundleError(ValueError):
    """The folder is not a usable bundle; the message says what to do."""


class UntrustedPickleError(BundleError):
    """A pickle was refused because the caller did not say it trusts the file (nothing was loaded)."""


def pickle_refusal(path: str | os.PathLike) -> UntrustedPickleError:
    """The error for a pickle loaded without trust: why it is refused and how to load it anyway."""
    return UntrustedPickleError(
        f"{path} is a Python pickle (a fastai export), which can run code when loaded; only load it if you "
        "trust who made it; pass --trust-pickle (CLI) to load it")


@dataclass(frozen=True)
class Head:
    """One binary output of a multi-head bundle, with its own calibration."""

    name: str  # e.g. "Extraversion"
    temperature: float  # p(high) = sigmoid(logit / temperature)
    conformal_qhat: float | None  # split-conformal threshold of its sets (None: no sets)


class Bundle:
    """A loaded model bundle. Read-only after loading, so threads may share it.

    model: the network (eval mode) for the vision, vector and tabular backends; zeroshot: (C, 384) class
    description embeddings; tabular: the answers' preprocessing (tabular backend).
    """

    def __init__(self, root: Path, spec: dict[str, Any], model: Any = None, zeroshot: np.ndarray | None = None,
                 tabular: Any = None, questionnaire: Any = None, heads: tuple[Head, ...] = ()):
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
        self.model = model
        self.tabular = tabular  # models.tabular_inputs.TabularInputs
        self.questionnaire = questionnaire  # models.questionnaire_inputs.Questionnaire (heads backend)
        self.heads = heads  # heads backend: one calibrated binary output per head
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

    @property
    def calibration(self) -> str | None:
        """On what data the probabilities were calibrated and where their error was measured (bundle.json
        "calibration", written by train.trainer.write_bundle); None for a calibrated bundle that does not
        say (older bundles), UNCALIBRATED-style words for an uncalibrated one."""
        text = self.spec.get("calibration")
        text = text.strip() if isinstance(text, str) and text.strip() else None
        if self.calibrated:
            return text
        if text is None:
            return UNCALIBRATED
        return text if text.lower().startswith("uncalibrated") else f"uncalibrated: {text}"

    def use_embedder(self, embedder: Any) -> None:
        """Share an already loaded models.embeddings.TextEmbedder (text bundles) instead of loading one."""
        with self._lock:
            self._embedder = embedder

    # ---- inference -------------------------------------------------------------------------------
    def predict_logits(self, items: Any) -> np.ndarray:
        """Uncalibrated logits, (N, C) float64; heads backend: (N, H) logits of each head's second class."""
        import torch

        if self.backend == "heads":
            with torch.inference_mode():
                trait_logits, _ = self.model.split(self.model(self._encoded(items)))  # (N, H), (N, K, L)
            return trait_logits.double().numpy()
        if self.backend == "zeroshot":
            emb = self._embed(list(items))  # (N, 384), L2-normalised
            return emb.astype(np.float64) @ self._zeroshot.T.astype(np.float64)  # (N, C) cosine similarities
        if self.backend == "tabular":
            from models.tabular_inputs import TabularInputError

            try:
                x: Any = self.tabular.tensors(items)  # ((N, n_cat) int64, (N, n_cont) float32)
            except TabularInputError as e:
                raise BundleError(str(e)) from e
        elif self.backend == "vision":
            x = (self._image_batch(items),)  # (N, 3, H, W) float32 normalised
        elif self.task == "text" and not _is_numeric(items):
            x = (torch.from_numpy(self._embed(list(items))),)  # (N, 384)
        else:
            v = torch.as_tensor(np.asarray(items, dtype=np.float32).reshape(len(items), -1))  # (N, D)
            dim = self.input.get("dim")
            if dim is not None and v.shape[1] != dim:
                raise BundleError(f"this {self.task} model takes {dim} numbers per item, got {v.shape[1]}")
            x = (v,)
        with torch.inference_mode():
            return self.model(*x).double().numpy()

    def predict_probs(self, items: Any) -> np.ndarray:
        """Calibrated probabilities, (N, C) float64, rows sum to 1."""
        self._refuse_heads("predict_probs")
        if len(items) == 0:
            return np.zeros((0, len(self.classes)))
        return softmax(self.predict_logits(items), self.temperature)

    def predictions(self, items: Any, **meta: Any) -> list[Prediction]:
        """One `Prediction` per item, with conformal set and routing decision. `meta` (timestamp_s,
        box, track_id, ...) is passed to every Prediction; latency_ms is filled in (per item)."""
        self._refuse_heads("predictions")
        t0 = time.perf_counter()
        probs = self.predict_probs(items)
        latency_ms = (time.perf_counter() - t0) * 1000 / max(len(probs), 1)
        meta.setdefault("latency_ms", latency_ms)
        return [make_prediction(self.classes, p, policy=self.policy, conformal_qhat=self.conformal_qhat,
                                coverage=self.coverage, calibrated=self.calibrated, calibration=self.calibration,
                                **meta) for p in probs]

    # ---- several binary heads (backend "heads") ---------------------------------------------------
    def head_probs(self, items: Any) -> np.ndarray:
        """(N, H) calibrated probability of each head's second class ("high"), each head its own temperature."""
        logits = self.predict_logits(items)  # (N, H)
        temps = np.array([h.temperature for h in self.heads])
        return 1.0 / (1.0 + np.exp(-logits / temps))

    def head_predictions(self, items: Any, **meta: Any) -> list[dict[str, Prediction]]:
        """Per item, {head name: Prediction over the head's classes}, each with its conformal set and decision."""
        t0 = time.perf_counter()
        p_high = self.head_probs(items)  # (N, H)
        meta.setdefault("latency_ms", (time.perf_counter() - t0) * 1000 / max(len(p_high), 1))
        return [{h.name: make_prediction(self.classes, np.array([1.0 - p, p]), policy=self.policy,
                                         conformal_qhat=h.conformal_qhat, coverage=self.coverage if
                                         h.conformal_qhat is not None else None, calibrated=self.calibrated,
                                         calibration=self.calibration, **meta)
                 for h, p in zip(self.heads, row)} for row in p_high]

    def answer_probs(self, items: Any) -> np.ndarray:
        """(N, K, L): the model's p(answer level | the answers given) for every item (heads backend)."""
        import torch

        with torch.inference_mode():
            _, answer_logits = self.model.split(self.model(self._encoded(items)))  # (N, K, L)
            return torch.softmax(answer_logits.double(), dim=-1).numpy()

    def _encoded(self, items: Any):
        import torch

        from models.questionnaire_inputs import QuestionnaireInputError

        if self.backend != "heads":
            raise BundleError(f"this is a {self.task} model with one output; use predict_probs / predictions")
        if _is_numeric(items):
            x = np.asarray(items, np.float32).reshape(len(items), -1)  # (N, 2K) already encoded
            if x.shape[1] != 2 * len(self.questionnaire.items):
                raise BundleError(f"this questionnaire model takes {2 * len(self.questionnaire.items)} numbers per "
                                  f"person, got {x.shape[1]}")
        else:
            try:
                x = self.questionnaire.encode(list(items))  # (N, 2K)
            except QuestionnaireInputError as e:
                raise BundleError(str(e)) from e
        return torch.from_numpy(x)

    def _refuse_heads(self, what: str) -> None:
        if self.backend == "heads":
            raise BundleError(f"this {self.task} model has {len(self.heads)} separate outputs "
                              f"({', '.join(h.name for h in self.heads)}), not one class: use head_predictions, "
                              f"not {what}")

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
    """(H, W, 3) uint8 RGB from an image file, read by capture.images (PIL, as fastai; the header's pixel
    count checked against MAX_IMAGE_PIXELS before decoding); BundleError says what is wrong with it."""
    from capture.images import ImageError, read_image_rgb  # here: importing capture loads scipy (seconds)

    try:
        return read_image_rgb(path)
    except ImageError as e:
        raise BundleError(str(e)) from e


def load_bundle(path: str | os.PathLike, *, trust_pickle: bool = False) -> Bundle:
    """Load a bundle folder (a new object each call: swap by reference for hot reload).

    trust_pickle: allow a format-1 bundle (fastai pickle, which can run code when loaded); without it
    such a bundle raises UntrustedPickleError before anything is read from the pickle.
    """
    root = Path(path)
    if root.is_file():
        if _looks_like_pickle(root):
            if not trust_pickle:
                raise pickle_refusal(root)
            raise BundleError(f"{root} is a single fastai export, not a bundle folder; run an image model with "
                              f"`livelearner watch --task {root} --trust-pickle`, or train a bundle")
        raise BundleError(f"{root} is a file, not a model bundle folder; give the folder `livelearner train` wrote")
    spec_path = root / "bundle.json"
    if not spec_path.is_file():
        raise BundleError(f"{root} is not a model bundle (no bundle.json); train one with `livelearner train`")
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{spec_path} is not valid JSON; re-export the bundle") from e
    if not isinstance(spec, dict) or spec.get("format") not in READABLE_FORMATS:
        found = spec.get("format") if isinstance(spec, dict) else None
        raise BundleError(f"{root}: bundle format {found!r}, this version reads {list(READABLE_FORMATS)}")
    if spec.get("backend") not in BACKENDS or spec.get("task") not in TASKS or not spec.get("classes"):
        raise BundleError(f"{spec_path} lacks a known task, backend or its classes; re-export the bundle")
    if spec["format"] == 1:
        return _load_format1(root, spec, trust_pickle)
    return _load_format2(root, spec)


def _load_format2(root: Path, spec: dict[str, Any]) -> Bundle:
    from models.architectures import ArchitectureError, build_model, load_weights
    from models.questionnaire_inputs import Questionnaire, QuestionnaireInputError
    from models.tabular_inputs import TabularInputError, TabularInputs

    header = read_safetensors_header(root / WEIGHTS_FILE)
    check_declared_model(root, spec, header)  # before a byte of weights is read or a layer is built
    tensors = _read_tensors(root / WEIGHTS_FILE)
    if spec["backend"] == "zeroshot":
        if "embeddings" not in tensors:
            raise BundleError(f"{root / WEIGHTS_FILE} lacks the class description embeddings; re-export the bundle")
        return Bundle(root, spec, zeroshot=tensors["embeddings"].float().numpy())  # (C, 384)
    if not isinstance(spec.get("arch"), dict):
        raise BundleError(f"{root / 'bundle.json'} names no architecture (\"arch\"); re-export the bundle")
    try:
        model = load_weights(build_model(spec["arch"]), tensors, str(root / WEIGHTS_FILE))
        tabular = TabularInputs.from_spec(spec.get("tabular") or {}) if spec["backend"] == "tabular" else None
        if spec["backend"] == "heads":
            questionnaire = Questionnaire.from_spec(spec.get("input") or {})
            heads = _read_heads(spec, len(questionnaire.traits))
            if getattr(model, "n_heads", None) != len(heads) or len(spec["classes"]) != 2 \
                    or getattr(model, "n_items", None) != len(questionnaire.items):
                raise BundleError(f"{root / 'bundle.json'}: the network's heads and items do not match the "
                                  "questionnaire and its two classes; re-export the bundle")
            return Bundle(root, spec, model, questionnaire=questionnaire, heads=heads)
    except (ArchitectureError, TabularInputError, QuestionnaireInputError) as e:
        raise BundleError(f"{root}: {e}") from e
    return Bundle(root, spec, model, tabular=tabular)


def _read_heads(spec: dict[str, Any], n_traits: int) -> tuple[Head, ...]:
    """bundle.json "heads" checked: a name, a positive finite temperature and a threshold in [0, 1] or null each."""
    raw = spec.get("heads")
    try:
        heads = tuple(Head(str(h["name"]), float(h["temperature"]),
                           None if h.get("conformal_qhat") is None else float(h["conformal_qhat"])) for h in raw)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"bundle.json's heads {str(raw)[:200]} are malformed ({e}); re-export the bundle") from e
    bad = [h.name for h in heads if not (np.isfinite(h.temperature) and h.temperature > 0) or
           (h.conformal_qhat is not None and not 0 <= h.conformal_qhat <= 1)]
    if bad or not heads or len(heads) != n_traits:
        raise BundleError(f"bundle.json's heads ({bad or len(heads)}) do not fit its {n_traits} traits or have a "
                          "temperature <= 0 or a threshold outside [0, 1]; re-export the bundle")
    return heads


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's header alone (8-byte little-endian length, then
    JSON); the tensors are not read. BundleError for a missing file or a header that does not describe tensors
    lying inside the file."""
    if not path.is_file():
        raise BundleError(f"{path} is missing; re-export the bundle")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little") if size >= 8 else -1
            if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"header length {n} does not fit a {size}-byte file")
            raw = json.loads(f.read(n))
        out: dict[str, tuple[str, tuple[int, ...]]] = {}
        end = 0
        for name, entry in raw.items():
            if name == "__metadata__":
                continue
            dtype, shape, (lo, hi) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
            if dtype not in SAFETENSORS_DTYPES or any(d < 0 for d in shape) or not 0 <= int(lo) <= int(hi):
                raise ValueError(f"tensor {name!r}: {entry}")
            out[name], end = (dtype, shape), max(end, int(hi))
        if end > size - 8 - n:
            raise ValueError(f"its tensors need {end} bytes, the file holds {size - 8 - n}")
    except (OSError, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not a readable safetensors file ({e}); re-export the bundle") from e
    return out


def check_declared_model(root: Path, spec: dict[str, Any], header: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Refuse a bundle whose bundle.json and model.safetensors disagree, or that is too big, before memory is spent
    on it: the declared architecture is built on torch's meta device (shapes, no storage) and every shape is
    compared with the safetensors header; the parameters are counted and capped at MAX_PARAMETERS."""
    from models.architectures import ArchitectureError, declared_shapes

    def refuse(why: str) -> BundleError:
        return BundleError(f"{root} was refused before loading: {why}. A bundle written by `livelearner train` "
                           "never does this; re-export it, or check where it came from")

    stored = sum(int(np.prod(shape, dtype=np.float64)) for _, shape in header.values())
    if spec["backend"] == "zeroshot":
        declared = {"embeddings": (len(spec["classes"]), int((spec.get("input") or {}).get("dim", 384)))}
    elif not isinstance(spec.get("arch"), dict):
        raise BundleError(f"{root / 'bundle.json'} names no architecture (\"arch\"); re-export the bundle")
    else:
        try:
            declared = declared_shapes(spec["arch"])
        except ArchitectureError as e:
            raise BundleError(f"{root}: {e}") from e
    n_declared = sum(int(np.prod(shape, dtype=np.float64)) for shape in declared.values())
    if max(n_declared, stored) > MAX_PARAMETERS:
        raise refuse(f"bundle.json declares {n_declared:,} parameters and the weights file holds {stored:,}; "
                     f"this version loads at most {MAX_PARAMETERS:,}")
    missing = sorted(set(declared) - set(header))
    extra = sorted(set(header) - set(declared))
    wrong = [f"{k} {list(header[k][1])} (bundle.json's arch needs {list(declared[k])})"
             for k in sorted(set(declared) & set(header)) if tuple(header[k][1]) != tuple(declared[k])]
    if missing or extra or wrong:
        parts = ([f"missing tensors {', '.join(missing[:5])}"] if missing else []) + \
                ([f"unexpected tensors {', '.join(extra[:5])}"] if extra else []) + \
                ([f"shapes differ: {'; '.join(wrong[:5])}"] if wrong else [])
        raise refuse(f"the weights do not fit the architecture in bundle.json ({'; '.join(parts)})")


def _read_tensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise BundleError(f"{path} is missing; re-export the bundle")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{path} is not a readable safetensors file ({e}); re-export the bundle") from e


def _load_format1(root: Path, spec: dict[str, Any], trust_pickle: bool) -> Bundle:
    """A format-1 bundle: fastai pickle (trusted only), or zero-shot embeddings in an .npz (no pickle)."""
    if spec["backend"] == "zeroshot":
        try:
            with np.load(root / "zeroshot.npz", allow_pickle=False) as z:
                return Bundle(root, spec, zeroshot=z["embeddings"].astype(np.float32))  # (C, 384)
        except (OSError, KeyError, ValueError) as e:
            raise BundleError(f"{root / 'zeroshot.npz'} is missing or unreadable; re-export the bundle") from e
    path = root / PICKLE_FILE
    if not path.is_file():
        raise BundleError(f"{path} is missing; re-export the bundle")
    if not trust_pickle:
        raise pickle_refusal(path)
    learner = load_trusted_learner(path)
    tabular = None
    if spec["backend"] == "tabular":
        from models.tabular_inputs import TabularInputs

        tabular = TabularInputs.from_dls(learner.dls)
    return Bundle(root, spec, learner.model.eval(), tabular=tabular)


def load_trusted_learner(path: str | os.PathLike) -> Any:
    """The fastai Learner in a `learn.export()` pickle. Unpickling runs code from the file: call this only
    for a file the user said they trust (trust_pickle). BundleError says what is wrong with the file."""
    from fastai.learner import Learner, load_learner

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(insecure|pickle|weights_only).*")
            learner = load_learner(path, cpu=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        if isinstance(e, AttributeError) and "'dls'" in str(e):  # fastai touched .dls of a non-Learner
            kind = str(e).split("'")[1] if "'" in str(e) else "something else"
            raise BundleError(f"{path} holds a {kind}, not a fastai Learner; "
                              "save your model with `learn.export('model.pkl')`") from e
        raise BundleError(f"{path} could not be read as a fastai export ({type(e).__name__}: {e}); it is "
                          "corrupt or not a `learn.export()` file -- export the learner again") from e
    if not isinstance(learner, Learner):
        raise BundleError(f"{path} holds a {type(learner).__name__}, not a fastai Learner; "
                          "save your model with `learn.export('model.pkl')`")
    return learner


def _looks_like_pickle(path: Path) -> bool:
    """A .pkl/.pickle/.pt/.pth name, a pickle's protocol byte, or torch's zip container."""
    if path.suffix.lower() in (".pkl", ".pickle", ".pt", ".pth"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return head[:1] == b"\x80" or head == b"PK"


class BundleSlot:
    """Holds the bundle a live pipeline uses; `swap` loads the new one fully, then replaces the
    reference, so frames in flight finish on the old model and the next frame uses the new one."""

    def __init__(self, bundle: Bundle | None = None):
        self._bundle = bundle
        self._lock = threading.Lock()

    @property
    def current(self) -> Bundle | None:
        return self._bundle

    def swap(self, path: str | os.PathLike, *, trust_pickle: bool = False) -> Bundle | None:
        """Load `path` and make it current; returns the previous bundle. On a bad bundle, raises
        BundleError and keeps the current one."""
        new = load_bundle(path, trust_pickle=trust_pickle)
        with self._lock:
            old, self._bundle = self._bundle, new
        return old
