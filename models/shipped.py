"""The bundles this project trains itself and ships in `models/weights/` (retrained by `livelearner train-default`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    name: str  # registry-style name, e.g. "livelearner-sign"
    folder: str  # bundle folder under models/weights/
    task: str  # "sign"
    description: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.folder


SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel(
        "livelearner-sign",
        "sign_landmarks_mlp",
        "sign",
        "the 24 static ASL letters from mediapipe hand landmarks (invariant features, MLP), trained on 58 people",
    ),
    ShippedModel(
        "livelearner-personality",
        "personality_traits",
        "personality",
        "Big Five traits (each high or low) from any subset of the 50 IPIP items answered, and the next question "
        "to ask; trained on Open Psychometrics respondents, calibrated on held-out countries",
    ),
)


def shipped_model(name: str) -> ShippedModel:
    """The shipped model called `name` (KeyError lists the names)."""
    for m in SHIPPED:
        if m.name == name:
            return m
    raise KeyError(f"no shipped model called {name!r}; shipped: {', '.join(m.name for m in SHIPPED)}")


def shipped_bundle(task: str) -> Path | None:
    """The shipped default bundle folder for `task` ("sign", "personality"), or None when it is not in this
    checkout."""
    for m in SHIPPED:
        if m.task == task and (m.path / "bundle.json").is_file():
            return m.path
    return None
