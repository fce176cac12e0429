"""docs/reference/config.md from the typed stack config (infra/config/): every key a user writes, its type
and allowed values, default, the example stacks' values and what it means.

Everything comes from the pydantic models: the key (camelCase alias), the type and its bounds (Literal
choices, Ge/Le metadata, the `Allowed` words of text fields), the default, and the field's `description`.
A key without a description fails tests/test_docs.py, so a new key is documented where it is declared.
"""
from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel, RootModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from infra.config.base import Allowed
from infra.config.loader import NAMESPACE, PROVIDER_KEYS
from infra.config.stack import StackConfig

from .markdown import GENERATED, cell, table

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("prod", "staging")
MAP = "<name>"  # one key of a map, as the reference shows it


@dataclass
class Row:
    key: str  # full key, maps shown as <name>
    type: str
    default: str
    description: str
    values: dict[str, str] = field(default_factory=dict)  # stack -> its value in Pulumi.<stack>.yaml


@dataclass
class Section:
    prefix: str  # netra:platform, netra:services.<name>, or "" for the top-level keys
    doc: str
    rows: list[Row] = field(default_factory=list)


# ---------------------------------------------------------------- types

def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Annotated[X, m...] -> (X, [m...]), Optional[X] -> X (metadata collected on the way)."""
    meta: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            meta.extend(extra)
        elif origin in (Union, types.UnionType) and type(None) in get_args(annotation):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]
        elif isinstance(annotation, type) and issubclass(annotation, RootModel):
            annotation = annotation.model_fields["root"].annotation
        else:
            return annotation, meta


def _bounds(meta: list[Any]) -> str:
    lo = hi = ""
    for m in meta:
        for item in (m.metadata if isinstance(m, FieldInfo) else [m]):
            if isinstance(item, at.Ge):
                lo = f"{item.ge:g}"
            elif isinstance(item, at.Gt):
                lo = f"> {item.gt:g}"
            elif isinstance(item, at.Le):
                hi = f"{item.le:g}"
            elif isinstance(item, at.Lt):
                hi = f"< {item.lt:g}"
    if lo and hi and not lo.startswith(">") and not hi.startswith("<"):
        return f" {lo}–{hi}"
    return "".join(f" {b}" if b[0] in "<>" else f" ≥ {b}" if b is lo else f" ≤ {b}" for b in (lo, hi) if b)


def _models(annotation: Any) -> list[tuple[bool, type[BaseModel]]]:
    """(is a map of it, model) for each config model an annotation holds."""
    annotation, _ = _unwrap(annotation)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    if origin is dict:
        return [(True, model) for is_map, model in _models(get_args(annotation)[1]) if not is_map]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(False, annotation)]
    return []


def describe_type(annotation: Any, meta: list[Any] = ()) -> str:
    annotation, inner = _unwrap(annotation)
    meta = [*meta, *inner]
    allowed = next((m.what for m in meta if isinstance(m, Allowed)), None)
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{v}`" for v in get_args(annotation))
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return ("integer" if annotation is int else "number") + _bounds(meta)
    if annotation is SecretStr:
        return "secret text (`pulumi config set --secret`)"
    if annotation is str:
        return allowed or "text"
    if origin in (tuple, list, frozenset, set):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return f"list of {describe_type(args[0]) if args else 'values'}" + _bounds([])
    if origin is dict:
        key, value = get_args(annotation)
        return f"map of {describe_type(key)} → {describe_type(value)}"
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return getattr(annotation, "__name__", str(annotation))


# ---------------------------------------------------------------- values

def _shown(value: Any, limit: int = 60) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, mode="json")
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, (dict, list, tuple)) and not value:
        return "`{}`" if isinstance(value, dict) else "`[]`"
    if isinstance(value, (dict, list, tuple)) and len(json.dumps(value, default=str)) > limit:
        return "(object)" if isinstance(value, dict) else f"({len(value)} items)"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return f"`{text}`"


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return _shown(info.default_factory())
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return "none"
    if isinstance(info.default, BaseModel):
        return "see its keys"
    return _shown(info.default)


def _stack_value(raw: dict, key: str) -> str:
    """The value Pulumi.<stack>.yaml gives `key` (netra:platform.database.tier), or "" when not set."""
    top, _, rest = key.partition(".")
    node: Any = raw.get(top, _MISSING)
    for part in rest.split(".") if rest else []:
        node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
    if node is _MISSING:
        return ""
    if isinstance(node, dict) and set(node) == {"secure"}:
        return "(secret)"
    return _shown(node, limit=40)


_MISSING = object()


# ---------------------------------------------------------------- walk

def _walk(model: type[BaseModel], prefix: str, section: Section, sections: list[Section], in_map: bool) -> None:
    for name, info in model.model_fields.items():
        key = f"{prefix}.{info.alias or name}"
        subs = [(is_map, sub) for is_map, sub in _models(info.annotation) if not issubclass(sub, RootModel)]
        if not subs:
            section.rows.append(Row(key, describe_type(info.annotation, info.metadata), _default(info),
                                    info.description or "", None if in_map else {}))
            continue
        for is_map, sub in subs:
            if is_map:
                child = Section(f"{key}.{MAP}", info.description or "")
                sections.append(child)
                _walk(sub, child.prefix, child, sections, True)
            else:
                _walk(sub, key, section, sections, in_map)


def sections() -> list[Section]:
    """The top-level keys, then one section per `netra:` object and per map of objects, in model order."""
    provider = {field: key for key, field in PROVIDER_KEYS.items()}
    top = Section("", "Top-level keys of `Pulumi.<stack>.yaml`'s `config:`.")
    out = [top]
    for name, info in StackConfig.model_fields.items():
        alias = info.alias or name
        key = provider.get(name) or provider.get(alias) or f"{NAMESPACE}:{alias}"
        subs = _models(info.annotation)
        top.rows.append(Row(key, describe_type(info.annotation, info.metadata), _default(info), info.description or ""))
        for is_map, sub in subs:
            section = Section(f"{key}.{MAP}" if is_map else key, info.description or "")
            out.append(section)
            _walk(sub, section.prefix, section, out, is_map)
    raws = {s: yaml.safe_load((ROOT / f"Pulumi.{s}.yaml").read_text())["config"] for s in STACKS}
    for section in out:
        for row in section.rows:
            if row.values is not None:
                row.values = {s: _stack_value(raws[s], row.key) for s in STACKS}
    return [s for s in out if s.rows]


def leaves() -> dict[str, Row]:
    """Every documented key (maps as <name>) -> its row."""
    return {row.key: row for s in sections() for row in s.rows}


def render() -> str:
    lines = [
        "# Config reference",
        "",
        GENERATED.format(source="the pydantic models in `infra/config/`", target="docs-reference"),
        "",
        "Every key of a stack file (`Pulumi.<stack>.yaml`, under `config:`), as the typed config reads it: its",
        "type and allowed values, its default, the value the example stacks ship, and what it does. A bad value",
        "exits 2 naming its key before anything is registered. `<name>` stands for each key of a map (a",
        "service, a secret, a flag). How values are read (stack files, `--set`, the engine's strings): see",
        "[Config input](../how-to/config-input.md).",
        "",
    ]
    for section in sections():
        title = f"`{section.prefix}`" if section.prefix else "Top-level keys"
        lines += [f"## {title}", ""]
        if section.doc:
            lines += [section.doc[0].upper() + section.doc[1:] + ("" if section.doc.endswith(".") else "."), ""]
        in_map = section.rows[0].values is None
        head = ["key", "type / allowed", "default"] + ([] if in_map else ["prod", "staging"]) + ["meaning"]
        body = []
        for row in section.rows:
            shown = row.key[len(section.prefix) + 1:] if section.prefix else row.key
            values = [] if in_map else [row.values[s] for s in STACKS]
            body.append([f"`{shown}`", row.type, row.default, *values, cell(row.description)])
        lines += table(head, body) + [""]
    return "\n".join(lines)
