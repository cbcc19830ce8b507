"""Spoken commands: Whisper scores each label's text on the audio, and the best label wins.

Transcribing first and then matching the transcript fails where Whisper mishears one short word
("two" comes back as "to.", a quiet "zero" as "Thank you."). Here the decoder is asked instead how
likely each label's text is, given the audio:

1. the encoder runs once on the utterance, padded to 30 s as Whisper was trained;
2. each label is written in a few surface forms (" Yes.", " yes", " Yes!"; numbers as digits and
   as words); each form becomes start-of-transcript (no timestamps) + its tokens + end-of-text;
3. all forms are decoded in ONE padded batch against the same encoder output (the cross-attention
   keys and values are computed once and expanded along the batch); a form's score is the sum of
   its tokens' log-probabilities;
4. a label's score is the log-sum-exp over its forms, less a weight times its score on content-free
   audio (faint white noise): Whisper's language prior. A short word in noise or down a telephone line is
   heard as what Whisper says when it hears nothing ("you", "Thank you.", "Bye.", "Oh"); subtracting
   what each text scores without speech leaves how much the audio itself speaks for it ("calibrate
   before use", the domain-conditional PMI of zero-shot language-model classifiers);
5. "none of these" is one more class: the greedy transcript scored the same way, plus a rejection
   bias (unknown words and silence find their own transcript more likely than any label), less a
   weight times the transcript's own content-free score, plus a weight times the log-odds of
   Whisper's no-speech token (noise is often transcribed as a short word, even a label: "No", but
   Whisper also says it holds no speech);
6. softmax over labels + none-of-these with a temperature. Temperature, biases, weights and the
   conformal threshold come from a `CommandCalibration` (fitted by `train.command_calibration`, never on
   evaluation data); the shipped one for tiny.en lives in models/calibration/.

    scorer = CommandScorer()                               # loads tiny.en once; share it
    classifier = CommandClassifier(["yes", "no", "stop"], scorer)
    prediction = classifier.classify(audio_16k)            # models.prediction.Prediction
    prediction.label, prediction.confidence, prediction.extra["transcript"]
"""
from __future__ import annotations

import json
import math
import re
import time
import unicodedata
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import whisper
import whisper.tokenizer

from models.device import placement, small_cpu_threads
from models.prediction import Prediction, RoutingPolicy, make_prediction, softmax
from models.transcriber import SAMPLE_RATE, AudioInputError, model_size_name, prepare_audio

NONE_OF_THESE = "none of these"  # the extra class: the utterance is none of the labels (or silence)
MIN_UTTERANCE_S = 0.2  # shorter audio (a word cut tight) is padded with SHORT_PAD_S of silence on each side
SHORT_PAD_S = 0.2
MAX_UTTERANCE_S = 30.0  # Whisper's context; longer audio is cut, with a warning
SILENCE_PEAK = 1e-4  # peak amplitude below which a clip is digital silence (-80 dBFS)
MAX_LABELS = 40  # forms are scored in one batch: ~6 per label
MAX_LABEL_WORDS = 8  # a command is a few words; a sentence belongs in "meaning" mode
MAX_FORM_TOKENS = 40  # tokens of one surface form
MAX_TRANSCRIPT_TOKENS = 48  # greedy transcript cap (commands are short)
CONTENT_FREE_DBFS = -50.0  # level of the white noise whose scores are Whisper's prior (1 s, fixed seed)
MAX_PRIOR_MEMO = 4096  # content-free scores kept per scorer (token sequences: forms and transcripts)
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
_PUNCTUATION = ("", ".", "!")  # endings Whisper writes after a one-word utterance

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


class CommandInputError(ValueError):
    """Labels or audio the classifier cannot use; the message says what to do."""


class NoSpeechError(CommandInputError):
    """The utterance is digitally silent: there is nothing to classify."""


# ---- labels and their surface forms --------------------------------------------------------------
def number_words(n: int) -> str | None:
    """0..999 as English words ('21' -> 'twenty-one'), None outside that range."""
    if not 0 <= n <= 999:
        return None
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


def normalise(text: str) -> str:
    """Text as compared for equality: lower case, no punctuation, numbers as words ('Two.' == '2')."""
    words = re.sub(r"[^\w\s'-]", " ", text.lower()).replace("-", " ").split()
    out = []
    for w in words:
        spelled = number_words(int(w)) if w.isdigit() else None
        out.extend((spelled or w).replace("-", " ").split())
    return " ".join(out)


