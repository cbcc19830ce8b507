"""Streaming speech to text: re-decode a bounded window, commit what two decodes agree on.

Three calls (as in whisper_streaming): `insert_audio(chunk)` as audio arrives, `process_iter()`
whenever the caller has time (it decodes only once `min_chunk_s` of new speech has arrived), and
`finish()` at the end of the stream. Each returns a `StreamUpdate`.

How text becomes final: every decode re-reads the whole buffer with a small beam search
(`beam_size`); words that the latest two decodes agree on, after the already committed ones, are
committed and never change again (LocalAgreement-2), unless the latest decode gives the word less
than `agree_prob`: such a word needs `unsure_decodes` decodes in a row to agree (or the end of
speech). A word the latest decode alone gives probability >= `confident_prob`, ending at least
`confident_lookahead_s` before the newest audio, is committed too (it matters when decodes are
spaced out: a busy CPU, a long window). Two kinds of word are no evidence: the last word of a decode
that stopped `stop_gap_s` before the speech did (the decoder may have cut it: "wind" for "window"),
and a sentence end as the hypothesis's last word (`hold_last_sentence_end`: Whisper guesses one at
the window's edge and stops there). Words repeating what was just said in a fraction of its time, or
three times over, are a decoding loop and are dropped (`_loop_start`). The rest is "partial" text,
shown apart and free to change. Committed words of the current buffer are forced as the decoder's
prefix, so each decode only samples the uncommitted tail, and earlier committed text is the prompt
(context). Every commit says why (`Commit.reason`), which `models.asr_replay` turns into a latency
breakdown. Decodes run every `min_chunk_s` of new audio while a word the decoder doubts waits for
agreeing decodes; otherwise `decode_share` spaces them out so that decoding takes at most that share of
real time (without it, continuous speech keeps a core decoding back to back).

Why latency cannot drift: once it holds `keep_committed_from_s` of audio, the buffer keeps only `keep_committed_s`
of committed words before the open ones (older committed words leave it and join the prompt), is cut after a
committed sentence end once it holds `trim_min_s` of audio, and never holds more than `max_window_s` (beyond that
it is cut after the last committed word, committing the hypothesis if two decodes never agreed). A decode samples
at most 8 tokens a second of the open audio (+8): the committed words are forced, not sampled. So decode cost,
and with it latency, stays bounded in an utterance of any length and a session of any length.

VAD gate: with a voice activity detector, audio without speech is never decoded (that is where
Whisper hallucinates, and it saves compute); when speech stops for `end_of_speech_s`, the utterance
is decoded once more and all of it is committed at once (its last words need no second decode).

Times are absolute: seconds of audio since the stream began (from sample counts).

Defaults were tuned on natural speech, never on evaluation data: `../shared/traindata/speech_sentences`
(128 clips, about 1,280 words from ~116 speakers; Common Voice, LibriSpeech, VCTK, ARCTIC, AMI), tiny.en
on the ct2 engine, one thread, CPU clock. First on every third clip (43 clips, 440 words; offline WER
24.0 %), where streaming lost words to two greedy decodes agreeing on a word the decoder barely believed
("The" at p 0.02) and to sentence ends guessed at the window's edge cutting the buffer: old defaults
(greedy, min_chunk_s 0.4, trim_min_s 0, LocalAgreement-2 on any word) WER 28.7 %, commit latency median
0.67 s, p95 1.82 s; agree_prob 0.5 and trim_min_s 10: 27.4 %; beam search 3: 24.0 %, as offline, but
0.76 / 2.31 s. Shorter decode intervals then cut latency but cost words, in three ways the traces showed:
a decode that stopped early ("wind" for "window", agreed by the next) -> stop_gap_s; a sentence end
guessed at the edge after which Whisper stopped ("warm." committed, "in here" lost) ->
hold_last_sentence_end (24.0 -> 22.6 % at min_chunk_s 0.2); and decoding loops on the forced prefix
("in retrospect in retrospect", "6 6 6" for "six", committed by the end-of-speech flush) -> _loop_start.
On all 128 clips (offline WER 16.9 %), min_chunk_s 0.2 with those fixes: 18.2 % before the loop cut,
17.5 % after (median 0.53 s, p95 1.26 s). Committing an unsure word after two agreeing decodes once it
had ended 0.7 / 1.0 s before gave p95 1.26 / 1.39 s but its words were mostly wrong: 17.5 / 17.5 % against
15.7 % (p95 1.64 s) without: left out. Decoding more often made agreement come sooner instead:
min_chunk_s 0.15: WER 16.3 %, median 0.49 s, p95 1.43 s, 0.29 CPU s per audio s; but at that rate three
decodes of the tests' espeak sentence agreed on a cut "wind" (0.26 s before the speech's end, stop_gap_s
was 0.3), so stop_gap_s is 0.2 (= commit_guard_s): WER 16.4 %, median 0.51 s, p95 1.44 s, 0.31 CPU s per
audio s (the defaults). Requiring agreeing decodes to lie 0.25-0.3 s apart in audio did not help. Capping
decoding at a share of real time (decode_share 0.7 / 0.5 / 0.4) saved little CPU there and lengthened the
tail: p95 1.55 / 1.63 / 1.70 s at 0.28 / 0.23 / 0.20 CPU s per audio s. The tail of the latency is the hard
(noisy, accented) clips, whose words each decode reads differently until the end of speech.
But continuous read speech (the 17 LibriSpeech, ARCTIC and Cathy clips of the same folder, 85 s, no pauses)
kept decoding back to back: 0.58 CPU s per audio s (wall clock). A plain cap there (decode_share 0.5) gave
0.43, but on all 128 clips p95 1.79 s; min_chunk_s 0.2 with decode_share 0.6: 0.44 and p95 1.71 s. So the cap
now spares decodes that a doubted word needs (p < agree_prob, waiting for unsure_decodes): decode_share 0.5
that way gave 0.45 CPU s per audio s on the continuous clips (CPU clock, machine busy) and, on all 128 clips,
WER 16.8 % (offline 16.4 %), median 0.54 s, p95 1.47 s, 0.33 CPU s per audio s.
Long utterances stayed costly: every decode re-read the whole buffer (up to trim_min_s, 10 s, without a
sentence end) and forced all its committed words one decoder step per token (profiled: the prefix and the
beam's finishing steps are most of a decode's CPU). Sentences of the same folder's six speakers with two or
more clips, read back to back (0.12 s apart: 6 streams, 66 s), showed it: median 0.88 s, p95 2.65 s, 0.52 CPU s
per audio s. keep_committed_s 3 / 2: 0.71 / 0.68 s, p95 2.14 / 1.85 s, 0.47 CPU s per audio s, WER 5.4 / 4.8 %
(offline 7.0 %); on all 128 clips keep_committed_s 1 cost words (noisy Common Voice clips misheard with 1 s of
context: WER 18.9 %, offline 16.6 %), 3 and 2 did not: 2 gave WER 16.9 % (offline 16.4 %), median 0.56 s,
p95 1.46 s, 0.33 CPU s per audio s. But the browser smoke test's espeak-ng sentence ("Hello, can you help me with
my homework?") then read "my own work" in most runs: in that 2.5 s sentence a cut took "Hello," away just before
the last word was decoded. So the cut waits until the buffer holds keep_committed_from_s (4 s): a short utterance
keeps all its context, and the cost stays bounded in long ones. Long-utterance proxy above: keep 0 / keep 2 from 5 s /
from 4 s: median 0.76 / 0.63 / 0.58 s, p95 2.37 / 1.73 / 1.70 s, 0.49 / 0.46 / 0.41 CPU s per audio s, WER 6.5 / 5.4 /
5.4 % (offline 7.0 %). All 128 clips with keep 2 from 4 s: WER 16.5 % (offline 16.7 %), median 0.51 s, p95 1.49 s,
0.30 CPU s per audio s. (The smoke test still failed in 2 of 7 runs, where the cut never fires: tiny.en reads that
sentence's end "my own work" or "home work" wherever decodes fall; bench/browser.py now uses another sentence.)
With the ct2 engine's budget fixed (it had left a long prefix almost no tokens) and the open-audio budget above, all
128 clips: WER 16.1 % (offline 17.0 %), median 0.53 s, p95 1.49 s, 0.31 CPU s per audio s.
"""
from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.asr_confidence import logprob_from_words
from models.transcriber import SAMPLE_RATE, SENTENCE_END, Segment, Transcriber, Word, make_segment, prepare_audio

