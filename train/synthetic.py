"""Generated data with known structure, for tests and benchmarks (no downloads, no real people).

Every generator simulates several "persons", each with its own quirks, so that a random split
leaks (the model can recognise the person's quirk) while a grouped split does not:

- `leaky_landmarks`: (D,) vectors = weak class signal + strong person offset + strong
  person-and-class quirk + noise.
- `shape_images`: RGB images of a circle / square / triangle / cross on a person-specific background
  colour and stripe texture, with random size, position, blur, noise and some label noise.
- `fill_store`: writes either into a SampleStore, with person, session and a capture time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")


@dataclass(frozen=True)
class LeakyLandmarks:
    n_persons: int = 6
    n_classes: int = 4
    per_person_class: int = 20  # examples of each class recorded by each person
    dim: int = 63  # 21 hand landmarks x (x, y, z)
    class_signal: float = 1.0  # strength of what generalises to new persons
    person_offset: float = 3.0  # strength of what identifies the person
    quirk: float = 2.0  # strength of each person's idiosyncratic way of making each class
    noise: float = 1.0
    label_noise: float = 0.0  # share of labels replaced at random
    seed: int = 0


def leaky_landmarks(cfg: LeakyLandmarks = LeakyLandmarks()) -> Iterator[tuple[np.ndarray, str, str, str, float]]:
    """Yields (vector (D,), label, person, session, captured_at_s) in capture order."""
    rng = np.random.default_rng(cfg.seed)
    centres = rng.normal(size=(cfg.n_classes, cfg.dim))  # (C, D)
    t = 1_700_000_000.0
    for p in range(cfg.n_persons):
        offset = rng.normal(size=cfg.dim) * cfg.person_offset
        quirks = rng.normal(size=(cfg.n_classes, cfg.dim)) * cfg.quirk
        for rep in range(cfg.per_person_class):
            for c in rng.permutation(cfg.n_classes):
                x = centres[c] * cfg.class_signal + offset + quirks[c] + rng.normal(size=cfg.dim) * cfg.noise
                label = int(rng.integers(cfg.n_classes)) if rng.random() < cfg.label_noise else int(c)
                t += 1.0
                yield x.astype(np.float32), f"class{label}", f"person{p}", f"p{p}-s{rep % 2}", t


@dataclass(frozen=True)
class ShapeImages:
    n_persons: int = 5
    per_person_class: int = 10
    size_px: int = 224
    classes: tuple[str, ...] = SHAPES
    label_noise: float = 0.05  # share of labels replaced at random (so calibration has work to do)
    seed: int = 0


def _draw(shape: str, img: np.ndarray, rng: np.random.Generator, colour: tuple[int, int, int]) -> None:
    import cv2

    s = img.shape[0]
    r = int(s * rng.uniform(0.12, 0.3))
    cx, cy = (int(v) for v in rng.integers(r + 2, s - r - 2, size=2))
    if shape == "circle":
        cv2.circle(img, (cx, cy), r, colour, -1)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    elif shape == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    else:  # cross
        w = max(2, r // 3)
        cv2.rectangle(img, (cx - r, cy - w), (cx + r, cy + w), colour, -1)
        cv2.rectangle(img, (cx - w, cy - r), (cx + w, cy + r), colour, -1)


def shape_images(cfg: ShapeImages = ShapeImages()) -> Iterator[tuple[np.ndarray, str, str, str, float]]:
    """Yields (image (S, S, 3) uint8 RGB, label, person, session, captured_at_s)."""
    import cv2

    rng = np.random.default_rng(cfg.seed)
    s = cfg.size_px
    t = 1_700_000_000.0
    for p in range(cfg.n_persons):
        bg = tuple(int(v) for v in rng.integers(40, 216, size=3))  # the person's room
        stripe = int(rng.integers(6, 30))  # and its wallpaper
        fg = tuple(int(v) for v in rng.integers(0, 256, size=3))  # the person's favourite colour
        for rep in range(cfg.per_person_class):
            for c in rng.permutation(len(cfg.classes)):
                img = np.empty((s, s, 3), np.uint8)
                img[:] = bg
                img[:, ::stripe] = np.clip(np.asarray(bg) + 40, 0, 255)
                jitter = rng.integers(-40, 41, size=3)
                _draw(cfg.classes[c], img, rng, tuple(int(v) for v in np.clip(np.asarray(fg) + jitter, 0, 255)))
                img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.5)))
                img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
                label = cfg.classes[int(rng.integers(len(cfg.classes)))] if rng.random() < cfg.label_noise \
                    else cfg.classes[c]
                t += 2.0
                yield img, label, f"person{p}", f"p{p}-s{rep % 2}", t


def fill_store(store, kind: str, rows: Iterator[tuple[np.ndarray, str, str, str, float]]) -> int:
    """Add generated rows to a SampleStore in one transaction; returns how many."""
    n = 0
    with store.batch() as b:
        for item, label, person, session, t in rows:
            if kind == "image":
                import cv2

                ok, buf = cv2.imencode(".png", cv2.cvtColor(item, cv2.COLOR_RGB2BGR))
                b.add("image", label, person=person, session=session, captured_at=t, data=buf.tobytes(),
                      suffix=".png")
            else:
                b.add(kind, label, person=person, session=session, captured_at=t,
                      payload=[float(v) for v in item])
            n += 1
    return n
