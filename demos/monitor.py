"""Drift and health monitoring for the live app.

What is watched, per pipeline ("emotion", "sign", "speech", ...):
- input statistics: frame brightness, face size (box area / frame area), face brightness (mean
  luma inside the face box), audio level and noise floor (dBFS), speech rate (words per second of
  committed text);
- output statistics: top-class probability and entropy of recent predictions, exactly as the
  Prediction carries them (per-frame calibrated probabilities, not display smoothing);
- the share of predictions routed to review, per minute;
- compute time (model) against wall time (between results), so a pipeline that cannot keep up
  is visible.

Each recent window is compared with a reference sample of the same quantity computed on the
model's validation data (`set_references`): the deployed bundle's validation outputs, or for a
packaged model the references shipped with its calibration (models/calibration/, e.g. the emotion
model's calibrated confidence, entropy and face brightness on FER2013 held-out faces, installed
by `install_shipped_references`). References are saved under the app's data folder
(`state_dir/references.json`) and restored when the app restarts. A statistic without one is
compared with the first `warmup` values of this run (said so on the page: drift against the start
of the session, not against validation). The alarm uses the population stability index (PSI >
0.25 is the usual "significant shift") together with a two-sample Kolmogorov-Smirnov test
(p < 0.01) and a change of the mean of at least `min_shift` (what is worth a person's attention),
and only once both samples have `min_samples`.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
import warnings
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from models.calibration_store import load_calibration, reference_sample
from models.prediction import Decision, Prediction

DB_FLOOR = -100.0  # dBFS reported for digital silence
WARM_UP = "warm-up"  # reference source of a statistic without a validation reference
REFERENCES_FILE = "references.json"  # under Monitor's state_dir
# pipeline name in the app -> packaged model whose shipped calibration file holds its references
SHIPPED_REFERENCES = {"emotion": "fer-mini-xception"}


@dataclass(frozen=True)
class MonitorSettings:
    window: int = 300  # recent values kept per statistic (bounded memory)
    warmup: int = 100  # values taken as the reference when no validation baseline is set
    min_samples: int = 30  # no alarm before both samples have this many values
    psi_alarm: float = 0.25  # PSI above this is a significant shift
    ks_p_alarm: float = 0.01  # KS p-value below this is a significant shift
    bins: int = 10  # quantile bins of the reference for PSI
    # Smallest change of the mean that is worth an alarm, per statistic (the part after "pipeline/").
    # Without it a nearly constant input (one face in a still room) alarms on a shift of 0.001: with
    # hundreds of correlated frames any difference is "significant", few are meaningful.
    min_shift: tuple[tuple[str, float], ...] = (
        ("brightness", 0.05), ("face_brightness", 0.05),  # luma, 0..1
        ("face_size", 0.03),  # share of the frame
        ("confidence", 0.05), ("asr_confidence", 0.05),  # probability
        ("entropy", 0.1),  # nats
        ("audio_level_db", 3.0), ("noise_floor_db", 3.0),  # dB
        ("speech_rate_wps", 0.5),  # words per second
    )

    def shift_floor(self, stat: str) -> float:
        return dict(self.min_shift).get(stat.rsplit("/", 1)[-1], 0.0)


@dataclass(frozen=True)
class DriftResult:
    stat: str  # e.g. "emotion/brightness"
    n_reference: int
    n_recent: int
    reference_source: str  # what the reference was computed on (validation data), or WARM_UP
    psi: float
    ks_p: float
    alarm: bool
    reference_mean: float
    recent_mean: float


# --- input statistics (pure functions on arrays) ---------------------------------------------


def brightness(frame_rgb: np.ndarray) -> float:
    """Mean luma in [0, 1] of an (H, W, 3) uint8 RGB or (H, W) grey frame."""
    f = np.asarray(frame_rgb, dtype=np.float32)
    if f.ndim == 3:
        f = f[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float(f.mean() / 255.0)


def face_brightness(frame_rgb: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean luma in [0, 1] inside a face box (x0, y0, x1, y1), clipped to the frame; NaN if empty."""
    h, w = frame_rgb.shape[:2]
    x0, y0, x1, y1 = max(0, int(box[0])), max(0, int(box[1])), min(w, int(box[2])), min(h, int(box[3]))
    if x1 <= x0 or y1 <= y0:
        return float("nan")
    return brightness(frame_rgb[y0:y1, x0:x1])


