"""The private Pulumi runtime API this project uses, named once (pinned in infra/compat/__init__.py).

The offline plan (infra/plan/engine.py) runs the real program under `pulumi.runtime.set_mocks`, which
is public; what it also needs is not:
- the secret signature the engine wraps secret values in on the wire (`rpc._special_sig_key`,
  `rpc._special_secret_sig`), to keep secrets marked in the recorded inputs and outputs;
- `settings.ROOT`, reset so the same process can run the program more than once (a plan per test, a
  plan per `--set` variant); `settings.get_root_resource()` for the stack's outputs;
- `sync_await._sync_await`, to serialize the stack's outputs as the engine would receive them;
- `mocks.MockMonitor`, subclassed to keep each registration's parent and dependencies.
The Terraform-plan export (infra/plan/tfplan.py) reads pulumi_gcp's typed `*Args` classes through
`pulumi._types` (`is_input_type`, `input_type_types`, `input_type_py_to_pulumi_names`).

A missing name raises ImportError naming this workaround, not an AttributeError deep in a plan.
"""
from __future__ import annotations

import importlib
from typing import Any

WORKAROUND = "private Pulumi runtime API (infra/compat/pulumi_sdk.py)"


def _require(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        from infra.compat import installed_version, workaround

        w = workaround("pulumi")
        raise ImportError(f"{WORKAROUND}: {module}.{name} is gone in pulumi {installed_version('pulumi')} "
                          f"(written for {w.written_for}): {e}") from e


rpc = importlib.import_module("pulumi.runtime.rpc")
settings = importlib.import_module("pulumi.runtime.settings")

SIG_KEY: str = _require("pulumi.runtime.rpc", "_special_sig_key")
SECRET_SIG: str = _require("pulumi.runtime.rpc", "_special_secret_sig")
serialize_properties = _require("pulumi.runtime.rpc", "serialize_properties")
deserialize_properties = _require("pulumi.runtime.rpc", "deserialize_properties")
sync_await = _require("pulumi.runtime.sync_await", "_sync_await")
MockMonitor = _require("pulumi.runtime.mocks", "MockMonitor")
Unknown = _require("pulumi.output", "Unknown")  # what a preview's unknown deserializes to
_ROOT = _require("pulumi.runtime.settings", "ROOT")
get_root_resource = _require("pulumi.runtime.settings", "get_root_resource")

is_input_type = _require("pulumi._types", "is_input_type")
input_type_types = _require("pulumi._types", "input_type_types")
input_type_py_to_pulumi_names = _require("pulumi._types", "input_type_py_to_pulumi_names")


def reset_root_resource() -> None:
    """Forget the previous run's root Stack, so the next program run registers a fresh one."""
    _ROOT.set(None)


def serialized_outputs(outputs: Any) -> Any:
    """Stack outputs as the engine receives them (a protobuf Struct, secrets still wrapped)."""
    return sync_await(serialize_properties(outputs, {}))
