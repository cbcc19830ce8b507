"""Shared test set-up: no telemetry, and small real media made on the fly."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for files a test keeps for people to look at (screenshots, plots)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def speak(text: str, path: Path, *, voice: str = "en-us", rate_wpm: int = 150, sample_rate: int = 16000) -> Path:
    """Speak `text` with espeak-ng into a mono WAV at `sample_rate` (sox resamples)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed (make test installs them)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(sample_rate), "-c", "1", "-b", "16", str(path)], check=True)
    raw.unlink()
    return path


@pytest.fixture
def spoken(tmp_path: Path):
    """Factory: spoken("hello world") -> Path of a 16 kHz mono WAV."""
    counter = iter(range(10_000))

    def make(text: str, **kw) -> Path:
        return speak(text, tmp_path / f"speech{next(counter)}.wav", **kw)

    return make


def pytest_collection_modifyitems(config, items):
    """Browser tests first, while the process is fresh (they start servers and Chromium). The spoken-command
    page test once failed only late in full-suite runs: the cause was Gradio's stream event dropping audio
    chunks while the machine was busy; the live connection (demos/live_transport.py) delivers every chunk."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("e2e") else 1)  # stable: order kept otherwise
