"""Tab handlers as plain functions on real models and real photos (no browser).

Each test makes the state it checks (its own frames, its own app folder where it writes), so it
passes or fails on its own, in any order.
"""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from skimage import data

from demos import tab_monitor, tab_questions, tab_review, tab_train, tab_webcam
from demos.context import AppContext, AppSettings
from demos.review import ReviewSettings


def make_ctx(folder, accept_at: float = 0.99) -> AppContext:
    # accept only at 0.99 so that a clearly smiling astronaut (p ~ 0.97) still goes to review
    settings = AppSettings(data_dir=folder, preload=(), review=ReviewSettings(accept_at=accept_at, min_interval_s=0.0))
    return AppContext(settings)


@pytest.fixture
def ctx(tmp_path):
    return make_ctx(tmp_path / "app")


def test_webcam_frames_give_tracked_predictions_review_items_and_stats(ctx):
    photo = data.astronaut()  # (512, 512, 3) uint8 RGB, one smiling face
    state = None
    for _ in range(5):
        annotated, probs, info, state = tab_webcam.process_frame(ctx, photo, "emotion", state, "eileen")
    assert annotated.shape == photo.shape and not np.array_equal(annotated, photo)  # box drawn
    assert max(probs, key=probs.get) == "happy" and sum(probs.values()) == pytest.approx(1.0)
    assert "happy" in info and "results/s" in info
    assert len(state.last_predictions) == 1 and state.last_predictions[0].track_id is not None
    items = ctx.review.pending(task="emotion")
    assert len(items) == 5 and items[0].person == "eileen" and items[0].load_input().shape == (224, 224, 3)
    assert ctx.monitor.drift("emotion/brightness").n_reference == 5
    heat, text = tab_webcam.explain_last(ctx, state)
    assert heat.shape == photo.shape and "happy" in text
    alarm, drift, _, _, timing, transport = tab_monitor.refresh(ctx)
    assert "drift" in alarm.lower()
    assert any(row[0] == "emotion/brightness" for row in drift)
    assert [row[-1] for row in timing if row[0] == "emotion"] == [5]


def test_local_camera_takes_only_a_camera_number(ctx, tmp_path):
    video = tmp_path / "face.avi"
    video.write_bytes(b"not read")
    for spec in (str(video), "http://example.com/stream", "../../etc/passwd"):
        with pytest.raises(gr.Error, match="camera number"):
            list(tab_webcam.local_camera(ctx, spec, "emotion"))
    with pytest.raises(gr.Error, match="Camera 97 could not be read"):
        list(tab_webcam.local_camera(ctx, "97", "emotion"))
    shared = AppContext(AppSettings(data_dir=tmp_path / "shared", preload=(), local_camera=False))
    with pytest.raises(gr.Error, match="shared with others"):
        list(tab_webcam.local_camera(shared, "0", "emotion"))


def test_no_face_and_bad_uploads_are_clear(ctx, tmp_path):
    cat = data.chelsea()  # a cat: no human face
    _, probs, info, _ = tab_webcam.process_frame(ctx, cat, "emotion", None)
    assert probs is None and "No face" in info
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is not an image")
    with pytest.raises(gr.Error, match="not a readable image") as e:
        tab_webcam.process_upload(ctx, str(bogus), "emotion")
    assert str(tmp_path) not in e.value.message  # the server's folders are nobody's business
    with pytest.raises(gr.Error, match="Unknown task"):
        tab_webcam.process_frame(ctx, cat, "astrology", None)
    with pytest.raises(gr.Error, match="No team sign model is deployed"):
        tab_webcam.process_frame(ctx, cat, "team sign model", None)
    with pytest.raises(gr.Error, match="no frame"):
        tab_webcam.explain_last(ctx, None)