MIN_SPEECH_TO_DECODE_S = 0.25  # less speech than this (VAD) in the buffer is not decoded at a flush
MAX_GAP_FILL_S = 5.0  # dropped audio up to this long is replaced by silence to keep times absolute


@dataclass(frozen=True)
class StreamingSettings:
    min_chunk_s: float = 0.15  # decode again once this much new audio has arrived (or more: decode_share)
    # Decodes take at most this share of real time: after a decode that cost c seconds (wall time), the next
    # waits for c / decode_share of new audio (0.5: half a core), except while a doubted word (p < agree_prob)
    # waits for agreeing decodes: then every min_chunk_s (see above). 0: off (decodes back to back when they
    # cost more than min_chunk_s; a replay faster than real time then decodes at the same points whatever the
    # machine's load).
    decode_share: float = 0.5
    max_window_s: float = 15.0  # the buffer never holds more audio than this
    # Cut at a committed sentence end only once the buffer is this long: a sentence end guessed at the window's
    # edge is often wrong, and cutting there takes the next words' context away (the cost: longer windows).
    trim_min_s: float = 10.0
    # Committed speech kept in the buffer before the open words (forced as the decoder's prefix); older committed
    # words leave the buffer and become the prompt. A decode costs more the longer its buffer (the encoder reads
    # all of it; the prefix is forced one decoder step per token), so this bounds the cost in long utterances
    # without pauses or sentence ends. 0: off (the buffer is cut only at sentence ends and at max_window_s).
    keep_committed_s: float = 2.0
    # ... only once the buffer holds this much audio: a short utterance keeps all its context (cut at 2 s in a
    # 2.5 s sentence, the browser test's espeak-ng "my homework" became "my own work").
    keep_committed_from_s: float = 4.0
    prompt_chars: int = 200  # how much earlier committed text is the decoder's prompt
    vad: str = "auto"  # voice activity detector: "silero", "energy", "auto" (silero, else energy), "off"
    commit_guard_s: float = 0.2  # never commit a word ending this close to the newest audio (it may be cut off)
    # One-decode commit: a word the latest decode gives at least this probability, ending at least
    # confident_lookahead_s before the newest audio, is committed without waiting for a second decode
    # (a probability above 1 turns this off).
    confident_prob: float = 0.8
    confident_lookahead_s: float = 0.3
    # Agreement is evidence only for a word the decoder believes: a word the latest decode gives less than
    # agree_prob needs unsure_decodes decodes in a row to agree on it (or the end of speech, whose decode
    # sees the whole utterance). agree_prob 0: plain LocalAgreement-2.
    agree_prob: float = 0.5
    unsure_decodes: int = 3
    # A decode whose text stops this long before the newest speech (by the VAD) may have cut its last word
    # ("wind" for "window"): that word is no evidence, it waits for the next decode (inf: off). At
    # commit_guard_s, a decode's last word is never agreed on while speech goes on: a later word must follow it.
    stop_gap_s: float = 0.2
    # A sentence end as the hypothesis's very last word is often a guess at the window's edge: Whisper then
    # stops decoding ("warm." before "in here" was decoded). It waits for words after it, or the end of speech.
    hold_last_sentence_end: bool = True
    beam_size: int = 3  # hypotheses kept by each window decode (1: greedy)
    end_of_speech_s: float = 0.3  # this much silence ends an utterance: decode once more, commit all
    speech_pad_s: float = 0.3  # audio kept before speech starts (and after it ends)


