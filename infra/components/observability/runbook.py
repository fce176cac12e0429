"""Runbooks: every alert's `documentation.content` says what it means, what to check and how to roll back."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runbook:
    meaning: str
    checks: tuple[str, ...]
    rollback: bool = True  # whether rolling the canary back is a sensible first response


def rollback_commands(stack: str) -> str:
    return (
        "```bash\n"
        f"python -m infra rollback --stack {stack}\n"
        "# equivalent, by hand:\n"
        f"pulumi stack select {stack}\n"
        "pulumi config set netra:canaryPercent 0 && pulumi up\n"
        "```\n"
    )


def render(title: str, rule: str, severity: str, routing: str, runbook: Runbook, stack: str) -> str:
    lines = [
        f"## {title}",
        "",
        f"**Rule:** {rule}  ",
        f"**Severity:** {severity} (notifies: {routing})  ",
        f"**Stack:** {stack}",
        "",
        "### What it means",
        runbook.meaning,
        "",
        "### What to check",
        *(f"{i}. {c}" for i, c in enumerate(runbook.checks, 1)),
        "",
        "### Roll back",
    ]
    if runbook.rollback:
        lines.append("If a release is in progress (a canary revision takes traffic), give the stable revision "
                     "100 % of traffic again:")
    else:
        lines.append("This is rarely caused by a release; roll back only if it started with the current canary:")
    lines += ["", rollback_commands(stack).rstrip("\n"), "",
              "Then open the Canary dashboard to compare stable and canary revisions."]
    return "\n".join(lines) + "\n"
