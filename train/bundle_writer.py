"""Writing model bundles (format 2, described in models/bundle.py, which loads them): bundle.json with the
architecture by name (models.architectures), model.safetensors with the tensors, the model card.

`describe_arch` names the network a learner holds; the writer then rebuilds that architecture and loads
the tensors into it before writing, so a bundle that would not load is never written.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from torch import nn

from models.architectures import ArchitectureError, TraitNet, VectorMLP, build_model, load_weights
from models.bundle import BACKENDS, BUNDLE_FORMAT, TASKS, WEIGHTS_FILE, BundleError
from models.prediction import RoutingPolicy


def save_bundle(out: str | os.PathLike, *, task: str, backend: str, classes: Sequence[str],
                learner: Any = None, zeroshot_embeddings: np.ndarray | None = None,
                temperature: float = 1.0, conformal_qhat: float | None = None, coverage: float | None = None,
                policy: RoutingPolicy = RoutingPolicy(), input_spec: dict[str, Any] | None = None,
                card: dict[str, Any] | None = None, extra_files: dict[str, Path] | None = None,
                overwrite: bool = False, heads: Sequence[dict[str, Any]] | None = None, **spec_extra: Any) -> Path:
    """Write a bundle folder atomically: built in a temporary sibling, then renamed into place.

    heads: a multi-head bundle's (backend "heads") calibration per head, [{"name", "temperature",
    "conformal_qhat"}, ...] (models/bundle.py); its top-level temperature and threshold are then unused.

    An existing `out` (bundle or not) is never deleted: without `overwrite` it is refused up front
    (BundleExistsError); with it, once the new bundle is complete the old folder is renamed to a
    sibling `OUT.replaced-YYYYmmdd-HHMMSS`, named on the new card as "previous_bundle_moved_to"."""
    if task not in TASKS or backend not in BACKENDS:
        raise BundleError(f"unknown task {task!r} or backend {backend!r}")
    out = Path(out).resolve()
    if not overwrite:
        check_out_free(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        spec = {"format": BUNDLE_FORMAT, "task": task, "backend": backend, "classes": list(classes),
                "temperature": float(temperature), "conformal_qhat": conformal_qhat, "coverage": coverage,
                "calibrated": backend != "zeroshot" and (temperature != 1.0 or conformal_qhat is not None
                                                         or bool(heads)),
                "policy": {"accept_at": policy.accept_at, "abstain_below": policy.abstain_below},
                "input": input_spec or {}, "created_at_s": time.time(), **spec_extra}
        if heads is not None:
            spec["heads"] = [dict(h) for h in heads]
        if learner is not None:
            spec["arch"] = describe_arch(learner.model)
            if backend == "tabular":
                from models.tabular_inputs import TabularInputs

                spec["tabular"] = TabularInputs.from_dls(learner.dls).to_spec()
            _write_tensors(tmp / WEIGHTS_FILE, learner.model.state_dict(), spec["arch"])
        if zeroshot_embeddings is not None:
            _write_tensors(tmp / WEIGHTS_FILE, {"embeddings": _tensor(zeroshot_embeddings)})
        for name, src in (extra_files or {}).items():
            shutil.copy2(src, tmp / name)
        aside = aside_path(out) if out.exists() else None
        card = {**(card or {}), "classes": list(classes), "task": task,
                **({"previous_bundle_moved_to": str(aside)} if aside else {})}
        (tmp / "card.json").write_text(json.dumps(card, indent=2, default=_jsonable))
        (tmp / "card.md").write_text(render_card_md(card))
        (tmp / "bundle.json").write_text(json.dumps(spec, indent=2))
        if aside is not None:
            os.replace(out, aside)  # kept, under a name that says what happened
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(aside, out)  # put the previous one back rather than leave nothing at `out`
                raise
        else:
            if out.exists():  # created meanwhile by someone else: never replace what we did not check
                raise BundleExistsError(f"{out} appeared while the bundle was being written; nothing was replaced")
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class BundleExistsError(BundleError):
    """The output folder exists and overwriting was not asked for; nothing was changed."""


def check_out_free(out: str | os.PathLike) -> None:
    """BundleExistsError when `out` exists (call before a long training, so it is refused at once)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise BundleExistsError(f"{out} already exists; choose another output folder, or pass --overwrite to move "
                                "the existing one aside (it is kept, renamed OUT.replaced-DATE-TIME, never deleted)")


def aside_path(out: Path) -> Path:
    """A free sibling name for a bundle being replaced: OUT.replaced-YYYYmmdd-HHMMSS[-N]."""
    stem = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, n = stem, 1
    while candidate.exists():
        n += 1
        candidate = stem.with_name(f"{stem.name}-{n}")
    return candidate


