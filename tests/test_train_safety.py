"""Training refuses hostile or mistaken input with a clear message, and never deletes what the user made:
existing output folders, decompression-bomb images, non-finite tabular numbers, absurd settings, overlong or
control-character labels. Samples can be relabelled and removed, with who did it."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from train.synthetic import LeakyLandmarks, fill_store, leaky_landmarks
from capture.images import ImageError, check_image, read_image_grey, read_image_rgb
from demos.cli import main as cli_main
from train.datablocks import LearnerSettings, TaskData
from train.fit import FitSettings, SettingsError, Stage
from train.samples import MAX_LABEL_CHARS, SampleStore, StoreError, check_image_file
from train.trainer import TrainSettings, train_model

QUIET = FitSettings(epochs=3, progress=False)


pytestmark = pytest.mark.filterwarnings("ignore")  # fastai/torch deprecation noise


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG (a few hundred bytes) whose header declares width x height grey pixels: a decompression bomb
    for any decoder that trusts it (the pixel data is a compressed run of zeros, truncated)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    idat = zlib.compress(b"\0" * 100_000, 9)  # the first rows only
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _landmark_data(tmp_path: Path) -> TaskData:
    store = SampleStore(tmp_path / "store")
    fill_store(store, "landmarks", leaky_landmarks(LeakyLandmarks()))
    return TaskData.from_store(store, "landmarks")


# ---- output folders ------------------------------------------------------------------------------------


def test_train_refuses_an_existing_out_and_overwrite_moves_it_aside(tmp_path):
    data = _landmark_data(tmp_path)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("my work")
    settings = TrainSettings(task="landmarks", compare_splits=False, fit=QUIET)
    from train.bundle_writer import BundleExistsError

    with pytest.raises(BundleExistsError, match="already exists.*--overwrite"):
        train_model(data, settings, out=out)
    assert (out / "notes.txt").read_text() == "my work" and not (out / "bundle.json").exists()

    result = train_model(data, settings, out=out, overwrite=True)
    assert (out / "bundle.json").is_file()
    aside = result.moved_aside
    assert aside is not None and aside.parent == out.parent and aside.name.startswith("precious.replaced-")
    assert (aside / "notes.txt").read_text() == "my work"  # kept, not deleted
    assert str(aside) in result.summary()
    assert json.loads((out / "card.json").read_text())["previous_bundle_moved_to"] == str(aside)


def test_cli_train_refuses_existing_out_before_reading_the_data(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code = cli_main(["train", str(tmp_path / "no-such-data"), "--task", "landmarks", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert out.is_dir()


@pytest.mark.parametrize("flag, value, words", [("--epochs", "0", "epochs must be in [1, 1000]"),
                                                ("--epochs", "1000000", "epochs must be in [1, 1000]"),
                                                ("--lr", "-1", "learning rate must be in (0, 10]"),
                                                ("--image-size", "100000", "image size"),
                                                ("--coverage", "1.5", "coverage must be in")])
def test_cli_train_range_checks_numbers(tmp_path, capsys, flag, value, words):
    code = cli_main(["train", str(tmp_path), "--task", "landmarks", "--out", str(tmp_path / "b"), flag, value])
    err = capsys.readouterr().err
    assert code == 1 and words in err and "Traceback" not in err


def test_settings_are_range_checked():
    with pytest.raises(SettingsError, match="epochs"):
        FitSettings(epochs=-3)
    with pytest.raises(SettingsError, match="must be a number"):
        FitSettings(lr=float("nan"))
    with pytest.raises(SettingsError, match="stop_after_epochs"):
        Stage("B", epochs=2, lr=1e-3, stop_after_epochs=5)
    with pytest.raises(SettingsError, match="batch size"):
        LearnerSettings(batch_size=0)
    with pytest.raises(SettingsError, match="validation share"):
        TrainSettings(task="image", valid_frac=1.0)


# ---- images ---------------------------------------------------------------------------------------------


def test_bomb_image_is_refused_from_its_header_naming_the_file(tmp_path):
    bomb = _png_declaring(tmp_path / "bomb.png", 20_000, 20_000)  # 400 megapixels in a few hundred bytes
    big = _png_declaring(tmp_path / "big.png", 9_000, 9_000)  # 81 MP: under PIL's own limit, over ours
    assert bomb.stat().st_size < 2_000
    for path in (bomb, big):
        with pytest.raises(ImageError, match=f"{path.name}.*(megapixels|too many pixels)"):
            check_image(path)
        with pytest.raises(ImageError, match=path.name):
            read_image_rgb(path)
        with pytest.raises(StoreError, match=path.name):
            check_image_file(path)
    assert check_image(_png_declaring(tmp_path / "ok.png", 640, 480)) == (640, 480)


def test_truncated_and_fake_images_are_clear_errors(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 60), 128, np.uint8)).save(good)
    assert read_image_grey(good).shape == (40, 60) and read_image_rgb(good).shape == (40, 60, 3)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    for path in (truncated, fake):
        with pytest.raises(ImageError, match=f"{path.name} is not a readable image"):
            read_image_rgb(path)


def test_training_folder_with_a_bomb_skips_it_and_recipes_name_it(tmp_path):
    from PIL import Image

    from train.datasets import load_grey_faces

    folder = tmp_path / "faces"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((48, 48), 60 * i, np.uint8)).save(folder / label / f"{i}.png")
    _png_declaring(folder / "a" / "bomb.png", 20_000, 20_000)
    store = SampleStore(tmp_path / "store")
    report = store.import_folder(folder)
    assert len(report.added) == 6 and len(report.skipped) == 1
    assert report.skipped[0][0] == "a/bomb.png" and "megapixels" in report.skipped[0][1]
    with pytest.raises(ImageError, match="bomb.png"):
        load_grey_faces(folder)


# ---- tabular numbers --------------------------------------------------------------------------------------


def test_csv_with_non_finite_numbers_names_the_column_and_row(tmp_path):
    csv = tmp_path / "answers.csv"
    rows = ["label,person,age,score"] + [f"{'a' if i % 2 else 'b'},p{i % 3},{20 + i},{i}" for i in range(12)]
    rows += ["a,p1,nan,3", "b,p2,31,inf", "a,p0,1e308,2", "b,p1,,4"]  # rows 14-17 of the file
    csv.write_text("\n".join(rows) + "\n")
    store = SampleStore(tmp_path / "store")
    report = store.import_csv(csv, kind="tabular")
    skipped = dict(report.skipped)
    assert len(report.added) == 13  # the row with an empty answer is kept: a missing value, not a bad one
    assert "'age'" in skipped["answers.csv:14"] and "'nan'" in skipped["answers.csv:14"]
    assert "'score'" in skipped["answers.csv:15"] and "'age'" in skipped["answers.csv:16"]
    with pytest.raises(StoreError, match="finite"):
        store.add_tabular({"age": float("inf")}, "a")


def test_training_refuses_non_finite_answers_already_in_a_store_and_reports_missing_ones(tmp_path):
    rng = np.random.default_rng(0)
    store = SampleStore(tmp_path / "store")
    for i in range(60):
        label = "hi" if i % 2 else "lo"
        store.add_tabular({"x": float(rng.normal(3 if label == "hi" else 0)), "y": "" if i == 5 else i % 4},
                          label, person=f"p{i % 4}")
    data = TaskData.from_store(store, "tabular")
    result = train_model(data, TrainSettings(task="tabular", compare_splits=False, fit=QUIET))
    assert any("1 missing answer(s) filled in" in w and "y (1)" in w for w in result.warnings)
    bad = store.add("tabular", "hi", payload={"x": float("nan"), "y": 1}, person="p9")  # an older store's row
    with pytest.raises(StoreError, match=f"sample {bad.id}, question 'x'"):
        train_model(TaskData.from_store(store, "tabular"), TrainSettings(task="tabular", fit=QUIET))


# ---- labels and edits ---------------------------------------------------------------------------------------


def test_labels_are_length_limited_and_lose_control_characters(tmp_path):
    store = SampleStore(tmp_path / "store")
    with pytest.raises(StoreError, match=f"100000 characters long; at most {MAX_LABEL_CHARS}"):
        store.add_text("hello there", "x" * 100_000)
    s = store.add_text("line one\nline\x00 two\x1b[31m", "hap\u202epy\x07", person="ana\r\n")
    assert s.label == "happy" and s.person == "ana"
    assert s.payload == "line one\nline two[31m"  # newline kept, NUL and ESC gone
    with pytest.raises(StoreError, match="empty label"):
        store.add_text("hi", "\x00\x01 ")


def test_relabel_and_remove_record_who_did_it(tmp_path):
    store = SampleStore(tmp_path / "store")
    typo = store.add_text("what a lovely day", "hapy", person="ana")
    other = store.add_text("rain again", "sad", person="ben")
    assert store.relabel(typo.id, "happy", by="ana").label == "happy"
    store.remove(other.id, by="ben")
    with pytest.raises(StoreError, match="no sample"):
        store.get(other.id)
    with pytest.raises(StoreError, match="no sample"):
        store.relabel("nope", "x", by="ana")
    log = store.history()
    assert [(e["action"], e["by"], e["old_label"], e["new_label"]) for e in log] == [
        ("relabel", "ana", "hapy", "happy"), ("remove", "ben", "sad", None)]
    assert log[1]["detail"]["kind"] == "text" and log[1]["detail"]["person"] == "ben"
    assert store.history(typo.id)[0]["sample_id"] == typo.id
    with pytest.raises(StoreError, match="at most"):
        store.relabel(typo.id, "y" * 65, by="ana")


@pytest.mark.parametrize("argv, words", [(["emotion", "--epochs", "0"], "epochs must be in [1, 1000]"),
                                         (["emotion", "--limit-per-class", "-5"], "limit per class"),
                                         (["sign", "--epochs", "99999"], "epochs must be in [1, 1000]")])
def test_cli_train_default_range_checks_numbers(tmp_path, capsys, argv, words):
    code = cli_main(["train-default", *argv, "--data", str(tmp_path), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1 and words in err and "Traceback" not in err


def test_cli_train_default_refuses_an_existing_out(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    code = cli_main(["train-default", "emotion", "--data", str(tmp_path), "--out", str(tmp_path / "b")])
    assert code == 1 and "already exists" in capsys.readouterr().err
