"""Sessions share the hub's models; Deploy reaches open sessions; the page lets nothing hostile in.

Real models, real photos, and hostile inputs made here: a bomb PNG, a pickle whose __reduce__
writes a marker file, `../` names, a link out of the bundles folder, an overlong WAV, control
characters and 100,000-character labels.
"""
from __future__ import annotations

import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile
from skimage import data

from bench.sessions import count_file_reads
from demos import tab_speak, tab_train, tab_webcam
from demos.context import AppContext, AppSettings
from demos.inputs import MAX_AUDIO_S, clean_text
from demos.review import ReviewSettings

SHIPPED_SIGN = Path(__file__).resolve().parent.parent / "models" / "weights" / "sign_landmarks_mlp"


@pytest.fixture
def ctx(tmp_path):
    return AppContext(AppSettings(data_dir=tmp_path / "app", preload=(),
                                  review=ReviewSettings(min_interval_s=0.0)))


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def test_second_and_fourth_webcam_sessions_load_no_model(ctx):
    reads = count_file_reads()  # model files read from disk, counted
    photo = data.astronaut()
    states = []
    for i in range(4):
        before = sum(reads.values())
        _, probs, _, state = tab_webcam.process_frame(ctx, photo, "emotion", None)
        assert max(probs, key=probs.get) == "happy"
        states.append(state)
        if i == 0:
            assert sum(reads.values()) > before  # the first session loads the shared model...
        else:
            assert sum(reads.values()) == before, f"session {i + 1} read model files: {reads}"  # ...the others do not
    assert ctx.hub.loads["emotion"] == 1
    assert len({id(s.vision.pipeline) for s in states}) == 4  # but each has its own tracks
    for state in states:
        tab_webcam.close_state(state)
        assert state.vision is None


def deployable_copy(ctx: AppContext, name: str) -> str:
    shutil.copytree(SHIPPED_SIGN, ctx.bundles_dir / name)
    return name


def test_deploy_reaches_sessions_already_open(ctx):
    first = deployable_copy(ctx, "signs-1")
    assert "live now" in tab_train.deploy(ctx, "landmarks", first)
    assert "team sign model" in tab_webcam.task_choices(ctx)
    frame = data.astronaut()
    _, _, _, state = tab_webcam.process_frame(ctx, frame, "team sign model", None)
    old_pipeline, old_generation = state.vision.pipeline, state.vision.generation
    _, _, _, state = tab_webcam.process_frame(ctx, frame, "team sign model", state)
    assert state.vision.pipeline is old_pipeline  # same model: the session keeps its tracks
    second = deployable_copy(ctx, "signs-2")
    tab_train.deploy(ctx, "landmarks", second)
    _, _, _, state = tab_webcam.process_frame(ctx, frame, "team sign model", state)  # the open session's next frame
    assert state.vision.pipeline is not old_pipeline and state.vision.generation > old_generation
    assert ctx.hub.get("team sign model").spec.endswith("signs-2")
    assert ctx.hub.loads["team sign model"] == 2  # once per deploy, not once per session
    assert tab_train.bundle_choices(ctx, "landmarks") == ["signs-2", "signs-1"]


