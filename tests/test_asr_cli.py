"""`livelearner listen --file F --fast` and the ASR benchmark's WER on real espeak-ng speech."""
from __future__ import annotations

import argparse
import io

import pytest

from bench.asr import word_errors
from demos.cli import UserFacingError, build_parser


def test_word_errors_counts_substitutions_insertions_deletions():
    assert word_errors("a b c d".split(), "a x c d e".split()) == 2
    assert word_errors([], "a b".split()) == 2 and word_errors("a b".split(), []) == 2


def test_listen_parses_and_refuses_fast_without_file():
    args = build_parser().parse_args(["listen", "--fast"])
    with pytest.raises(UserFacingError, match="--file"):
        args.func(args)


@pytest.mark.slow
def test_listen_replays_a_file_through_the_streaming_code(spoken):
    from demos.cli_listen import run

    path = spoken("Please open the window because it is very warm in here.")
    args = build_parser().parse_args(["listen", "--file", str(path), "--fast", "--model", "tiny.en"])
    out = io.StringIO()
    assert run(args, out=out) == 0
    text = out.getvalue().lower()
    assert "window" in text and "warm" in text
    assert "confidence 0." in text or "confidence 1." in text  # each sentence line carries its confidence


@pytest.mark.slow
def test_listen_explains_a_missing_file(tmp_path):
    from demos.cli_listen import run

    args = build_parser().parse_args(["listen", "--file", str(tmp_path / "nope.wav"), "--fast"])
    with pytest.raises(UserFacingError, match="not found"):
        run(args, out=io.StringIO())
