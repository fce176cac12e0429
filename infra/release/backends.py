"""Backends: where a stack's config lives and how `pulumi up` runs. A backend is the small interface
the Driver, `rollback`, `approve` and `bake` use:

    read() -> dict                          the stack config, top-level key -> decoded value
    write(values, remove=()) -> None        set config paths (`pulumi config set --path`), remove others
    up(message) -> None                     apply the config; raise OperationFailed when it did not
    ledger                                  the stack's release ledger (infra/release/ledger.py)

- `AutomationBackend`: the real stack through the Pulumi Automation API, `up` with the policy pack;
- `MemoryBackend`: config in memory, `up` records what it would apply (dry runs, tests).
"""
from __future__ import annotations

import copy
import json
import sys

from infra.release.state import OperationFailed, decode, remove_path


class AutomationBackend:
    """A Pulumi stack through the Automation API (LocalWorkspace on the project root). `up` runs with the
    policy pack, so a skipped stage is refused by the pack as well as by the program."""

    def __init__(self, stack, policy_pack: str, policy_config: str, log=print, ledger=None):
        self.stack = stack
        self.ledger = ledger
        self.policy_pack = policy_pack
        self.policy_config = policy_config
        self.log = log

    def read(self) -> dict:
        return {k: decode(v.value) for k, v in self.stack.get_all_config().items()}

    def write(self, values: dict, remove: tuple[str, ...] = ()) -> None:
        from pulumi import automation as auto

        if values:
            encoded = {k: auto.ConfigValue(value=v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
                       for k, v in values.items()}
            self.stack.set_all_config(encoded, path=True)
        if remove:
            self.stack.remove_all_config(list(remove), path=True)

    def up(self, message: str) -> None:
        from pulumi.automation import errors as auto_errors

        try:
            result = self.stack.up(message=message, on_output=lambda line: self.log(line.rstrip("\n")),
                                   policy_packs=[self.policy_pack], policy_pack_configs=[self.policy_config])
        except auto_errors.CommandError as exc:
            text = str(exc).strip()
            raise OperationFailed(f"pulumi up failed: {text.splitlines()[-1] if text else exc}") from None
        status = getattr(getattr(result, "summary", None), "result", "succeeded")
        if status != "succeeded":
            raise OperationFailed(f"pulumi up ended with {status!r}")


class MemoryBackend:
    """Config in memory (a copy of Pulumi.<stack>.yaml's `config:`); `up` records what it would apply.
    The dry run walks the real path on it; tests inject failures and kills."""

    def __init__(self, config: dict, log=None, ledger=None, stack: str = ""):
        from infra.release.view import memory_ledger  # view -> ledger, never back here

        self.config = copy.deepcopy(config)
        self.ledger = ledger if ledger is not None else memory_ledger(config, stack)
        self.ups: list[tuple[str, dict]] = []  # (message, config snapshot)
        self.log = log

    def read(self) -> dict:
        return copy.deepcopy(self.config)

    def write(self, values: dict, remove: tuple[str, ...] = ()) -> None:
        from infra.plan.stackfile import set_path

        for k, v in values.items():
            set_path(self.config, k, v)
        for k in remove:
            remove_path(self.config, k)

    def up(self, message: str) -> None:
        self.ups.append((message, copy.deepcopy(self.config)))


def select_stack(stack_name: str):
    from pulumi import automation as auto

    from infra.canary.stack import PROJECT_ROOT

    return auto.select_stack(stack_name=stack_name, work_dir=str(PROJECT_ROOT))


def automation_backend(stack: str, log=print) -> AutomationBackend:
    """The stack through the Automation API with the stack's policy pack config (raises when it cannot);
    in an offline release sandbox (`--sandbox DIR`) the sandbox's backend. Either with the stack's ledger."""
    from infra.release import sandbox

    if sandbox.running() is not None:
        backend = sandbox.SandboxBackend(sandbox.running().box, log=log)
    else:
        from infra.canary.stack import PROJECT_ROOT
        from infra.plan import POLICY_DIR, policy_config_file

        backend = AutomationBackend(select_stack(stack), str(PROJECT_ROOT / POLICY_DIR),
                                    str(policy_config_file(stack)), log=log)
    backend.ledger = stack_ledger(stack, backend.read)
    return backend


LEDGER_ENV = "NETRA_LEDGER"


def stack_ledger(stack: str, read_config):
    """The stack's ledger: $NETRA_LEDGER (gs://BUCKET or a directory), else a sandbox's DIR/ledger, else the
    bucket the stack declares (plan output `releaseLedger`). The first use adopts the release record in stack
    config."""
    import os

    from infra.release.ledger import Ledger, LedgerError, open_store
    from infra.release.view import adopt

    from infra.release import sandbox

    location = os.environ.get(LEDGER_ENV)
    if not location and sandbox.running() is not None:  # a sandbox keeps its ledger in DIR/ledger/<stack>
        location = str(sandbox.running().box.dir / "ledger")
    if not location:
        from infra.canary.stack import plan_outputs

        location = plan_outputs(stack).get("releaseLedger")
    if not location:
        raise LedgerError(f"stack {stack} declares no release ledger (plan output releaseLedger) and ${LEDGER_ENV} "
                          f"is not set")
    return Ledger(open_store(location, stack), stack, seed=lambda: adopt(read_config(), stack))


def open_backend(cmd: str, stack: str, log=print):
    """`automation_backend`, or None after one error line on stderr."""
    try:
        return automation_backend(stack, log)
    except Exception as exc:  # no Pulumi CLI, no such stack, no backend login...
        text = str(exc).strip()
        print(f"infra {cmd}: error: cannot open stack {stack!r} with the Automation API (needs the Pulumi CLI and a "
              f"logged-in backend): {text.splitlines()[-1] if text else type(exc).__name__}", file=sys.stderr)
        return None


def stack_raw_config(stack: str) -> dict:
    """The `config:` of Pulumi.<stack>.yaml as written (no validation): what a rollback needs when the rest is broken."""
    import yaml

    from infra.canary.stack import PROJECT_ROOT

    doc = yaml.safe_load((PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    return dict(doc.get("config") or {})
