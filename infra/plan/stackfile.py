"""Read Pulumi.yaml and Pulumi.<stack>.yaml into the flat config the engine hands a program."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The CLI decrypts `secure:` values; offline there is no key, so each becomes this marked secret.
OFFLINE_SECRET = "offline-plan-secret"


class StackFileError(Exception):
    """A usage problem: the stack file is missing or unreadable (exit 2)."""


@dataclass(frozen=True)
class StackFile:
    project: str
    stack: str
    config: dict[str, str]  # engine representation: strings, structured values JSON-encoded
    secret_keys: tuple[str, ...]


def encode(value: Any) -> str:
    """How the Pulumi CLI passes a config value to a language host."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def _strip_secure(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return OFFLINE_SECRET, True
    if isinstance(value, dict):
        out, any_secret = {}, False
        for k, v in value.items():
            out[k], s = _strip_secure(v)
            any_secret |= s
        return out, any_secret
    if isinstance(value, list):
        items = [_strip_secure(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """`netra:services.backend.canaryPercent` = value, creating objects on the way (like --path)."""
    key, _, rest = path.partition(".")
    if not rest:
        config[key] = value
        return
    node = config.setdefault(key, {})
    if not isinstance(node, dict):
        raise StackFileError(f"{key}: cannot set {path}, {key} is not an object")
    parts = rest.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise StackFileError(f"cannot set {path}: {part} is not an object")
    node[parts[-1]] = value


def read_stack(stack: str, root: Path = PROJECT_ROOT, overrides: Mapping[str, Any] | None = None) -> StackFile:
    project_file, stack_file = root / "Pulumi.yaml", root / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise StackFileError(f"--stack: no {stack_file.name} in {root}; known stacks: {', '.join(known) or 'none'}")
    try:
        project = yaml.safe_load(project_file.read_text())["name"]
        doc = yaml.safe_load(stack_file.read_text()) or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise StackFileError(f"cannot read {stack_file.name} / Pulumi.yaml: {e}") from None
    raw = doc.get("config") or {}
    if not isinstance(raw, dict):
        raise StackFileError(f"{stack_file.name}: `config` must be a mapping")
    raw = dict(raw)
    for path, value in (overrides or {}).items():
        set_path(raw, path, value)
    config, secret_keys = {}, []
    for key, value in raw.items():
        plain, is_secret = _strip_secure(value)
        config[key] = encode(plain)
        if is_secret:
            secret_keys.append(key)
    return StackFile(project=project, stack=stack, config=config, secret_keys=tuple(secret_keys))