def surface_forms(label: str) -> tuple[str, ...]:
    """The ways Whisper may write `label` alone: case, final punctuation, digits vs words.

    'yes' -> (' yes', ' yes.', ' yes!', ' Yes', ' Yes.', ' Yes!'); '3' and 'three' also give ' 3', ' 3.'.
    """
    text = label.strip().rstrip(".!?").strip()
    bases = [text]
    if re.fullmatch(r"\d+", text) and number_words(int(text)):
        bases.append(number_words(int(text)))
    elif normalise(text).replace(" ", "-") in _WORD_TO_NUMBER:
        bases.append(str(_WORD_TO_NUMBER[normalise(text).replace(" ", "-")]))
    variants: list[str] = []
    for b in bases:
        for v in (b, b.lower(), b[:1].upper() + b[1:].lower()):
            if v not in variants:
                variants.append(v)
    return tuple(dict.fromkeys(f" {v}{p}" for v in variants for p in _PUNCTUATION))


_WORD_TO_NUMBER = {number_words(n): n for n in range(0, 100)}


def check_labels(labels: Sequence[str], *, english_only: bool) -> tuple[str, ...]:
    """The labels, stripped; raises CommandInputError with what to change for unusable ones."""
    if isinstance(labels, str):
        raise CommandInputError("give the labels as a list, e.g. ['yes', 'no', 'stop'], not one string")
    cleaned = tuple(str(x).strip() for x in labels if str(x).strip())
    if not cleaned:
        raise CommandInputError("no labels: type the commands to listen for, separated by commas (e.g. yes, no, stop)")
    if len(cleaned) > MAX_LABELS:
        raise CommandInputError(f"{len(cleaned)} labels: at most {MAX_LABELS} commands can be scored per utterance; "
                                "split them into smaller sets or use 'meaning' mode")
    seen: dict[str, str] = {}
    for label in cleaned:
        key = normalise(label)
        if not key:
            raise CommandInputError(f"label {label!r} has no letters or digits: write the word to be spoken")
        if key == NONE_OF_THESE:
            raise CommandInputError(f"{NONE_OF_THESE!r} is added automatically; remove it from the labels")
        if key in seen:
            raise CommandInputError(f"labels {seen[key]!r} and {label!r} are the same spoken word: keep one")
        seen[key] = label
        n_words = len(key.split())
        if n_words > MAX_LABEL_WORDS:
            raise CommandInputError(f"label {label[:40]!r}... has {n_words} words: a command has at most {MAX_LABEL_WORDS}; "
                                    "use 'meaning' mode (transcript + text model) for sentences")
        if english_only and _non_latin_share(label) > 0.5:
            raise CommandInputError(f"label {label!r} is not written in English, and the speech model is English-only: "
                                    "write the label in English, or choose a multilingual Whisper model (e.g. 'base')")
    return cleaned


def _non_latin_share(text: str) -> float:
    letters = [c for c in unicodedata.normalize("NFKD", text) if c.isalpha()]
    return sum(not c.isascii() for c in letters) / len(letters) if letters else 0.0