def face_size(box: tuple[int, int, int, int], frame_shape: tuple[int, ...]) -> float:
    """Box area as a fraction of the frame area (0..1)."""
    x0, y0, x1, y1 = box
    h, w = frame_shape[:2]
    return float(max(0, x1 - x0) * max(0, y1 - y0) / max(1, h * w))


def audio_level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS of float audio in [-1, 1] (DB_FLOOR for silence or empty input)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        return DB_FLOOR
    rms = math.sqrt(float(np.mean(x * x)))
    return max(DB_FLOOR, 20.0 * math.log10(rms)) if rms > 0 else DB_FLOOR


def noise_floor_db(samples: np.ndarray, sample_rate: int = 16000, frame_s: float = 0.02, quantile: float = 0.1) -> float:
    """Background level in dBFS: the `quantile` of the RMS levels of `frame_s` frames (the pauses
    between words). Added noise raises it far more than it raises the overall level."""
    x = np.asarray(samples, dtype=np.float64)
    n = int(sample_rate * frame_s)
    if x.size < n or not np.all(np.isfinite(x)):
        return audio_level_db(x)
    frames = x[: x.size // n * n].reshape(-1, n)  # (n_frames, n)
    rms = np.sqrt((frames * frames).mean(axis=1))
    level = float(np.quantile(rms, quantile))
    return max(DB_FLOOR, 20.0 * math.log10(level)) if level > 0 else DB_FLOOR


def speech_rate_wps(text: str, duration_s: float) -> float:
    """Words per second of a committed segment (0 for an empty or zero-length one)."""
    words = len(text.split())
    return words / duration_s if duration_s > 0 else 0.0


def frame_statistics(pipeline: str, frame_rgb: np.ndarray, predictions: list[Prediction]) -> list[tuple[str, float]]:
    """[(statistic, value)] of one video frame: what `Monitor.record_frame` records."""
    out = [(f"{pipeline}/brightness", brightness(frame_rgb))]
    for p in predictions:
        if p.box is not None:
            out.append((f"{pipeline}/face_size", face_size(p.box, frame_rgb.shape)))
            out.append((f"{pipeline}/face_brightness", face_brightness(frame_rgb, p.box)))
        out.append((f"{pipeline}/confidence", p.confidence))
        out.append((f"{pipeline}/entropy", p.entropy))
    return out


def audio_statistics(pipeline: str, samples: np.ndarray, sample_rate: int = 16000) -> list[tuple[str, float]]:
    """[(statistic, value)] of one audio chunk: what `Monitor.record_audio` records."""
    return [(f"{pipeline}/audio_level_db", audio_level_db(samples)),
            (f"{pipeline}/noise_floor_db", noise_floor_db(samples, sample_rate))]


# --- drift tests ------------------------------------------------------------------------------


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `recent` against quantile bins of `reference`."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(recent, dtype=np.float64)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # constant reference: any different value is a shift
        same = np.isclose(cur, ref[0]).mean() if len(cur) else 1.0
        return 0.0 if same == 1.0 else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    eps = 1e-4
    p = np.histogram(ref, edges)[0] / len(ref) + eps
    q = np.histogram(cur, edges)[0] / len(cur) + eps
    return float(np.sum((q - p) * np.log(q / p)))


def ks_pvalue(reference: np.ndarray, recent: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference, recent).pvalue)


