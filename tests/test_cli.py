"""The `livelearner` command line: every listed command is there, and a missing one is an error, not a gap."""
from __future__ import annotations

import pytest

from demos import cli


def test_every_command_registers():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"app", "models", "capture", "listen", "watch", "train", "train-default"} <= set(commands)


def test_a_missing_command_module_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "demos.cli_nonexistent"))
    with pytest.raises(ModuleNotFoundError, match="demos.cli_nonexistent is missing"):
        cli.build_parser()
