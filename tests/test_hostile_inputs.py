"""Hostile and malformed inputs through the real entry points, each in its own process so its peak memory is
measured: the `livelearner` CLI (one process per case) and the page's tab handlers (one process for the group,
one JSON line per case). Every case must end in a clear error or a correct result, with no traceback shown, no
marker file written by a pickle, no existing file deleted, and a peak RSS under 2 GiB.

The in-process checks of the same guards live in test_bundle_safety.py, test_train_safety.py and
test_app_handlers.py; the media makers are reused from there.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from test_bundle_safety import _WritesMarker
from test_train_safety import _png_declaring

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

MAX_RSS_KIB = 2 * 1024 * 1024  # 2 GiB, as ru_maxrss counts it on Linux
CLI_TIMEOUT_S = 300
REPO = Path(__file__).resolve().parent.parent
VICTIM_TEXT = "a teammate's notes: must survive"


# ---- running a child and measuring it -------------------------------------------------------------------


@dataclass
class Child:
    rc: int
    output: str  # stdout and stderr together
    peak_kib: int  # the child's peak resident memory (VmHWM of its own program, read while it runs)


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of `pid` since it exec'ed its program (0 once it has exited). Not ru_maxrss: on Linux
    a child's ru_maxrss starts at the parent's resident size at fork, so a big pytest process would be charged."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_child(argv: list[str], cwd: Path, timeout_s: float = CLI_TIMEOUT_S) -> Child:
    """Run argv, sampling its peak memory every 20 ms until it exits; kill it past timeout_s."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    log = cwd / f".child-{os.getpid()}-{threading.get_ident()}.log"
    peak = 0
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            peak = max(peak, _vm_hwm_kib(proc.pid))  # high-water mark: a late reading still holds the earlier peak
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.02)
    text = log.read_text(errors="replace")
    log.unlink()
    return Child(proc.returncode, text, peak)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "demos", *args]


# ---- media ---------------------------------------------------------------------------------------------


