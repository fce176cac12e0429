"""What protects data: every resource of a stateful type is `protect`ed, in every stack (docs/data-safety.md).

With `protect` the engine refuses, at preview, to replace or delete the resource, before any step runs
(a provider's own guard such as `deletion_protection` only fails the delete itself, after the dependents
that had to go first are already gone). Components add the provider's guard (`deletion_protection`,
`deletion_policy: ABANDON`, `force_destroy: false`) where the API has one, asking `kept()` for the
resource. Two things lift the guards, both named in config and both visible to the policy pack through
the `netra:data:Guards` component: `netra:allowReplace` (one resource, with a reason) and
`netra:teardown` (every resource; staging only, the config refuses it for prod).

`protect` is set here, by one stack transformation over the stateful types, so a stateful resource added
later is protected without anyone remembering to; the policy pack's `stateful-protected` checks the
same list (policies/netra_policies/stateful.py keeps a copy: the pack cannot import `infra`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import pulumi

from infra.config.stack import resource_key

COMPONENT_TYPE = "netra:data:Guards"
# Resource types that hold data (or, for a Secret, versions a user may have added by hand).
STATEFUL_TYPES = frozenset({
    "gcp:sql/databaseInstance:DatabaseInstance",
    "gcp:sql/database:Database",
    "gcp:sql/user:User",
    "gcp:redis/instance:Instance",
    "gcp:storage/bucket:Bucket",
    "gcp:compute/disk:Disk",
    "gcp:secretmanager/secret:Secret",
})


@dataclass(frozen=True)
class DataGuards:
    """`allowed`: resource keys (`resource_key`) whose replacement or deletion config allows; `teardown`:
    every guard lifted (staging only)."""

    allowed: frozenset[str] = frozenset()
    teardown: bool = False

    def kept(self, type_token: str, name: str) -> bool:
        """Whether the guards of resource (type, name) stay on."""
        return not self.teardown and f"{type_token}::{name}" not in self.allowed

    def transformation(self, args: pulumi.ResourceTransformationArgs) -> Optional[pulumi.ResourceTransformationResult]:
        if args.type_ not in STATEFUL_TYPES:
            return None
        keep = self.kept(args.type_, args.name)
        if bool(args.opts.protect) == keep:
            return None
        return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(
            args.opts, pulumi.ResourceOptions(protect=keep)))


class Guards(pulumi.ComponentResource):
    """The stack's allowances as the policy pack sees them (a component's inputs and outputs): the pack
    accepts an unprotected stateful resource only when this names it, with its reason."""

    def __init__(self, name: str, allowances: Iterable[tuple[str, str]], teardown: bool,
                 opts: Optional[pulumi.ResourceOptions] = None):
        props = {"allowReplace": [{"resource": r, "reason": why} for r, why in allowances], "teardown": teardown}
        super().__init__(COMPONENT_TYPE, name, props, opts)
        self.register_outputs(props)


def install(guards: DataGuards, allowances: Iterable[tuple[str, str]]) -> Guards:
    """Register the Guards component and the stack transformation that protects stateful resources; call
    before the first stateful resource registers. `allowances`: (resource, reason) as config gives them."""
    component = Guards("data-guards", allowances, guards.teardown)
    pulumi.runtime.register_stack_transformation(guards.transformation)
    return component
