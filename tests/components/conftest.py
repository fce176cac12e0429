"""Component tests: one component at a time under Pulumi's mocks (no whole-program plan).

`register(build)` runs `build()` with `pulumi.runtime.set_mocks` (through infra.plan.engine, so the
computed outputs a provider would fill in match the offline plan's) and returns what it registered,
plus any values `build` returns, resolved."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import pulumi
import pytest

from infra.components.guards import DataGuards
from infra.components.site import Site
from infra.plan import engine
from infra.plan.engine import is_secret, unwrap

PROD = Site(project="netra-test", region="us-central1", environment="prod", cost_center="llm-platform")
STAGING = Site(project="netra-test", region="us-central1", environment="staging", cost_center="llm-platform")
# staging with netra:teardown (infra/components/guards.py): every data guard lifted
TEARDOWN = dataclasses.replace(STAGING, guards=DataGuards(teardown=True))


@dataclass
class Registered:
    resources: list[engine.PlannedResource]
    outputs: dict
    warnings: list[str]

    def of(self, type_token: str) -> list[engine.PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> dict:
        """The plain inputs (secrets unwrapped) of the one resource of this type (and name)."""
        found = [r for r in self.of(type_token) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_token} {name or ''}, found {[r.name for r in found]}"
        return unwrap(found[0].inputs)

    def raw(self, type_token: str, name: str) -> dict:
        """Wire-form inputs (secrets still wrapped)."""
        (found,) = [r for r in self.of(type_token) if r.name == name]
        return found.inputs

    def names(self, type_token: str) -> list[str]:
        """Sorted: registrations arrive in no fixed order."""
        return sorted(r.name for r in self.of(type_token))


def register(build: Callable[[], dict | None], stack: str = "test") -> Registered:
    def program():
        for name, value in (build() or {}).items():
            pulumi.export(name, value)

    run = engine.run_program(program, "netra", stack, {})
    return Registered(run.resources, unwrap(run.outputs), run.warnings)


__all__ = ["PROD", "STAGING", "TEARDOWN", "Registered", "is_secret", "register"]
