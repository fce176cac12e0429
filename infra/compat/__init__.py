"""Every place this project relies on an SDK's internals, in one package, each pinned to the SDK version
it was written for. `tests/test_compat.py` compares each pin with the installed version
(importlib.metadata) and fails, naming the workaround and what to re-check, when a pin moves.

- `infra.compat.pulumi_sdk`: the private Pulumi runtime API the offline plan (infra/plan/engine.py) and
  the Terraform-plan export (infra/plan/tfplan.py) use.
- `infra.compat.gcp_compute`: import only the pulumi_gcp.compute modules the stack uses, in the offline
  plan only (never under `pulumi up` / `preview`, where `compute` is the real, fully imported package).
- `policies/netra_policies/_wire.py`: the policy pack's hook into pulumi_policy's `Analyze` (which
  inputs arrived as secrets; one protobuf conversion per request). It stays in the pack because the pack
  is its own program: under `pulumi preview --policy-pack policies` it runs from policies/ in its own
  virtualenv, where infra/ is not importable. It is registered and pinned here like the others.

Changing a pin: upgrade the SDK, run `tests/test_compat.py` (it names what to re-check), re-check that,
then set `written_for` to the new version. This module imports no SDK itself.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workaround:
    name: str
    where: str  # the module holding the code
    package: str  # the distribution whose internals it relies on (importlib.metadata name)
    written_for: str  # the version it was written and tested against
    relies_on: str  # the internals, so a reader knows what to re-check


WORKAROUNDS: tuple[Workaround, ...] = (
    Workaround(
        name="private Pulumi runtime API",
        where="infra/compat/pulumi_sdk.py",
        package="pulumi",
        written_for="3.272.0",
        relies_on="rpc._special_sig_key / _special_secret_sig, settings.ROOT, sync_await._sync_await, "
                  "mocks.MockMonitor.RegisterResource, pulumi._types input-type helpers",
    ),
    Workaround(
        name="partial pulumi_gcp.compute import (offline plan only)",
        where="infra/compat/gcp_compute.py",
        package="pulumi_gcp",
        written_for="10.2.0",
        relies_on="pulumi_gcp/compute/__init__.py importing every resource module, each module's __all__, "
                  "pulumi_gcp's _LazyModule for not-yet-loaded subpackages",
    ),
    Workaround(
        name="policy pack: secret paths and one conversion per Analyze request",
        where="policies/netra_policies/_wire.py",
        package="pulumi_policy",
        written_for="1.21.0",
        relies_on="pulumi_policy.policy.deserialize_properties called right before each policy, "
                  "pulumi_policy.policy.json_format.MessageToDict called once per policy",
    ),
)


def workaround(package: str) -> Workaround:
    return next(w for w in WORKAROUNDS if w.package == package)


def installed_version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def pinned(package: str) -> bool:
    """True when the installed `package` is the version its workaround was written for."""
    return installed_version(package) == workaround(package).written_for
