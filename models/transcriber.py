"""Speech to text with openai-whisper: offline transcription and single-window decoding for streaming.

Results are named types that carry Whisper's own uncertainty (average log-probability,
no-speech probability, compression ratio, per-word probabilities) and a calibrated confidence
from `models.asr_confidence`. All times are seconds from the start of the audio given (plus
`time_offset_s`, which the streaming processor uses to make them absolute).

Two decoding paths:
- `Transcriber.transcribe`: whisper's own `transcribe()` over the whole clip (30 s windows,
  temperature fallback, word timestamps) on the openai-whisper model: the offline reference.
- `Transcriber.decode_window`: one greedy decode of at most 30 s of audio for the streaming
  processor. It encodes only as many audio frames as the window needs (Whisper always pads to
  30 s, which costs ~3x more on a short window), forces already-committed words as a decoder
  prefix (teacher-forced in one pass instead of re-sampled), and reuses the encoder output for
  the word-alignment pass.

`decode_window` runs on one of two engines with the same three steps (encode, greedy generate,
align words), chosen by `TranscriberSettings.engine`:
- "torch": openai-whisper's own modules (the reference, and the GPU path);
- "ct2": CTranslate2 with int8 weights (`models.transcriber_ct2`), on CPU about 4x less CPU time
  per decode than torch float32 (tiny.en, one thread). "auto" takes it on a CPU when it is installed.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import whisper
import whisper.tokenizer
from whisper.decoding import DecodingOptions, DecodingTask
from whisper.timing import find_alignment, merge_punctuations

from models.asr_confidence import AsrConfidence, SegmentSignals, score_segment
from models.device import placement, small_cpu_threads
from models.transcriber_ct2 import CT2Engine, ct2_available

SAMPLE_RATE = 16_000  # Hz: what Whisper's feature extractor expects
HOP_LENGTH = 160  # samples per mel frame (10 ms)
FRAMES_PER_TOKEN = 2  # the encoder's second convolution has stride 2: one audio token = 20 ms
MAX_WINDOW_S = 30.0  # Whisper's fixed context
N_TEXT_CTX = 448  # tokens: the decoder's context, the same in every Whisper size
MIN_AUDIO_S = 0.1  # shorter input holds no word; it is returned as an empty transcript
SENTENCE_END = (".", "?", "!")
# Whisper's own rule (transcribe.py): a window is silence if both of these hold.
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4  # above this the text is repetitive: a decoding loop


class AudioInputError(ValueError):
    """Audio that cannot be used at all (wrong shape, nonsense sample rate, all NaN)."""


@dataclass(frozen=True)
class Word:
    text: str  # as Whisper spells it, with its leading space and attached punctuation
    start_s: float  # absolute start time
    end_s: float  # absolute end time
    probability: float  # mean probability of the word's tokens under the model
    tokens: tuple[int, ...] = ()  # token ids (empty for offline words)


@dataclass(frozen=True)
class Segment:
    """A stretch of transcript: a Whisper segment (offline) or a committed sentence/utterance (streaming)."""

    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...]
    avg_logprob: float  # mean log-probability of the segment's tokens
    no_speech_prob: float  # Whisper's probability that the window held no speech
    compression_ratio: float  # gzip ratio of the text; high = repetitive (a decoding loop)
    confidence: AsrConfidence  # calibrated P(text is right) and the hallucination flag

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "avg_logprob": self.avg_logprob,
            "no_speech_prob": self.no_speech_prob,
            "compression_ratio": self.compression_ratio,
            "confidence": self.confidence.confidence,
            "hallucinated": self.confidence.hallucinated,
            "words": [{"text": w.text, "start_s": w.start_s, "end_s": w.end_s, "probability": w.probability} for w in self.words],
        }


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: tuple[Segment, ...]
    language: str
    duration_s: float  # audio length
    compute_s: float  # wall time spent decoding
    note: str = ""  # why the transcript is empty, when it is (silence, too short, ...)

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)

    @property
    def real_time_factor(self) -> float:
        return self.compute_s / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class WindowHypothesis:
    """One greedy decode of a window: the words after the forced prefix, with absolute times."""

    words: tuple[Word, ...]  # new words only (the prefix is not repeated)
    avg_logprob: float  # over the new tokens
    no_speech_prob: float
    compression_ratio: float  # of the prefix + new text
    silent: bool  # Whisper's no-speech rule fired: the words were dropped
    compute_s: float


@dataclass(frozen=True)
class TranscriberSettings:
    model: str = "tiny.en"  # store name ("tiny.en", "base"), upstream size ("small", ...) or a .pt path
    # Streaming decoder: "torch" (openai-whisper), "ct2" (CTranslate2; tiny.en or a CTranslate2 folder),
    # "auto": ct2 on a CPU when ctranslate2 is installed and the model has a CTranslate2 form, else torch.
    engine: str = "auto"
    compute_type: str = "int8"  # ct2 only: "int8" (fastest on CPU), "int8_float32", "float32"
    language: str | None = None  # None: English for *.en models, detected for multilingual ones
    beam_size: int | None = None  # offline only; None = greedy (fastest on CPU)
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # offline fallback when decoding fails
    truncate_encoder: bool = True  # streaming: encode only the window's frames, not 30 s
    encoder_margin_s: float = 1.0  # streaming: silence added after the window before encoding
    # torch CPU threads (process-wide). None: 1 on machines with <= 2 cores, where a second thread
    # competing with capture/UI made decoding up to 5x slower, else torch's default.
    threads: int | None = None


def prepare_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any reasonable audio array → (N,) float32 mono in [-1, 1] at 16 kHz (empty stays empty).

    Channels, integer PCM and resampling are capture's (`capture.audio`). Unlike capture, NaN/inf
    samples do not stop a stream: they become silence, with a warning; out-of-range floats are
    clipped, with a warning. Raises AudioInputError for input that cannot be audio.
    """
    from capture.audio import as_float32_mono, resample
    from capture.source import CaptureError

    try:
        rate_ok = float(sample_rate).is_integer() and 1000 <= sample_rate <= 768_000
    except (TypeError, ValueError):
        rate_ok = False
    if not rate_ok:
        raise AudioInputError(f"sample rate {sample_rate!r} Hz is not usable: give the rate the audio was recorded at (e.g. 16000, 44100, 48000)")
    a = np.asarray(audio)
    if a.size == 0:
        return np.zeros(0, dtype=np.float32)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            what = "entirely NaN/inf (treated as silence)" if bad.all() else f"{int(bad.sum())} NaN/inf samples (replaced by silence)"
            warnings.warn(f"audio has {what}: check the microphone or the code that produced it", stacklevel=2)
            a = np.where(bad, 0.0, a)
    try:
        a = as_float32_mono(a, int(sample_rate))
    except CaptureError as e:
        raise AudioInputError(str(e)) from e
    peak = float(np.abs(a).max())
    if peak > 8.0:
        raise AudioInputError(f"float audio peaks at {peak:.0f}: it looks like unscaled integer PCM; divide by 32768 (16-bit) first")
    if peak > 1.0:
        warnings.warn(f"audio peaks at {peak:.2f}, outside [-1, 1]: clipped; lower the input gain", stacklevel=2)
        a = np.clip(a, -1.0, 1.0)
    return np.ascontiguousarray(resample(a, int(sample_rate), SAMPLE_RATE))


