"""Small helpers the policy modules share: property paths, levels, the Policy constructors we use.

Policies read resource inputs as the engine sends them: camelCase wire names, e.g.
`template.containers[0].image`. Nothing here imports `infra`: the Pulumi CLI runs this pack from
`policies/` in its own virtualenv, where only this directory is on sys.path.

Unknowns. In a preview of a new stack every input computed from another resource's output (a network
self link, an account email, a generated password) reaches the pack as Pulumi's unknown sentinel, and
pulumi_policy's property proxy raises `UnknownValueError` when a policy reads one; left alone it turns
the policy into an ADVISORY "can't run", i.e. a mandatory check silently skipped. So: `get` still
raises on an unknown, `peek` returns `UNKNOWN` instead for the policies that decide on what is known
(a presence check, a length, where the value came from), and every policy built here that still hits
an unknown fails closed: a violation at its own level naming the path it could not see.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Iterator, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    Severity,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

_MISSING = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def get(props: Any, path: str, default: Any = None) -> Any:
    """`get(props, "settings.ipConfiguration.ipv4Enabled")`; `default` when any step is absent."""
    node = props
    for name, index in _STEP.findall(path):
        if name:
            if not isinstance(node, Mapping) or name not in node:
                return default
            node = node[name]
        else:
            i = int(index)
            if not _is_list(node) or i >= len(node):
                return default
            node = node[i]
        if node is None:
            return default
    # The wire carries every number as a double: show whole numbers as integers.
    if isinstance(node, float) and node.is_integer():
        return int(node)
    return node


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown until created>"


UNKNOWN: Any = _Unknown()  # what `peek` returns for a value a preview cannot know yet


def peek(props: Any, path: str, default: Any = None) -> Any:
    """`get`, but a value (or a container on the way) that is unknown during a preview gives `UNKNOWN`."""
    try:
        return get(props, path, default)
    except UnknownValueError:
        return UNKNOWN


def count(props: Any, path: str) -> Any:
    """How many entries the list at `path` has (0 when absent) without reading them; `UNKNOWN` when the
    list itself is unknown. A list of resource references is known in length while its entries are not."""
    value = peek(props, path)
    if value is UNKNOWN:
        return UNKNOWN
    return len(value) if _is_list(value) else 0


def sources(resource: Any, prop: str) -> list:
    """The resources an input property of `resource` (a stack policy's PolicyResource) was computed from,
    as the engine reports them (propertyDependencies): what an unknown value refers to."""
    return list((getattr(resource, "property_dependencies", None) or {}).get(prop) or [])


def points_to(resource: Any, prop: str, value: Any, target: Any) -> bool:
    """Does `value` (read from the top-level input `prop` of `resource`) name `target`? While it is unknown
    (preview), whether the engine lists `target` among the sources of `prop`."""
    if value is UNKNOWN:
        return any(s.urn == target.urn for s in sources(resource, prop))
    return refers_to(value, target)


def serves(backend_service: Any, group: Any) -> bool:
    """Is `group` (a NEG or instance group resource) one of the backend service's `backends[].group`?"""
    n = count(backend_service.props, "backends")
    return any(points_to(backend_service, "backends", peek(backend_service.props, f"backends[{i}].group"), group)
               for i in range(0 if n is UNKNOWN else n))


def fail_closed(e: UnknownValueError, what: str = "") -> str:
    """The violation of a policy that met a value unknown until create: it cannot see it, so it refuses."""
    path = ".".join(e.props)
    return (f"fails closed: {what}{path} is unknown until the resource it is computed from is created "
            f"(preview of a new stack), so this policy cannot see it; set it from config, or make the "
            f"policy decide on what is known")


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def items(props: Any, path: str) -> list:
    """The list at `path` ([] when absent)."""
    value = get(props, path)
    return list(value) if _is_list(value) else []


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, leaf) under value."""
    if isinstance(value, Mapping):
        for k in value:
            yield from walk(value[k], f"{path}.{k}" if path else str(k))
    elif _is_list(value):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, value


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


CIS_GCP = PolicyComplianceFramework(name="CIS Google Cloud Platform Foundation Benchmark", version="3.0.0")
NETRA = PolicyComplianceFramework(name="Netra go-live checklist", version="1.0",
                                  reference="seeds 000 (Final Go-Live Checklist) and 001 (deployment strategy)")


def resource_policy(name: str, description: str, remediation: str, types: tuple[str, ...], check,
                    *, severity: Severity = Severity.HIGH, schema: Optional[dict] = None,
                    framework: PolicyComplianceFramework = NETRA, tags: Optional[list[str]] = None,
                    url: Optional[str] = None) -> ResourceValidationPolicy:
    """A resource policy that runs `check(props, config, args)` (yielding messages) for `types` only."""

    def validate(args, report_violation):
        if args.resource_type not in types:
            return
        config = dict(args.get_config() or {})
        try:
            for message in check(args.props, config, args) or ():
                report_violation(message)
        except UnknownValueError as e:  # never pulumi_policy's advisory "can't run"
            report_violation(fail_closed(e))

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties=schema) if schema else None,
        severity=severity, framework=framework, tags=tags or [], remediation_steps=remediation, url=url,
    )


def stack_policy(name: str, description: str, remediation: str, check, *, severity: Severity = Severity.HIGH,
                 schema: Optional[dict] = None, framework: PolicyComplianceFramework = NETRA,
                 tags: Optional[list[str]] = None) -> StackValidationPolicy:
    """A stack policy that runs `check(resources, config)` (yielding (message, urn-or-None))."""

    def validate(args, report_violation):
        config = dict(args.get_config() or {})
        try:
            for message, urn in check(args.resources, config) or ():
                report_violation(message, urn)
        except UnknownValueError as e:  # never pulumi_policy's advisory "can't run"
            report_violation(fail_closed(e, "an input (resource unknown) at "), None)

    return StackValidationPolicy(
        name=name, description=description, validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties=schema) if schema else None,
        severity=severity, framework=framework, tags=tags or [], remediation_steps=remediation,
    )


def of_type(resources, type_token: str) -> list:
    return [r for r in resources if r.resource_type == type_token]


def refers_to(ref, resource) -> bool:
    """Does a property value name `resource`? (offline: the mock id `<name>-id`; in the engine: its id/self link)."""
    ref = str(ref or "")
    name = get(resource.props, "name", "")
    return bool(ref) and (ref in (resource.name, f"{resource.name}-id", name, get(resource.props, "id"),
                                  get(resource.props, "selfLink")) or (name and ref.endswith("/" + name)))
