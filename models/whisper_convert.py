"""Loading openai-whisper models: from the model store (converted from CTranslate2 by `models.ct2_whisper`),
a checkpoint path, or (online) an upstream size name.
"""
from __future__ import annotations

from pathlib import Path

import torch

from models import store

# openai-whisper size names the store carries (the others come from OpenAI's server when online).
STORE_NAMES = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}


def load_whisper(name_or_path: str | Path = "tiny.en", device: str | torch.device | None = None):
    """An openai-whisper model from the store, a checkpoint path, or (online) an upstream size name.

    - "tiny.en" / "whisper-tiny.en", "base" / "whisper-base": fetched through the store (offline).
    - a path to a checkpoint .pt: loaded, with its alignment heads applied.
    - any other upstream name ("small", "medium", "large-v3", ...): `whisper.load_model`, which
      downloads from OpenAI (needs internet) into $LIVELEARNER_HOME/whisper.
    """
    import whisper

    name = str(name_or_path)
    if name in STORE_NAMES or name in STORE_NAMES.values():
        store_name = STORE_NAMES.get(name, name)
        path = store.ensure(store_name)
    elif Path(name).is_file():
        path = Path(name)
        store_name = store.name_of_path(path)
    elif name in whisper.available_models():
        return whisper.load_model(name, device=device, download_root=str(store.home() / "whisper"))
    else:
        raise ValueError(
            f"unknown Whisper model {name!r}: give a checkpoint path, one of {sorted(STORE_NAMES)} (offline), "
            f"or an upstream name {whisper.available_models()} (needs internet)"
        )
    try:
        model = whisper.load_model(str(path), device=device)
        checkpoint_heads = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("alignment_heads")
    except Exception as e:  # a truncated or foreign file fails in torch.load or load_state_dict
        if store_name is None:
            raise ValueError(f"{path} is not an openai-whisper checkpoint ({e})") from e
        raise store.broken_model_error(store_name, path, e) from e
    if checkpoint_heads:
        model.set_alignment_heads(checkpoint_heads.encode("ascii"))
    return model
