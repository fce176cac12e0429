"""Small Markdown writers shared by the generated reference pages."""
from __future__ import annotations

GENERATED = ("*Generated from {source} by `make {target}`; do not edit by hand "
             "(tests/test_docs.py fails when this page is stale).*")


def cell(text: str) -> str:
    """Text safe inside a table cell: no line breaks, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