COMMIT_REASONS = ("agreed", "confident", "pause", "end", "forced")


@dataclass(frozen=True)
class Commit:
    """Why and when a word became final (the streaming driver turns this into its latency breakdown)."""

    word: Word
    reason: str  # one of COMMIT_REASONS: two decodes agreed; one confident decode; end of speech; end of stream; buffer full
    first_decode: int  # number of the first decode whose hypothesis held this word, unchanged since (1, 2, ...)


@dataclass(frozen=True)
class StreamUpdate:
    committed: tuple[Word, ...]  # words committed by this call (final)
    committed_text: str  # all committed text so far; each update's is a prefix of the next one's
    partial_text: str  # the latest uncommitted hypothesis (may change)
    segments: tuple[Segment, ...]  # sentences/utterances closed by this call, with confidence
    stream_time_s: float  # audio received so far
    decoded: bool  # whether this call ran Whisper
    compute_s: float  # time spent decoding in this call
    in_speech: bool  # the VAD (if any) is inside an utterance
    commits: tuple[Commit, ...] = ()  # one per word in `committed`: why it was committed
    decodes: int = 0  # decodes so far in this stream (this call's decode is number `decodes` if `decoded`)


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def _echoes(new: tuple[Word, ...] | list[Word], committed: list[Word], min_words: int = 4) -> bool:
    """True if `new` (4+ words) mostly repeats the words just committed: a decoding loop, not speech."""
    if len(new) < min_words or len(committed) < min_words:
        return False
    recent = [_norm(w.text) for w in committed[-2 * len(new) :]]
    head = [_norm(w.text) for w in new[:3]]
    starts_a_repeat = any(recent[i : i + 3] == head for i in range(len(recent) - 2))
    return starts_a_repeat and sum(1 for w in new if _norm(w.text) in recent) >= 0.7 * len(new)


