"""Writing model bundles (the folder layout is described in models/bundle.py, which loads them)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.bundle import BACKENDS, BUNDLE_FORMAT, TASKS, BundleError
from models.prediction import RoutingPolicy


def save_bundle(out: str | os.PathLike, *, task: str, backend: str, classes: Sequence[str],
                learner: Any = None, zeroshot_embeddings: np.ndarray | None = None,
                temperature: float = 1.0, conformal_qhat: float | None = None, coverage: float | None = None,
                policy: RoutingPolicy = RoutingPolicy(), input_spec: dict[str, Any] | None = None,
                card: dict[str, Any] | None = None, extra_files: dict[str, Path] | None = None,
                **spec_extra: Any) -> Path:
    """Write a bundle folder atomically: built in a temporary sibling, then renamed into place
    (an existing bundle at `out` is replaced only once the new one is complete)."""
    if task not in TASKS or backend not in BACKENDS:
        raise BundleError(f"unknown task {task!r} or backend {backend!r}")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        spec = {"format": BUNDLE_FORMAT, "task": task, "backend": backend, "classes": list(classes),
                "temperature": float(temperature), "conformal_qhat": conformal_qhat, "coverage": coverage,
                "calibrated": backend != "zeroshot" and (temperature != 1.0 or conformal_qhat is not None),
                "policy": {"accept_at": policy.accept_at, "abstain_below": policy.abstain_below},
                "input": input_spec or {}, "created_at_s": time.time(), **spec_extra}
        if learner is not None:
            learner.export(tmp / "model.pkl")
        if zeroshot_embeddings is not None:
            np.savez(tmp / "zeroshot.npz", embeddings=np.asarray(zeroshot_embeddings, dtype=np.float32))
        for name, src in (extra_files or {}).items():
            shutil.copy2(src, tmp / name)
        card = {**(card or {}), "classes": list(classes), "task": task}
        (tmp / "card.json").write_text(json.dumps(card, indent=2, default=_jsonable))
        (tmp / "card.md").write_text(render_card_md(card))
        (tmp / "bundle.json").write_text(json.dumps(spec, indent=2))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def render_card_md(card: dict[str, Any]) -> str:
    """The model card for people: what it was trained on, how well it does, and how sure we are."""
    lines = [f"# Model card: {card.get('task', '?')} classifier", ""]
    lines.append(f"Classes: {', '.join(card.get('classes', []))}")
    if "split" in card:
        lines += ["", "## Validation", f"Split: {card['split']}"]
    for name, m in (card.get("metrics") or {}).items():
        if isinstance(m, dict) and "value" in m:
            lines.append(f"- {name}: {m['value']:.3f} (95% CI {m['low']:.3f}-{m['high']:.3f}, n={m['n']})")
        else:
            lines.append(f"- {name}: {m}")
    if card.get("leakage"):
        lk = card["leakage"]
        lines += ["", "## Random vs grouped split (leakage gap)", lk.get("message", "")]
    if card.get("calibration"):
        c = card["calibration"]
        lines += ["", "## Calibration",
                  f"Temperature {c.get('temperature', 1.0):.3f}; ECE {c.get('ece_before', float('nan')):.3f} "
                  f"before, {c.get('ece_after', float('nan')):.3f} after (fitted on validation)."]
        if c.get("conformal_qhat") is not None:
            lines.append(f"Conformal sets at {c.get('coverage')} coverage: qhat {c['conformal_qhat']:.3f}, "
                         f"mean set size {c.get('mean_set_size', float('nan')):.2f}.")
    if card.get("diagnosis"):
        d = card["diagnosis"]
        lines += ["", "## Diagnosis from the learning curves", f"**{d.get('name')}**: {d.get('explanation', '')}",
                  f"Advice: {d.get('advice', '')}"]
    counts = card.get("counts") or {}
    for key in ("class", "person"):
        if counts.get(key):
            lines += ["", f"## Examples per {key}"] + [f"- {k}: {v}" for k, v in sorted(counts[key].items())]
    for w in card.get("warnings", []):
        lines += ["", f"> Warning: {w}"]
    return "\n".join(lines) + "\n"
