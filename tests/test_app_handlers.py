"""Tab handlers as plain functions on real models and real photos (no browser)."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from skimage import data

from demos import tab_monitor, tab_questions, tab_review, tab_train, tab_webcam
from demos.handlers import AppContext, AppSettings
from demos.review import ReviewSettings


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    # accept only at 0.99 so that a clearly smiling astronaut (p ~ 0.97) still goes to review
    settings = AppSettings(data_dir=tmp_path_factory.mktemp("app"), preload=(),
                           review=ReviewSettings(accept_at=0.99, min_interval_s=0.0))
    return AppContext(settings)


def test_webcam_frames_give_tracked_predictions_review_items_and_stats(ctx):
    photo = data.astronaut()  # (512, 512, 3) uint8 RGB, one smiling face
    state = None
    for _ in range(5):
        annotated, probs, info, state = tab_webcam.process_frame(ctx, photo, "emotion", state, "eileen")
    assert annotated.shape == photo.shape and not np.array_equal(annotated, photo)  # box drawn
    assert max(probs, key=probs.get) == "happy" and sum(probs.values()) == pytest.approx(1.0)
    assert "happy" in info and "results/s" in info
    assert state.last_predictions[0].track_id == state.last_predictions[-1].track_id
    items = ctx.review.pending(task="emotion")
    assert items and items[0].person == "eileen" and items[0].load_input().shape == (224, 224, 3)
    assert ctx.monitor.drift("emotion/brightness").n_reference == 5
    heat, text = tab_webcam.explain_last(ctx, state)
    assert heat.shape == photo.shape and "happy" in text


def test_local_camera_replays_a_video_file(ctx, tmp_path):
    import cv2

    path = tmp_path / "face.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (512, 512))
    for _ in range(15):
        writer.write(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    writer.release()
    outputs = list(tab_webcam.local_camera(ctx, str(path), "emotion"))
    assert outputs and all(max(p, key=p.get) == "happy" for _, p, _ in outputs)
    assert "fps" in outputs[-1][2]
    with pytest.raises(gr.Error, match="not found"):
        list(tab_webcam.local_camera(ctx, str(tmp_path / "missing.mp4"), "emotion"))


def test_no_face_and_bad_uploads_are_clear(ctx, tmp_path):
    cat = data.chelsea()  # a cat: no human face
    _, probs, info, _ = tab_webcam.process_frame(ctx, cat, "emotion", None)
    assert probs is None and "No face" in info
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is not an image")
    with pytest.raises(gr.Error, match="not an image"):
        tab_webcam.process_upload(ctx, str(bogus), "emotion")
    with pytest.raises(gr.Error, match="Unknown task"):
        tab_webcam.process_frame(ctx, cat, "astrology", None)
    with pytest.raises(gr.Error, match="no frame"):
        tab_webcam.explain_last(ctx, None)


def test_review_tab_resolves_into_a_training_sample(ctx):
    photo = data.astronaut()
    tab_webcam.process_frame(ctx, photo, "emotion", None, "eileen")
    rows = tab_review.queue_rows(ctx)
    item_id = rows[0][0]
    image, audio, text, probs, desc, classes = tab_review.show_item(ctx, item_id)
    assert image.shape == (224, 224, 3) and "happy" in classes and "model says" in desc
    with pytest.raises(gr.Error, match="reviewer"):
        tab_review.resolve(ctx, item_id, "", "")
    msg = tab_review.resolve(ctx, item_id, "ravi", "neutral")
    assert "corrected to **neutral** by ravi" in msg
    sample_id = ctx.review.get(item_id).sample_id
    sample = ctx.samples.get(sample_id)
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
    summary, curves, reliability, evidence, bundle = tab_train.train(ctx, "tabular", "grouped:person", 10)
    assert "grouped" in evidence and "Diagnosis" in evidence and bundle
    assert "Deployed" in tab_train.deploy(ctx, "tabular", bundle)
    assert ctx.monitor.drift("questions/confidence").reference_source == "validation"
    probs, text = tab_questions.classify(ctx, *[5, 2, 5, 3, 2, 4, 1, 3])
    assert max(probs, key=probs.get) == "outgoing" and "decision" in text


def test_monitor_refresh_renders(ctx):
    alarm, drift, fig1, fig2, timing = tab_monitor.refresh(ctx)
    assert "drift" in alarm.lower()
    assert any(row[0] == "emotion/brightness" for row in drift)
    assert any(row[0] == "emotion" for row in timing)
