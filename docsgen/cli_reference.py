"""docs/reference/cli.md from the argparse parsers of `python -m infra`: every sub-command's usage and
options exactly as `--help` prints them (at a fixed width, so the page does not depend on the terminal)."""
from __future__ import annotations

import argparse
import os
from contextlib import contextmanager

from .markdown import GENERATED

WIDTH = "100"


@contextmanager
def _columns(width: str):
    """argparse wraps help to $COLUMNS; pin it while formatting."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def commands() -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every sub-command, in the order `python -m infra --help` lists them."""
    from infra.__main__ import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    return [(name, helps.get(name, ""), p) for name, p in sub.choices.items()]


def render() -> str:
    from infra.__main__ import build_parser

    with _columns(WIDTH):
        top = build_parser().format_help()
        pages = [(name, line, p.format_help()) for name, line, p in commands()]
    lines = [
        "# CLI reference",
        "",
        GENERATED.format(source="the argparse parsers of `python -m infra`", target="docs-reference"),
        "",
        "Run every command from the repository root with the project's virtualenv: `.venv/bin/python -m infra "
        "COMMAND`. Exit codes: 0 ok, 1 rollback / triggered / drift / mandatory policy violation, 2 usage or "
        "invalid config (every problem named), 3 hold, 4 failed or error.",
        "",
        "```text",
        top.rstrip(),
        "```",
        "",
    ]
    for name, line, text in pages:
        lines += [f"## {name}", ""]
        if line:
            line = line.replace("%%", "%")
            lines += [line[0].upper() + line[1:] + ("" if line.endswith(".") else "."), ""]
        lines += ["```text", text.rstrip(), "```", ""]
    return "\n".join(lines)
