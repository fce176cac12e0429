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


POLICY_DIR = "policies"


def policy_config_file(stack: str, root: Path = PROJECT_ROOT) -> Path:
    """`policies/config.<stack>.json`: what CI passes to `pulumi preview --policy-pack-config`."""
    return root / POLICY_DIR / f"config.{stack}.json"


def start_policy_pack(stack: str, root: Path = PROJECT_ROOT):
    """Spawn the pack now so its start-up overlaps the program run; pass it to `policy_violations`."""
    from .analyzer import PackSession, PolicyPackError

    try:
        return PackSession(root / POLICY_DIR, read_stack(stack, root).project, stack).start()
    except PolicyPackError:
        return None  # policy_violations starts its own and reports why it cannot


def policy_violations(run: ProgramRun, root: Path = PROJECT_ROOT, session=None) -> list[dict]:
    """Violations from the policy pack in `policies/`, asked over the analyzer gRPC protocol exactly as
    `pulumi preview --policy-pack policies --policy-pack-config policies/config.<stack>.json` asks it.
    `session`: a pack from `start_policy_pack` (closed here), else one is started.

    A pack that cannot start or refuses its config is reported as one mandatory violation of
    `policy-pack` (so the plan exits 1 with the reason) rather than a traceback."""
    from .analyzer import PolicyPackError, check_resources

    try:
        found = check_resources(run.resources, run.project, run.stack, root / POLICY_DIR,
                                policy_config_file(run.stack, root), session=session)
    except PolicyPackError as e:
        return [{"policy": "policy-pack", "level": "mandatory", "urn": "", "message": str(e)}]
    # mandatory first, then by policy and resource: a stable order for diffs and reviews
    order = {"mandatory": 0, "remediate": 1, "advisory": 2}
    found.sort(key=lambda v: (order.get(v.level, 3), v.policy, v.urn, v.message))
    return [v.to_json() for v in found]


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
    session = start_policy_pack(stack, root) if policy else None
    try:
        run = run_stack(stack, root, overrides)
        return plan_document(run, policy_violations(run, root, session) if policy else [])
    finally:
        if session is not None:
            session.close()


__all__ = ["ProgramRun", "StackFileError", "plan_document", "plan_stack", "policy_config_file", "policy_violations",
           "run_stack", "start_policy_pack"]
