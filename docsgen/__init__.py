"""Generators of the docs site's reference pages: each page is rendered from the code it documents (the
config models, the CLI parsers, the policy pack, the program's alerts), committed under docs/reference/,
and checked for staleness by tests/test_docs.py. `make docs-reference` rewrites them."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


def _page(module: str, function: str = "render") -> Callable[[], str]:
    def render() -> str:
        import importlib

        return getattr(importlib.import_module(f"docsgen.{module}"), function)() + "\n"

    return render


# docs path -> renderer (imports are lazy: the config page must not need a plan, the alert page does)
PAGES: dict[str, Callable[[], str]] = {
    "docs/reference/config.md": _page("config_reference"),
    "docs/reference/cli.md": _page("cli_reference"),
    "docs/reference/policies.md": _page("policy_reference"),
    "docs/reference/alerts.md": _page("alert_reference"),
    # the benchmark report, rendered from the saved run benchmarks/results/canary.json (make bench-canary)
    "docs/explanation/benchmark.md": _page("benchmark_report"),
    "docs/explanation/img/canary-decision-times.svg": _page("benchmark_report", "decisions_svg"),
    "docs/explanation/img/canary-wrong-decisions.svg": _page("benchmark_report", "wrong_svg"),
    # not a page: the bootstrap program's deploy roles, computed from the plans' resource types
    "bootstrap/deploy-roles.json": lambda: __import__("infra.bootstrap.roles", fromlist=["render_roles"]).render_roles(),
}
