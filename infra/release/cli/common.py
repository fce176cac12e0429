"""What the release commands share: one-line usage errors (exit 2) and argument checks."""
from __future__ import annotations

import sys

from infra.release.state import EXIT_USAGE


def err(cmd: str, message: str) -> int:
    print(f"infra {cmd}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def int_arg(value, flag: str, lo: int, hi: int) -> int:
    from infra.canary.api import UsageError

    try:
        x = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} must be a whole number between {lo} and {hi}, got {value!r}") from None
    if not lo <= x <= hi:
        raise UsageError(f"{flag} must be a whole number between {lo} and {hi}, got {value!r}")
    return x
