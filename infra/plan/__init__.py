"""Offline plan: the real program under Pulumi's mocks, then the policy pack over the analyzer protocol."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .engine import ProgramRun, redact
from .stackfile import PROJECT_ROOT, StackFileError, read_stack


def run_stack(stack: str, root: Path = PROJECT_ROOT, overrides: Mapping[str, Any] | None = None) -> ProgramRun:
    """Validate the stack's config, then run the program offline. Raises ConfigError / StackFileError."""
    from infra import program
    from infra.config import load_stack_config

    from .engine import run_program

    stack_file = read_stack(stack, root, overrides)
    # Validate first so a bad config registers nothing (the program would refuse it the same way).
    load_stack_config(stack_file.config, stack)
    return run_program(program.main, stack_file.project, stack, stack_file.config, stack_file.secret_keys)


def policy_violations(run: ProgramRun, root: Path = PROJECT_ROOT) -> list[dict]:
    """Violations from the policy pack; empty until the pack lands (the policy issue)."""
    return []


def plan_document(run: ProgramRun, violations: list[dict]) -> dict:
    """The `--json` document."""
    return {
        "project": run.project,
        "stack": run.stack,
        "resources": [r.to_json() for r in run.resources],
        "outputs": redact(run.outputs),
        "policy": {"violations": violations},
        "warnings": run.warnings,
    }


def plan_stack(stack: str, root: Path = PROJECT_ROOT, overrides: Mapping[str, Any] | None = None,
               policy: bool = True) -> dict:
    """The offline plan of `stack` as the `--json` document (what `python -m infra plan --json` prints)."""
    run = run_stack(stack, root, overrides)
    return plan_document(run, policy_violations(run, root) if policy else [])


__all__ = ["ProgramRun", "StackFileError", "plan_document", "plan_stack", "policy_violations", "run_stack"]