def _loop_start(words: list[Word] | tuple[Word, ...], before: list[Word], max_n: int = 3, shrink: float = 0.5) -> int:
    """Index in `words` where the decoder starts looping, or len(words).

    A loop repeats the n words just before it (n <= max_n, the committed words of the buffer count as
    before it) and either takes under `shrink` of their time (the aligner squeezes words that no audio
    holds: "in retrospect | in retrospect" in 0.1 s) or repeats once more ("6 6 6" for "six"). Said twice
    at the pace of speech ("that that") is not a loop.
    """
    seq = list(before[-2 * max_n :]) + list(words)
    norm = [_norm(w.text) for w in seq]
    first = len(seq) - len(words)
    for i in range(first, len(seq)):
        for n in range(1, max_n + 1):
            if i < n or i + n > len(seq) or norm[i - n : i] != norm[i : i + n] or not all(norm[i : i + n]):
                continue
            took = seq[i + n - 1].end_s - seq[i].start_s
            said = seq[i - 1].end_s - seq[i - n].start_s
            if took < shrink * said or norm[i + n : i + 2 * n] == norm[i : i + n]:
                return i - first
    return len(words)


class StreamingASR:
    """The streaming processor (see the module docstring). Not thread-safe: one caller."""

    def __init__(self, transcriber: Transcriber, settings: StreamingSettings = StreamingSettings(), vad: Any = None):
        """vad: a capture.vad.VoiceActivityDetector (one per stream: it holds state), or the path of
        a silero VAD ONNX file to build one from, or None to build one from settings.vad (silero's file
        from the model store, through models.vad_model.load_vad)."""
        self.transcriber = transcriber
        self.settings = settings
        if isinstance(vad, (str, Path)) or (vad is None and settings.vad != "off"):
            from capture.vad import VadSettings
            from models.vad_model import load_vad

            path = None if vad is None else Path(vad)
            backend = "silero" if settings.vad == "off" else settings.vad  # a path given means silero
            vad = load_vad(VadSettings(backend=backend, model_path=path))
        self.vad = vad
        self._committed: list[Word] = []
        self._language: str | None = transcriber.language
        self._decodes = 0  # decodes so far in this stream
        self._last_decode_s = 0.0  # what the latest decode cost (on cost_clock): sets decode_interval_s
        # What a decode's cost is measured with (decode_share spaces decodes by it): wall time live; a replay on a
        # CPU-time clock sets time.process_time, so that its decodes fall at the same points whatever the load.
        self.cost_clock = time.perf_counter
        self._reset_stream()

    # ---- the three calls -----------------------------------------------------------------
    def insert_audio(self, chunk: Any, sample_rate: int = SAMPLE_RATE) -> None:
        """Add audio: an AudioChunk (capture) or an (N,) array at `sample_rate`."""
        samples = getattr(chunk, "samples", chunk)
        sample_rate = getattr(chunk, "sample_rate", sample_rate)
        audio = prepare_audio(samples, sample_rate)
        start_s = getattr(chunk, "start_s", None)
        if start_s is not None and start_s > self._stream_end_s + 0.01:  # samples were dropped upstream
            gap_s = min(start_s - self._stream_end_s, MAX_GAP_FILL_S)
            warnings.warn(f"{gap_s:.2f} s of audio missing before {start_s:.2f} s: filled with silence", stacklevel=2)
            audio = np.concatenate([np.zeros(int(gap_s * SAMPLE_RATE), np.float32), audio])
        if audio.size == 0:
            return
        chunk_start_s = self._stream_end_s
        self._audio = np.concatenate([self._audio, audio])
        self._stream_end_s += len(audio) / SAMPLE_RATE
        if self.vad is None:
            self._in_speech = True
            self._last_speech_s = self._stream_end_s
            return
        ended = self.vad.push(audio)  # speech segments that ended in this audio
        if ended:
            self._heard_speech = True
            self._last_speech_s = max(seg.end_s for seg in ended)
        active_start_s = self.vad.active_start_s
        if active_start_s is not None:
            if not self._in_speech:  # an utterance starts: its first decode comes min_chunk_s later
                self._decoded_until_s = active_start_s
            self._in_speech = True
            self._last_speech_s = self._stream_end_s
        if not self._in_speech:  # nothing to decode: keep only the pre-roll
            self._cut_audio(self._stream_end_s - self.settings.speech_pad_s)

    def process_iter(self) -> StreamUpdate:
        """Decode if enough new speech arrived; commit what the last two decodes agree on."""
        s = self.settings
        if not self._in_speech:
            return self._update((), (), decoded=False, compute_s=0.0)
        if self.vad is not None and self._stream_end_s - self._last_speech_s >= s.end_of_speech_s:
            return self._flush("pause")
        if self._stream_end_s - self._decoded_until_s < self.decode_interval_s:
            return self._update((), (), decoded=False, compute_s=0.0)
        started = self.cost_clock()
        hyp = self._decode()
        self._last_decode_s = self.cost_clock() - started
        new = self._heard(hyp.words)
        if new and self._last_speech_s - new[-1].end_s >= s.stop_gap_s:
            new = new[:-1]
        firsts = self._first_decodes(new)
        reasons = self._certain(new, firsts)
        committed = self._commit(new[: len(reasons)], hyp, reasons, firsts)
        self._hypothesis, self._hyp_firsts = new[len(reasons) :], firsts[len(reasons) :]
        closed = self._close_sentences()
        self._cut_at_sentence_end()
        committed += self._bound_buffer(hyp)
        self._trim_committed()
        return self._update(tuple(committed), closed, decoded=True, compute_s=hyp.compute_s)

    def finish(self) -> StreamUpdate:
        """End of stream: decode what is left once more and commit all of it."""
        if self.vad is not None and self.vad.finish():  # speech that lasted to the very end
            self._heard_speech = True
        if not self._in_speech and not self._hypothesis:
            return self._update((), (), decoded=False, compute_s=0.0)
        return self._flush("end")

    # ---- read-only views -----------------------------------------------------------------
    @property
    def decode_interval_s(self) -> float:
        """New audio needed before the next decode: min_chunk_s, or longer if decodes cost more than decode_share."""
        share = self.settings.decode_share
        if share <= 0 or self._unsure_pending():
            return self.settings.min_chunk_s
        return max(self.settings.min_chunk_s, self._last_decode_s / share)

    def _unsure_pending(self) -> bool:
        """The hypothesis holds a word the decoder doubts (p < agree_prob): it needs more decodes to agree."""
        return any(w.probability < self.settings.agree_prob for w in self._hypothesis)

    @property
    def committed_words(self) -> tuple[Word, ...]:
        return tuple(self._committed)

    @property
    def committed_text(self) -> str:
        return "".join(w.text for w in self._committed).lstrip()

    @property
    def open_text(self) -> str:
        """Committed text of the sentence in progress (not yet closed into a Segment)."""
        return "".join(w.text for w, _ in self._open_words).strip()

    @property
    def partial_text(self) -> str:
        return "".join(w.text for w in self._hypothesis).strip()

    @property
    def buffer_s(self) -> float:
        return len(self._audio) / SAMPLE_RATE

    @property
    def _open_from_s(self) -> float:
        """Where the buffer's open (not committed) part starts: after its last committed word."""
        return max([self._buffer_start_s] + [w.end_s for w in self._buffer_words])

    # ---- internals -----------------------------------------------------------------------
    def _reset_stream(self) -> None:
        self._audio = np.zeros(0, dtype=np.float32)  # (N,) audio from _buffer_start_s on
        self._buffer_start_s = 0.0
        self._stream_end_s = 0.0
        self._decoded_until_s = 0.0
        self._in_speech = False  # an utterance is open (VAD heard speech; not yet flushed)
        self._heard_speech = False  # the VAD confirmed a speech segment in this utterance (not a click)
        self._last_speech_s = 0.0
        self._buffer_words: list[Word] = []  # committed words inside the buffer: the decoder prefix
        self._hypothesis: list[Word] = []  # uncommitted words of the latest decode
        self._hyp_firsts: list[int] = []  # for each, the first decode that gave it (unchanged since)
        self._open_words: list[tuple[Word, float]] = []  # committed, not yet in a Segment; (word, no_speech_prob)
        self._pending_cut: Word | None = None  # a committed sentence end to cut the buffer after

    def _decode(self) -> Any:
        if self._language is None:
            self._language = self.transcriber.detect_language(self._audio)
        before = self._committed[: len(self._committed) - len(self._buffer_words)]
        prompt = "".join(w.text for w in before)[-self.settings.prompt_chars :]
        prefix = [t for w in self._buffer_words for t in w.tokens]
        hyp = self.transcriber.decode_window(
            self._audio, time_offset_s=self._buffer_start_s, prompt=prompt, prefix_tokens=prefix, language=self._language,
            # 8 tokens a second of the open (uncommitted) audio: the committed words are forced, not sampled
            beam_size=self.settings.beam_size, max_new_tokens=int(8 * (self._stream_end_s - self._open_from_s)) + 8,
        )
        self._decoded_until_s = self._stream_end_s
        self._decodes += 1
        return hyp

    def _first_decodes(self, words: list[Word]) -> list[int]:
        """For each word, the first decode that gave it: carried while the hypothesis is unchanged."""
        firsts: list[int] = []
        carried = True
        for i, w in enumerate(words):
            carried = carried and i < len(self._hypothesis) and _norm(w.text) == _norm(self._hypothesis[i].text)
            firsts.append(self._hyp_firsts[i] if carried else self._decodes)
        return firsts

    def _certain(self, words: list[Word], firsts: list[int]) -> list[str]:
        """Why each word of the certain prefix of the latest hypothesis can be committed now.

        "agreed": the previous decode gave the same words up to here (LocalAgreement-2), and the
        word ends commit_guard_s before the newest audio. "confident": this decode alone gives it
        probability >= confident_prob and it ends confident_lookahead_s before the newest audio
        (Whisper has heard what follows it). The prefix stops at the first word that is neither.
        """
        s = self.settings
        reasons: list[str] = []
        agreeing = True
        for i, w in enumerate(words):
            if s.hold_last_sentence_end and i == len(words) - 1 and w.text.rstrip().endswith(SENTENCE_END):
                break
            agreeing = agreeing and i < len(self._hypothesis) and _norm(w.text) == _norm(self._hypothesis[i].text)
            in_a_row = self._decodes - firsts[i] + 1  # decodes that gave this word (and all before it) unchanged
            believed = w.probability >= s.agree_prob or in_a_row >= s.unsure_decodes
            if agreeing and believed and w.end_s <= self._stream_end_s - s.commit_guard_s:
                reasons.append("agreed")
            elif w.probability >= s.confident_prob and w.end_s <= self._stream_end_s - s.confident_lookahead_s:
                reasons.append("confident")
            else:
                break
        return reasons

    def _heard(self, words: tuple[Word, ...]) -> list[Word]:
        """The hypothesis up to its first word that no audio supports.

        Whisper sometimes continues past the speech, often repeating the forced prefix; the aligner then
        puts those words after the VAD's last speech or squeezes them to zero length, or they repeat what
        was just said (`_loop_start`). An echo of the committed text is dropped too.
        """
        words = words[: _loop_start(words, self._buffer_words)]
        speech_until_s = self._last_speech_s + self.settings.speech_pad_s
        zero = [w.end_s - w.start_s < 0.02 for w in words] + [True]
        for i, w in enumerate(words):
            squeezed = zero[i] and (zero[i + 1] or w.end_s >= self._stream_end_s - 0.1)
            if w.start_s > speech_until_s or squeezed:
                words = words[:i]
                break
        if _echoes(words, self._committed):
            return []
        return list(words)

    def _without_made_up_tail(self, words: list[Word], hyp: Any) -> list[Word]:
        """At a flush, drop the words after the last sentence end if they alone look hallucinated.

        With nothing after them to confirm or correct them, a stray word at the end of an utterance
        ("... surpassed. Last") would otherwise be committed unchecked.
        """
        ends = [i for i, w in enumerate(words) if w.text.rstrip().endswith(SENTENCE_END)]
        tail = words[ends[-1] + 1 :] if ends else words
        if not tail:
            return words
        segment = self._segment([(w, hyp.no_speech_prob) for w in tail])
        return words[: len(words) - len(tail)] if segment.confidence.hallucinated else words

    def _commit(self, words: list[Word], hyp: Any, reasons: list[str] | str, firsts: list[int]) -> list[Commit]:
        self._committed.extend(words)
        self._buffer_words.extend(words)
        self._open_words.extend((w, hyp.no_speech_prob) for w in words)
        reasons = [reasons] * len(words) if isinstance(reasons, str) else reasons
        return [Commit(w, r, f) for w, r, f in zip(words, reasons, firsts)]

    def _close_sentences(self) -> tuple[Segment, ...]:
        """Close a Segment at each committed sentence end and cut the buffer after the last one."""
        ends = [i for i, (w, _) in enumerate(self._open_words) if w.text.rstrip().endswith(SENTENCE_END)]
        if not ends:
            return ()
        segments, start = [], 0
        for end in ends:
            segments.append(self._segment(self._open_words[start : end + 1]))
            start = end + 1
        last_word = self._open_words[ends[-1]][0]
        self._open_words = self._open_words[ends[-1] + 1 :]
        if self.buffer_s >= self.settings.trim_min_s:
            self._pending_cut = last_word
        return tuple(segments)

    def _cut_at_sentence_end(self) -> None:
        """Cut after the last committed sentence once a later word shows where the next one starts.

        Whisper's word end times are often early; cutting at one could leave the tail of that word
        at the start of the new buffer, where it would be decoded again as a made-up word.
        """
        word = self._pending_cut
        following = [w for w in self._hypothesis if word is not None and w.start_s >= word.end_s - 0.05]
        if word is None or not following:
            return
        self._pending_cut = None
        self._cut_after(word, cut_s=(max(word.end_s, min(following[0].start_s, word.end_s + 0.3)) + following[0].start_s) / 2)

    def _trim_committed(self) -> None:
        """Keep keep_committed_s of committed words in the buffer (at least the last one); older ones become the prompt.

        The cut lies at the boundary of two committed words. Whisper's word ends are often early, so the buffer may
        start with the tail of the word before: the prefix, forced from the next word on, keeps it from being decoded.
        """
        keep = self.settings.keep_committed_s
        words = self._buffer_words
        if keep <= 0 or len(words) < 2 or self.buffer_s < self.settings.keep_committed_from_s:
            return
        first_kept = next((i for i, w in enumerate(words) if w.start_s >= words[-1].end_s - keep), len(words) - 1)
        if first_kept > 0:
            self._cut_after(words[first_kept - 1], cut_s=min(words[first_kept - 1].end_s, words[first_kept].start_s))

    def _bound_buffer(self, hyp: Any) -> list[Commit]:
        """Keep the buffer under max_window_s; commits the hypothesis if nothing was agreed in it."""
        if self.buffer_s <= self.settings.max_window_s:
            return []
        forced: list[Commit] = []
        if not self._buffer_words and len(self._hypothesis) > 1:
            forced = self._commit(self._hypothesis[:-1], hyp, "forced", self._hyp_firsts[:-1])
            self._hypothesis, self._hyp_firsts = self._hypothesis[-1:], self._hyp_firsts[-1:]
        if self._buffer_words:
            self._cut_after(self._buffer_words[-1])
        if self.buffer_s > self.settings.max_window_s:  # still too long (no words at all): keep the newest audio
            self._cut_audio(self._stream_end_s - self.settings.max_window_s)
        return forced

    def _cut_after(self, word: Word, cut_s: float | None = None) -> None:
        """Drop the committed words up to `word` and the audio up to cut_s (default: the word's end)."""
        index = next((i for i, w in enumerate(self._buffer_words) if w is word), len(self._buffer_words) - 1)
        self._buffer_words = self._buffer_words[index + 1 :]
        if self._pending_cut is not None and self._pending_cut not in self._buffer_words:
            self._pending_cut = None
        self._cut_audio(word.end_s if cut_s is None else cut_s)

    def _cut_audio(self, cut_s: float) -> None:
        drop = int(round((cut_s - self._buffer_start_s) * SAMPLE_RATE))
        if drop <= 0:
            return
        self._audio = self._audio[drop:]
        self._buffer_start_s += drop / SAMPLE_RATE

    def _flush(self, reason: str) -> StreamUpdate:
        """Utterance (or stream) ended: one more decode, commit everything, close the segment."""
        t0 = time.perf_counter()
        committed: list[Commit] = []
        decoded = False
        confirmed = self.vad is None or self._heard_speech or self._committed_in_utterance()
        # After a cut at a committed sentence end, the buffer may hold only silence and the last
        # few ms of that sentence: decoding it would invent a word. Unless the last decode heard a word
        # there that is not committed yet (a short last word, "work" of "home work"): skipping the
        # decode would lose it.
        speech_left_s = self._last_speech_s - self._open_from_s if self.vad is not None else self.buffer_s
        worth_decoding = speech_left_s >= MIN_SPEECH_TO_DECODE_S or bool(self._hypothesis)
        if confirmed and worth_decoding and len(self._audio) >= 0.1 * SAMPLE_RATE:
            hyp = self._decode()
            decoded = True
            words = self._without_made_up_tail(self._heard(hyp.words), hyp)
            committed = self._commit(words, hyp, reason, self._first_decodes(words))
        closed = self._close_sentences()
        if self._open_words:
            closed += (self._segment(self._open_words),)
            self._open_words = []
        self._hypothesis, self._hyp_firsts = [], []
        self._buffer_words = []
        self._pending_cut = None
        self._in_speech = self._heard_speech = False
        self._cut_audio(self._stream_end_s - self.settings.speech_pad_s)
        self._decoded_until_s = self._stream_end_s
        if self.transcriber.multilingual and self.transcriber.settings.language is None:
            self._language = None  # the next utterance may be in another language
        return self._update(tuple(committed), closed, decoded=decoded, compute_s=time.perf_counter() - t0)

    def _committed_in_utterance(self) -> bool:
        return bool(self._buffer_words or self._open_words)

    def _segment(self, items: list[tuple[Word, float]]) -> Segment:
        from whisper.utils import compression_ratio

        words = [w for w, _ in items]
        text = "".join(w.text for w in words)
        return make_segment(
            text,
            words,
            avg_logprob=logprob_from_words([w.probability for w in words], [max(1, len(w.tokens)) for w in words]),
            no_speech_prob=float(np.mean([p for _, p in items])),
            compression_ratio=compression_ratio(text.strip()) if text.strip() else 0.0,
        )

    def _update(self, commits: tuple[Commit, ...], segments: tuple[Segment, ...], *, decoded: bool, compute_s: float) -> StreamUpdate:
        return StreamUpdate(
            committed=tuple(c.word for c in commits),
            committed_text=self.committed_text,
            partial_text=self.partial_text,
            segments=segments,
            stream_time_s=self._stream_end_s,
            decoded=decoded,
            compute_s=compute_s,
            in_speech=self._in_speech,
            commits=commits,
            decodes=self._decodes,
        )