# ---- calibration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandCalibration:
    """How raw label scores become probabilities, and what that was measured on.

    p = softmax([label scores..., none score] / temperature), where
    label score = its score on the audio - prior_weight * its score on content-free audio,
    raw none = transcript score - transcript_prior_weight * its content-free score + bias
               + no_speech_weight * log(p_no_speech / (1 - p_no_speech)),
    none score = best label score + min(rejection_scale * (raw none - best label score), rejection_cap);
    the bias is `match_bias` when the greedy transcript is itself one of the labels ("Yes." for "yes":
    then the transcript is evidence FOR that label, not for none of these), else `rejection_bias`.
    rejection_scale < 1 says that the margin by which the transcript beats every label is weaker evidence
    than the margin between two labels: on a new microphone a mumbled "five" read as "Bye." beats " five"
    by a wide margin, and a shared temperature would reject it at p 0.99; Whisper's "you" on a quiet
    "two" beats every label by so much that only a cap keeps such a rejection from p 1.00.
    The prior weights (0: the scores as they come) take out what Whisper would write with no speech at
    all: "Bye." and "you" score high on any faint sound, so they are weak evidence against "five" or "two".
    """

    temperature: float = 1.0  # > 1 softens overconfident scores
    rejection_bias: float = 0.0  # added to the none-of-these score (log units); < 0 rejects less
    match_bias: float = 0.0  # the same, when the transcript reads as one of the labels
    no_speech_weight: float = 0.0  # weight of the no-speech log-odds in the none-of-these score
    rejection_scale: float = 1.0  # how far the none-of-these score may stand from the best label's (1: as it comes)
    rejection_cap: float = math.inf  # ... and at most this far above it (log units; inf: no cap)
    prior_weight: float = 0.0  # share of each label's content-free score taken off its score
    transcript_prior_weight: float = 0.0  # the same for the transcript's score in none of these
    conformal_qhat: float | None = None  # split-conformal threshold on 1 - p(true class)
    coverage: float | None = None  # target coverage of the prediction sets, e.g. 0.9
    calibrated: bool = False  # True only when fitted on held-out data and its error measured
    fitted_on: str = "not calibrated (temperature 1, bias 0)"  # what data, for the page
    model: str = ""  # the Whisper model whose scores were fitted
    n: int = 0  # utterances fitted on
    heldout_ece: float | None = None  # ECE on held-out persons
    heldout: dict[str, Any] = field(default_factory=dict)  # other held-out figures (rates, coverage)
    extra_forms: dict[str, list[str]] = field(default_factory=dict)  # learned surface forms per label (normalised key)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "CommandCalibration":
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise CommandInputError(f"{path} is not a command calibration file ({e}); refit it with "
                                    "python -m train.command_calibration") from e

    def logits(self, label_scores: np.ndarray, transcript_score: np.ndarray | float,
               transcript_is_label: np.ndarray | bool, no_speech_prob: np.ndarray | float,
               label_priors: np.ndarray | float = 0.0, transcript_prior: np.ndarray | float = 0.0) -> np.ndarray:
        """(..., K) label scores and (...) transcript scores, flags, no-speech probabilities, with the
        content-free scores of the labels ((K,) or (..., K)) and of the transcript ((...))
        -> (..., K + 1) logits before temperature."""
        bias = np.where(transcript_is_label, self.match_bias, self.rejection_bias)
        p_ns = np.clip(np.asarray(no_speech_prob, dtype=np.float64), 1e-6, 1 - 1e-6)
        none = (np.asarray(transcript_score, dtype=np.float64) - self.transcript_prior_weight * np.asarray(transcript_prior)
                + bias + self.no_speech_weight * np.log(p_ns / (1 - p_ns)))
        labels = np.asarray(label_scores, dtype=np.float64) - self.prior_weight * np.asarray(label_priors, dtype=np.float64)
        best = labels.max(axis=-1)
        none = best + np.minimum(self.rejection_scale * (none - best), self.rejection_cap)
        return np.concatenate([labels, none[..., None]], axis=-1)

    def probs(self, label_scores: np.ndarray, transcript_score: np.ndarray | float,
              transcript_is_label: np.ndarray | bool, no_speech_prob: np.ndarray | float,
              label_priors: np.ndarray | float = 0.0, transcript_prior: np.ndarray | float = 0.0) -> np.ndarray:
        """(..., K + 1) probabilities: the labels, then none of these (arguments as `logits`)."""
        return softmax(self.logits(label_scores, transcript_score, transcript_is_label, no_speech_prob,
                                   label_priors, transcript_prior), self.temperature)


def default_calibration(model: str) -> CommandCalibration:
    """The shipped calibration of `model` (models/calibration/commands_<model>.json), else uncalibrated."""
    path = CALIBRATION_DIR / f"commands_{model_size_name(model).replace('.', '_')}.json"
    if path.is_file():
        return CommandCalibration.from_json(path)
    return CommandCalibration(model=model)


# ---- the Whisper part: shared, label-independent ------------------------------------------------
@dataclass(frozen=True)
class CommandScorerSettings:
    model: str = "tiny.en"  # store name or upstream size, as TranscriberSettings.model
    language: str = "en"  # language token for multilingual models (ignored by *.en models)
    threads: int | None = None  # torch CPU threads; None: models.device.small_cpu_threads()


@dataclass(frozen=True)
class ScoredUtterance:
    """Raw decoder scores of one utterance: what calibration is fitted on."""

    form_logprobs: np.ndarray  # (F,) summed token log-probs of each form given (in the order given)
    transcript: str  # greedy transcript (may be empty)
    transcript_logprob: float  # its summed token log-probs, end-of-text included
    form_priors: np.ndarray  # (F,) the same on content-free audio (Whisper's prior of each form)
    transcript_prior: float  # the transcript's summed log-probs on content-free audio
    no_speech_prob: float  # Whisper's probability of its no-speech token after start-of-transcript
    duration_s: float  # audio length
    compute_s: float  # wall time of encoder + decoder


