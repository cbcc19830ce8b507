"""Sentence embeddings with all-MiniLM-L6-v2 from the model store (transformers, offline).

Same recipe as sentence-transformers' model card: token embeddings of the last layer, mean over the
real (non-padding) tokens, then L2 normalisation, so cosine similarity is a dot product.

    embedder = load_text_embedder()          # the store's MiniLM (fetched once), or settings.model_path
    embedder.encode(["a text", ...])         # (N, 384) float32
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

STORE_NAME = "minilm-l6-v2"
EMBEDDING_DIM = 384


@dataclass(frozen=True)
class EmbedderSettings:
    model_path: Path | None = None  # folder of the sentence-transformers model; None: load_text_embedder uses the store's
    max_tokens: int = 256  # longer texts are truncated (the model was trained with 256)
    batch_size: int = 32  # texts per forward pass
    device: str | None = None  # None: models.device.placement()


def load_text_embedder(settings: EmbedderSettings = EmbedderSettings()) -> "TextEmbedder":
    """A TextEmbedder of `settings.model_path`, or of the store's MiniLM (fetched on first use)."""
    from models import store

    path = settings.model_path or store.ensure(STORE_NAME)
    return TextEmbedder(replace(settings, model_path=Path(path)))


class TextEmbedder:
    """`TextEmbedder(EmbedderSettings(model_path=FOLDER)).encode(["a text", ...]) -> (N, 384) float32`, each row
    of unit length. It reads the folder it is given and fetches nothing (`load_text_embedder` does)."""

    def __init__(self, settings: EmbedderSettings) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from models import store
        from models.device import placement

        if settings.model_path is None:
            raise ValueError("TextEmbedder needs EmbedderSettings.model_path; models.embeddings.load_text_embedder "
                             "finds the store's model")
        self.settings = settings
        path = settings.model_path
        self.device = torch.device(settings.device) if settings.device else placement().device
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        except (OSError, ValueError, RuntimeError) as e:
            if store.name_of_path(path) == STORE_NAME:
                raise store.broken_model_error(STORE_NAME, path, e) from e
            raise ValueError(f"{path} is not a sentence-transformers model folder ({e})") from e
        self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, 384) float32 L2-normalised embeddings; N = len(texts) (0 gives a (0, 384) array)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap a single text in a list")
        torch = self._torch
        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(texts), self.settings.batch_size):
            batch = list(texts[start : start + self.settings.batch_size])
            tokens = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self.settings.max_tokens, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**tokens).last_hidden_state  # (B, T, 384)
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
            unit = torch.nn.functional.normalize(mean.float(), p=2, dim=1)
            out[start : start + len(batch)] = unit.cpu().numpy()
        return out
