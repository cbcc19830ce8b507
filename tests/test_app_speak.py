"""Speak tab on the real streaming Whisper and MiniLM: transcript, classification, ASR doubt folded in."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import soundfile

from demos import tab_speak
from demos.context import AppContext, AppSettings
from demos.review import ReviewSettings
from models.prediction import Decision, make_prediction

pytestmark = pytest.mark.slow  # loads Whisper tiny.en and MiniLM


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    settings = AppSettings(data_dir=tmp_path_factory.mktemp("app"), preload=(),
                           review=ReviewSettings(accept_at=0.99, min_interval_s=0.0))
    return AppContext(settings)


def test_fold_asr_confidence_never_more_sure_than_the_words():
    p = make_prediction(["question", "greeting"], [0.95, 0.05])
    sure = tab_speak.fold_asr_confidence(p, 1.0, False)
    doubtful = tab_speak.fold_asr_confidence(p, 0.5, False)
    assert sure.confidence == pytest.approx(0.95) and sure.decision is Decision.ACCEPT
    assert doubtful.confidence == pytest.approx(0.5 * 0.95 + 0.25) and doubtful.decision is Decision.REVIEW
    assert tab_speak.fold_asr_confidence(p, 1.0, True).decision is Decision.ABSTAIN


def test_labels_are_validated():
    assert tab_speak.parse_labels("question, greeting: saying hello") == {"question": "question", "greeting": "saying hello"}
    with pytest.raises(gr.Error, match="two classes"):
        tab_speak.parse_labels("question")


def test_microphone_chunks_stream_to_a_classified_transcript(ctx, spoken):
    wav = spoken("Can you help me with my homework? Thank you very much.")
    samples, rate = soundfile.read(wav, dtype="int16")  # what the browser sends: int16 chunks
    samples = np.concatenate([samples, np.zeros(rate, np.int16)])  # a second of silence after speaking
    state, labels = None, "question, thanks, complaint"
    step = rate // 2  # 0.5 s chunks, as stream_every=0.5
    for start in range(0, len(samples), step):
        committed, partial, probs, info, state = tab_speak.process_chunk(ctx, (rate, samples[start:start + step]), labels, state)
    committed, partial, probs, info, state = tab_speak.finish(ctx, labels, state)
    assert "homework" in committed.lower()
    assert probs is not None and set(probs) == {"question", "thanks", "complaint"}
    assert "ASR confidence" in info
    assert state.segments and all(0 <= s.confidence.confidence <= 1 for s in state.segments)
    assert ctx.monitor.drift("speech/audio_level_db").n_reference > 0
    assert "zero-shot" in tab_speak.explain_last(ctx, state)
    ctx.samples.add_text("could you help me with my maths", "question", person="ana")
    ctx.samples.add_text("thanks a lot", "thanks", person="ana")
    why = tab_speak.explain_last(ctx, state)
    assert state.last_text.lower().startswith("thank")  # the last sentence said
    assert why.index("thanks a lot") < why.index("maths")  # ...is nearest the thanks phrase
    # one Whisper and one MiniLM for the whole app: the zero-shot classifier embeds with the hub's
    assert ctx.hub.loads["asr"] == 1 and ctx.hub.loads["text-embedder"] == 1
    assert tab_speak.speech_session.zero_shot_classifier(ctx, tab_speak.parse_labels(labels))._embedder is ctx.embedder


def test_uploaded_recording_and_silence(ctx, spoken, tmp_path):
    wav = spoken("Hello, nice to meet you.")
    committed, partial, probs, info = tab_speak.process_file(ctx, str(wav), "greeting, question")
    assert "nice to meet" in committed.lower() and max(probs, key=probs.get) == "greeting"
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(32000, np.float32), 16000)
    with pytest.raises(gr.Error, match="silent"):
        tab_speak.process_file(ctx, str(silent), "greeting, question")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(gr.Error, match="could not be read"):
        tab_speak.process_file(ctx, str(text), "greeting, question")
