"""The voice activity detector with its silero model from the store: capture takes a file, this finds it.

    vad = load_vad(VadSettings(backend="auto"))   # silero from the store, else energy with a warning
"""
from __future__ import annotations

import warnings
from dataclasses import replace

from capture.vad import VadSettings, VoiceActivityDetector
from models import store

STORE_NAME = "silero-vad"


def load_vad(settings: VadSettings = VadSettings()) -> VoiceActivityDetector:
    """A VoiceActivityDetector; for the silero backends the model file comes from the store (fetched once).

    backend "silero": a model that cannot be fetched is an error saying what to do; "auto": it falls
    back to the energy detector with a warning; "energy" never touches the store.
    """
    if settings.backend == "energy" or settings.model_path is not None:
        return VoiceActivityDetector(settings)
    try:
        path = store.ensure(STORE_NAME)
    except store.StoreError as e:
        if settings.backend == "silero":
            raise
        warnings.warn(f"silero VAD unavailable ({e}); using the energy-based detector, which mistakes loud "
                      "noise for speech.", stacklevel=2)
        return VoiceActivityDetector(replace(settings, backend="energy"))
    return VoiceActivityDetector(replace(settings, model_path=path))
