"""The one streaming driver: audio chunks in, `StreamUpdate`s out, with the timing of every decode and commit.

Every caller of `StreamingASR` goes through a `StreamDriver`: the CLI (`livelearner listen`), the
Speak tab, the benchmarks and the tests. The driver adds what each of them used to hand-write:
an optional lock around decoding (one shared Whisper model serves several sessions), catching up
on queued audio, and a clock, so that the latency of each committed word can be measured and split
into where it went (see `WordTiming`).

Live (a microphone, the browser, a file released at recording pace):

    driver = StreamDriver(asr, clock="live", lock=decode_lock)
    for chunk in source:                       # AudioChunk (start_s, timestamp_s) or (N,) arrays
        update = driver.step(chunk)            # insert + process: StreamUpdate (committed, partial)
    update = driver.finish()

Replay (a file or array; real time, or as fast as possible on a virtual clock):

    driver = StreamDriver(asr, clock="wall")   # "wall" or "cpu": what a call costs on the virtual clock
    for update in replay(driver, audio, chunk_s=0.1, trailing_silence_s=1.5):
        ...
    driver.timings.words                       # WordTiming per committed word

Clocks. All times here are stream seconds: 0 is the first sample of the stream. With clock="live"
the driver reads `time.monotonic()`; the stream's origin is when its first chunk started (from the
chunk's capture timestamp when it has one). With "wall" or "cpu" the clock is virtual: audio is
available once the clock has passed its end; a `process`/`finish` call advances the clock by what it
cost (wall time, or this process's CPU time on all threads: what it would take on an otherwise idle
machine, which keeps comparisons fair on a shared one); waiting for audio jumps the clock forward.
So a replay as fast as possible reports the latency that real time would have given.
"""
from __future__ import annotations

import statistics
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from models.streaming_asr import COMMIT_REASONS, StreamingASR, StreamUpdate
from models.transcriber import SAMPLE_RATE, Word

CLOCKS = ("live", "wall", "cpu")


@dataclass(frozen=True)
class DecodeTiming:
    """One Whisper decode, on the stream clock."""

    started_s: float  # clock when the call that decoded began
    ended_s: float  # clock when it returned
    audio_end_s: float  # audio received when it decoded (stream seconds)
    window_s: float  # audio in the decoded window
    cost_s: float  # the call's cost (wall or CPU seconds, by the clock; wall for "live")


@dataclass(frozen=True)
class WordTiming:
    """One committed word: latency = audio_wait_s + confirm_wait_s + decode_s (up to rounding).

    audio_wait_s: from the word's end to the start of the first decode whose hypothesis held it
      (waiting for `min_chunk_s` of new audio, for the chunk period, for a decode in progress).
    confirm_wait_s: from there to the start of the decode that committed it (waiting for a second,
      agreeing decode, for the commit guard, or for the end of speech). 0 for a one-decode commit.
    decode_s: the committing decode.
    """

    word: Word
    reason: str  # Commit.reason: one of models.streaming_asr.COMMIT_REASONS
    committed_s: float  # clock when the update that committed it was ready
    latency_s: float  # committed_s - the word's end (capped at the end of speech, see StreamDriver)
    audio_wait_s: float
    confirm_wait_s: float
    decode_s: float


@dataclass
class StreamTimings:
    """Everything the driver measured for one stream."""

    decodes: list[DecodeTiming] = field(default_factory=list)
    words: list[WordTiming] = field(default_factory=list)
    calls: int = 0  # process/finish calls
    cost_s: float = 0.0  # summed cost of all calls (the clock's unit)
    cpu_s: float = 0.0  # process CPU seconds (all threads) spent in calls, whatever the clock
    audio_s: float = 0.0  # audio received

    def breakdown(self) -> dict[str, float | None]:
        """Medians of the latency parts (seconds) and the share of words per commit reason."""
        return latency_breakdown([self])


