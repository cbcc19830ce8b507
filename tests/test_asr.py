"""Speech to text on the real tiny.en model and espeak-ng speech: offline, streaming, bad input.

The streaming tests run on both decoding engines: openai-whisper ("torch", the reference) and
CTranslate2 ("ct2", the CPU default); offline transcription is openai-whisper in both.
"""
from __future__ import annotations

import re
import warnings
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from models.transcriber import SAMPLE_RATE, AudioInputError, cut_repetition, prepare_audio

SENTENCES = (
    "My brother likes to read books about history and science.",
    "Please open the window because it is very warm in here.",
)
THIRD = "We will meet again tomorrow morning."


def words(text: str) -> list[str]:
    return re.sub(r"[^\w' ]", " ", text.lower()).split()


def overlap(a: str, b: str) -> float:
    """Shared words (with multiplicity) over the longer word count: 1.0 = same bag of words."""
    wa, wb = Counter(words(a)), Counter(words(b))
    n = max(sum(wa.values()), sum(wb.values()))
    return sum((wa & wb).values()) / n if n else 1.0


def load(path) -> np.ndarray:
    """The WAV as (N,) float32 after 0.3 s of silence (espeak starts speaking at sample 0)."""
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == SAMPLE_RATE
    return np.concatenate([np.zeros(int(0.3 * SAMPLE_RATE), np.float32), audio])


