"""Data never dies by a config edit: every resource holding data is protected, in every stack, unless the
stack config names it in an explicit allowance with a reason (docs/data-safety.md).

The analyzer protocol shows a policy the new inputs only, never the old state, so a policy cannot see
that a change *replaces* something. What it can check is what makes the engine refuse one: `protect`
(the engine refuses, at preview and before any step runs, to replace or delete a protected resource)
and the provider's own guard (`deletion_protection`, `deletion_policy: ABANDON`, `force_destroy: false`).
The program lifts both for a resource only when `netra:allowReplace` names it (with a reason) or the
staging stack is torn down (`netra:teardown`); it tells this pack through the `netra:data:Guards`
component's inputs. `python -m infra plan --against` names the replacement itself (infra/plan/replace.py).
"""
from __future__ import annotations

from pulumi_policy import Severity

from ._util import get, stack_policy

GUARDS = "netra:data:Guards"
# infra/components/guards.py STATEFUL_TYPES (this pack cannot import `infra`; tests/test_data_safety.py
# asserts the two lists are equal)
STATEFUL_TYPES = frozenset({
    "gcp:sql/databaseInstance:DatabaseInstance",
    "gcp:sql/database:Database",
    "gcp:sql/user:User",
    "gcp:redis/instance:Instance",
    "gcp:storage/bucket:Bucket",
    "gcp:compute/disk:Disk",
    "gcp:secretmanager/secret:Secret",
})


def _key(urn: str) -> str:
    """`<type>::<name>` of a URN, the form infra/config/stack.py resource_key() matches allowances in."""
    parts = urn.split("::", 3)
    return f"{parts[2].rsplit('$', 1)[-1]}::{parts[3]}" if urn.startswith("urn:pulumi:") and len(parts) == 4 else urn


def _provider_guard(r) -> list[str]:
    """What is missing of the provider's own guard on a kept resource."""
    props, t = r.props, r.resource_type
    if t == "gcp:sql/databaseInstance:DatabaseInstance":
        return [f"{p} is not true" for p in ("deletionProtection", "settings.deletionProtectionEnabled")
                if get(props, p) is not True]
    if t == "gcp:redis/instance:Instance":
        return [] if get(props, "deletionProtection") is True else ["deletionProtection is not true"]
    if t in ("gcp:sql/database:Database", "gcp:sql/user:User"):
        policy = get(props, "deletionPolicy")
        return [] if policy == "ABANDON" else [f"deletionPolicy is {policy or 'unset (DELETE drops it)'}, not ABANDON"]
    if t == "gcp:storage/bucket:Bucket":
        return ["forceDestroy is true (a delete empties the bucket)"] if get(props, "forceDestroy") is True else []
    return []


def _protected(resources, config):
    unguarded = []
    for r in resources:
        if r.resource_type in STATEFUL_TYPES:
            missing = ([] if r.opts.protect else ["protect is not set"]) + _provider_guard(r)
            if missing:
                unguarded.append((r, missing))
    if not unguarded:
        return
    guards = [r for r in resources if r.resource_type == GUARDS]
    if len(guards) != 1:
        yield (f"{len(unguarded)} resource(s) holding data are unguarded ({_key(unguarded[0][0].urn)}: "
               f"{'; '.join(unguarded[0][1])}) and the stack has {len(guards)} {GUARDS} components (want 1), so "
               "nothing says config allows it: refused"), None
        return
    allowed = {_key(str(get(a, "resource", ""))) for a in get(guards[0].props, "allowReplace", []) or []}
    if get(guards[0].props, "teardown") is True:
        return
    for r, missing in unguarded:
        if _key(r.urn) not in allowed:
            yield (f"{_key(r.urn)} holds data and config allows no replacement of it (netra:allowReplace), but "
                   f"{'; '.join(missing)}"), r.urn


POLICIES = [
    stack_policy("stateful-protected",
                 "Every resource holding data is protected (protect plus the provider's guard) unless the stack "
                 "config allows its replacement with a reason.",
                 "Keep protect and deletion_protection / deletion_policy ABANDON / force_destroy false on it; to "
                 "replace it on purpose, name it in netra:allowReplace with a reason (docs/data-safety.md).",
                 _protected, severity=Severity.CRITICAL),
]
