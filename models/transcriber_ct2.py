"""The CTranslate2 engine for `Transcriber.decode_window`: the same three steps, int8 on the CPU.

Whisper tiny.en as CTranslate2 stores it (the model store's `whisper-tiny.en-ct2`: the carried
model.bin, config.json and vocabulary.txt, read as they are) runs the streaming decodes with int8
weights: on this project's 2-core CPU about a quarter of the CPU time of openai-whisper in float32
for the same window, and the same words on clean speech. openai-whisper stays the reference (the
offline `transcribe`) and the GPU path; `TranscriberSettings.engine` chooses.

The steps mirror `models.transcriber.TorchEngine`: encode only the frames the window needs
(CTranslate2 accepts fewer than 3000), greedy generation after openai-whisper's prompt layout
(previous text after <|startofprev|>, then the start sequence, <|notimestamps|> and the forced
prefix), and word timings from CTranslate2's cross-attention DTW, turned into words the way
`whisper.timing.find_alignment` does (same tokenizer, same rules) so both engines give the same
kind of `Word`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

TOKENS_PER_SECOND = 50  # audio tokens per second after the encoder's stride-2 convolution (20 ms each)
MEDIAN_FILTER_WIDTH = 7  # openai-whisper's smoothing of the alignment heads' weights
STORE_NAMES = {"tiny.en": "whisper-tiny.en-ct2", "whisper-tiny.en": "whisper-tiny.en-ct2"}


def ct2_available(model: str, device: str) -> str:
    """Why the ct2 engine cannot run `model` here ("" if it can)."""
    if device != "cpu":
        return f"it runs on the CPU only in this project (the device is {device})"
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return "ctranslate2 is not installed (pip install ctranslate2, pinned in requirements.lock)"
    if model not in STORE_NAMES and not (Path(model) / "model.bin").is_file():
        return f"no CTranslate2 form of {model!r} is known (give tiny.en, or a folder holding model.bin)"
    return ""


def model_folder(model: str) -> Path:
    """The CTranslate2 folder of `model`: from the store (fetched if needed) or the folder given."""
    if model in STORE_NAMES:
        from models import store

        return store.ensure(STORE_NAMES[model])
    return Path(model)


class CT2Engine:
    """encode / generate / align / detect_language on a CTranslate2 Whisper model."""

    name = "ct2"

    def __init__(self, model: str, *, compute_type: str = "int8", threads: int = 0):
        """threads: CTranslate2 intra-op threads (0: its default, all cores)."""
        import ctranslate2

        folder = model_folder(model)
        try:
            self.model = ctranslate2.models.Whisper(
                str(folder), device="cpu", compute_type=compute_type, intra_threads=threads, inter_threads=1
            )
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{folder} is not a usable CTranslate2 Whisper model ({e}); "
                             "fetch it again with `livelearner models fetch whisper-tiny.en-ct2 --force`") from e
        self.compute_type = compute_type
        self.multilingual = bool(self.model.is_multilingual)
        self.num_languages = int(self.model.num_languages)
        self.n_mels = int(self.model.n_mels)

    def encode(self, mel: torch.Tensor) -> Any:
        """(1, n_mels, frames) log-mel -> encoder output (a CTranslate2 StorageView, kept on the device)."""
        import ctranslate2

        array = np.ascontiguousarray(mel.detach().cpu().numpy(), dtype=np.float32)
        return self.model.encode(ctranslate2.StorageView.from_array(array), to_cpu=False)

    def generate(self, features: Any, tokenizer: Any, *, prompt: str, prefix: list[int], sample_len: int,
                 beam_size: int = 1) -> tuple[list[int], float, float]:
        """Greedy (or beam) decode after the forced prefix (openai-whisper's DecodingTask layout and suppression).

        Returns (sampled tokens after the prefix, avg_logprob, no_speech_prob), as TorchEngine.generate.
        """
        initial: list[int] = []
        if prompt:
            initial = [tokenizer.sot_prev] + tokenizer.encode(" " + prompt)[-(448 // 2 - 1) :]
        initial += [*tokenizer.sot_sequence, tokenizer.no_timestamps, *prefix]
        result = self.model.generate(
            features,
            [initial],
            beam_size=beam_size,
            # CTranslate2 caps the steps after the prompt (prefix included) at half of max_length: room for
            # exactly sample_len sampled tokens after the prefix, as openai-whisper's sample_len.
            max_length=max(2 * (len(prefix) + sample_len), len(initial) + sample_len - 1),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=not prefix,  # as openai-whisper: only the first sampled token of the text
            suppress_tokens=[-1],  # the non-speech symbols, as openai-whisper's default
        )[0]
        tokens = list(result.sequences_ids[0])[len(prefix) :]  # CTranslate2 returns the prefix too
        # scores[0] is the sum of log-probabilities over the sampled tokens divided by their number;
        # openai-whisper divides the sum by (tokens + 1): same rule here.
        n = max(1, len(tokens))
        return tokens, float(result.scores[0]) * n / (n + 1), float(result.no_speech_prob)

    def align(self, features: Any, tokenizer: Any, text_tokens: list[int], n_frames: int) -> list[Any]:
        """whisper.timing.WordTiming per word of text_tokens, from CTranslate2's DTW path."""
        from whisper.timing import WordTiming

        result = self.model.align(features, list(tokenizer.sot_sequence), [text_tokens], n_frames,
                                  median_filter_width=MEDIAN_FILTER_WIDTH)[0]
        words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
        if len(word_tokens) <= 1 or not result.alignments:
            return []
        path = np.array(result.alignments)  # (steps, 2): (text index, time index) along the DTW path
        probs = np.asarray(result.text_token_probs, dtype=np.float64)
        # A word starts where the path first reaches its first token and ends where it reaches the next word's.
        jumps = np.diff(path[:, 0], prepend=-1).astype(bool)
        jump_times = path[jumps, 1] / TOKENS_PER_SECOND
        bounds = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens[:-1]])])
        if bounds[-1] >= len(jump_times):  # the path is shorter than the tokens: no usable timing
            return []
        return [
            WordTiming(word, tokens, float(jump_times[a]), float(jump_times[b]), float(np.mean(probs[a:b])) if b > a else 0.0)
            for word, tokens, a, b in zip(words, word_tokens, bounds[:-1], bounds[1:])
        ]

    def detect_language(self, mel: torch.Tensor) -> str:
        """(1, n_mels, 3000) log-mel -> language code."""
        features = self.encode(mel)
        token, _ = self.model.detect_language(features)[0][0]  # most probable first: ("<|en|>", p)
        return token.strip("<|>")
