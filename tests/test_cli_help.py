"""Every `--help` works: `python -m infra --help` and each subcommand's, exit 0, no traceback, and no
`%%` printed (argparse formats `help=` with %, but prints descriptions as written)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from infra.__main__ import build_parser, main


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # argparse keeps subparsers there
    return sorted(action.choices)


def test_the_release_commands_are_offered():
    assert {"rollout", "approve", "status", "rollback", "bake", "restore-drill"} <= set(subcommands())


def test_top_level_help_in_a_fresh_process():
    r = subprocess.run([sys.executable, "-m", "infra", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "%%" not in r.stdout
    for cmd in ("rollout", "rollback", "bake", "status"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", subcommands())
def test_every_subcommand_help(cmd, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([cmd, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith(f"usage: python -m infra {cmd}") and "%%" not in out, out
