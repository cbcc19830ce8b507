"""The streaming driver (models.asr_replay): clocks, catch-up, latency bookkeeping; then both engines on real speech."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from models.asr_replay import StreamDriver, latency_breakdown, replay, transcribe_stream
from models.streaming_asr import Commit, StreamUpdate
from models.transcriber import SAMPLE_RATE, Word


class ScriptedASR:
    """Stands in for StreamingASR: decodes every 0.5 s of audio (costing `cost_s` of wall time) and
    commits one word that ended 0.2 s before the newest audio. Records what it was given."""

    def __init__(self, cost_s: float = 0.05):
        self.cost_s = cost_s
        self.samples = 0
        self.seen_at_decode: list[float] = []
        self.decodes = 0
        self._decoded_until_s = 0.0
        self.committed: list[Word] = []

    @property
    def buffer_s(self) -> float:
        return 1.0

    def insert_audio(self, chunk, sample_rate: int = SAMPLE_RATE) -> None:
        assert sample_rate == SAMPLE_RATE
        self.samples += len(chunk)

    def _update(self, commits: tuple[Commit, ...], decoded: bool) -> StreamUpdate:
        self.committed += [c.word for c in commits]
        return StreamUpdate(
            committed=tuple(c.word for c in commits), committed_text=" ".join(w.text for w in self.committed), partial_text="",
            segments=(), stream_time_s=self.samples / SAMPLE_RATE, decoded=decoded, compute_s=0.0, in_speech=True,
            commits=commits, decodes=self.decodes,
        )

    def process_iter(self) -> StreamUpdate:
        now_s = self.samples / SAMPLE_RATE
        if now_s - self._decoded_until_s < 0.5:
            return self._update((), decoded=False)
        time.sleep(self.cost_s)  # the "decode"
        self.decodes += 1
        self._decoded_until_s = now_s
        self.seen_at_decode.append(now_s)
        word = Word(f"w{self.decodes}", now_s - 0.5, now_s - 0.2, 0.9)
        return self._update((Commit(word, "confident", self.decodes),), decoded=True)

    def finish(self) -> StreamUpdate:
        return self._update((), decoded=False)


def test_virtual_clock_replay_feeds_every_sample_once_and_never_ahead_of_the_clock():
    asr = ScriptedASR(cost_s=0.05)
    driver = StreamDriver(asr, clock="wall")
    audio = np.zeros(int(3.05 * SAMPLE_RATE), np.float32)
    list(replay(StreamDriver(ScriptedASR(cost_s=0.0), clock="wall"), audio[:1600]))  # first use imports capture.audio
    t0 = time.perf_counter()
    updates = list(replay(driver, audio, chunk_s=0.1, trailing_silence_s=0.5))
    assert time.perf_counter() - t0 < 2.0  # 3.55 s of audio, six 0.05 s decodes: faster than real time
    assert asr.samples == len(audio) + int(0.5 * SAMPLE_RATE)
    assert updates[-1].stream_time_s == pytest.approx(3.55)
    decodes = driver.timings.decodes
    assert len(decodes) == len(asr.seen_at_decode) >= 6
    for d in decodes:
        assert d.audio_end_s <= d.started_s + 1e-6  # a decode only sees audio recorded by then
        assert 0.04 <= d.cost_s < 0.5 and d.ended_s == pytest.approx(d.started_s + d.cost_s)


def test_word_latency_splits_into_waiting_and_decoding():
    asr = ScriptedASR(cost_s=0.03)
    driver = StreamDriver(asr, clock="wall")
    list(replay(driver, np.zeros(2 * SAMPLE_RATE, np.float32), chunk_s=0.1))
    words = driver.timings.words
    assert len(words) >= 3
    for w in words:
        assert w.reason == "confident" and w.confirm_wait_s == pytest.approx(0.0, abs=1e-9)
        assert w.latency_s == pytest.approx(w.audio_wait_s + w.confirm_wait_s + w.decode_s, abs=1e-6)
        assert 0.2 - 1e-9 <= w.audio_wait_s < 0.5  # the word ended 0.2 s before the audio that triggered the decode
        assert w.decode_s >= 0.025
    b = latency_breakdown([driver.timings])
    assert b["share_confident"] == 1.0 and b["share_agreed"] == 0.0 and b["latency_agreed_median_s"] is None


def test_cpu_clock_charges_cpu_time_not_sleep():
    asr = ScriptedASR(cost_s=0.1)  # sleeping costs wall time but no CPU
    driver = StreamDriver(asr, clock="cpu")
    list(replay(driver, np.zeros(2 * SAMPLE_RATE, np.float32)))
    assert driver.timings.decodes and all(d.cost_s < 0.05 for d in driver.timings.decodes)


def test_live_clock_runs_in_real_time():
    driver = StreamDriver(ScriptedASR(cost_s=0.0), clock="live")
    t0 = time.monotonic()
    updates = list(replay(driver, np.zeros(int(0.6 * SAMPLE_RATE), np.float32), chunk_s=0.1))
    assert 0.55 <= time.monotonic() - t0 < 1.5
    assert updates[-1].stream_time_s == pytest.approx(0.6)


def test_driver_refuses_an_unknown_clock():
    with pytest.raises(ValueError, match="clock"):
        StreamDriver(ScriptedASR(), clock="sundial")


# ---- both engines, real speech -------------------------------------------------------------
SENTENCE = "Please open the window because it is very warm in here."


@pytest.fixture(scope="module")
def engines():
    from models.transcriber import Transcriber, TranscriberSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {e: Transcriber(TranscriberSettings(model="tiny.en", engine=e, threads=1)) for e in ("torch", "ct2")}


def _speech(spoken) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(spoken(SENTENCE)), dtype="float32")
    assert rate == SAMPLE_RATE
    return np.concatenate([np.zeros(int(0.3 * SAMPLE_RATE), np.float32), audio])


@pytest.mark.slow
def test_ct2_engine_gives_the_reference_words_for_less_cpu(engines, spoken):
    audio = _speech(spoken)
    results, cpu_s = {}, {}
    for name, t in engines.items():
        t.decode_window(audio[: SAMPLE_RATE])  # warm up
        c0 = time.process_time()
        for _ in range(3):
            results[name] = t.decode_window(audio)
        cpu_s[name] = time.process_time() - c0
    ref, ct2 = results["torch"], results["ct2"]
    assert [w.text.strip().lower() for w in ct2.words] == [w.text.strip().lower() for w in ref.words]
    for a, b in zip(ref.words, ct2.words):
        assert abs(a.start_s - b.start_s) <= 0.1 and abs(a.end_s - b.end_s) <= 0.1
        assert abs(a.probability - b.probability) <= 0.2
    assert abs(ref.avg_logprob - ct2.avg_logprob) <= 0.2 and abs(ref.no_speech_prob - ct2.no_speech_prob) <= 0.1
    assert cpu_s["ct2"] < 0.6 * cpu_s["torch"], cpu_s  # measured ~0.3 on a 2-core CPU
    # With a forced prefix, only the words after it come back, and they continue it.
    prefix = [tok for w in ref.words[:3] for tok in w.tokens]
    rest = engines["ct2"].decode_window(audio, prefix_tokens=prefix, prompt="Earlier words.")
    assert [w.text.strip().lower() for w in rest.words][:3] == [w.text.strip().lower() for w in ref.words[3:6]]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torch", "ct2"])
def test_replay_times_every_committed_word(engines, spoken, engine):
    from models.streaming_asr import StreamingASR, StreamingSettings

    audio = _speech(spoken)
    asr = StreamingASR(engines[engine], StreamingSettings(confident_prob=0.5, confident_lookahead_s=0.3))
    final, timings, updates = transcribe_stream(asr, audio, clock="cpu", trailing_silence_s=1.0)
    words = [w.strip(".,").lower() for w in final.committed_text.split()]
    assert sum(w in words for w in ("open", "window", "warm")) >= 2, final.committed_text
    assert len(timings.words) == len(asr.committed_words)  # every committed word was timed
    reasons = {w.reason for w in timings.words}
    assert "confident" in reasons and reasons <= {"agreed", "confident", "pause", "end"}
    for w in timings.words:
        assert w.latency_s == pytest.approx(w.audio_wait_s + w.confirm_wait_s + w.decode_s, abs=1e-6)
        assert -0.5 < w.latency_s < 5.0 and w.confirm_wait_s >= 0.0
    assert any(u.partial_text for u in updates)  # partial text was shown before it was final
    assert 0 < timings.cpu_s < timings.audio_s  # faster than real time even on one shared core
