"""The release commands, on top of the domain modules: rollout, approve, status, rollback, bake and
restore-drill, drift, sandbox. Each module has `register(subparsers)` and its `run_*`; heavy imports stay inside `run_*`."""
from __future__ import annotations

from infra.release.cli import approve, bake, drift, restore_drill, rollback, rollout, sandbox, status

COMMANDS = (rollout, approve, status, rollback, bake, restore_drill, drift, sandbox)


def register(subparsers) -> None:
    for command in COMMANDS:
        command.register(subparsers)
