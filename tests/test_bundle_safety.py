"""Hostile model files and images: a pickle whose __reduce__ writes a marker file is refused everywhere it
could be loaded (library and CLI), so the marker is never written; a trusted fastai export still loads; files
that are not models, and images declaring too many pixels, get clear errors."""
from __future__ import annotations

import json
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from demos.cli import main as cli_main
from models.bundle import BundleError, UntrustedPickleError, load_bundle, load_rgb

REFUSAL = "can run code when loaded"


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): the file appears if the pickle ever runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture()
def hostile(tmp_path) -> dict[str, Path]:
    marker = tmp_path / "MARKER"
    payload = pickle.dumps(_WritesMarker(marker))
    bundle = tmp_path / "hostile_bundle"
    bundle.mkdir()
    (bundle / "model.pkl").write_bytes(payload)
    spec = {"format": 1, "task": "image", "backend": "vision", "classes": ["a", "b"], "input": {"size": [32, 32]}}
    (bundle / "bundle.json").write_text(json.dumps(spec))
    signs = tmp_path / "hostile_signs"
    signs.mkdir()
    (signs / "model.pkl").write_bytes(payload)
    (signs / "bundle.json").write_text(json.dumps({**spec, "task": "landmarks", "backend": "vector"}))
    bare = tmp_path / "hostile.pkl"
    bare.write_bytes(payload)
    data = tmp_path / "data.csv"
    data.write_text("text,label\nhello,a\nbye,b\n")
    return {"marker": marker, "bundle": bundle, "signs": signs, "bare": bare, "data": data}


def test_load_bundle_refuses_a_pickle_without_running_it(hostile):
    for path in (hostile["bundle"], hostile["signs"], hostile["bare"]):
        with pytest.raises(UntrustedPickleError, match=REFUSAL) as err:
            load_bundle(path)
        assert "--trust-pickle" in str(err.value) and "corrupt" not in str(err.value)
    assert not hostile["marker"].exists()


@pytest.mark.parametrize("argv", [
    ["evaluate", "{bundle}", "{data}"],
    ["compare", "{bundle}", "{bundle}", "{data}"],
    ["watch", "--task", "{bundle}", "--source", "{data}", "--no-window", "--max-frames", "1"],
    ["watch", "--task", "{bare}", "--source", "{data}", "--no-window", "--max-frames", "1"],
    ["watch", "--task", "sign:{signs}", "--source", "{data}", "--no-window", "--max-frames", "1"],
], ids=["evaluate", "compare", "watch-bundle", "watch-pkl", "watch-sign-bundle"])
def test_cli_commands_refuse_a_pickle_with_a_clear_message(hostile, argv, capsys):
    args = [a.format(**{k: str(v) for k, v in hostile.items()}) for a in argv]
    assert cli_main(args) != 0
    err = capsys.readouterr().err
    assert REFUSAL in err and "--trust-pickle" in err and "corrupt" not in err and "Traceback" not in err
    assert not hostile["marker"].exists()


def test_a_trusted_fastai_export_still_loads(tmp_path):
    from train.datablocks import build_learner
    from train.synthetic import LeakyLandmarks, leaky_landmarks

    rows = list(leaky_landmarks(LeakyLandmarks(n_persons=2, per_person_class=5, dim=6)))
    x, labels = np.stack([r[0] for r in rows]), [r[1] for r in rows]
    idx = np.arange(len(x))
    learn, backend, spec = build_learner("landmarks", x, labels, idx[idx % 4 != 0], idx[idx % 4 == 0])
    old = tmp_path / "format1"
    old.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.export(old / "model.pkl")
    (old / "bundle.json").write_text(json.dumps({"format": 1, "task": "landmarks", "backend": backend,
                                                 "classes": list(learn.dls.vocab), "input": spec}))
    with pytest.raises(UntrustedPickleError):
        load_bundle(old)
    bundle = load_bundle(old, trust_pickle=True)
    learn.model.eval()
    import torch

    with torch.no_grad():
        expected = torch.softmax(learn.model(torch.as_tensor(x[:5])), 1).numpy()
    np.testing.assert_allclose(bundle.predict_probs(x[:5]), expected, atol=1e-5)


