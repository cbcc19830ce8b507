"""The streaming commit policy on scripted decodes (no model): agreement, unsure words, beam size."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

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
        n = len(self.calls) - 1
        words = self.script[min(n, len(self.script) - 1)]
        prefix_words = len(kw.get("prefix_tokens", ()))  # one token per scripted word: skip the committed ones
        new = tuple(Word(f" {t}", s, e, p, (i,)) for i, (t, s, e, p) in enumerate(words))[prefix_words:]
        return WindowHypothesis(new, -0.2, 0.01, 1.2, False, 0.01)


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