def _write_png(path: Path, rgb: tuple[int, int, int], seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _truncated_jpeg(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.full((120, 160, 3), 100, np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _wav(path: Path, seconds: float, *, claimed_bytes: int | None = None) -> Path:
    """16 kHz mono 16-bit silence; claimed_bytes forges the RIFF and data sizes the header declares."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(seconds * 16000))
    if claimed_bytes is not None:
        raw = bytearray(path.read_bytes())
        raw[4:8] = (claimed_bytes + 36).to_bytes(4, "little")  # RIFF chunk size
        raw[40:44] = claimed_bytes.to_bytes(4, "little")  # data chunk size (plain 44-byte header)
        path.write_bytes(bytes(raw))
    return path


def _hostile_bundle(folder: Path, marker: Path, task: str = "image", backend: str = "vision") -> Path:
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(_WritesMarker(marker)))
    (folder / "bundle.json").write_text(json.dumps({"format": 1, "task": task, "backend": backend,
                                                    "classes": ["a", "b"], "input": {"size": [32, 32]}}))
    return folder


def _tabular_csv(path: Path, extra_rows: list[str]) -> Path:
    rng = np.random.default_rng(0)
    rows = ["label,person,x,y"]
    for i in range(48):
        label = "hi" if i % 2 else "lo"
        rows.append(f"{label},p{i % 4},{rng.normal(3 if label == 'hi' else 0):.3f},{i % 5}")
    path.write_text("\n".join(rows + extra_rows) + "\n")
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    m: dict[str, Path] = {"root": root, "marker": root / "MARKER"}
    folder = root / "photos"
    for label, rgb in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (folder / label).mkdir(parents=True)
        for i in range(5):
            _write_png(folder / label / f"{label}{i}.png", rgb, seed=i)
    _png_declaring(folder / "red" / "bomb.png", 20_000, 20_000)
    _truncated_jpeg(folder / "blue" / "cut.jpg")
    m["photos"] = folder
    stream = root / "stream"  # a folder replayed as video: the bad files and one good frame
    stream.mkdir()
    _png_declaring(stream / "a_bomb.png", 20_000, 20_000)
    _truncated_jpeg(stream / "b_cut.jpg")
    _write_png(stream / "c_ok.png", (120, 120, 120), seed=0)
    m["stream"] = stream
    m["bundle"] = _hostile_bundle(root / "hostile_bundle", m["marker"])
    m["bare"] = root / "hostile.pkl"
    m["bare"].write_bytes(pickle.dumps(_WritesMarker(m["marker"])))
    m["signs"] = _hostile_bundle(root / "hostile_signs", m["marker"], "landmarks", "vector")
    m["nan_csv"] = _tabular_csv(root / "answers.csv", ["hi,p1,nan,3", "lo,p2,inf,1", "hi,p3,1e308,2"])
    m["label_csv"] = _tabular_csv(root / "labels.csv", [f"{'x' * 100_000},p1,1.0,2", "h\x07i\x1b,p2,2.9,1"])
    m["wav_empty"] = _wav(root / "empty.wav", 0.0)
    m["wav_huge_header"] = _wav(root / "huge_header.wav", 0.5, claimed_bytes=0xFFFF_FF00)
    m["wav_10min"] = _wav(root / "ten_minutes.wav", 600.0)
    victim = root / "victim.txt"  # what a "../" path would reach
    victim.write_text(VICTIM_TEXT)
    m["victim"] = victim
    return m


@pytest.fixture(scope="module")
def trained(media) -> tuple[Path, Child]:
    """`livelearner train` on the folder holding a bomb PNG and a truncated JPEG: the one real bundle the
    evaluate cases use (trained once for the module)."""
    out = media["root"] / "photo_bundle"
    child = run_child(cli("train", str(media["photos"]), "--task", "image", "--split", "random", "--out", str(out),
                          "--epochs", "1", "--image-size", "64", "--no-compare", "--quiet"), media["root"])
    return out, child


def _check_common(child: Child, media: dict[str, Path]) -> None:
    assert "Traceback" not in child.output, child.output[-3000:]
    assert not media["marker"].exists(), "the pickle ran: the marker file was written"
    assert media["victim"].is_file() and media["victim"].read_text() == VICTIM_TEXT, "a file outside was deleted"
    assert child.peak_kib < MAX_RSS_KIB, f"peak RSS {child.peak_kib / 1024:.0f} MiB"


def _report(name: str, child: Child) -> None:
    last = [line for line in child.output.strip().splitlines() if line.strip()][-1:] or [""]
    print(f"\nCASE {name}: rc={child.rc} peak={child.peak_kib / 1024:.0f} MiB last={last[0][:160]!r}")


# ---- CLI cases -------------------------------------------------------------------------------------------


def test_cli_train_on_a_folder_with_bomb_and_truncated_images_skips_them(trained, media):
    out, child = trained
    _report("train-folder-bomb-truncated", child)
    _check_common(child, media)
    assert child.rc == 0 and (out / "bundle.json").is_file(), child.output[-3000:]
    assert "bomb.png" in child.output and "cut.jpg" in child.output  # the skipped files are named
    assert all(p.exists() for p in (media["photos"] / "red" / "bomb.png", media["photos"] / "blue" / "cut.jpg"))


@dataclass(frozen=True)
class CliCase:
    name: str
    argv: tuple[str, ...]  # {key} is replaced by media[key] (or {bundle_ok}/{escaping}/{out} made per case)
    ok_rc: tuple[int, ...]  # accepted exit codes
    words: tuple[str, ...]  # at least one appears in the output (case-insensitive): it says what to do
    setup: str = ""
    must: tuple[str, ...] = ()  # every one appears in the output (case-insensitive)


CLI_CASES = [
    CliCase("evaluate-folder-bomb-truncated", ("evaluate", "{bundle_ok}", "{photos}"), (0,),
            ("accuracy",)),
    CliCase("watch-folder-bomb-truncated", ("watch", "--source", "{stream}", "--fast", "--no-window",
                                            "--max-frames", "5", "--out", "{out}/w.mp4"), (0, 1),
            ("1 frames",), must=("a_bomb.png declares too many pixels", "resize it",
                                  "b_cut.jpg is not a readable image")),
    CliCase("watch-sign-folder-bomb-truncated", ("watch", "--task", "sign", "--source", "{stream}", "--fast",
                                                 "--no-window", "--max-frames", "5", "--out", "{out}/s.mp4"), (0, 1),
            ("1 frames",), must=("a_bomb.png declares too many pixels", "b_cut.jpg is not a readable image")),
    CliCase("watch-task-bare-pkl", ("watch", "--task", "{bare}", "--source", "{stream}", "--fast", "--no-window",
                                    "--max-frames", "1"), (1,), ("--trust-pickle",), must=("can run code",)),
    CliCase("evaluate-pickle-bundle", ("evaluate", "{bundle}", "{photos}"), (1,), ("--trust-pickle",),
            must=("can run code",)),
    CliCase("watch-task-pickle-bundle", ("watch", "--task", "{bundle}", "--source", "{stream}", "--fast",
                                         "--no-window", "--max-frames", "1"), (1,), ("--trust-pickle",)),
    CliCase("watch-task-sign-pickle-bundle", ("watch", "--task", "sign:{signs}", "--source", "{stream}", "--fast",
                                              "--no-window", "--max-frames", "1"), (1,), ("--trust-pickle",)),
    CliCase("train-tabular-nan-inf-1e308", ("train", "{nan_csv}", "--task", "tabular", "--out", "{out}/tab",
                                            "--epochs", "2", "--no-compare", "--quiet"), (0, 1),
            ("bundle:", "finite"), must=("answers.csv:50", "answers.csv:51", "answers.csv:52", "must be finite")),
    CliCase("train-out-existing-dir", ("train", "{nan_csv}", "--task", "tabular", "--out", "{out}/precious",
                                       "--quiet"), (1,), ("--overwrite",), setup="precious", must=("already exists",)),
    CliCase("evaluate-bundle-json-escaping-paths", ("evaluate", "{escaping}", "{photos}"), (0, 1),
            ("accuracy", "re-export", "bundle")),
    CliCase("train-label-100k-and-control-chars", ("train", "{label_csv}", "--task", "tabular", "--out",
                                                   "{out}/labels", "--epochs", "2", "--no-compare", "--quiet"),
            (0, 1), ("bundle:", "label"), must=("100000 characters long",)),
    CliCase("listen-0-sample-wav", ("listen", "--file", "{wav_empty}", "--fast", "--vad", "energy"), (0, 1),
            ("no speech", "no audio", "empty", "record")),
    CliCase("listen-huge-header-wav", ("listen", "--file", "{wav_huge_header}", "--fast", "--vad", "energy"), (0, 1),
            ("no speech", "could not", "cut", "record")),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_hostile_case(case: CliCase, media, trained, tmp_path):
    bundle_ok, _ = trained
    paths = {k: str(v) for k, v in media.items()}
    paths["out"] = str(tmp_path)
    paths["bundle_ok"] = str(bundle_ok)
    if "{escaping}" in " ".join(case.argv):  # a real bundle whose bundle.json names files outside its folder
        escaping = tmp_path / "escaping"
        shutil.copytree(bundle_ok, escaping)
        spec = json.loads((escaping / "bundle.json").read_text())
        rel = os.path.relpath(media["victim"], escaping)
        spec.update({"weights": rel, "card": rel, "files": [rel, "../../x"]})
        (escaping / "bundle.json").write_text(json.dumps(spec))
        paths["escaping"] = str(escaping)
    if case.setup == "precious":
        (tmp_path / "precious").mkdir()
        (tmp_path / "precious" / "notes.txt").write_text("my work")
    argv = [a.format(**paths) for a in case.argv]
    child = run_child(cli(*argv), tmp_path)
    _report(case.name, child)
    _check_common(child, media)
    assert child.rc in case.ok_rc, child.output[-3000:]
    out = child.output.lower()
    assert any(w.lower() in out for w in case.words), child.output[-3000:]
    assert all(w.lower() in out for w in case.must), child.output[-3000:]
    if case.setup == "precious":
        assert (tmp_path / "precious" / "notes.txt").read_text() == "my work"
        assert not (tmp_path / "precious" / "bundle.json").exists()
    if case.name.startswith("train-label") and child.rc == 0:  # the control-character label became "hi"
        classes = json.loads((tmp_path / "labels" / "bundle.json").read_text())["classes"]
        assert sorted(classes) == ["hi", "lo"], classes
    if case.name.startswith("train-tabular") and child.rc == 0:  # trained on the finite rows: no "qhat nan"
        spec = json.loads((tmp_path / "tab" / "bundle.json").read_text())
        card = (tmp_path / "tab" / "card.md").read_text().lower()
        assert " nan" not in card and "inf" not in card.replace("info", ""), card
        assert spec["conformal_qhat"] is None or np.isfinite(spec["conformal_qhat"])


def _store_with_an_escaping_row(folder: Path, outside: Path) -> Path:
    """A sample store (as a teammate might pass one around) whose first row names a file outside it."""
    import sqlite3

    from train.samples import SampleStore

    store = SampleStore(folder)
    rng = np.random.default_rng(0)
    for i in range(16):
        store.add_image(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "ab"[i % 2], person=f"p{i % 2}")
    _write_png(outside, (0, 0, 0), seed=1)
    with sqlite3.connect(folder / "samples.sqlite") as db:
        first = db.execute("SELECT id FROM samples ORDER BY captured_at LIMIT 1").fetchone()[0]
        db.execute("UPDATE samples SET path=? WHERE id=?", (os.path.relpath(outside, folder), first))
    db.close()
    return folder


def test_cli_train_on_a_store_whose_row_leaves_the_folder(media, tmp_path):
    store = _store_with_an_escaping_row(tmp_path / "store", tmp_path / "outside.png")
    child = run_child(cli("train", str(store), "--task", "image", "--split", "random", "--out", str(tmp_path / "b"),
                          "--epochs", "1", "--image-size", "32", "--no-compare", "--quiet"), tmp_path)
    _report("train-store-row-leaving-folder", child)
    _check_common(child, media)
    assert (tmp_path / "outside.png").is_file()
    assert child.rc in (0, 1) and "outside.png" in child.output, child.output[-2000:]  # refused or skipped, named


# ---- page handlers (one process, one JSON line per case) ----------------------------------------------------

PAGE_SCRIPT = r'''
import json, os, resource, sys, traceback
from pathlib import Path
import gradio as gr
from demos import tab_speak, tab_train, tab_webcam
from demos.context import AppContext, AppSettings

m = json.loads(sys.argv[1])
ctx = AppContext(AppSettings(data_dir=Path(m["app"]), preload=()))
sample = ctx.samples.add_text("good morning", "greet", person="ana")
(ctx.bundles_dir / "imported").mkdir()
for name in ("model.pkl", "bundle.json"):
    (ctx.bundles_dir / "imported" / name).write_bytes((Path(m["bundle"]) / name).read_bytes())
import sqlite3
photo = ctx.samples.add_image(__import__("numpy").zeros((32, 32, 3), "uint8"), "dark", person="ana")
with sqlite3.connect(ctx.samples.root / "samples.sqlite") as db:  # a forged row naming a file outside the store
    db.execute("UPDATE samples SET path=? WHERE id=?", (os.path.relpath(m["victim"], ctx.samples.root), photo.id))
db.close()
(ctx.bundles_dir / "linked").symlink_to(Path(m["bundle"]), target_is_directory=True)

cases = {
    "photo-upload-bomb-png": lambda: tab_webcam.process_upload(ctx, m["bomb"], "emotion"),
    "photo-upload-truncated-jpeg": lambda: tab_webcam.process_upload(ctx, m["cut"], "emotion"),
    "speak-upload-0-sample-wav": lambda: tab_speak.process_file(ctx, m["wav_empty"], "greet: a greeting, ask: a question"),
    "speak-upload-huge-header-wav": lambda: tab_speak.process_file(ctx, m["wav_huge_header"], "greet: a greeting, ask: a question"),
    "speak-upload-10-minute-wav": lambda: tab_speak.process_file(ctx, m["wav_10min"], "greet: a greeting, ask: a question"),
    "deploy-name-dotdot-etc": lambda: tab_train.deploy(ctx, "image", "../../etc"),
    "deploy-bundle-with-pkl": lambda: tab_train.deploy(ctx, "image", "imported"),
    "deploy-symlinked-bundle": lambda: tab_train.deploy(ctx, "image", "linked"),
    "relabel-100k-label": lambda: tab_train.relabel_sample(ctx, sample.id, "x" * 100_000, "ana"),
    "add-text-100k-label": lambda: tab_train.capture_text(ctx, None, "hello there", "y" * 100_000, "ana", "s1"),
    "delete-sample-whose-row-leaves-the-store": lambda: tab_train.delete_sample(ctx, photo.id, "ana"),
    "relabel-control-chars": lambda: tab_train.relabel_sample(ctx, sample.id, "hel\x00lo\x1b[31m\u202e", "an\ra"),
    "add-text-control-chars": lambda: tab_train.capture_text(ctx, None, "hi\x07 there", "gre\x00et\x1b", "a\nna", "s1"),
}
for name, call in cases.items():
    row = {"case": name}
    try:
        result = call()
        row.update(kind="result", message=str(result)[:500])
    except gr.Error as e:
        row.update(kind="error", message=str(e.message)[:500])
    except BaseException as e:
        row.update(kind="crash", message="".join(traceback.format_exception(e))[-2000:])
    print("CASE " + json.dumps(row), flush=True)
labels = sorted({s.label for s in ctx.samples.samples("text")})
print("LABELS " + json.dumps(labels), flush=True)
print("PEAK " + str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), flush=True)
'''

# case -> (expected kind, key words in the message, at least one)
PAGE_EXPECT = {
    "photo-upload-bomb-png": ("error", ("megapixels", "pixels", "resize")),
    "photo-upload-truncated-jpeg": ("error", ("not a readable image",)),
    "speak-upload-0-sample-wav": ("error", ("no audio samples", "record again")),
    "speak-upload-huge-header-wav": ("error", ("lasts", "silent", "cut it")),
    "speak-upload-10-minute-wav": ("error", ("listen --file",)),  # and a command that exists
    "deploy-name-dotdot-etc": ("error", ("choose a model from the list",)),
    "deploy-bundle-with-pkl": ("error", ("pickle",)),
    "deploy-symlinked-bundle": ("error", ("leaves its folder", "no model named", "pickle")),
    "relabel-100k-label": ("error", ("100000 characters", "keep it to")),
    "add-text-100k-label": ("error", ("100000 characters", "keep it to")),
    "delete-sample-whose-row-leaves-the-store": ("result", ("deleted by ana",)),  # and the file outside kept
    "relabel-control-chars": ("result", ("relabelled",)),
    "add-text-control-chars": ("result", ("saved",)),
}


def test_page_handlers_hostile_cases(media, tmp_path):
    m = {k: str(v) for k, v in media.items()}
    m.update(app=str(tmp_path / "app"), bomb=str(_png_declaring(tmp_path / "photo.png", 20_000, 20_000)),
             cut=str(_truncated_jpeg(tmp_path / "upload.jpg")))
    script = tmp_path / "page_cases.py"
    script.write_text(PAGE_SCRIPT)
    child = run_child([sys.executable, str(script), json.dumps(m)], tmp_path)
    rows = {r["case"]: r for r in (json.loads(line[5:]) for line in child.output.splitlines()
                                   if line.startswith("CASE "))}
    peak = [int(line[5:]) for line in child.output.splitlines() if line.startswith("PEAK ")]
    for name, row in rows.items():
        print(f"\nCASE {name}: {row['kind']}: {row['message'][:160]!r}")
    print(f"\nPAGE GROUP peak={child.peak_kib / 1024:.0f} MiB (self-reported {peak[0] / 1024 if peak else -1:.0f} MiB)")
    assert child.rc == 0 and set(rows) == set(PAGE_EXPECT), child.output[-3000:]
    _check_common(child, media)
    for name, (kind, words) in PAGE_EXPECT.items():
        row = rows[name]
        assert row["kind"] == kind, (name, row)
        assert any(w.lower() in row["message"].lower() for w in words), (name, row)
        assert str(tmp_path) not in row["message"]  # no server path shown to the page's user
    labels = json.loads(next(line[7:] for line in child.output.splitlines() if line.startswith("LABELS ")))
    # NUL, ESC, BEL and the bidi override are gone (the page turns them into spaces); nothing overlong kept
    assert "hel lo [31m" in labels and "gre et" in labels, labels
    assert all(c.isprintable() and "\u202e" not in c and len(c) <= 64 for c in labels), labels
    assert (media["bundle"] / "model.pkl").is_file()  # the refused bundles were not removed either