def test_files_that_are_not_models_get_clear_errors(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list")
    with pytest.raises(BundleError, match="not a model bundle folder"):
        load_bundle(notes)
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"format": 2, "task": "image", "backend": "vision",
                                                      "classes": ["a", "b"], "arch": {"name": "vector_mlp"}}))
    with pytest.raises(BundleError, match="model.safetensors is missing"):
        load_bundle(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps([1, 2, 3]))  # a pickle under a safe name
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(tmp_path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels but holds almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(20000, 20000), (8000, 7500)], ids=["bomb-400MP", "60MP"])
def test_images_declaring_too_many_pixels_are_refused_before_decoding(tmp_path, size):
    import resource

    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(*size))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BundleError, match="pixels") as err:
        load_rgb(path)
    assert "resize it" in str(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000  # KiB: nothing decoded


def test_a_truncated_image_is_a_clear_error(tmp_path):
    from PIL import Image

    path = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(BundleError, match="not a readable image"):
        load_rgb(path)


# ---- bundles that declare more than they hold: checked before memory is spent ------------------------------------

MAX_PEAK_KIB = 1_500_000  # a refused bundle costs no more than importing the app does (torch, fastai, mediapipe)
SIZE_REFUSAL = "refused before loading"


def _write_bundle(root: Path, spec: dict, tensors: dict) -> Path:
    from safetensors.torch import save_file

    root.mkdir()
    (root / "bundle.json").write_text(json.dumps({"format": 2, "calibrated": False, **spec}))
    save_file(tensors, str(root / "model.safetensors"))
    return root


def _small_mlp_tensors(dim: int = 63, hidden: int = 16, n_classes: int = 2) -> dict:
    import torch

    return {"mean": torch.zeros(dim), "std": torch.ones(dim), "net.0.weight": torch.zeros(hidden, dim),
            "net.0.bias": torch.zeros(hidden), "net.3.weight": torch.zeros(n_classes, hidden),
            "net.3.bias": torch.zeros(n_classes)}


@pytest.fixture()
def oversized(tmp_path) -> dict[str, Path]:
    """A landmarks bundle.json declaring a 60,000-wide MLP (14.4 GB of float32), a tabular one declaring a
    2-billion-row embedding (512 GB), each with the small tensors of an honest model; and their data."""
    import torch

    wide = _write_bundle(tmp_path / "wide", {
        "task": "landmarks", "backend": "vector", "classes": ["a", "b"], "input": {"dim": 63},
        "arch": {"name": "vector_mlp", "dim": 63, "hidden": [60000, 60000], "n_classes": 2, "dropout": 0.0}},
        _small_mlp_tensors())
    emb = _write_bundle(tmp_path / "embedding", {
        "task": "tabular", "backend": "tabular", "classes": ["a", "b"],
        "arch": {"name": "tabular", "emb_szs": [[2_000_000_000, 64]], "n_cont": 1, "n_classes": 2, "layers": [8],
                 "ps": [0.0], "embed_p": 0.0, "use_bn": False, "bn_final": False, "bn_cont": False, "lin_first": True},
        "tabular": {"cat_names": ["colour"], "cont_names": ["x"], "vocab": {"colour": ["#na#", "red", "blue"]},
                    "na_fill": {}, "means": {"x": 0.0}, "stds": {"x": 1.0}}},
        {"embeds.0.weight": torch.zeros(3, 64), "layers.0.0.weight": torch.zeros(8, 65),
         "layers.0.0.bias": torch.zeros(8), "layers.1.0.weight": torch.zeros(2, 8), "layers.1.0.bias": torch.zeros(2)})
    data = tmp_path / "answers.csv"
    data.write_text("label,person,session,colour,x\na,p1,s1,red,1\nb,p2,s2,blue,2\n")
    video = tmp_path / "frames"
    video.mkdir()
    _write_frame(video / "0.png")
    return {"wide": wide, "embedding": emb, "data": data, "video": video}


def _write_frame(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(path)


def _run_cli_child(argv: list[str], tmp_path: Path) -> tuple[int, str, int]:
    """(exit code, output, peak resident KiB) of `livelearner ARGV` in its own process (its own VmHWM, read by the
    child itself). An 8 GiB address-space limit keeps a regression from filling this shared machine."""
    import os
    import resource
    import subprocess
    import sys

    code = ("import sys; from demos.cli import main; rc = main(sys.argv[1:]); "
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
            "print('PEAK', peak); sys.exit(rc)")
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit)
    out = proc.stdout + proc.stderr
    peak = [int(line.split()[1]) for line in out.splitlines() if line.startswith("PEAK ")]
    return proc.returncode, out, peak[0] if peak else -1


@pytest.mark.slow
@pytest.mark.parametrize("case", ["watch-wide-mlp", "evaluate-huge-embedding"])
def test_cli_refuses_a_bundle_declaring_huge_layers_with_low_memory(oversized, case, tmp_path):
    argv = (["watch", "--task", f"sign:{oversized['wide']}", "--source", str(oversized["video"]), "--no-window",
             "--max-frames", "1"] if case.startswith("watch")
            else ["evaluate", str(oversized["embedding"]), str(oversized["data"])])
    rc, out, peak_kib = _run_cli_child(argv, tmp_path)
    assert rc != 0 and "Traceback" not in out, out[-2000:]
    assert SIZE_REFUSAL in out and "parameters" in out and "100,000,000" in out, out[-2000:]
    assert 0 < peak_kib < MAX_PEAK_KIB, f"peak {peak_kib / 1024:.0f} MiB"


@pytest.mark.parametrize("case", ["wide", "embedding"])
def test_load_bundle_refuses_declared_giants_without_allocating(oversized, case):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BundleError, match=SIZE_REFUSAL) as err:
        load_bundle(oversized[case])
    assert "parameters" in str(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing allocated


def test_weights_that_do_not_fit_the_declared_shapes_are_named(tmp_path):
    import torch

    spec = {"task": "landmarks", "backend": "vector", "classes": ["a", "b"],
            "arch": {"name": "vector_mlp", "dim": 63, "hidden": [16], "n_classes": 2, "dropout": 0.0}}
    tensors = _small_mlp_tensors(hidden=32)
    with pytest.raises(BundleError, match=r"net\.0\.weight \[32, 63\] \(bundle.json's arch needs \[16, 63\]\)"):
        load_bundle(_write_bundle(tmp_path / "wrong", spec, tensors))
    with pytest.raises(BundleError, match="missing tensors net.3.bias"):
        load_bundle(_write_bundle(tmp_path / "short", spec, {k: v for k, v in _small_mlp_tensors().items()
                                                             if k != "net.3.bias"}))
    bundle = load_bundle(_write_bundle(tmp_path / "honest", spec, _small_mlp_tensors()))
    assert bundle.predict_probs(np.zeros((3, 63), np.float32)).shape == (3, 2)
    (tmp_path / "honest" / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(BundleError, match="header length"):
        load_bundle(tmp_path / "honest")
    _ = torch  # the tensors above are torch's
