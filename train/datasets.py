"""Labelled image folders for the default-model recipes: listing, decoding (cached), splitting.

A folder is `root/<label>/*.jpg`. Decoded datasets are cached as .npz under `$LIVELEARNER_HOME/cache` (never
in the repository), keyed by the folder's path, file count and newest modification time, so reruns skip
the decoding.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from capture.images import read_image_grey
from models.store import home
from train.samples import IMAGE_SUFFIXES

FACE_SIZE_PX = 48  # FER2013 faces, and the live crop handed to every emotion model: (48, 48) grey uint8


def cache_dir() -> Path:
    """Where decoded datasets and extracted landmarks are cached (outside the repository)."""
    path = home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def labelled_files(root: Path) -> tuple[list[Path], list[str]]:
    """Image files of a `label/*.jpg` tree (labels.csv is not needed), sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: pass a folder of label/*.jpg images")
    files, labels = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(label_dir.name)
    if not files:
        raise FileNotFoundError(f"no images found under {root}: expected {root}/<label>/*.jpg")
    return files, labels


def folder_key(root: Path, files: list[Path], extra: str = "") -> str:
    """A short hash naming a cached decoding of `files` (changes when files are added or modified)."""
    newest = max(f.stat().st_mtime_ns for f in files)
    text = f"{Path(root).resolve()}|{len(files)}|{newest}|{extra}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_grey_faces(root: Path, size_px: int = FACE_SIZE_PX) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode a `label/*.jpg` face folder into (N, size_px, size_px) uint8 grey, labels (N,) int64, classes.

    Faces that are not already `size_px` square are resized with INTER_AREA, as the live crop is. A file
    that is not an image, or declares too many pixels, is a capture.images.ImageError naming it.
    """
    import cv2

    files, labels = labelled_files(root)
    classes = sorted(set(labels))
    cache = cache_dir() / f"faces-{folder_key(root, files, f'{size_px}-pil')}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["x"], z["y"], [str(c) for c in z["classes"]]
    x = np.empty((len(files), size_px, size_px), np.uint8)
    for i, f in enumerate(files):
        img = read_image_grey(f)  # (H, W) uint8
        if img.shape != (size_px, size_px):
            img = cv2.resize(img, (size_px, size_px), interpolation=cv2.INTER_AREA)
        x[i] = img
    y = np.array([classes.index(label) for label in labels], np.int64)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, y=y, classes=np.array(classes))
    tmp.replace(cache)
    return x, y, classes


def stratified_split(y: np.ndarray, valid_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid): `valid_frac` of each class, drawn at random with `seed`.

    Only for data without person ids (FER2013): with person ids use a grouped split instead.
    """
    rng = np.random.default_rng(seed)
    valid = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        valid.append(idx[: max(1, round(valid_frac * len(idx)))])
    valid_idx = np.sort(np.concatenate(valid))
    train_idx = np.setdiff1d(np.arange(len(y)), valid_idx)
    return train_idx, valid_idx


def class_balance_weights(y: np.ndarray) -> np.ndarray:
    """(N,) weights giving every class the same total weight (each example still counted once)."""
    counts = np.bincount(y)
    return (len(y) / (len(counts[counts > 0]) * counts[y])).astype(np.float64)


def labelled_task_data(root: Path):
    """A `train.datablocks.TaskData` of image paths from a `label/*.jpg` folder (for evaluation)."""
    from train.datablocks import TaskData

    files, labels = labelled_files(root)
    n = len(files)
    return TaskData("image", files, labels, ["unknown"] * n, ["unknown"] * n, np.zeros(n), [str(f) for f in files])
