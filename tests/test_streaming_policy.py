"""The streaming commit policy on scripted decodes (no model): agreement, unsure words, beam size."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from capture.vad import SpeechSegment
from models.streaming_asr import StreamingASR, StreamingSettings
from models.transcriber import SAMPLE_RATE, TranscriberSettings, WindowHypothesis, Word

POLICY = StreamingSettings(vad="off", min_chunk_s=0.25, commit_guard_s=0.2, confident_prob=0.8, confident_lookahead_s=0.3,
                           agree_prob=0.5, unsure_decodes=3, beam_size=3)


class ScriptedTranscriber:
    """Returns the next scripted hypothesis at each decode: a list of (text, start_s, end_s, probability)."""

    multilingual = False
    language = "en"
    settings = TranscriberSettings()

    def __init__(self, script: list[list[tuple[str, float, float, float]]]):
        self.script = script
        self.calls: list[dict] = []

    def decode_window(self, audio, **kw) -> WindowHypothesis:
        self.calls.append(kw)
        prefix_words = len(kw.get("prefix_tokens", ()))  # one token per scripted word: skip the committed ones
        new = tuple(Word(f" {t}", s, e, p, (i,)) for i, (t, s, e, p) in enumerate(self.heard(audio, kw)))[prefix_words:]
        return WindowHypothesis(new, -0.2, 0.01, 1.2, False, 0.01)

    def heard(self, audio, kw) -> list[tuple[str, float, float, float]]:
        """The words this decode hears, the committed ones included: the next scripted hypothesis."""
        return self.script[min(len(self.calls) - 1, len(self.script) - 1)]


def run(script, settings=POLICY, seconds: float = 3.0, step_s: float = 0.25) -> tuple[StreamingASR, list]:
    transcriber = ScriptedTranscriber(script)
    asr = StreamingASR(transcriber, settings)
    updates = []
    for _ in range(int(seconds / step_s)):
        asr.insert_audio(np.full(int(step_s * SAMPLE_RATE), 0.1, np.float32))
        updates.append(asr.process_iter())
    return asr, updates


def reasons(updates) -> dict[str, str]:
    return {c.word.text.strip(): c.reason for u in updates for c in u.commits}


def test_a_sure_word_commits_when_two_decodes_agree():
    asr, updates = run([[("hello", 0.0, 0.2, 0.95), ("there", 0.3, 0.9, 0.6)]] * 12, replace(POLICY, confident_prob=1.1))
    assert reasons(updates)["hello"] == "agreed"
    first = next(i for i, u in enumerate(updates) if u.committed)
    assert first == 1  # the second decode (0.5 s of audio, the word ended 0.3 s before) agreed with the first


def test_an_unsure_word_needs_more_agreeing_decodes():
    script = [[("hello", 0.0, 0.2, 0.3), ("there", 0.3, 0.9, 0.3)]] * 12
    asr, updates = run(script)
    first = next(i for i, u in enumerate(updates) if u.committed)
    assert first == 2 and reasons(updates)["hello"] == "agreed"  # three decodes, not two
    plain, plain_updates = run(script, replace(POLICY, agree_prob=0.0))
    assert next(i for i, u in enumerate(plain_updates) if u.committed) == 1  # LocalAgreement-2 took the second


def test_window_decodes_use_the_beam_size_of_the_settings():
    transcriber = ScriptedTranscriber([[("hello", 0.0, 0.4, 0.9)]])
    asr = StreamingASR(transcriber, replace(POLICY, beam_size=4))
    asr.insert_audio(np.full(SAMPLE_RATE, 0.1, np.float32))
    asr.process_iter()
    assert transcriber.calls and all(c["beam_size"] == 4 for c in transcriber.calls)


def committed_words(asr) -> list[str]:
    return asr.committed_text.split()


def test_a_decoding_loop_is_cut_where_it_starts_repeating():
    # Whisper looping past the speech: each later "six" squeezed into the last few hundredths of a second
    loop = [("six", 0.0, 0.8, 0.9), ("six", 0.8, 0.85, 0.9), ("six", 0.85, 0.9, 0.9)]
    asr, updates = run([loop] * 12, seconds=2.0)
    asr.finish()
    assert committed_words(asr) == ["six"]
    # the same words said twice at the pace of speech are speech, not a loop
    said = [("that", 0.0, 0.3, 0.9), ("that", 0.3, 0.6, 0.9), ("works", 0.6, 1.0, 0.9)]
    asr, _ = run([said] * 12, seconds=2.0)
    asr.finish()
    assert committed_words(asr) == ["that", "that", "works"]


def test_loop_start_finds_the_repeat_of_the_committed_words():
    from models.streaming_asr import _loop_start
    from models.transcriber import Word
    committed = [Word(" in", 0.6, 1.14, 0.5, (1,))]
    new = [Word(" retrospect", 1.14, 1.56, 0.6, (2,)), Word(" in", 1.56, 1.56, 0.3, (1,)), Word(" retrospect", 1.56, 1.66, 0.6, (2,))]
    assert _loop_start(new, committed) == 1  # "in retrospect" again in 0.1 s
    assert _loop_start(new[:1], committed) == 1


def test_a_decode_that_stops_before_the_speech_does_is_no_evidence_for_its_last_word():
    # decodes hear "wind" ending at 0.4 s while speech goes on to 0.75 s: the word was cut, it is not final
    early = [[("open", 0.0, 0.2, 0.95), ("wind", 0.2, 0.4, 0.9)]] * 3
    late = [[("open", 0.0, 0.3, 0.95), ("window", 0.3, 1.4, 0.9)]] * 12
    settings = replace(POLICY, confident_prob=1.1, stop_gap_s=0.3, min_chunk_s=0.25)  # gap 0.35 s
    asr, updates = run(early + late, settings, seconds=3.0)
    asr.finish()
    assert committed_words(asr) == ["open", "window"]
    unguarded, _ = run(early + late, replace(settings, stop_gap_s=99.0), seconds=3.0)
    assert committed_words(unguarded)[:2] == ["open", "wind"]  # what the guard prevents


def test_a_sentence_end_at_the_edge_of_the_hypothesis_waits_for_what_follows():
    script = [[("it", 0.0, 0.2, 0.95), ("is", 0.2, 0.4, 0.95), ("warm.", 0.4, 0.7, 0.95)]] * 4 + \
             [[("it", 0.0, 0.2, 0.95), ("is", 0.2, 0.4, 0.95), ("warm", 0.4, 0.7, 0.95), ("in", 0.8, 1.0, 0.95),
               ("here.", 1.0, 1.3, 0.95)]] * 12
    settings = replace(POLICY, confident_prob=1.1, hold_last_sentence_end=True, stop_gap_s=99.0)
    asr, updates = run(script, settings, seconds=1.0)
    assert committed_words(asr) == ["it", "is"]  # "warm." was the last word: held
    asr, updates = run(script, settings, seconds=3.0)
    assert committed_words(asr)[:4] == ["it", "is", "warm", "in"]
    eager, _ = run(script, replace(settings, hold_last_sentence_end=False), seconds=1.0)
    assert committed_words(eager) == ["it", "is", "warm."]


class SlowTranscriber(ScriptedTranscriber):
    """Each decode costs 0.3 s on `clock` (what decode_share spaces decodes by: slow_asr makes it the stream's)."""

    def __init__(self, script):
        super().__init__(script)
        self.clock_s = 0.0

    def clock(self) -> float:
        return self.clock_s

    def decode_window(self, audio, **kw) -> WindowHypothesis:
        self.clock_s += 0.3
        return replace(super().decode_window(audio, **kw), compute_s=0.3)


def slow_asr(script, settings: StreamingSettings) -> StreamingASR:
    asr = StreamingASR(SlowTranscriber(script), settings)
    asr.cost_clock = asr.transcriber.clock
    return asr


def decode_times(asr: StreamingASR, seconds: float) -> list[float]:
    """Feed `seconds` of audio in 0.1 s chunks -> the stream times at which process_iter decoded."""
    decoded_at = []
    for i in range(int(round(seconds * 10))):
        asr.insert_audio(np.full(SAMPLE_RATE // 10, 0.1, np.float32))
        if asr.process_iter().decoded:
            decoded_at.append(round((i + 1) * 0.1, 1))
    return decoded_at


def test_a_costly_decode_spaces_out_the_next_ones():
    asr = slow_asr([[("hello", 0.0, 0.4, 0.9)]], replace(POLICY, min_chunk_s=0.2, decode_share=0.5))
    decoded_at = decode_times(asr, 4.0)
    gaps = np.diff(decoded_at)
    assert len(decoded_at) >= 5 and gaps.min() >= 0.6 - 1e-6  # 0.3 s of decoding per 0.6 s of audio, not per 0.2 s
    assert asr.decode_interval_s == pytest.approx(0.6)


def test_a_doubted_word_is_decoded_again_soon_however_costly():
    # "hello" at p 0.3 needs unsure_decodes agreeing decodes: the share does not space those out
    asr = slow_asr([[("hello", 0.0, 0.4, 0.3), ("there", 0.5, 3.9, 0.3)]],
                   replace(POLICY, min_chunk_s=0.2, decode_share=0.5, confident_prob=1.1))
    decoded_at = decode_times(asr, 2.0)
    # every min_chunk_s (0.2 s, or the next 0.1 s chunk after it), not every 0.6 s as for a sure word
    assert np.diff(decoded_at).max() <= 0.3 + 1e-6 and len(decoded_at) >= 8 and asr.decode_interval_s == pytest.approx(0.2), decoded_at


class ScriptedVad:
    """Speech from 0 s to `speech_end_s`, silence after (the VoiceActivityDetector calls StreamingASR makes)."""

    def __init__(self, speech_end_s: float):
        self.speech_end_s, self.t, self.ended = speech_end_s, 0.0, False

    @property
    def active_start_s(self):
        return 0.0 if self.t < self.speech_end_s else None

    def push(self, audio) -> list:
        self.t += len(audio) / SAMPLE_RATE
        if self.t >= self.speech_end_s and not self.ended:
            self.ended = True
            return [SpeechSegment(0.0, self.speech_end_s)]
        return []

    def finish(self) -> bool:
        return False


def test_a_short_last_word_heard_but_not_yet_committed_survives_the_pause():
    # "my home" agreed; "work?" (0.2 s of speech after the last committed word) is held as the edge sentence
    # end when the pause comes: the flush must decode it. The e2e page test lost it: the flush skipped the
    # decode because less than 0.25 s of speech followed the committed words.
    script = [[("my", 0.0, 0.3, 0.95), ("home", 0.3, 0.8, 0.95), ("work?", 0.8, 1.0, 0.95)]]
    settings = replace(POLICY, confident_prob=1.1, hold_last_sentence_end=True, stop_gap_s=99.0, min_chunk_s=0.1)
    asr = StreamingASR(ScriptedTranscriber(script), settings, vad=ScriptedVad(1.0))
    flushed = []
    for _ in range(16):  # 1.6 s in 0.1 s chunks: the pause (0.3 s of silence) flushes the utterance
        asr.insert_audio(np.full(SAMPLE_RATE // 10, 0.1, np.float32))
        update = asr.process_iter()
        flushed += [c.reason for c in update.commits if c.reason == "pause"]
    assert committed_words(asr) == ["my", "home", "work?"] and flushed == ["pause"]


class TimedTranscriber(ScriptedTranscriber):
    """A talker saying `words` (text, start_s, end_s) at absolute times: each decode hears the buffer's words."""

    def __init__(self, words: list[tuple[str, float, float]]):
        super().__init__([])
        self.words = words

    def heard(self, audio, kw) -> list[tuple[str, float, float, float]]:
        start_s = kw["time_offset_s"]
        end_s = start_s + len(audio) / SAMPLE_RATE
        return [(t, s, e, 0.95) for t, s, e in self.words if s >= start_s - 1e-6 and e <= end_s]


def test_a_long_utterance_keeps_only_the_last_committed_words_in_the_buffer():
    # 20 words back to back over 6 s, no pause, no sentence end: without keep_committed_s the buffer and the forced
    # prefix grow with every word (each decode costs more); with it, once the buffer holds keep_committed_from_s,
    # older words leave it for the prompt. Before that (a short utterance) every word stays.
    said = [(f"w{i}", 0.3 * i, 0.3 * i + 0.3) for i in range(20)]
    settings = replace(POLICY, confident_prob=1.1, min_chunk_s=0.2, keep_committed_s=1.0, keep_committed_from_s=2.0)
    kept = StreamingASR(TimedTranscriber(said), settings)
    decode_times(kept, 7.0)
    kept.finish()
    assert committed_words(kept) == [t for t, _, _ in said]  # nothing lost or repeated at the cuts
    calls = kept.transcriber.calls
    late = [c for c in calls if c["time_offset_s"] > 0]
    assert late and max(len(c["prefix_tokens"]) for c in calls) <= 8  # at most ~2 s of committed words (0.3 s each)
    assert all(len(c["prefix_tokens"]) <= 5 for c in late[1:])  # after a cut: ~1 s of committed words + 1
    assert any(c["prompt"].strip().startswith("w0 w1 w2") for c in late)  # the words cut away are the prompt
    assert kept.buffer_s <= 2.5
    grown = StreamingASR(TimedTranscriber(said), replace(settings, keep_committed_s=0.0))
    decode_times(grown, 5.5)
    assert max(len(c["prefix_tokens"]) for c in grown.transcriber.calls) >= 12 and grown.buffer_s >= 5.0
    short = StreamingASR(TimedTranscriber(said[:6]), settings)  # 1.8 s of words: under keep_committed_from_s
    decode_times(short, 1.9)
    assert len(short.committed_words) >= 4 and short.buffer_s >= 1.85  # all its audio kept (at 0: cut to ~1.3 s)