def model_size_name(model: str) -> str:
    """'whisper-tiny.en' → 'tiny.en' (the name the CLI and benchmark print)."""
    return model.removeprefix("whisper-")


@lru_cache(maxsize=2)
def _load_model(name: str, device: str) -> Any:
    from models.whisper_convert import load_whisper

    return load_whisper(name, device=device).eval()


ENGINES = ("auto", "torch", "ct2")


class Transcriber:
    """A loaded Whisper model and the two ways to decode with it."""

    def __init__(self, settings: TranscriberSettings = TranscriberSettings(), model: Any = None):
        """model: an openai-whisper model already loaded (then the engine is torch)."""
        if settings.engine not in ENGINES:
            raise ValueError(f"TranscriberSettings.engine must be one of {ENGINES}, got {settings.engine!r}")
        self.settings = settings
        self.placement = placement()
        threads = settings.threads or small_cpu_threads()
        if threads:
            torch.set_num_threads(threads)
        self._model = model
        self.engine: Any
        if model is None and _use_ct2(settings, str(self.placement.device)):
            self.engine = CT2Engine(settings.model, compute_type=settings.compute_type, threads=threads or 0)
        else:
            self.engine = TorchEngine(self.model, fp16=self.placement.fp16 and self.model.device.type == "cuda")
        self.multilingual = self.engine.multilingual
        self.language = settings.language or (None if self.multilingual else "en")
        self._tokenizers: dict[str, Any] = {}
        self._get_tokenizer = lambda lang: whisper.tokenizer.get_tokenizer(
            self.multilingual, num_languages=self.engine.num_languages, language=lang, task="transcribe"
        )

    @property
    def model(self) -> Any:
        """The openai-whisper model (offline transcription; loaded on first use with the ct2 engine)."""
        if self._model is None:
            self._model = _load_model(self.settings.model, str(self.placement.device))
        return self._model

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def fp16(self) -> bool:
        return self.placement.fp16 and self.model.device.type == "cuda"

    def tokenizer(self, language: str | None = None) -> Any:
        lang = language or self.language or "en"
        if lang not in self._tokenizers:
            self._tokenizers[lang] = self._get_tokenizer(lang)
        return self._tokenizers[lang]

    # ---- offline -------------------------------------------------------------------------
    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, initial_prompt: str | None = None) -> Transcript:
        """The whole clip, with whisper's transcribe(); times are seconds from the clip start."""
        audio = prepare_audio(audio, sample_rate)
        duration_s = len(audio) / SAMPLE_RATE
        if duration_s < MIN_AUDIO_S:
            return Transcript("", (), self.language or "en", duration_s, 0.0, note="audio too short (under 0.1 s)")
        if float(np.abs(audio).max()) < 1e-4:
            return Transcript("", (), self.language or "en", duration_s, 0.0, note="silence (peak below -80 dBFS)")
        t0 = time.perf_counter()
        with _keep_torch_threads(), _encode_once(self.model):
            result = whisper.transcribe(
                self.model,
                audio,
                language=self.language,
                temperature=self.settings.temperatures,
                beam_size=self.settings.beam_size,
                word_timestamps=True,
                fp16=self.fp16,
                initial_prompt=initial_prompt,
                condition_on_previous_text=True,
                verbose=None,
            )
        compute_s = time.perf_counter() - t0
        segments = tuple(_offline_segment(s) for s in result["segments"] if s["text"].strip())
        segments = tuple(s for s in segments if not _whisper_silence(s.no_speech_prob, s.avg_logprob))
        text = "".join(s.text for s in segments).strip()
        note = "" if text else "no speech found"
        return Transcript(text, segments, result.get("language") or "en", duration_s, compute_s, note=note)

    # ---- streaming -----------------------------------------------------------------------
    def detect_language(self, audio: np.ndarray) -> str:
        """Most likely language of (N,) 16 kHz audio (English for *.en models)."""
        if not self.multilingual:
            return "en"
        mel = whisper.log_mel_spectrogram(audio[: int(MAX_WINDOW_S * SAMPLE_RATE)], self.engine.n_mels)
        return self.engine.detect_language(whisper.pad_or_trim(mel, 3000)[None])

    def decode_window(
        self,
        audio: np.ndarray,
        *,
        time_offset_s: float = 0.0,
        prompt: str = "",
        prefix_tokens: Sequence[int] = (),
        language: str | None = None,
        max_new_tokens: int | None = None,
        beam_size: int = 1,
    ) -> WindowHypothesis:
        """Greedy decode of (N,) 16 kHz audio (N <= 30 s) after a forced prefix.

        prefix_tokens: tokens of text already committed for this window (forced, not sampled).
        prompt: earlier committed text (context only). Returns the words after the prefix.
        max_new_tokens: cap on sampled tokens (default: 8 per second of audio), which bounds the
        cost of a decoding loop; a loop that still appears is cut at its first repeat.
        beam_size: 1 is greedy; more keeps that many hypotheses (beam search), for the same encoder pass.
        """
        t0 = time.perf_counter()
        audio = audio[: int(MAX_WINDOW_S * SAMPLE_RATE)]
        language = language or self.language or "en"
        tokenizer = self.tokenizer(language)
        mel = whisper.log_mel_spectrogram(audio, self.engine.n_mels)  # (n_mels, frames)
        n_frames = mel.shape[-1]
        ctx_frames = 3000
        if self.settings.truncate_encoder:
            # Round up to whole seconds so the encoder sees a few shapes only (and a silent margin).
            margin = int(self.settings.encoder_margin_s * 100)
            ctx_frames = min(3000, int(math.ceil((n_frames + margin) / 100.0)) * 100)
        features = self.engine.encode(F.pad(mel, (0, ctx_frames - n_frames))[None])  # mel (1, n_mels, ctx_frames)
        prefix = list(prefix_tokens)[-(N_TEXT_CTX // 2 - 40) :]
        cap = max_new_tokens if max_new_tokens is not None else int(8 * len(audio) / SAMPLE_RATE) + 16
        sample_len = max(1, min(N_TEXT_CTX // 2 - len(prefix), cap))
        tokens, avg_logprob, no_speech_prob = self.engine.generate(
            features, tokenizer, prompt=prompt.strip()[-400:], prefix=prefix, sample_len=sample_len, beam_size=beam_size
        )
        context = prefix[-64:]  # a loop may repeat the committed text itself
        new_tokens = cut_repetition(context + [t for t in tokens if t < tokenizer.eot], keep=len(context))[len(context) :]
        full_text = tokenizer.decode(prefix + new_tokens)
        compression = whisper.utils.compression_ratio(full_text) if full_text.strip() else 0.0
        silent = _whisper_silence(no_speech_prob, avg_logprob)
        words: tuple[Word, ...] = ()
        if new_tokens and not silent:
            alignment = self.engine.align(features, tokenizer, prefix + new_tokens, n_frames)
            words = words_after_prefix(alignment, tokenizer, len(prefix), time_offset_s)
        return WindowHypothesis(
            words=words,
            avg_logprob=avg_logprob,
            no_speech_prob=no_speech_prob,
            compression_ratio=float(compression),
            silent=silent,
            compute_s=time.perf_counter() - t0,
        )


def cut_repetition(tokens: list[int], min_ngram: int = 3, keep: int = 0) -> list[int]:
    """Cut a greedy-decoding loop: stop before the first n-gram (n >= min_ngram) repeated back to back.

    keep: the first `keep` tokens are context already accepted (the committed prefix): a repeat that
    ends inside them is left alone, and they are never cut.
    """
    for end in range(max(2 * min_ngram, keep + 1), len(tokens) + 1):
        for n in range(min_ngram, end // 2 + 1):
            if tokens[end - n : end] == tokens[end - 2 * n : end - n]:
                return tokens[: max(keep, end - n)]
    return tokens


_ENCODER_LOCK = threading.Lock()  # one _encode_once at a time (it swaps a method on the shared model)


@contextmanager
def _encode_once(model: Any) -> Iterator[None]:
    """Within whisper's transcribe(), encode each 30 s window once instead of 2-7 times.

    transcribe() runs the encoder for the decode, again for every temperature fallback, and again
    for the word alignment, always on the same mel tensor. This memoises the last window, keyed by
    its storage address, shape and version counter; the cached input is kept alive so its address
    cannot be reused by other data. Removed again on exit.
    """
    encoder = model.encoder
    original = encoder.forward
    last: dict[str, Any] = {}

    def forward(mel: torch.Tensor) -> torch.Tensor:
        key = (mel.data_ptr(), tuple(mel.shape), mel.dtype, mel._version)
        if last.get("key") == key:
            return last["out"]
        out = original(mel)
        last.update(key=key, mel=mel, out=out)
        return out

    with _ENCODER_LOCK:
        encoder.forward = forward
        try:
            yield
        finally:
            del encoder.forward  # back to AudioEncoder.forward


@contextmanager
def _keep_torch_threads() -> Iterator[None]:
    """Restore torch's CPU thread count after whisper's word alignment.

    The alignment's DTW is numba code, and numba's first call resets torch's intra-op threads to
    the core count: on a busy 2-core machine that made every later decoder step ~7x slower.
    """
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _whisper_silence(no_speech_prob: float, avg_logprob: float) -> bool:
    return no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD


def _offline_segment(s: dict) -> Segment:
    words = tuple(Word(w["word"], float(w["start"]), float(w["end"]), float(w["probability"])) for w in s.get("words", []))
    return make_segment(
        s["text"], words, avg_logprob=float(s["avg_logprob"]), no_speech_prob=float(s["no_speech_prob"]),
        compression_ratio=float(s["compression_ratio"]), start_s=float(s["start"]), end_s=float(s["end"]),
    )


def make_segment(
    text: str,
    words: Sequence[Word],
    *,
    avg_logprob: float,
    no_speech_prob: float,
    compression_ratio: float,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Segment:
    """A Segment with its calibrated confidence."""
    signals = SegmentSignals(
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob,
        compression_ratio=compression_ratio,
        word_probs=tuple(w.probability for w in words),
        duration_s=((end_s if end_s is not None else words[-1].end_s) - (start_s if start_s is not None else words[0].start_s)) if (words or start_s is not None) else 0.0,
    )
    return Segment(
        text=text.strip(),
        start_s=start_s if start_s is not None else (words[0].start_s if words else 0.0),
        end_s=end_s if end_s is not None else (words[-1].end_s if words else 0.0),
        words=tuple(words),
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob,
        compression_ratio=compression_ratio,
        confidence=score_segment(signals),
    )


def _encode(model: Any, mel: torch.Tensor) -> torch.Tensor:
    """Whisper's AudioEncoder on (1, n_mels, frames), frames <= 3000 and even.

    Same layers as `AudioEncoder.forward`, but the positional embedding is cut to the input
    length instead of asserting a 30 s input (whisper.cpp calls this `audio_ctx`).
    """
    enc = model.encoder
    x = F.gelu(enc.conv1(mel))
    x = F.gelu(enc.conv2(x))  # (1, n_state, frames // 2)
    x = x.permute(0, 2, 1)  # (1, frames // 2, n_state)
    x = (x + enc.positional_embedding[: x.shape[1]]).to(x.dtype)
    with torch.no_grad():
        for block in enc.blocks:
            x = block(x)
        return enc.ln_post(x)


class _FeaturesDecodingTask(DecodingTask):
    """DecodingTask that takes encoder output of any length (whisper's only skips the encoder at 1500 frames)."""

    def _get_audio_features(self, features: torch.Tensor) -> torch.Tensor:
        return features


class _DecoderOnly:
    """Looks like the Whisper model to `whisper.timing.find_alignment`, but skips the encoder.

    find_alignment calls `model(mel, tokens)`, which would encode the audio a second time;
    here `mel` is already the encoder output of the decode pass.
    """

    def __init__(self, model: Any):
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self._model.decoder(tokens, features)


class TorchEngine:
    """decode_window's three steps on openai-whisper's modules (the reference; CPU or GPU)."""

    name = "torch"

    def __init__(self, model: Any, *, fp16: bool):
        self.model = model
        self.fp16 = fp16
        self.multilingual = bool(model.is_multilingual)
        self.num_languages = model.num_languages
        self.n_mels = model.dims.n_mels

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """(1, n_mels, frames) -> (1, frames // 2, n_audio_state) encoder output."""
        mel = mel.to(self.model.device)
        return _encode(self.model, mel.half() if self.fp16 else mel)

    def generate(self, features: torch.Tensor, tokenizer: Any, *, prompt: str, prefix: list[int], sample_len: int,
                 beam_size: int = 1) -> tuple[list[int], float, float]:
        """Greedy (or beam) decode after the forced prefix -> (sampled tokens, avg_logprob, no_speech_prob)."""
        options = DecodingOptions(
            task="transcribe",
            language=tokenizer.language or "en",  # an English-only tokenizer has no language
            temperature=0.0,
            beam_size=beam_size if beam_size > 1 else None,
            sample_len=sample_len,
            prompt=prompt or None,
            prefix=prefix or None,
            without_timestamps=True,
            fp16=self.fp16,
        )
        result = _FeaturesDecodingTask(self.model, options).run(features)[0]
        return list(result.tokens), float(result.avg_logprob), float(result.no_speech_prob)

    def align(self, features: torch.Tensor, tokenizer: Any, text_tokens: list[int], n_frames: int) -> list[Any]:
        """whisper.timing.WordTiming per word of text_tokens (cross-attention DTW), encoder output reused."""
        with _keep_torch_threads():
            return find_alignment(_DecoderOnly(self.model), tokenizer, text_tokens, features[0], n_frames)

    def detect_language(self, mel: torch.Tensor) -> str:
        mel = mel[0].to(self.model.device)
        _, probs = self.model.detect_language(mel.half() if self.fp16 else mel)
        return max(probs, key=probs.get)


def words_after_prefix(alignment: list[Any], tokenizer: Any, n_prefix: int, time_offset_s: float) -> tuple[Word, ...]:
    """Words from word timings (whisper.timing.WordTiming) of prefix + new tokens: those after the prefix.

    A word that straddles the prefix boundary (the prefix ended mid-word) yields a piece without
    a leading space, so committed text + new text still reads correctly.
    """
    merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    words: list[Word] = []
    seen = 0
    for timing in alignment:
        start_index, seen = seen, seen + len(timing.tokens)
        if seen <= n_prefix or not timing.tokens:
            continue
        tokens = timing.tokens[max(0, n_prefix - start_index) :]
        text = tokenizer.decode(tokens)
        if not text:
            continue
        words.append(
            Word(text, round(time_offset_s + float(timing.start), 3), round(time_offset_s + float(timing.end), 3), float(timing.probability), tuple(tokens))
        )
    return tuple(words)


def _use_ct2(settings: TranscriberSettings, device: str) -> bool:
    """Whether the streaming engine is CTranslate2 (see TranscriberSettings.engine)."""
    if settings.engine == "torch":
        return False
    problem = ct2_available(settings.model, device)
    if settings.engine == "ct2" and problem:
        raise ValueError(f"the ct2 engine cannot run {settings.model!r}: {problem}. Use engine='torch'.")
    return not problem
