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