class Monitor:
    """Thread-safe collector shared by every session of the app.

    state_dir: where references are kept across restarts (None: in memory only).
    """

    def __init__(self, settings: MonitorSettings = MonitorSettings(), state_dir: Path | None = None):
        self.settings = settings
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=settings.window))
        self._warmup: dict[str, list[float]] = defaultdict(list)
        # values seen after the warm-up filled up: compared with the warm-up when there is no baseline
        self._post_warmup: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=settings.window))
        self._baseline: dict[str, np.ndarray] = {}
        self._baseline_source: dict[str, str] = {}
        self._routing: dict[str, deque[tuple[float, bool]]] = defaultdict(lambda: deque(maxlen=5000))
        self._timing: dict[str, deque[tuple[float, float]]] = defaultdict(lambda: deque(maxlen=settings.window))
        self._last_result_s: dict[str, float] = {}
        self._counts: dict[str, int] = defaultdict(int)  # event counters since start (e.g. live/audio_chunks_lost)
        self._load_references()

    # --- recording ----------------------------------------------------------------------------

    def record(self, stat: str, value: float) -> None:
        if not math.isfinite(value):
            return
        with self._lock:
            self._recent[stat].append(float(value))
            warm = self._warmup[stat]
            if len(warm) < self.settings.warmup:
                warm.append(float(value))
            else:
                self._post_warmup[stat].append(float(value))

    def record_many(self, values: list[tuple[str, float]]) -> None:
        for stat, value in values:
            self.record(stat, value)

    def record_frame(self, pipeline: str, frame_rgb: np.ndarray, predictions: list[Prediction]) -> None:
        """Inputs (frame brightness, per box: size and brightness) and outputs of one video frame."""
        self.record_many(frame_statistics(pipeline, frame_rgb, predictions))
        self.record_routing(pipeline, predictions)

    def record_audio(self, pipeline: str, samples: np.ndarray, sample_rate: int = 16000) -> None:
        """Level and background noise of one microphone chunk (float in [-1, 1])."""
        self.record_many(audio_statistics(pipeline, samples, sample_rate))

    def record_predictions(self, pipeline: str, predictions: list[Prediction]) -> None:
        """Outputs (confidence, entropy) and routing of predictions, as shown and routed."""
        self.record_outputs(pipeline, predictions)
        self.record_routing(pipeline, predictions)

    def record_outputs(self, pipeline: str, predictions: list[Prediction]) -> None:
        """Top-class probability and entropy: the quantities the references hold.

        Record the model's own prediction here (for speech: the text classifier's, before the
        ASR score is folded in), so it is compared with a reference of the same quantity."""
        for p in predictions:
            self.record(f"{pipeline}/confidence", p.confidence)
            self.record(f"{pipeline}/entropy", p.entropy)

    def record_routing(self, pipeline: str, predictions: list[Prediction]) -> None:
        """The share sent to review, from each Prediction's own decision."""
        now = time.time()
        with self._lock:
            for p in predictions:
                self._routing[pipeline].append((now, p.decision is Decision.REVIEW))

    def count(self, name: str, n: int = 1) -> None:
        """Add n to an event counter (the live connection's chunks received, lost, frames skipped, errors)."""
        with self._lock:
            self._counts[name] += int(n)

    def counts(self, prefix: str = "") -> dict[str, int]:
        """Counters since the app started, those whose name starts with prefix."""
        with self._lock:
            return {k: v for k, v in sorted(self._counts.items()) if k.startswith(prefix)}

    def record_timing(self, pipeline: str, compute_ms: float) -> None:
        """Model time of one result; wall time is measured between consecutive results."""
        now = time.monotonic()
        with self._lock:
            last = self._last_result_s.get(pipeline)
            self._last_result_s[pipeline] = now
            wall_ms = (now - last) * 1000.0 if last is not None else float("nan")
            self._timing[pipeline].append((float(compute_ms), wall_ms))

    def set_baseline(self, stat: str, values: np.ndarray, source: str = "validation") -> None:
        """Reference sample of one statistic from validation data; saved (see `set_references`)."""
        pipeline, _, name = stat.partition("/")
        self.set_references(pipeline, {name: values}, source, replace=False)

    def set_references(self, pipeline: str, references: Mapping[str, np.ndarray], source: str, *,
                       replace: bool = True) -> None:
        """References of a pipeline's statistics ({"confidence": values, ...}), computed on the same
        quantities from the model's validation data, e.g. when a model is deployed.

        source: what they were computed on, shown on the Monitor page. replace: drop this
        pipeline's other references (they described the previous model). Saved under state_dir."""
        cleaned = {}
        for name, values in references.items():
            v = np.asarray(values, dtype=np.float64).reshape(-1)
            cleaned[f"{pipeline}/{name}"] = v[np.isfinite(v)]
        with self._lock:
            if replace:
                for stat in [s for s in self._baseline if s.startswith(pipeline + "/")]:
                    self._baseline.pop(stat)
                    self._baseline_source.pop(stat, None)
            for stat, v in cleaned.items():
                self._baseline[stat] = v
                self._baseline_source[stat] = source
        self._save_references()

    def clear_references(self, pipeline: str) -> None:
        """Forget a pipeline's references (a model without validation outputs was deployed)."""
        self.set_references(pipeline, {}, "", replace=True)

    def install_shipped_references(self) -> list[str]:
        """References of the packaged models (SHIPPED_REFERENCES) for pipelines that have none yet;
        returns the pipelines given one. Call once when the app starts."""
        done = []
        for pipeline, model in SHIPPED_REFERENCES.items():
            with self._lock:
                has = any(s.startswith(pipeline + "/") for s in self._baseline)
            cal = None if has else load_calibration(model)
            if cal is not None and cal.references:
                self.set_references(pipeline, cal.references, f"validation: {cal.fitted_on}")
                done.append(pipeline)
        return done

    def references(self) -> dict[str, str]:
        """{statistic: what its reference was computed on} for every statistic with a reference."""
        with self._lock:
            return dict(self._baseline_source)

    def _save_references(self) -> None:
        if self.state_dir is None:
            return
        with self._lock:
            data = {stat: {"source": self._baseline_source.get(stat, "validation"), "values": reference_sample(v)}
                    for stat, v in self._baseline.items()}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / REFERENCES_FILE
        tmp = path.with_suffix(".json.part")
        tmp.write_text(json.dumps({"format": 1, "references": data}))
        os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one

    def _load_references(self) -> None:
        path = self.state_dir / REFERENCES_FILE if self.state_dir is not None else None
        if path is None or not path.is_file():
            return
        try:
            data = json.loads(path.read_text())["references"]
            loaded = {stat: (np.asarray(d["values"], dtype=np.float64), str(d["source"])) for stat, d in data.items()}
        except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged file must not stop the app
            warnings.warn(f"Drift references in {path} could not be read ({e}); using warm-up references until "
                          "a model is deployed again.")
            return
        for stat, (values, source) in loaded.items():
            self._baseline[stat] = values
            self._baseline_source[stat] = source

    # --- reading ------------------------------------------------------------------------------

    def stats(self) -> list[str]:
        with self._lock:
            return sorted(self._recent)

    def values(self, stat: str) -> tuple[np.ndarray, np.ndarray, str]:
        """(reference, recent, reference source) for one statistic."""
        with self._lock:
            recent = np.array(self._recent.get(stat, ()), dtype=np.float64)
            if stat in self._baseline:
                return self._baseline[stat].copy(), recent, self._baseline_source.get(stat, "validation")
            warm = np.array(self._warmup.get(stat, ()), dtype=np.float64)
            after = np.array(self._post_warmup.get(stat, ()), dtype=np.float64)
        return warm, after, WARM_UP

    def drift(self, stat: str) -> DriftResult:
        ref, cur, source = self.values(stat)
        s = self.settings
        enough = len(ref) >= s.min_samples and len(cur) >= s.min_samples
        value_psi = psi(ref, cur, s.bins) if enough else float("nan")
        value_p = ks_pvalue(ref, cur) if enough else float("nan")
        ref_mean = float(ref.mean()) if len(ref) else float("nan")
        cur_mean = float(cur.mean()) if len(cur) else float("nan")
        meaningful = abs(cur_mean - ref_mean) >= s.shift_floor(stat) if enough else False
        alarm = bool(enough and meaningful and value_psi > s.psi_alarm and value_p < s.ks_p_alarm)
        return DriftResult(stat, len(ref), len(cur), source, value_psi, value_p, alarm, ref_mean, cur_mean)

    def drift_table(self) -> list[DriftResult]:
        return [self.drift(stat) for stat in self.stats()]

    def review_rate(self, pipeline: str, bucket_s: float = 60.0) -> list[tuple[float, int, float]]:
        """[(bucket start wall-clock s, predictions, share routed to review)] oldest first."""
        with self._lock:
            events = list(self._routing.get(pipeline, ()))
        buckets: dict[float, list[bool]] = defaultdict(list)
        for t, reviewed in events:
            buckets[math.floor(t / bucket_s) * bucket_s].append(reviewed)
        return [(b, len(v), float(np.mean(v))) for b, v in sorted(buckets.items())]

    def timing(self, pipeline: str) -> dict[str, float]:
        """Median compute and wall time per result, and their ratio (busy fraction)."""
        with self._lock:
            rows = list(self._timing.get(pipeline, ()))
        if not rows:
            return {"compute_median_ms": float("nan"), "wall_median_ms": float("nan"), "busy_fraction": float("nan"), "n": 0}
        compute = np.array([c for c, _ in rows])
        wall = np.array([w for _, w in rows if math.isfinite(w)])
        compute_ms = float(np.median(compute))
        wall_ms = float(np.median(wall)) if len(wall) else float("nan")
        return {
            "compute_median_ms": compute_ms,
            "wall_median_ms": wall_ms,
            "busy_fraction": compute_ms / wall_ms if wall_ms and math.isfinite(wall_ms) else float("nan"),
            "n": len(rows),
        }

    def pipelines(self) -> list[str]:
        with self._lock:
            return sorted(set(self._timing) | set(self._routing))


