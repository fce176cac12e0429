"""What the typed `*Args` classes cannot catch: checks over a planned stack that the cloud APIs would refuse.

Python does not enforce the SDK's type hints, and an `*Args` class accepts any string where the API
takes one of a few. So, over every registered resource (wire inputs, the engine's view):

- scalar types as the SDK declares them (`retentionPeriod` is a string in pulumi-gcp 10, not a number);
- enum strings: the provider documents "Possible values are: `A`, `B`" on a property; anything else is
  refused by the API (read from the SDK's own docstrings, so the list follows the pinned provider);
- durations (`"60s"`) and the alert-policy rule that a threshold duration is a whole number of minutes;
- settings the API refuses together (a retention policy on a versioned bucket; PromQL and threshold in
  one condition) and formats the API normalises (`projects/<number>` in a budget filter);
- every PromQL expression (alert conditions, dashboards, SLOs) parsed by Prometheus' own parser
  (`promtool check rules`, Debian package `prometheus`).

`problems(resources)` returns one line per problem naming the resource and the property path.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .engine import PlannedResource, is_secret, unwrap
from .tfplan import ExportError, _fields, args_class

# the provider's two phrasings: Possible values are: `A`, `B`.  /  Acceptable values are "a" or "b".
POSSIBLE = re.compile(r"Possible values are:?\s*((?:`[^`]+`[,\s]*(?:and\s+|or\s+)?)+)")
ACCEPTABLE = re.compile(r'Acceptable values are:?\s*((?:"[^"]+"[,\s]*(?:and\s+|or\s+)?)+)')
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
DURATION_FIELDS = {"duration", "alignmentPeriod", "autoClose", "evaluationInterval", "timeout", "period"}
PROMQL_TYPES = {"gcp:monitoring/alertPolicy:AlertPolicy", "gcp:monitoring/dashboard:Dashboard", "gcp:monitoring/slo:Slo"}
PY_TYPES = {str: (str,), int: (int,), float: (int, float), bool: (bool,)}


def possible_values(cls: type, py_name: str) -> tuple[str, ...]:
    """The provider's documented "Possible values are: ..." for a property of an `*Args` class, or ()."""
    prop = getattr(cls, py_name, None)
    doc = getattr(prop, "__doc__", None) or ""
    m = POSSIBLE.search(doc)
    if m:
        return tuple(re.findall(r"`([^`]+)`", m.group(1)))
    m = ACCEPTABLE.search(doc)
    return tuple(re.findall(r'"([^"]+)"', m.group(1))) if m else ()


def _walk(cls: type, inputs: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, type, str, str, Any]]:
    """(path, Args class, python name, kind, value) of every property value, nested blocks included."""
    fields = _fields(cls)
    for wire, value in inputs.items():
        if wire.startswith("__") or wire not in fields or value is None or is_secret(value):
            continue
        kind, nested, snake = fields[wire]
        sub = f"{path}.{wire}" if path else wire
        yield sub, cls, snake, kind, value
        if kind == "block" and isinstance(value, Mapping):
            yield from _walk(nested, value, sub)
        elif kind == "blocks" and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _walk(nested, item, f"{sub}[{i}]")


def _declared_scalar(cls: type, py_name: str) -> type | None:
    from infra.compat import pulumi_sdk as pulumi_types  # pulumi._types' helpers, pinned there

    from .tfplan import _element

    tp = _element(pulumi_types.input_type_types(cls).get(
        pulumi_types.input_type_py_to_pulumi_names(cls).get(py_name, py_name)))
    return tp if tp in PY_TYPES else None


def property_problems(r: PlannedResource) -> list[str]:
    try:
        cls = args_class(r.type)
    except (ExportError, AttributeError, ImportError):
        return []
    out = []
    for path, owner, py_name, kind, value in _walk(cls, r.inputs):
        where = f"{r.type.split(':')[-1]} {r.name}: {path}"
        if kind == "scalar":
            declared = _declared_scalar(owner, py_name)
            if declared is not None and (not isinstance(value, PY_TYPES[declared])
                                         or (declared is not bool and isinstance(value, bool))):
                out.append(f"{where}: pulumi-gcp types it {declared.__name__}, got {type(value).__name__} {value!r}")
                continue
            allowed = possible_values(owner, py_name)
            if allowed and isinstance(value, str) and value not in allowed:
                out.append(f"{where}: {value!r} is not one of the provider's possible values: {', '.join(allowed)}")
            if path.rsplit(".", 1)[-1] in DURATION_FIELDS and isinstance(value, str) and not DURATION.match(value):
                out.append(f"{where}: {value!r} is not a duration like \"60s\"")
    return out


