"""The sample store: every kind of sample, import/export, counts, and nothing lost on bad input."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from train.samples import SampleStore, StoreError


def _tree(root, n=3):
    """root/<label>/<person>_<i>.jpg from scikit-image's photos (real JPEGs)."""
    photos = {"cat": skdata.chelsea(), "coffee": skdata.coffee()}
    for label, img in photos.items():
        (root / label).mkdir(parents=True)
        for person in ("ana", "bo"):
            for i in range(n):
                crop = img[i * 10: i * 10 + 120, i * 10: i * 10 + 160]
                cv2.imwrite(str(root / label / f"{person}_{i}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return root


def test_every_kind_round_trips_with_metadata(tmp_path):
    store = SampleStore(tmp_path / "s")
    img = store.add_image(skdata.astronaut()[:64, :64], "face", person="ana", session="mon", captured_at=5.0)
    lm = store.add_landmarks(np.arange(63) / 63, "A", person="bo")
    tx = store.add_text("turn on the lights", "command", person="ana")
    tb = store.add_tabular({"q1": 4, "q2": "often"}, "introvert", person="cy")
    au = store.add("audio", "yes", data=b"RIFF....WAVE", suffix=".wav", person="bo")
    again = SampleStore(tmp_path / "s")  # reopen: everything persisted
    assert len(again) == 5
    got = again.get(img.id)
    assert got.person == "ana" and got.session == "mon" and got.captured_at == 5.0
    assert cv2.imread(str(got.path)).shape == (64, 64, 3)
    assert again.get(lm.id).payload[-1] == pytest.approx(62 / 63)
    assert again.get(tx.id).payload == "turn on the lights"
    assert again.get(tb.id).payload == {"q1": 4, "q2": "often"}
    assert again.get(au.id).path.read_bytes() == b"RIFF....WAVE"
    c = again.counts()
    assert c["person"] == {"ana": 2, "bo": 2, "cy": 1} and c["class"]["A"] == 1
    again.relabel(tx.id, "request", by="tester")
    assert again.get(tx.id).label == "request"
    again.remove(img.id, by="tester")
    assert len(again) == 4 and not got.path.exists()


def test_import_folder_with_person_pattern_skips_corrupt_and_exports(tmp_path):
    root = _tree(tmp_path / "photos")
    (root / "cat" / "ana_bad.jpg").write_bytes(b"not a jpeg at all")
    store = SampleStore(tmp_path / "s")
    with pytest.warns(UserWarning, match="not a readable image"):
        report = store.import_folder(root, person_pattern=r"(?P<person>[^_/]+)_\d")
    assert len(report.added) == 12 and [s for s, _ in report.skipped] == ["cat/ana_bad.jpg"]
    counts = store.counts("image")
    assert counts["class"] == {"cat": 6, "coffee": 6} and counts["person"] == {"ana": 6, "bo": 6}
    out = store.export_folder(tmp_path / "out")
    assert len(list((out / "cat").glob("*.jpg"))) == 6
    store2 = SampleStore(tmp_path / "s2")  # the exported tree re-imports with persons (samples.csv)
    store2.import_folder(out, meta_csv=out / "samples.csv")
    assert store2.counts("image")["person_class"] == counts["person_class"]


def test_mismatched_labels_in_csv_are_refused_and_store_unchanged(tmp_path):
    root = _tree(tmp_path / "photos", n=1)
    store = SampleStore(tmp_path / "s")
    store.add_text("keep me", "x")
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "person"])
        w.writerow(["cat/ana_0.jpg", "coffee", "ana"])  # says coffee, folder says cat
    with pytest.raises(StoreError, match="do not match the folder"):
        store.import_folder(root, meta_csv=meta)
    assert len(store) == 1 and store.samples()[0].payload == "keep me"


def test_failed_batch_rolls_back_rows_and_files(tmp_path):
    store = SampleStore(tmp_path / "s")
    store.add_landmarks([1.0, 2.0], "a")
    with pytest.raises(StoreError, match="empty label"):
        with store.batch() as b:
            b.add("image", "cat", data=b"\x89PNG fake", suffix=".png")
            b.add("image", "  ", data=b"\x89PNG fake", suffix=".png")  # bad: nothing of this batch is kept
    assert len(store) == 1
    assert not [p for p in (tmp_path / "s" / "files").rglob("*") if p.is_file()]
    with pytest.raises(StoreError, match="unknown sample kind"):
        store.add("video", "x", payload=[1])
    with pytest.raises(StoreError, match="finite"):
        store.add_landmarks([np.nan, 1.0], "a")
    assert len(store) == 1


def test_import_csv_kinds_and_recording_session(tmp_path):
    path = tmp_path / "lm.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "signer", "f0", "f1"])
        w.writerows([["A", "ana", 0.1, 0.2], ["B", "bo", 0.3, "oops"], ["B", "bo", 0.5, 0.6]])
    store = SampleStore(tmp_path / "s")
    with pytest.warns(UserWarning, match="skipped 1"):
        rep = store.import_csv(path, kind="landmarks")
    assert len(rep.added) == 2 and store.counts("landmarks")["person"] == {"ana": 1, "bo": 1}
    with pytest.raises(StoreError, match="text"):
        store.import_csv(path, kind="text")
    frames = [("wave", np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    rep = store.import_session(frames, kind="image", person="cy", session="s1")
    assert {store.get(i).session for i in rep.added} == {"s1"} and len(store) == 4
