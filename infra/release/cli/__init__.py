"""The release commands, on top of the domain modules: rollout, approve, status, rollback, bake and
restore-drill, drift. Each module has `register(subparsers)` and its `run_*`; heavy imports stay inside `run_*`."""
from __future__ import annotations

from infra.release.cli import approve, bake, drift, restore_drill, rollback, rollout, status

COMMANDS = (rollout, approve, status, rollback, bake, restore_drill, drift)


def register(subparsers) -> None:
    for command in COMMANDS:
        command.register(subparsers)
