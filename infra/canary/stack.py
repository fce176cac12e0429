"""Where the gate and the rollout learn about a stack: the offline plan's outputs.

Isolated here so the rest of the canary package does not depend on how the plan is produced. The
contract (from the foundation): `infra.plan.plan_stack(stack) -> {"outputs": {...}, ...}` with
outputs gcpProject, region, canaryPercent, stages, services[key] = {serviceName, candidateRevision,
stableRevision, canaryPercent, traffic, url} and optionally migrationJob = {name, region}.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# the repository, or an offline release sandbox (NETRA_STACK_ROOT: infra/release/sandbox.py)
PROJECT_ROOT = Path(os.environ.get("NETRA_STACK_ROOT") or Path(__file__).resolve().parents[2])


class StackError(Exception):
    """A problem with --stack / --service that the user can fix; the message names the argument."""


@dataclass(frozen=True)
class ServiceInfo:
    key: str  # frontend / backend / auth
    service_name: str
    candidate: str
    stable: str | None
    canary_percent: int
    project: str
    region: str


def known_stacks(root: Path = PROJECT_ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def plan_outputs(stack: str, overrides: dict | None = None) -> dict:
    """The plan's outputs for `stack` (runs the Pulumi program offline under mocks), with optional
    config overrides ({"netra:services.backend.canaryPercent": 10}) applied in memory."""
    stacks = known_stacks()
    if stacks and stack not in stacks:
        raise StackError(f"--stack: unknown stack {stack!r}; allowed: {', '.join(stacks)}")
    try:
        from infra.config import ConfigError
        from infra.plan import StackFileError, plan_stack
    except ImportError:
        raise StackError(
            "--stack: the offline plan (infra.plan.plan_stack) is not available in this checkout; "
            "pass --project, --stable-revision and --candidate-revision instead"
        ) from None
    try:
        result = plan_stack(stack, overrides=overrides, policy=False)
    except StackFileError as exc:
        raise StackError(str(exc)) from None
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else exc
        raise StackError(f"--stack {stack}: invalid stack config: {first}") from None
    outputs = result.get("outputs") if isinstance(result, dict) else None
    if not isinstance(outputs, dict):
        raise StackError(f"--stack {stack}: the plan returned no outputs")
    return outputs


def service_keys(outputs: dict) -> list[str]:
    return sorted((outputs.get("services") or {}).keys())


def service_info(outputs: dict, service: str) -> ServiceInfo:
    """Resolve `service` (a key such as "backend", or the Cloud Run service name) in plan outputs."""
    services = outputs.get("services") or {}
    key = service if service in services else None
    if key is None:
        for k, v in services.items():
            if isinstance(v, dict) and v.get("serviceName") == service:
                key = k
    if key is None:
        allowed = ", ".join(sorted(services)) or "(the stack has no services)"
        raise StackError(f"--service: unknown service {service!r}; allowed: {allowed}")
    s = services[key]
    stack_pct = outputs.get("canaryPercent", 0)
    return ServiceInfo(
        key=key,
        service_name=s["serviceName"],
        candidate=s["candidateRevision"],
        stable=s.get("stableRevision") or None,
        canary_percent=int(s.get("canaryPercent", stack_pct) or 0),
        project=outputs.get("gcpProject", ""),
        region=outputs.get("region", ""),
    )


def revisions_for(stack: str, service: str) -> ServiceInfo:
    return service_info(plan_outputs(stack), service)
