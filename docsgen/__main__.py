"""`python -m docsgen [--check]`: write the generated reference pages under docs/reference/ (`make
docs-reference`), or with --check only report which ones are stale (exit 1) without writing."""
from __future__ import annotations

import argparse
import sys

from . import PAGES, ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docsgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 listing stale pages; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, render in PAGES.items():
        target = ROOT / path
        text = render()
        if target.exists() and target.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