def _tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _write_tensors(path: Path, state: dict[str, Any], arch: dict[str, Any] | None = None) -> None:
    """Save tensors with safetensors; with `arch`, first check they load into that architecture."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if arch is not None:
        try:
            load_weights(build_model(arch), tensors, str(path))
        except ArchitectureError as e:
            raise BundleError(f"the model does not match its description {arch}: {e}") from e
    save_file(tensors, str(path))


def describe_arch(model: nn.Module) -> dict[str, Any]:
    """The "arch" entry of bundle.json for a network this project trains (models.architectures names)."""
    from fastai.tabular.model import TabularModel

    from models.face_emotion_net import FaceEmotionNet, GreyInputAdapter

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    if isinstance(model, VectorMLP):
        return {"name": "vector_mlp", "dim": int(model.mean.shape[0]), "hidden": [m.out_features for m in linears[:-1]],
                "n_classes": linears[-1].out_features, "dropout": float(dropouts[0]) if dropouts else 0.0}
    if isinstance(model, TraitNet):
        return {"name": "trait_net", "n_items": model.n_items, "n_levels": model.n_levels, "n_heads": model.n_heads,
                "hidden": [m.out_features for m in linears[:-1]], "dropout": float(dropouts[0]) if dropouts else 0.0}
    if isinstance(model, TabularModel):
        blocks = list(model.layers)  # LinBnDrop per layer: [BatchNorm1d?, Dropout?, Linear, act?] or Linear first
        first = list(blocks[0])
        return {"name": "tabular", "emb_szs": [[e.num_embeddings, e.embedding_dim] for e in model.embeds],
                "n_cont": int(model.n_cont), "n_classes": linears[-1].out_features,
                "layers": [m.out_features for m in linears[:-1]],
                "ps": [next((float(m.p) for m in b if isinstance(m, nn.Dropout)), 0.0) for b in blocks[:-1]],
                "embed_p": float(model.emb_drop.p), "use_bn": any(isinstance(m, nn.BatchNorm1d) for m in first),
                "bn_final": any(isinstance(m, nn.BatchNorm1d) for m in blocks[-1]),
                "bn_cont": model.bn_cont is not None, "lin_first": isinstance(first[0], nn.Linear)}
    if isinstance(model, FaceEmotionNet):
        return {"name": "face_emotion_net", "n_classes": linears[-1].out_features, "size_px": int(model.size_px),
                "head_dropout": float(dropouts[-1]) if dropouts else 0.0, "flip_tta": bool(model.flip_tta)}
    if isinstance(model, GreyInputAdapter):
        return {"name": "grey_mini_xception", "n_classes": int(model.model.head.out_channels)}
    if _is_fastai_mobilenet_v2(model):
        # vision_learner's head with its defaults; _write_tensors checks the tensors fit it
        return {"name": "mobilenet_v2_fastai", "n_classes": linears[-1].out_features,
                "n_in": int(model[0][0][0][0].in_channels), "cut": -1, "concat_pool": True, "lin_ftrs": None,
                "ps": 0.5, "first_bn": True, "bn_final": False, "lin_first": False}
    raise BundleError(f"cannot write a {type(model).__name__} as a bundle: its architecture has no name in "
                      "models.architectures (add one there)")


def _is_fastai_mobilenet_v2(model: nn.Module) -> bool:
    """vision_learner(dls, mobilenet_v2): Sequential(body=Sequential(features), head)."""
    from torchvision.models.mobilenetv2 import InvertedResidual

    try:
        features = model[0][0]
        return len(model) == 2 and any(isinstance(m, InvertedResidual) for m in features)
    except (TypeError, IndexError, KeyError):
        return False


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
                  ("A temperature per head (below), all heads pooled" if c.get("heads") else
                   f"Temperature {c.get('temperature', 1.0):.3f}") + f"; ECE {c.get('ece_before', float('nan')):.3f} "
                  f"before, {c.get('ece_after', float('nan')):.3f} after (fitted on validation; both measured on "
                  "the examples it was fitted on)."]
        if c.get("text"):
            lines.append(f"Predictions say: {c['text']}.")
        if c.get("new_person"):
            lines.append(f"On a new person: {c['new_person']}")
        if c.get("conformal_qhat") is not None:
            lines.append(f"Conformal sets at {c.get('coverage')} coverage: qhat {c['conformal_qhat']:.3f}, "
                         f"mean set size {c.get('mean_set_size', float('nan')):.2f}.")
        for name, h in (c.get("heads") or {}).items():
            sets = (f", {h['coverage']:.0%} sets: qhat {h['conformal_qhat']:.3f}, mean size {h['mean_set_size']:.2f}"
                    if h.get("conformal_qhat") is not None else ", no prediction sets")
            lines.append(f"- {name}: temperature {h['temperature']:.3f}, ECE {h['ece_before']:.3f} -> "
                         f"{h['ece_after']:.3f}{sets}")
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