class WritesMarker:
    """Unpickling this runs `open(marker, "w")`: what a hostile model file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_deploy_takes_only_names_in_the_bundles_folder_and_never_a_pickle(ctx, tmp_path):
    marker = tmp_path / "pwned"
    evil = ctx.bundles_dir / "evil"
    shutil.copytree(SHIPPED_SIGN, evil)
    (evil / "model.pkl").write_bytes(pickle.dumps(WritesMarker(marker)))
    with pytest.raises(gr.Error, match="pickle") as e:
        tab_train.deploy(ctx, "landmarks", "evil")
    assert not marker.exists() and "previous model stays live" in e.value.message
    outside = tmp_path / "outside"
    shutil.copytree(SHIPPED_SIGN, outside)
    os.symlink(outside, ctx.bundles_dir / "link")
    for name in ("../outside", str(outside), "/etc", "..", "link", "a/../../outside", "nope"):
        with pytest.raises(gr.Error):
            tab_train.deploy(ctx, "landmarks", name)
    assert ctx.bundle("landmarks") is None and tab_train.bundle_choices(ctx, "landmarks") == []
    with pytest.raises(gr.Error, match="not for the image task"):
        tab_train.deploy(ctx, "image", deployable_copy(ctx, "signs"))


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A tiny PNG whose header declares width x height pixels (the rest is a few zero bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + chunk(b"IEND", b""))
    return path


def test_bounded_images_audio_and_text(ctx, tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    start = rss_mb()
    with pytest.raises(gr.Error, match="megapixels") as e:
        tab_webcam.process_upload(ctx, str(bomb), "emotion")
    assert str(tmp_path) not in e.value.message
    with pytest.raises(gr.Error, match="megapixels"):
        tab_webcam.process_frame(ctx, str(bomb), "emotion", None)  # the API's one-frame endpoint sends files
    with pytest.raises(gr.Error, match="10000x6000 pixels"):  # under PIL's own bound, over ours
        tab_webcam.process_upload(ctx, str(bomb_png(tmp_path / "big.png", 10000, 6000)), "emotion")
    assert rss_mb() - start < 200
    long_wav = tmp_path / "long.wav"
    soundfile.write(long_wav, np.zeros(int((MAX_AUDIO_S + 5) * 8000), np.int16), 8000)
    with pytest.raises(gr.Error, match="recordings up to"):
        tab_speak.process_file(ctx, str(long_wav), "greeting, question")
    empty_wav = tmp_path / "empty.wav"
    soundfile.write(empty_wav, np.zeros(0, np.int16), 16000)
    with pytest.raises(gr.Error) as e:
        tab_speak.process_file(ctx, str(empty_wav), "greeting, question")
    assert str(tmp_path) not in e.value.message
    with pytest.raises(gr.Error, match="characters long"):
        tab_speak.parse_labels("x" * 100_000 + ", y")
    with pytest.raises(gr.Error, match="chunk longer"):
        tab_speak.live_audio(ctx, tab_speak.SpeakState(), 0, 16000, np.zeros(16000 * 60, np.int16))
    assert clean_text("ha\x00pp\u202ey\n", "label") == "ha pp y"
    with pytest.raises(gr.Error, match="label is 100000 characters"):
        tab_train.capture_text(ctx, None, "hello", "x" * 100_000, "ana", "")


def test_samples_are_listed_relabelled_and_deleted_with_who(ctx):
    tab_train.capture_text(ctx, None, "hello there", "greetnig", "ana", "s1")  # the typo
    tab_train.capture_text(ctx, None, "thanks a lot", "thanks", "ana", "s1")
    rows = tab_train.sample_rows(ctx, "text")
    assert [r[1] for r in rows] == ["thanks", "greetnig"]  # newest first
    typo_id, other_id = rows[1][0], rows[0][0]
    with pytest.raises(gr.Error, match="your name"):
        tab_train.relabel_sample(ctx, typo_id, "greeting", "")
    assert "relabelled **greeting** by ravi" in tab_train.relabel_sample(ctx, typo_id, "greeting", "ravi")
    assert ctx.samples.get(typo_id).label == "greeting"
    assert "deleted by ravi" in tab_train.delete_sample(ctx, other_id, "ravi")
    assert [r[0] for r in tab_train.sample_rows(ctx, "text")] == [typo_id]
    with pytest.raises(gr.Error, match="no sample"):
        tab_train.delete_sample(ctx, other_id, "ravi")


def test_hub_counts_loads_and_replace_raises_the_generation():
    from demos.context import ModelHub

    made = []
    hub = ModelHub({"m": lambda: made.append(object()) or made[-1]})
    first = hub.get("m")
    assert hub.get("m") is first and hub.loads["m"] == 1 and hub.generation("m") == 0
    hub.replace("m")
    assert hub.generation("m") == 1 and hub.loads["m"] == 1  # nothing loaded until asked
    assert hub.get("m") is not first and hub.loads["m"] == 2


def test_a_deployed_text_model_embeds_with_the_hubs_minilm(ctx):
    from train.bundle_writer import save_bundle

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(2, 384)).astype(np.float32)
    save_bundle(ctx.bundles_dir / "text-zs", task="text", backend="zeroshot", classes=["yes", "no"],
                zeroshot_embeddings=emb / np.linalg.norm(emb, axis=1, keepdims=True))
    assert "Speak tab" in tab_train.deploy(ctx, "text", "text-zs")
    bundle = ctx.bundle("text")
    assert bundle._embedder is ctx.embedder  # no second MiniLM: the bundle asks the hub
    assert ctx.hub.loads["text-embedder"] == 0  # and nothing is loaded until a sentence needs it
    assert bundle.policy == ctx.settings.review.policy  # the page's --accept-at routes it
