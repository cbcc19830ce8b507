"""Speak tab on the real streaming Whisper and MiniLM: transcript, classification, ASR doubt folded in."""
from __future__ import annotations

import subprocess

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


def _stream(ctx, wav_path, mode, text, rate_s=0.1, tail_s=1.0):
    """Feed a WAV as the browser does (int16 chunks of rate_s), then stop -> the handler's outputs."""
    samples, rate = soundfile.read(wav_path, dtype="int16")
    samples = np.concatenate([np.zeros(rate // 2, np.int16), samples, np.zeros(int(rate * tail_s), np.int16)])
    state, step = None, int(rate * rate_s)
    labels = tab_speak.DEFAULT_LABELS
    for start in range(0, len(samples), step):
        *_, state = tab_speak.process_chunk(ctx, (rate, samples[start:start + step]), labels, state, "ana", mode, text)
    return tab_speak.finish(ctx, labels, state, "ana", mode, text)


def test_commands_mode_scores_each_utterance_on_its_audio(ctx, spoken):
    committed, partial, probs, info, state = _stream(ctx, spoken("stop"), "commands", "yes, no, stop")
    assert probs is not None and set(probs) == {"yes", "no", "stop", "none of these"}
    assert max(probs, key=probs.get) == "stop" and probs["stop"] > 0.5, info
    assert "→ **stop**" in info and "decision" in info and "set {" in info
    assert state.last_audio is not None and 0.5 < len(state.last_audio) / 16000 < 5
    assert ctx.hub.loads["command-scorer"] == 1 and ctx.hub.loads["asr"] == 1  # one Whisper serves both


def test_commands_mode_bad_input_is_a_clear_message(ctx, spoken):
    chunk = (16000, np.zeros(1600, np.int16))
    for commands, message in [(" , ", "Type the commands"), ("yes, Yes.", "same spoken word"),
                              (" ".join(["word"] * 60), "60 words"), ("はい, いいえ", "English")]:
        with pytest.raises(gr.Error, match=message):
            tab_speak.process_chunk(ctx, chunk, "", None, "", "commands", commands)
        # the live stream answers in the info box and keeps running
        *_, info, state = tab_speak.process_stream_chunk(ctx, chunk, "", None, "", "commands", commands)
        assert message.lower() in info.lower()
    with pytest.raises(gr.Error, match="meaning or commands"):
        tab_speak.process_chunk(ctx, chunk, "", None, "", "telepathy", "yes")


def test_silent_or_tiny_utterances_say_no_speech(ctx):
    classifier = tab_speak.speech_session.command_classifier(ctx, ("yes", "no"))
    for audio in (np.zeros(16000, np.float32), np.full(1600, 0.1, np.float32)):
        utterance = tab_speak.speech_session.Utterance(0.0, len(audio) / 16000, audio)
        assert tab_speak.speech_session.classify_utterance(classifier, utterance) is None
    state = tab_speak.SpeakState(note="no speech in the last utterance (too short or silent)")
    assert "no speech" in tab_speak._outputs(state)[3]


def test_meaning_mode_says_zero_shot_is_uncalibrated(ctx, spoken):
    committed, partial, probs, info = tab_speak.process_file(ctx, str(spoken("Thank you very much.")),
                                                             "question, thanks", "", "meaning", "")
    assert "uncalibrated" in info and "n/a (uncalibrated)" in info


def test_uploaded_command_recording(ctx, spoken, tmp_path):
    wav = tmp_path / "yes.wav"
    subprocess.run(["sox", str(spoken("yes")), str(wav), "pad", "0.5", "1.0"], check=True)
    committed, partial, probs, info = tab_speak.process_file(ctx, str(wav), "", "", "commands", "yes, no, stop")
    assert max(probs, key=probs.get) == "yes", info