def drift_figure(monitor: Monitor, stats: list[str] | None = None):
    """Histograms of reference vs recent values per statistic; an alarm turns the title red."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry shared by threads

    stats = stats if stats is not None else monitor.stats()
    n = max(1, len(stats))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(stats):]:
        ax.axis("off")
    if not stats:
        axes[0, 0].text(0.5, 0.5, "No data yet: start the webcam or the microphone.", ha="center", va="center")
    for ax, stat in zip(axes.flat, stats):
        ref, cur, source = monitor.values(stat)
        result = monitor.drift(stat)
        both = np.concatenate([ref, cur]) if len(ref) + len(cur) else np.zeros(1)
        lo, hi = float(both.min()), float(both.max())
        pad = max(1e-6, 1e-3 * abs(lo))  # a constant statistic still gets finite-width bins
        edges = np.linspace(lo - pad, hi + pad, 21)
        if len(ref):
            ax.hist(ref, edges, weights=np.full(len(ref), 1 / len(ref)), alpha=0.5, label=f"{source} (n={len(ref)})")
        if len(cur):
            ax.hist(cur, edges, weights=np.full(len(cur), 1 / len(cur)), alpha=0.5, label=f"recent (n={len(cur)})")
        ax.set_ylabel("share", fontsize=7)
        title = f"{stat}  PSI={result.psi:.2f}" if math.isfinite(result.psi) else f"{stat}  (collecting)"
        ax.set_title(("DRIFT " if result.alarm else "") + title, fontsize=9, color="red" if result.alarm else "black")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def review_rate_figure(monitor: Monitor):
    """Share of predictions routed to review per minute, one line per pipeline."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.6))
    ax = fig.subplots()
    for pipeline in monitor.pipelines():
        rows = monitor.review_rate(pipeline)
        if rows:
            t0 = rows[0][0]
            ax.plot([(t - t0) / 60 for t, _, _ in rows], [r for _, _, r in rows], marker="o", label=pipeline)
    ax.set_xlabel("minutes")
    ax.set_ylabel("share sent to review")
    ax.set_ylim(0, 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
