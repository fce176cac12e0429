"""Offline plan: the real program under Pulumi's mocks, then the policy pack over the analyzer protocol."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

from .engine import ProgramRun, redact
from .stackfile import PROJECT_ROOT, StackFileError, project_name, read_stack


def run_stack(stack: str, root: Path = PROJECT_ROOT, overrides: Mapping[str, Any] | None = None,
              on_resource=None, sets: Sequence[str] = (), preview: bool = False) -> ProgramRun:
    """Validate the stack's config, then run the program offline. Raises ConfigError / StackFileError.
    `sets`: `KEY=VALUE` strings as given to `--set`; `overrides`: already-parsed {key: value};
    `preview`: as a first `pulumi preview` of a fresh stack sees it (outputs of new resources unknown)."""
    return _run_validated(stack, _validated(stack, root, overrides, sets), on_resource, preview)


def _validated(stack: str, root: Path, overrides: Mapping[str, Any] | None, sets: Sequence[str]):
    """The stack file with overrides applied, its config validated (also the checks the program makes
    before building). Raises ConfigError / StackFileError."""
    from infra import program
    from infra.config import ConfigError, Problem, load_stack_config

    stack_file = read_stack(stack, root, overrides, sets)
    # Validate first so a bad config registers nothing (the program would refuse it the same way),
    # naming the file and line (or --set) of each problem.
    cfg = load_stack_config(stack_file.config, stack, stack_file.origin_of, stack_file.secret_paths)
    try:
        program.check_before_build(cfg, stack_file.config)
    except ConfigError as e:
        from infra.config.loader import for_stack

        raise ConfigError(for_stack([Problem(p.key, p.message, p.origin or stack_file.origin_of(p.key))
                                     for p in e.problems], stack)) from None
    return stack_file


def _run_validated(stack: str, stack_file, on_resource=None, preview: bool = False) -> ProgramRun:
    from infra import program

    from .engine import run_program

    try:
        # the program learns which leaves were `secure:` from what was read here (stack file and overrides)
        return run_program(functools.partial(program.main, stack_file.secret_paths), stack_file.project, stack,
                           stack_file.config, stack_file.secret_keys, on_resource, preview)
    except program.InvalidStackConfig as e:  # found while building (a skipped traffic stage)
        raise e.error from None


POLICY_DIR = "policies"


def policy_config_file(stack: str, root: Path = PROJECT_ROOT) -> Path:
    """`policies/config.<stack>.json`: what CI passes to `pulumi preview --policy-pack-config`."""
    return root / POLICY_DIR / f"config.{stack}.json"


def start_policy_check(stack: str, root: Path = PROJECT_ROOT):
    """Spawn the pack now, so it starts and analyzes while the program runs: pass `.submit` as
    `run_stack(on_resource=...)`, then the check to `policy_violations`. None if it cannot start
    (`policy_violations` then reports why)."""
    from .analyzer import PackSession, PolicyCheck, PolicyPackError

    try:
        session = PackSession(root / POLICY_DIR, project_name(root), stack).start()
    except (PolicyPackError, StackFileError):
        return None
    return PolicyCheck(session, policy_config_file(stack, root))


def policy_violations(run: ProgramRun, root: Path = PROJECT_ROOT, check=None) -> list[dict]:
    """Violations from the policy pack in `policies/`, asked over the analyzer gRPC protocol exactly as
    `pulumi preview --policy-pack policies --policy-pack-config policies/config.<stack>.json` asks it.
    `check`: a `start_policy_check` that already saw every resource of `run`; else the whole check runs now.

    A pack that cannot start or refuses its config is reported as one mandatory violation of
    `policy-pack` (so the plan exits 1 with the reason) rather than a traceback."""
    from .analyzer import PolicyPackError, check_resources

    try:
        if check is not None:
            found = check.finish(run.resources)
        else:
            found = check_resources(run.resources, run.project, run.stack, root / POLICY_DIR,
                                    policy_config_file(run.stack, root))
    except PolicyPackError as e:
        return [{"policy": "policy-pack", "level": "mandatory", "urn": "", "message": str(e)}]
    # mandatory first, then by policy and resource: a stable order for diffs and reviews
    order = {"mandatory": 0, "remediate": 1, "advisory": 2}
    found.sort(key=lambda v: (order.get(v.level, 3), v.policy, v.urn, v.message))
    return [v.to_json() for v in found]


def checked_run(stack: str, root: Path = PROJECT_ROOT, overrides: Mapping[str, Any] | None = None,
                policy: bool = True, sets: Sequence[str] = (), preview: bool = False) -> tuple[ProgramRun, list[dict]]:
    """The program run and its policy violations, the pack analyzing while the program runs.
    Raises ConfigError / StackFileError before the pack is started (bad input costs no pack start-up)."""
    stack_file = _validated(stack, root, overrides, sets)
    check = start_policy_check(stack, root) if policy else None
    try:
        run = _run_validated(stack, stack_file, on_resource=check.submit if check else None, preview=preview)
    except BaseException:
        if check is not None:
            check.close()
        raise
    if not policy:
        return run, []
    return run, policy_violations(run, root, check)


def plan_document(run: ProgramRun, violations: list[dict], preview: bool = False) -> dict:
    """The `--json` document."""
    from .diff import secret_digests

    # by URN: registrations arrive in a different order on each run, the document must not
    resources = sorted(run.resources, key=lambda r: r.urn)
    return {
        "project": run.project,
        "stack": run.stack,
        "mode": "preview" if preview else "up",
        "resources": [r.to_json() for r in resources],
        "outputs": redact(run.outputs),
        "policy": {"violations": violations},
        "warnings": run.warnings,
        # per secret input: a salted digest, so `plan --against` sees a changed secret without its value
        "secretDigests": secret_digests(resources),
    }


def plan_stack(stack: str, root: Path = PROJECT_ROOT, overrides: Mapping[str, Any] | None = None,
               policy: bool = True, sets: Sequence[str] = (), preview: bool = False) -> dict:
    """The offline plan of `stack` as the `--json` document (what `python -m infra plan --json` prints)."""
    return plan_document(*checked_run(stack, root, overrides, policy, sets, preview), preview=preview)


__all__ = ["PROJECT_ROOT", "ProgramRun", "StackFileError", "plan_document", "plan_stack", "policy_config_file", "policy_violations",
           "run_stack", "checked_run", "start_policy_check"]