# ---- no model needed ----------------------------------------------------------------------
def test_prepare_audio_cleans_what_it_can_and_explains_what_it_cannot():
    assert prepare_audio(np.zeros(0, np.float32)).shape == (0,)
    with pytest.warns(UserWarning, match="NaN"):
        out = prepare_audio(np.array([0.1, np.nan, np.inf, -0.2], np.float32))
    assert np.isfinite(out).all() and out[1] == 0.0
    with pytest.warns(UserWarning, match="clipped"):
        assert prepare_audio(np.array([3.0, -2.0], np.float32)).max() == 1.0
    stereo_int16 = (np.random.default_rng(0).normal(0, 3000, (44100, 2))).astype(np.int16)
    mono16k = prepare_audio(stereo_int16, 44100)
    assert mono16k.dtype == np.float32 and abs(len(mono16k) - 16000) <= 1
    for rate in (0, -16000, 16000.5, "16k"):
        with pytest.raises(AudioInputError, match="sample rate"):
            prepare_audio(np.zeros(100, np.float32), rate)
    with pytest.raises(AudioInputError):
        prepare_audio(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(AudioInputError, match="32768"):
        prepare_audio(np.full(10, 20000.0, np.float32))


def test_cut_repetition_stops_a_decoding_loop():
    assert cut_repetition([7, 1, 2, 3, 1, 2, 3, 1, 2]) == [7, 1, 2, 3]
    assert cut_repetition([1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5, 6]


# ---- real model ---------------------------------------------------------------------------
def load_transcriber(engine: str):
    import torch

    from models.transcriber import Transcriber, TranscriberSettings

    torch.set_num_threads(1)  # the test machine is shared; one thread is faster under contention
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no GPU" is expected here
        t = Transcriber(TranscriberSettings(model="tiny.en", engine=engine, threads=1))
    assert t.engine_name == engine
    return t


@pytest.fixture(scope="module", params=["torch", "ct2"])
def transcriber(request):
    """Each streaming engine in turn."""
    return load_transcriber(request.param)


@pytest.fixture(scope="module")
def reference():
    """openai-whisper only: offline transcription is the same for both engines."""
    return load_transcriber("torch")


def stream(transcriber, audio: np.ndarray, chunk_s: float = 0.1, **settings):
    """Replay audio through the streaming processor (as fast as possible); returns (asr, every update)."""
    from models.asr_replay import transcribe_stream
    from models.streaming_asr import StreamingASR, StreamingSettings

    asr = StreamingASR(transcriber, StreamingSettings(**settings))
    _, _, updates = transcribe_stream(asr, audio, chunk_s=chunk_s)
    return asr, updates


@pytest.mark.slow
def test_offline_transcript_has_words_confidence_and_times(reference, spoken):
    audio = load(spoken(SENTENCES[0]))
    result = reference.transcribe(audio)
    assert overlap(result.text, SENTENCES[0]) >= 0.7, result.text
    duration_s = len(audio) / SAMPLE_RATE
    for seg in result.segments:
        assert 0.0 <= seg.start_s <= seg.end_s <= duration_s + 0.5
        assert seg.avg_logprob < 0 and 0 <= seg.no_speech_prob <= 1
        assert 0.0 <= seg.confidence.confidence <= 1.0
        assert all(0 <= w.probability <= 1 for w in seg.words)
    assert result.segments[0].confidence.confidence > 0.5  # clean synthetic speech
    assert not any(s.confidence.hallucinated for s in result.segments)


@pytest.mark.slow
def test_streaming_matches_offline_and_never_retracts(transcriber, spoken):
    # Two sentences with a pause, so both the VAD flush and the local-agreement path commit text.
    a, b = (load(spoken(s)) for s in SENTENCES)
    audio = np.concatenate([np.zeros(3200, np.float32), a, np.zeros(16000, np.float32), b])
    offline = transcriber.transcribe(audio).text
    asr, updates = stream(transcriber, audio)
    final = updates[-1].committed_text
    assert overlap(final, offline) >= 0.8, (final, offline)
    assert overlap(final, " ".join(SENTENCES)) >= 0.7, final
    for before, after in zip(updates, updates[1:]):  # committed text only ever grows
        assert after.committed_text.startswith(before.committed_text)
    assert any(u.partial_text for u in updates)  # words were shown before they were final
    mid = [u for u in updates[:-1] if u.committed]
    assert len(mid) >= 2  # text was committed while audio was still arriving, not only at the end
    times = [(w.start_s, w.end_s) for w in asr.committed_words]
    assert all(s <= e for s, e in times) and times[-1][1] <= len(audio) / SAMPLE_RATE + 0.3
    # Absolute times: the second sentence's first word is placed where it was spoken, after the pause.
    b_start_s = (3200 + len(a) + 16000) / SAMPLE_RATE
    please = [w for w in asr.committed_words if words(w.text) == ["please"]]
    assert please and abs(please[0].start_s - b_start_s - 0.3) < 0.4, (please, b_start_s)
    segments = [s for u in updates for s in u.segments]
    assert len(segments) >= 2 and all(0 <= s.confidence.confidence <= 1 for s in segments)


@pytest.mark.slow
def test_buffer_stays_bounded_in_a_long_stream(transcriber, spoken):
    # 3 sentences back to back with no pause: only local agreement and trimming keep the window short.
    text = " ".join(SENTENCES) + " " + THIRD
    audio = load(spoken(text))
    from models.streaming_asr import StreamingASR, StreamingSettings

    from models.asr_replay import StreamDriver

    settings = StreamingSettings(max_window_s=6.0)
    asr = StreamingASR(transcriber, settings)
    driver = StreamDriver(asr)
    n = int(0.1 * SAMPLE_RATE)
    longest = 0.0
    for i in range(0, len(audio), n):  # one chunk per call, however long a decode takes
        driver.step(audio[i : i + n])
        longest = max(longest, asr.buffer_s)
    final = driver.finish().committed_text
    assert longest <= settings.max_window_s + settings.min_chunk_s + 0.2
    assert overlap(final, text) >= 0.6, final


@pytest.mark.slow
def test_silence_noise_and_broken_input_yield_no_text(transcriber):
    rng = np.random.default_rng(0)
    silence = np.zeros(3 * SAMPLE_RATE, np.float32)
    hiss = rng.normal(0, 0.003, 3 * SAMPLE_RATE).astype(np.float32)  # -50 dBFS room noise
    assert transcriber.transcribe(silence).text == ""
    assert transcriber.transcribe(np.zeros(0, np.float32)).text == ""
    for audio in (silence, hiss):
        _, updates = stream(transcriber, audio)
        assert updates[-1].committed_text == "" and not any(u.decoded for u in updates)
    from models.streaming_asr import StreamingASR

    asr = StreamingASR(transcriber)
    with pytest.warns(UserWarning, match="NaN"):
        asr.insert_audio(np.full(SAMPLE_RATE, np.nan, np.float32))
    asr.insert_audio(np.zeros(0, np.float32))
    with pytest.raises(AudioInputError, match="sample rate"):
        asr.insert_audio(np.zeros(100, np.float32), sample_rate=0)
    assert asr.process_iter().committed_text == "" and asr.finish().committed_text == ""


@pytest.mark.slow
def test_other_sample_rates_and_clipping_still_transcribe(transcriber, spoken):
    from models.streaming_asr import StreamingASR

    audio = load(spoken(SENTENCES[1], sample_rate=SAMPLE_RATE))
    loud = np.clip(audio * 20.0, -1.0, 1.0)  # heavily clipped
    from capture.audio import resample

    audio44k = np.clip(resample(loud, SAMPLE_RATE, 44100), -1.0, 1.0)
    from models.asr_replay import StreamDriver

    driver = StreamDriver(StreamingASR(transcriber), clock="wall")
    for i in range(0, len(audio44k), 4410):  # 0.1 s chunks at 44.1 kHz, resampled chunk by chunk
        driver.step(audio44k[i : i + 4410], sample_rate=44100)
    text = driver.finish().committed_text
    assert overlap(text, SENTENCES[1]) >= 0.6, text


@pytest.mark.slow
def test_confidence_separates_speech_from_gibberish(reference, spoken):
    # Reversed speech sounds like speech (the VAD lets it through) but holds no words: Whisper
    # still writes something, and the calibrated confidence must say not to trust it.
    clean = load(spoken(SENTENCES[0]))
    good = reference.transcribe(clean).segments
    bad = reference.transcribe(clean[::-1].copy()).segments
    assert good and min(s.confidence.confidence for s in good) > 0.8
    assert not any(s.confidence.hallucinated for s in good)
    assert all(s.confidence.confidence < 0.5 and s.confidence.hallucinated for s in bad), [s.text for s in bad]


@pytest.mark.slow
def test_ct2_samples_up_to_sample_len_tokens_after_a_long_prefix(spoken):
    # CTranslate2 caps the decoder steps after the prompt, prefix included, at half its max_length: a long forced
    # prefix with the raw budget left no room at all for the words after it (the stream's last words were lost).
    import torch.nn.functional as F
    import whisper

    t = load_transcriber("ct2")
    audio = load(spoken(SENTENCES[0]))
    tokenizer = t.tokenizer("en")
    mel = whisper.log_mel_spectrogram(audio, t.engine.n_mels)
    features = t.engine.encode(F.pad(mel, (0, 3000 - mel.shape[-1]))[None])
    text = tokenizer.encode(" " + SENTENCES[0])
    prefix = text[:7]  # "My brother likes to read books about"
    for prompt in ("", "Earlier words said before this sentence."):
        few, _, _ = t.engine.generate(features, tokenizer, prompt=prompt, prefix=prefix, sample_len=3, beam_size=3)
        assert len(few) == 3, tokenizer.decode(few)  # mid-sentence: exactly the budget, not less
        rest, _, _ = t.engine.generate(features, tokenizer, prompt=prompt, prefix=prefix, sample_len=40, beam_size=3)
        rest = [x for x in rest if x < tokenizer.eot]
        assert overlap(tokenizer.decode(rest), "history and science") >= 0.6, tokenizer.decode(rest)