class CommandScorer:
    """A loaded Whisper model that scores candidate texts on an utterance. One per process."""

    def __init__(self, settings: CommandScorerSettings = CommandScorerSettings(), model: Any = None) -> None:
        self.settings = settings
        threads = settings.threads or small_cpu_threads()
        if threads:
            torch.set_num_threads(threads)
        if model is None:
            from models.transcriber import _load_model  # the process-wide Whisper cache the transcriber uses

            model = _load_model(settings.model, str(placement().device))
        self.model = model
        self.english_only = not bool(model.is_multilingual)
        self.tokenizer = whisper.tokenizer.get_tokenizer(
            model.is_multilingual, num_languages=model.num_languages,
            language=None if self.english_only else settings.language, task="transcribe")
        self.prefix = list(self.tokenizer.sot_sequence_including_notimestamps)
        eot = self.tokenizer.eot
        # Greedy decoding suppresses what Whisper's own decoder suppresses: non-speech symbols and every
        # special token but end-of-text.
        self._suppress = torch.tensor(sorted(set(self.tokenizer.non_speech_tokens) | set(range(eot + 1, model.dims.n_vocab))))
        self._blank = torch.tensor(self.tokenizer.encode(" ") + [eot])
        self._content_free: tuple[torch.Tensor, dict] | None = None  # encoder features + cross keys/values, made once
        self._priors: dict[tuple[int, ...], float] = {}  # token sequence -> content-free log-prob

    def _features(self, audio: np.ndarray) -> tuple[torch.Tensor, dict]:
        """(N,) 16 kHz audio -> encoder features (1, 1500, d) and the decoder's cross-attention keys/values."""
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels)  # (n_mels, 3000)
        mel = mel[None].to(self.model.device, dtype=next(self.model.encoder.parameters()).dtype)
        features = self.model.encoder(mel)  # (1, 1500, n_audio_state)
        cross_kv = {}
        for block in self.model.decoder.blocks:
            att = block.cross_attn
            cross_kv[att.key], cross_kv[att.value] = att.key(features), att.value(features)  # (1, 1500, d)
        return features, cross_kv

    def priors(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """(S,) summed log-probs of each token sequence (+ end-of-text) on content-free audio: 1 s of white
        noise at CONTENT_FREE_DBFS. What Whisper writes when it hears no speech scores high here."""
        keys = [tuple(s) for s in sequences]
        known = {k: self._priors[k] for k in keys if k in self._priors}
        missing = [k for k in dict.fromkeys(keys) if k not in known]
        if missing:
            with torch.no_grad():
                if self._content_free is None:
                    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 10 ** (CONTENT_FREE_DBFS / 20)
                    self._content_free = self._features(noise.astype(np.float32))
                logprobs, _ = self._sequence_logprobs(*self._content_free, [list(k) for k in missing])
            known.update(zip(missing, map(float, logprobs)))
            if len(self._priors) + len(missing) > MAX_PRIOR_MEMO:
                self._priors.clear()  # bounded: transcripts are endless; forms come back with one decoder batch
            self._priors.update((k, known[k]) for k in missing)
        return np.array([known[k] for k in keys])

    def encode_text(self, form: str) -> list[int]:
        return self.tokenizer.encode(form)

    def score(self, audio: np.ndarray, forms: Sequence[Sequence[int]], sample_rate: int = SAMPLE_RATE) -> ScoredUtterance:
        """Summed log-probs of each tokenised form, and the greedy transcript, for one utterance."""
        t0 = time.perf_counter()
        audio = check_audio(audio, sample_rate)
        with torch.no_grad():
            features, cross_kv = self._features(audio)
            transcript_tokens = self._greedy(features, cross_kv, int(8 * len(audio) / SAMPLE_RATE) + 8)
            sequences = [list(f) for f in forms] + [transcript_tokens]
            logprobs, no_speech = self._sequence_logprobs(features, cross_kv, sequences)  # (F + 1,), float
        text = self.tokenizer.decode(transcript_tokens).strip()
        priors = self.priors(sequences)  # (F + 1,): the forms' come from the memo after the first utterance
        return ScoredUtterance(logprobs[:-1], text, float(logprobs[-1]), priors[:-1], float(priors[-1]), no_speech,
                               len(audio) / SAMPLE_RATE, time.perf_counter() - t0)

    def _decoder_hidden(self, tokens: torch.Tensor, features: torch.Tensor, cross_kv: dict) -> torch.Tensor:
        """TextDecoder.forward up to its last layer norm: (B, T) tokens -> (B, T, d) hidden states.

        Same layers as whisper's ResidualAttentionBlock, against batch-1 audio features without copying
        them B times: the cross-attention runs as one batch of B * T queries against the shared keys and
        values (it has no mask, so this is exact).
        """
        dec = self.model.decoder
        batch, width = tokens.shape
        x = dec.token_embedding(tokens) + dec.positional_embedding[:width]  # (B, T, d)
        x = x.to(features.dtype)
        for block in dec.blocks:
            x = x + block.attn(block.attn_ln(x), mask=dec.mask)[0]  # causal self-attention, (B, T, d)
            queries = block.cross_attn_ln(x).reshape(1, batch * width, -1)  # (1, B * T, d)
            x = x + block.cross_attn(queries, features, kv_cache=cross_kv)[0].reshape(batch, width, -1)
            x = x + block.mlp(block.mlp_ln(x))
        return dec.ln(x)

    def _log_softmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d) hidden states -> (..., n_vocab) next-token log-probs."""
        weight = self.model.decoder.token_embedding.weight
        return torch.log_softmax((hidden @ weight.to(hidden.dtype).T).float(), dim=-1)

    def _greedy(self, features: torch.Tensor, cross_kv: dict, max_tokens: int) -> list[int]:
        """Greedy transcript tokens (without the prefix and end-of-text), as Whisper's greedy decoder."""
        out: list[int] = []
        for step in range(min(max_tokens, MAX_TRANSCRIPT_TOKENS)):
            tokens = torch.tensor([self.prefix + out], device=features.device)
            logits = self._log_softmax(self._decoder_hidden(tokens, features, cross_kv)[0, -1])  # (n_vocab,)
            logits[self._suppress] = -math.inf
            if step == 0:
                logits[self._blank] = -math.inf  # Whisper's SuppressBlank
            token = int(logits.argmax())
            if token == self.tokenizer.eot:
                break
            out.append(token)
        return out

    def _sequence_logprobs(self, features: torch.Tensor, cross_kv: dict,
                           sequences: list[list[int]]) -> tuple[np.ndarray, float]:
        """(S,) summed log-probs of prefix + sequence + end-of-text, all sequences in one padded batch,
        and the no-speech probability (read, as Whisper does, at the start-of-transcript position).

        The vocabulary projection (d x 51k per position) dominates the cost, so it runs once per distinct
        prefix: forms of a label share their first tokens (" yes", " yes.", " yes!").
        """
        eot, n_prefix = self.tokenizer.eot, len(self.prefix)
        full = [self.prefix + s + [eot] for s in sequences]
        width = max(len(f) for f in full)
        tokens = torch.full((len(full), width), eot, dtype=torch.long)  # padding after end-of-text is never scored
        for i, f in enumerate(full):
            tokens[i, : len(f)] = torch.tensor(f)
        hidden = self._decoder_hidden(tokens.to(features.device), features, cross_kv)  # (S, W, d)
        rows: dict[tuple[int, ...], int] = {}  # distinct prefix -> row in `picks`
        picks: list[tuple[int, int]] = [(0, 0)]  # (sequence, position) whose hidden state predicts the next token
        needs: list[list[tuple[int, int]]] = []  # per sequence: (row, target token)
        for i, f in enumerate(full):
            needs.append([])
            for pos in range(n_prefix - 1, len(f) - 1):
                key = tuple(f[: pos + 1])
                if key not in rows:
                    rows[key] = len(picks)
                    picks.append((i, pos))
                needs[-1].append((rows[key], f[pos + 1]))
        index = torch.tensor(picks, device=hidden.device)
        logp = self._log_softmax(hidden[index[:, 0], index[:, 1]])  # (1 + distinct prefixes, n_vocab)
        no_speech = float(logp[0, self.tokenizer.no_speech].exp())  # row 0: after start-of-transcript
        return np.array([sum(float(logp[r, t]) for r, t in need) for need in needs]), no_speech