def latency_breakdown(streams: list[StreamTimings]) -> dict[str, float | None]:
    """Pooled over streams: median latency parts, decode times and the share of each commit reason.

    Seconds on the driver's clock; None where there is nothing to take a median of.
    """
    words = [w for s in streams for w in s.words]
    decodes = [d for s in streams for d in s.decodes]
    out: dict[str, float | None] = {}

    def med(values: list[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    out["latency_median_s"] = med([w.latency_s for w in words])
    out["audio_wait_median_s"] = med([w.audio_wait_s for w in words])
    out["confirm_wait_median_s"] = med([w.confirm_wait_s for w in words])
    out["decode_median_s"] = med([d.cost_s for d in decodes])
    out["decode_p95_s"] = round(float(np.percentile([d.cost_s for d in decodes], 95)), 3) if decodes else None
    out["window_median_s"] = med([d.window_s for d in decodes])
    audio_s = sum(s.audio_s for s in streams)
    out["decodes_per_audio_s"] = round(len(decodes) / audio_s, 3) if audio_s else None
    for reason in COMMIT_REASONS:
        mine = [w for w in words if w.reason == reason]
        out[f"share_{reason}"] = round(len(mine) / len(words), 3) if words else 0.0
        out[f"latency_{reason}_median_s"] = med([w.latency_s for w in mine])
    return out


class StreamDriver:
    """Feeds one StreamingASR and times it (see the module docstring). One caller at a time."""

    def __init__(self, asr: StreamingASR, *, clock: str = "live", lock: threading.Lock | None = None):
        """clock: "live" (monotonic), or a virtual clock charged by "wall" or "cpu" cost per call.

        lock: held while decoding, when several sessions share one Whisper model.
        """
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        self.asr = asr
        self.clock = clock
        self._lock = lock if lock is not None else nullcontext()
        self._cost = time.process_time if clock == "cpu" else time.perf_counter
        asr.cost_clock = self._cost  # decode_share spaces decodes by their cost on this clock, not always wall time
        self._virtual_s = 0.0
        self._origin: float | None = None  # monotonic time of stream second 0 (live clock)
        self._first_seen_s: dict[int, float] = {}  # decode number -> clock when its call started
        self._decode_call_s: dict[int, float] = {}  # decode number -> that call's duration
        self.speech_end_s: float | None = None  # word ends are capped here (a replay's appended silence)
        self.timings = StreamTimings()

    # ---- the stream clock ----------------------------------------------------------------
    def now_s(self) -> float:
        """Stream seconds now."""
        if self.clock != "live":
            return self._virtual_s
        if self._origin is None:
            return 0.0
        return time.monotonic() - self._origin

    def wait_until(self, stream_s: float) -> None:
        """Let the clock reach `stream_s` (sleep on the live clock, jump on a virtual one)."""
        if self.clock != "live":
            self._virtual_s = max(self._virtual_s, stream_s)
            return
        delay_s = stream_s - self.now_s()
        if delay_s > 0:
            time.sleep(delay_s)

    # ---- the three calls -----------------------------------------------------------------
    def insert(self, chunk: Any, sample_rate: int = SAMPLE_RATE) -> None:
        """Add audio: an AudioChunk, or an (N,) array at `sample_rate`."""
        if self.clock == "live" and self._origin is None:
            n = len(getattr(chunk, "samples", chunk))
            rate = getattr(chunk, "sample_rate", sample_rate)
            captured = getattr(chunk, "timestamp_s", 0.0) or time.monotonic()
            end_s = getattr(chunk, "start_s", 0.0) + n / rate
            self._origin = captured - end_s  # the chunk's last sample was heard when it was captured
        self.asr.insert_audio(chunk, sample_rate)

    def process(self) -> StreamUpdate:
        """Decode if enough new speech arrived; commit what is certain."""
        return self._call(self.asr.process_iter)

    def step(self, chunk: Any, sample_rate: int = SAMPLE_RATE) -> StreamUpdate:
        """insert + process."""
        self.insert(chunk, sample_rate)
        return self.process()

    def finish(self) -> StreamUpdate:
        """End of stream: commit everything left."""
        return self._call(self.asr.finish)

    # ---- timing --------------------------------------------------------------------------
    def _call(self, fn: Any) -> StreamUpdate:
        started_s = self.now_s()
        window_s = self.asr.buffer_s
        with self._lock:
            c0, t0 = time.process_time(), self._cost()
            update = fn()
            cost_s, cpu_s = self._cost() - t0, time.process_time() - c0
        if self.clock != "live":
            self._virtual_s += cost_s
        ended_s = self.now_s()
        t = self.timings
        t.calls += 1
        t.cost_s += cost_s
        t.cpu_s += cpu_s
        t.audio_s = update.stream_time_s
        if update.decoded:
            self._first_seen_s[update.decodes] = started_s
            self._decode_call_s[update.decodes] = ended_s - started_s
            t.decodes.append(DecodeTiming(started_s, ended_s, update.stream_time_s, max(window_s, self.asr.buffer_s), cost_s))
        for c in update.commits:
            self._time_word(c, started_s, ended_s, decoded=update.decoded)
        return update

    def _time_word(self, commit: Any, started_s: float, ended_s: float, *, decoded: bool) -> None:
        end_s = commit.word.end_s if self.speech_end_s is None else min(commit.word.end_s, self.speech_end_s)
        seen_s = self._first_seen_s.get(commit.first_decode, started_s)
        decode_s = ended_s - started_s if decoded else 0.0
        self.timings.words.append(
            WordTiming(
                word=commit.word,
                reason=commit.reason,
                committed_s=ended_s,
                latency_s=ended_s - end_s,
                audio_wait_s=seen_s - end_s,
                confirm_wait_s=started_s - seen_s,
                decode_s=decode_s,
            )
        )


def replay(
    driver: StreamDriver,
    audio: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    chunk_s: float = 0.1,
    trailing_silence_s: float = 0.0,
) -> Iterator[StreamUpdate]:
    """Feed (N,) audio through the driver as a microphone would deliver it; yield every update.

    chunk_s: the chunk period (a browser sends chunks every `audio_stream_every_s`).
    trailing_silence_s: silence appended, as a live microphone keeps sending after the speaker stops.
    On the live clock this takes the audio's duration (real time); on a virtual clock it runs as fast
    as possible. Before each process call every chunk already "recorded" is inserted (catch-up), so
    a slow decode delays text but never loses audio. The last update is finish()'s.
    """
    from models.transcriber import prepare_audio

    if chunk_s <= 0:
        raise ValueError(f"chunk_s must be positive, got {chunk_s}")
    audio = prepare_audio(audio, sample_rate)
    driver.speech_end_s = len(audio) / SAMPLE_RATE
    audio = np.concatenate([audio, np.zeros(int(trailing_silence_s * SAMPLE_RATE), np.float32)])
    n = max(1, int(round(chunk_s * SAMPLE_RATE)))

    def recorded(now_s: float) -> int:  # samples a microphone would have delivered by now (whole chunks)
        heard = int(now_s * SAMPLE_RATE + 1e-3)
        return len(audio) if heard >= len(audio) else heard // n * n

    if driver.clock == "live":
        driver._origin = time.monotonic()  # the recording starts now
    fed = 0
    while fed < len(audio):
        until = recorded(driver.now_s())
        if until <= fed:  # idle until the next chunk has been recorded
            driver.wait_until(min(fed + n, len(audio)) / SAMPLE_RATE)
            continue
        for start in range(fed, until, n):
            driver.insert(audio[start : min(start + n, until)])
        fed = until
        yield driver.process()
    yield driver.finish()


def transcribe_stream(
    asr: StreamingASR, audio: np.ndarray, *, sample_rate: int = SAMPLE_RATE, chunk_s: float = 0.1, clock: str = "wall",
    trailing_silence_s: float = 0.0,
) -> tuple[StreamUpdate, StreamTimings, list[StreamUpdate]]:
    """Replay a whole array; returns (final update, timings, every update)."""
    driver = StreamDriver(asr, clock=clock)
    updates = list(replay(driver, audio, sample_rate=sample_rate, chunk_s=chunk_s, trailing_silence_s=trailing_silence_s))
    return updates[-1], driver.timings, updates