def test_live_frame_answers_with_data_and_keeps_going_after_a_bad_frame(ctx):
    state = tab_webcam.set_live_choice(ctx, None, "emotion", "eileen")
    with pytest.raises(gr.Error, match="too small"):  # the project's message, sent to the page
        tab_webcam.live_frame(ctx, state, np.zeros((1, 1, 3), np.uint8), 0, 10.0)
    result = tab_webcam.live_frame(ctx, state, data.astronaut(), 1, 20.5)  # the same session goes on
    assert result["seq"] == 1 and result["t_capture_ms"] == 20.5 and result["task"] == "emotion"
    assert (result["width"], result["height"]) == (512, 512)
    (face,) = result["predictions"]
    assert face["label"] == "happy" and max(face["probs"], key=face["probs"].get) == "happy"
    x0, y0, x1, y1 = face["box"]
    assert 150 < x0 < x1 < 350 and 0 < y0 < y1 < 250  # the astronaut's face
    assert face["decision"] in ("accept", "review") and face["text"].startswith(f"#{face['track_id']} ")
    assert face["set"] and "happy" in face["set"] and "calibrated on FER2013" in face["calibration"]
    assert "results/s" in result["summary"]
    with pytest.raises(gr.Error, match="Unknown task"):
        tab_webcam.set_live_choice(ctx, state, "astrology")


def test_review_tab_resolves_into_a_training_sample(ctx):
    tab_webcam.process_frame(ctx, data.astronaut(), "emotion", None, "eileen")
    rows = tab_review.queue_rows(ctx)
    assert len(rows) == 1
    item_id = rows[0][0]
    image, audio, text, probs, desc, classes = tab_review.show_item(ctx, item_id)
    assert image.shape == (224, 224, 3) and "happy" in classes and "model says" in desc
    with pytest.raises(gr.Error, match="reviewer"):
        tab_review.resolve(ctx, item_id, "", "")
    msg = tab_review.resolve(ctx, item_id, "ravi", "neutral")
    assert "corrected to **neutral** by ravi" in msg
    sample = ctx.samples.get(ctx.review.get(item_id).sample_id)
    assert (sample.kind, sample.label, sample.person) == ("image", "neutral", "eileen")
    assert "ravi" in tab_review.queue_summary(ctx)
    with pytest.raises(gr.Error, match="already"):
        tab_review.resolve(ctx, item_id, "ravi", "sad")


@pytest.mark.slow
def test_questionnaire_validation_training_and_classification(ctx):
    answers = [3] * len(tab_questions.QUESTIONS)
    for bad in ("1,2,3", "1,2,3,4,5,6,7,banana", "1,2,3,4,5,6,7,9"):
        with pytest.raises(gr.Error):
            tab_questions.classify(ctx, *answers, pasted=bad)
    with pytest.raises(gr.Error, match="No questionnaire model"):
        tab_questions.classify(ctx, *answers)
    # six people, two types that answer the first three questions differently (with noise)
    rng = np.random.default_rng(0)
    for person in "abcdef":
        for kind in ("outgoing", "reserved"):
            for _ in range(4):
                base = np.array([5, 2, 5, 3, 2, 4, 1, 3]) if kind == "outgoing" else np.array([1, 4, 1, 3, 4, 2, 5, 3])
                values = np.clip(base + rng.integers(-1, 2, size=8), 1, 5)
                tab_questions.save_sample(ctx, *values.tolist(), label=kind, person=person)
    with pytest.raises(gr.Error, match="person"):
        tab_questions.save_sample(ctx, *answers, label="x", person="")
    for bad_epochs in (0, -3, 1e9, 2.5, float("nan"), "ten"):
        with pytest.raises(gr.Error, match="epochs"):
            tab_train.train(ctx, "tabular", "grouped:person", bad_epochs)
    summary, curves, reliability, evidence, name = tab_train.train(ctx, "tabular", "grouped:person", 10)
    assert "grouped" in evidence and "Diagnosis" in evidence
    assert tab_train.bundle_choices(ctx, "tabular") == [name] and tab_train.bundle_choices(ctx, "image") == []
    assert "live now" in tab_train.deploy(ctx, "tabular", name)
    assert ctx.monitor.drift("questions/confidence").reference_source == f"validation of {name}"
    probs, text = tab_questions.classify(ctx, *[5, 2, 5, 3, 2, 4, 1, 3])
    assert max(probs, key=probs.get) == "outgoing" and "decision" in text
    restarted = make_ctx(ctx.settings.data_dir)  # the deployed model survives a restart
    assert restarted.bundle("tabular") is not None and restarted.bundle("tabular").root.name == name
