"""`livelearner listen` classifies what was said: spoken commands scored on the audio, or the meaning of
each sentence; bad commands are a clear error before any audio is read."""
from __future__ import annotations

import io
import subprocess

import pytest

from demos.cli import UserFacingError, build_parser

pytestmark = pytest.mark.slow  # loads Whisper tiny.en


def test_listen_commands_mode_prints_the_spoken_command(spoken, tmp_path):
    from demos.cli_listen import run

    yes = spoken("yes")
    padded = tmp_path / "yes_padded.wav"
    subprocess.run(["sox", str(yes), str(padded), "pad", "0.5", "1.0"], check=True)
    args = build_parser().parse_args(["listen", "--file", str(padded), "--fast", "--commands", "yes, no, stop"])
    out = io.StringIO()
    assert run(args, out=out) == 0
    text = out.getvalue()
    assert "→ yes p=" in text, text
    assert "decision" in text and "probabilities:" in text


def test_listen_meaning_mode_labels_zero_shot_uncalibrated(spoken):
    from demos.cli_listen import run

    path = spoken("Can you help me with my homework?")
    args = build_parser().parse_args(["listen", "--file", str(path), "--fast",
                                      "--classes", "question: a question asking for something, thanks: thanking someone"])
    out = io.StringIO()
    assert run(args, out=out) == 0
    text = out.getvalue()
    assert "→ question p=" in text and "uncalibrated" in text, text


@pytest.mark.parametrize("commands, message", [(" , ", "no labels"), ("yes, Yes", "same spoken word"),
                                               (" ".join(["word"] * 60), "words"), ("はい, いいえ", "English")])
def test_listen_refuses_bad_commands(commands, message, spoken):
    from demos.cli_listen import run

    args = build_parser().parse_args(["listen", "--file", str(spoken("yes")), "--fast", "--commands", commands])
    with pytest.raises(UserFacingError, match=message):
        run(args, out=io.StringIO())
