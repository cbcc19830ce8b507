"""`livelearner` command: one subcommand per module in demos/cli_*.py.

Each cli_* module exposes `register(subparsers)` that adds its parser(s) and sets
`func` to a handler taking the parsed args. Those modules import heavy libraries
(torch, gradio, whisper) inside the handlers, so `livelearner --help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Order here is the order in `--help`.
COMMAND_MODULES = (
    "demos.cli_app",  # app: the Gradio page
    "demos.cli_models",  # models fetch|list
    "demos.cli_capture",  # capture: local preview of camera / mic / files
    "demos.cli_listen",  # listen: live transcription in the terminal
    "demos.cli_watch",  # watch: live vision with overlay
    "demos.cli_train",  # train, evaluate, compare
    "demos.cli_defaults",  # train-default: retrain the shipped emotion / sign models
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livelearner",
        description="Real-time webcam and microphone inference with calibrated uncertainty.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a command listed here whose module is gone: a broken install, say so
                raise ModuleNotFoundError(f"livelearner command module {name} is missing; reinstall livelearner "
                                          "(pip install -e .) or remove it from demos/cli.py", name=name) from e
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as e:
        print(f"livelearner: error: {e}", file=sys.stderr)
        return 1


class UserFacingError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


if __name__ == "__main__":
    sys.exit(main())