def check_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N,) float32 16 kHz audio of a usable utterance (padded if under 0.2 s); NoSpeechError if silent."""
    try:
        audio = prepare_audio(audio, sample_rate)
    except AudioInputError as e:
        raise CommandInputError(str(e)) from e
    duration_s = len(audio) / SAMPLE_RATE
    if not len(audio) or float(np.abs(audio - audio.mean()).max()) < SILENCE_PEAK:  # a constant (DC) is silence too
        raise NoSpeechError("the utterance is silent (peak below -80 dBFS): check that the microphone is on and not muted")
    if duration_s < MIN_UTTERANCE_S:  # a word cut tight ("six" in 0.18 s): silence around it, as a longer cut would hold
        pad = np.zeros(int(SHORT_PAD_S * SAMPLE_RATE), np.float32)
        audio = np.concatenate([pad, audio, pad])
    if duration_s > MAX_UTTERANCE_S:
        warnings.warn(f"utterance of {duration_s:.0f} s: only its first {MAX_UTTERANCE_S:.0f} s are scored", stacklevel=3)
        audio = audio[: int(MAX_UTTERANCE_S * SAMPLE_RATE)]
    return audio


# ---- the classifier: one label set ---------------------------------------------------------------
class CommandClassifier:
    """Labels scored on the audio of each utterance; returns the project's Prediction.

    Cheap to build (tokenises the labels); the heavy `CommandScorer` is shared.
    """

    def __init__(self, labels: Sequence[str], scorer: CommandScorer, *,
                 calibration: CommandCalibration | None = None, policy: RoutingPolicy = RoutingPolicy()) -> None:
        self.labels = check_labels(labels, english_only=scorer.english_only)
        self.scorer = scorer
        self.calibration = calibration if calibration is not None else default_calibration(scorer.settings.model)
        self.policy = policy
        self.classes = self.labels + (NONE_OF_THESE,)
        self.forms: list[tuple[str, ...]] = []  # per label
        self._tokens: list[list[int]] = []  # all forms, flat
        self._owner: list[int] = []  # label index of each flat form
        for i, label in enumerate(self.labels):
            learned = self.calibration.extra_forms.get(normalise(label), [])
            forms = tuple(dict.fromkeys(surface_forms(label) + tuple(learned)))
            self.forms.append(forms)
            for form in forms:
                tokens = scorer.encode_text(form)
                if len(tokens) > MAX_FORM_TOKENS:
                    raise CommandInputError(f"label {label[:40]!r} is {len(tokens)} tokens long; keep commands under "
                                            f"{MAX_FORM_TOKENS} tokens (a few words)")
                self._tokens.append(tokens)
                self._owner.append(i)
        self._keys = [normalise(label) for label in self.labels]

    def scores(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray, ScoredUtterance]:
        """(K,) raw label scores (log-sum-exp over each label's forms), (K,) the same on content-free audio,
        and the raw scoring."""
        scored = self.scorer.score(audio, self._tokens, sample_rate)
        n = len(self.labels)
        return label_scores(scored.form_logprobs, self._owner, n), label_scores(scored.form_priors, self._owner, n), scored

    def classify(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, timestamp_s: float = 0.0) -> Prediction:
        """One utterance -> Prediction over the labels + 'none of these'.

        Raises NoSpeechError (a CommandInputError) for digitally silent audio; audio under 0.2 s is padded.
        """
        t0 = time.perf_counter()
        label_score, label_prior, scored = self.scores(audio, sample_rate)
        cal = self.calibration
        is_label = normalise(scored.transcript) in self._keys
        probs = cal.probs(label_score, scored.transcript_logprob, is_label, scored.no_speech_prob,
                          label_prior, scored.transcript_prior)
        return make_prediction(
            self.classes, probs, policy=self.policy,
            conformal_qhat=cal.conformal_qhat if cal.calibrated else None,
            coverage=cal.coverage if cal.calibrated else None,
            calibrated=cal.calibrated, timestamp_s=timestamp_s, latency_ms=(time.perf_counter() - t0) * 1000,
            extra={
                "transcript": scored.transcript,
                "transcript_is_label": is_label,
                "no_speech_prob": scored.no_speech_prob,
                "calibrated_on": cal.fitted_on,
                "heldout_ece": cal.heldout_ece,
                "method": "Whisper scores each label's text on the audio",
                "model": self.scorer.settings.model,
            },
        )


def label_scores(form_logprobs: np.ndarray, owner: Sequence[int], n_labels: int) -> np.ndarray:
    """(F,) form log-probs + the label index of each form -> (n_labels,) log-sum-exp per label."""
    out = np.full(n_labels, -np.inf)
    owner = np.asarray(owner)
    for i in range(n_labels):
        lp = np.asarray(form_logprobs)[owner == i]
        if len(lp):
            top = lp.max()
            out[i] = top + math.log(np.exp(lp - top).sum())
    return out
