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


def live(ctx, samples, rate, *, mode="meaning", labels=tab_speak.DEFAULT_LABELS, commands="yes, no", person="ana",
         rate_s=0.1, state=None, skip=()):
    """Send int16 samples as the page does (numbered chunks of rate_s; numbers in `skip` never arrive),
    then stop -> finish's outputs."""
    state = tab_speak.set_live_choice(state, mode, labels, commands, person)
    tab_speak.live_start(ctx, state)
    step = int(rate * rate_s)
    for seq, start in enumerate(range(0, len(samples), step)):
        if seq not in skip:
            tab_speak.live_audio(ctx, state, seq, rate, samples[start:start + step])
    return tab_speak.finish(ctx, state)


def test_microphone_chunks_stream_to_a_classified_transcript(ctx, spoken):
    wav = spoken("Can you help me with my homework? Thank you very much.")
    samples, rate = soundfile.read(wav, dtype="int16")  # what the browser sends: int16 chunks
    samples = np.concatenate([samples, np.zeros(rate, np.int16)])  # a second of silence after speaking
    labels = "question, thanks, complaint"
    committed, partial, probs, info, state = live(ctx, samples, rate, labels=labels)
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
    return live(ctx, samples, rate, mode=mode, commands=text, rate_s=rate_s)


def test_commands_mode_scores_each_utterance_on_its_audio(ctx, spoken):
    committed, partial, probs, info, state = _stream(ctx, spoken("stop"), "commands", "yes, no, stop")
    assert probs is not None and set(probs) == {"yes", "no", "stop", "none of these"}
    assert max(probs, key=probs.get) == "stop" and probs["stop"] > 0.5, info
    assert "→ **stop**" in info and "decision" in info and "set {" in info
    assert state.last_audio is not None and 0.5 < len(state.last_audio) / 16000 < 5
    assert ctx.hub.loads["command-scorer"] == 1 and ctx.hub.loads["asr"] == 1  # one Whisper serves both


def test_commands_mode_bad_input_is_a_clear_message(ctx, spoken):
    chunk = np.zeros(1600, np.int16)
    for commands, message in [(" , ", "Type the commands"), ("yes, Yes.", "same spoken word"),
                              (" ".join(["word"] * 60), "60 words"), ("はい, いいえ", "English")]:
        with pytest.raises(gr.Error, match=message):
            tab_speak.process_file(ctx, str(spoken("yes")), "", "", "commands", commands)
        # the live stream shows the problem and keeps transcribing with the last usable choice
        state = tab_speak.set_live_choice(None, "commands", "", commands)
        tab_speak.live_start(ctx, state)
        tab_speak.live_audio(ctx, state, 0, 16000, chunk)
        view = tab_speak.live_view(state)
        assert message.lower() in view["problem"].lower() and view["chunks_received"] == 1
        tab_speak.close(state)
    state = tab_speak.set_live_choice(None, "telepathy", "", "yes")
    tab_speak.live_audio(ctx, state, 0, 16000, chunk)
    assert "meaning or commands" in tab_speak.live_view(state)["problem"]
    tab_speak.close(state)


def test_live_gap_is_counted_and_cut_not_stitched(ctx, spoken):
    """Chunks 25-34 of a 0.1 s stream never arrive: the loss is counted (state and Monitor), the transcript
    before the gap is finished there and the words after it are a new stream, not glued on."""
    lost_before = ctx.monitor.counts("live/").get("live/audio_chunks_lost", 0)
    first, rate = soundfile.read(spoken("Good morning everyone."), dtype="int16")
    second, _ = soundfile.read(spoken("The weather is lovely today."), dtype="int16")
    pad = np.zeros(rate // 2, np.int16)
    samples = np.concatenate([pad, first, pad, np.zeros(rate, np.int16), pad, second, np.zeros(rate, np.int16)])
    gap_start = int((len(pad) * 2 + len(first) + rate * 0.2) / (rate * 0.1))  # inside the silence between
    skip = set(range(gap_start, gap_start + 10))
    committed, partial, probs, info, state = live(ctx, samples, rate, skip=skip)
    view = tab_speak.live_view(state)
    assert view["chunks_lost"] == 10 and view["gaps"] == 1
    assert ctx.monitor.counts("live/")["live/audio_chunks_lost"] - lost_before == 10
    text = committed.lower()
    assert "morning" in text and "lovely" in text and text.index("morning") < text.index("lovely")
    state = tab_speak.set_live_choice(None, "meaning", tab_speak.DEFAULT_LABELS, "yes")
    tab_speak.live_start(ctx, state)
    for seq in (0, 1):
        tab_speak.live_audio(ctx, state, seq, rate, first[seq * 1600:(seq + 1) * 1600])
    with pytest.raises(gr.Error, match="late or repeated"):  # an old number is refused, nothing changes
        tab_speak.live_audio(ctx, state, 0, rate, first[:1600])
    view = tab_speak.live_view(state)
    assert view["chunks_received"] == 2 and view["chunks_lost"] == 0
    tab_speak.close(state)


def test_live_catch_up_loses_nothing(ctx, spoken, monkeypatch):
    """Decoding far slower than real time: the worker falls behind, the page is told, and every chunk is
    still transcribed in order once it catches up (nothing is dropped)."""
    import time as _time

    wav = spoken("The quick brown fox jumps over the lazy dog near the river bank.")
    samples, rate = soundfile.read(wav, dtype="int16")
    samples = np.concatenate([np.zeros(rate // 2, np.int16), samples, np.zeros(rate, np.int16)])
    state = tab_speak.set_live_choice(None, "meaning", tab_speak.DEFAULT_LABELS, "yes")
    tab_speak.live_start(ctx, state)
    step, behind = rate // 10, []
    original = tab_speak.speech_session.SpeechWorker._run

    def slow_run(worker):  # every decode waits 0.5 s first: the inbox fills while it does
        process = worker.driver.process

        def slow_process():
            _time.sleep(0.5)
            return process()

        worker.driver.process = slow_process
        return original(worker)

    monkeypatch.setattr(tab_speak.speech_session.SpeechWorker, "_run", slow_run)
    for seq, start in enumerate(range(0, len(samples), step)):  # as fast as they come: no waiting on Whisper
        tab_speak.live_audio(ctx, state, seq, rate, samples[start:start + step])
        behind.append(tab_speak.live_view(state)["backlog_s"])
    assert max(behind) > 1.0  # it fell behind, and the page was told how far
    committed, *_ = tab_speak.finish(ctx, state)
    words = committed.lower().replace(",", "").replace(".", "").split()
    # every part of the sentence, in order: the start (queued first) and the end (queued last)
    assert words[:2] == ["the", "quick"] and "fox" in words and words[-1] == "bank" and len(words) >= 10, committed
    assert tab_speak.live_view(state)["chunks_lost"] == 0


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