def cross_field_problems(r: PlannedResource) -> list[str]:
    """Combinations the API refuses, and formats it would normalise (a perpetual diff)."""
    i, out = unwrap(r.inputs), []
    name = f"{r.type.split(':')[-1]} {r.name}"
    if r.type == "gcp:storage/bucket:Bucket":
        if i.get("retentionPolicy") and (i.get("versioning") or {}).get("enabled"):
            out.append(f"{name}: retentionPolicy with versioning.enabled: Cloud Storage refuses a retention "
                       "policy on a bucket with Object Versioning")
    elif r.type == "gcp:monitoring/alertPolicy:AlertPolicy":
        for n, c in enumerate(i.get("conditions") or []):
            kinds = [k for k in c if k.startswith("condition")]
            if len(kinds) != 1:
                out.append(f"{name}: conditions[{n}] sets {kinds or 'no condition'}; exactly one condition kind per condition")
            duration = (c.get("conditionThreshold") or {}).get("duration")
            if isinstance(duration, str) and DURATION.match(duration) and float(duration[:-1]) % 60:
                out.append(f"{name}: conditions[{n}].conditionThreshold.duration {duration}: only whole minutes are supported")
    elif r.type == "gcp:billing/budget:Budget":
        for p in (i.get("budgetFilter") or {}).get("projects") or []:
            if not re.fullmatch(r"projects/\d+", str(p)):
                out.append(f"{name}: budgetFilter.projects {p!r}: the API stores projects/<project number>; "
                           "a project id here is a perpetual diff and failing updates")
    elif r.type == "gcp:compute/securityPolicy:SecurityPolicy":
        for n, rule in enumerate(i.get("rules") or []):
            limited = "rateLimitOptions" in rule
            if limited != (rule.get("action") in ("throttle", "rate_based_ban")):
                out.append(f"{name}: rules[{n}]: rateLimitOptions go with action throttle / rate_based_ban only")
    return out


def promql_expressions(resources: Iterable[PlannedResource]) -> list[tuple[str, str]]:
    """(where, expression) of every PromQL query in alert conditions, dashboards and SLOs."""
    out = []
    for r in resources:
        if r.type not in PROMQL_TYPES:
            continue
        inputs = unwrap(r.inputs)
        if r.type.endswith("Dashboard"):
            raw = inputs.get("dashboardJson")
            inputs = json.loads(raw) if isinstance(raw, str) else (raw or {})
        for path, value in _leaves(inputs):
            last = path.rsplit(".", 1)[-1]
            if isinstance(value, str) and (last == "prometheusQuery" or ("conditionPrometheusQueryLanguage" in path
                                                                         and last == "query")):
                out.append((f"{r.type.split(':')[-1]} {r.name}: {path}", value))
    return out


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for n, v in enumerate(value):
            yield from _leaves(v, f"{path}[{n}]")
    else:
        yield path, value


class PromtoolMissing(Exception):
    pass


def promql_problems(expressions: Sequence[tuple[str, str]], promtool: str | None = None) -> list[str]:
    """Parse each expression with Prometheus' parser: `promtool check rules` over one recording rule each."""
    promtool = promtool or shutil.which("promtool")
    if not promtool:
        raise PromtoolMissing("promtool not found: install Debian's `prometheus` package (make system-packages)")
    import yaml

    rules = [{"record": f"netra_check_{n}", "expr": expr} for n, (_, expr) in enumerate(expressions)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "netra", "rules": rules}]}, sort_keys=False))
        proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return []
    out = []
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.search(r'"netra_check_(\d+)": (.*)$', line)
        if m:
            where, _ = expressions[int(m.group(1))]
            out.append(f"{where}: {m.group(2)}")
    return out or [f"promtool check rules failed: {(proc.stdout + proc.stderr).strip()}"]


def problems(resources: Sequence[PlannedResource], promtool: str | None = None) -> list[str]:
    out: list[str] = []
    for r in resources:
        if r.custom:
            out += property_problems(r) + cross_field_problems(r)
    return out + promql_problems(promql_expressions(resources), promtool)
