"""Read Pulumi.yaml and Pulumi.<stack>.yaml (plus `--set` values) into the flat config the engine hands a program.

Parsing follows the CLI's rules (infra/config/source.py); every problem of the files' form is reported at
once as a ConfigError naming the key, the file and the line, before any value is validated.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from infra.config.loader import ConfigError, Problem
from infra.config.secure import secure_paths
from infra.config.source import (SetValue, SourceError, full_key, is_secure, json_shape_problem, key_problem, parse_set,
                                 parse_yaml, secure_problems)

# Where stack files are read from: the repository, or an offline release sandbox's directory
# (NETRA_STACK_ROOT, set by `python -m infra <command> --sandbox DIR` before this module is imported).
PROJECT_ROOT = Path(os.environ.get("NETRA_STACK_ROOT") or Path(__file__).resolve().parents[2])
# The CLI decrypts `secure:` values; offline there is no key, so each becomes this marked secret.
OFFLINE_SECRET = "offline-plan-secret"
# Top-level keys of a stack file the CLI knows; only `config` matters offline.
STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")


class StackFileError(Exception):
    """A usage problem: the stack file is missing or unreadable (exit 2)."""


@dataclass(frozen=True)
class StackFile:
    project: str
    stack: str
    config: dict[str, str]  # engine representation: strings, structured values JSON-encoded
    secret_keys: tuple[str, ...]
    file: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # dotted key -> line in `file`
    set_keys: tuple[str, ...] = ()  # dotted keys given with --set
    secret_paths: tuple[str, ...] = ()  # dotted keys whose value is `secure:` (infra/config/secure.py)

    def origin_of(self, key: str) -> str:
        """Where the value at `key` (netra:services.backend.image) came from: `--set` or FILE:LINE."""
        if any(key == s or key.startswith(s + ".") for s in self.set_keys):
            return "--set"
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            line = self.lines.get(".".join(parts[:n]))
            if line is not None:
                return f"{self.file}:{line}"
        return self.file


def encode(value: Any) -> str:
    """How the Pulumi CLI passes a config value to a language host."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _strip_secure(value: Any) -> tuple[Any, bool]:
    if is_secure(value):
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
    walked = key
    for part in rest.split(".")[:-1]:
        if not isinstance(node, dict) or is_secure(node):
            raise ConfigError([Problem(path, f"cannot set: {walked} is not an object", origin="--set")])
        node = node.setdefault(part, {})
        walked += "." + part
    if not isinstance(node, dict) or is_secure(node):
        raise ConfigError([Problem(path, f"cannot set: {walked} is not an object", origin="--set")])
    node[rest.split(".")[-1]] = value


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise StackFileError(f"cannot read {path.name}: {e.strerror or e}") from None


def _file_problems(error: SourceError, file: str, project: str) -> ConfigError:
    """Problems of a stack file's form; a path under `config:` is named by its config key."""
    out = []
    for p in error.problems:
        path = p.path
        if len(path) >= 2 and path[0] == "config":
            path = (full_key(str(path[1]), project), *path[2:])
        key = ".".join(str(x) for x in path) or file
        out.append(Problem(key, p.message, origin=f"{file}:{p.line}" if p.line else file))
    return ConfigError(out)


def project_name(root: Path = PROJECT_ROOT) -> str:
    try:
        doc, _ = parse_yaml(_read(root / "Pulumi.yaml"))
    except SourceError as e:
        raise StackFileError("Pulumi.yaml: " + "; ".join(
            f"line {p.line}: {p.message}" if p.line else p.message for p in e.problems)) from None
    name = doc.get("name") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        raise StackFileError("Pulumi.yaml: `name` (the project name) must be a non-empty string")
    return name


def read_stack(stack: str, root: Path = PROJECT_ROOT, overrides: Mapping[str, Any] | None = None,
               sets: Iterable[str] = ()) -> StackFile:
    """The stack's config as the engine passes it. `sets`: `KEY=VALUE` strings as given to --set (values
    parsed as YAML); `overrides`: already-parsed {key: value} (tests, the rollout). Raises StackFileError
    (no such stack, unreadable file) or ConfigError (every problem of the files' form)."""
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise StackFileError(f"--stack: no {stack_file.name} in {root}; known stacks: {', '.join(known) or 'none'}")
    project = project_name(root)
    name = stack_file.name
    try:
        doc, lines = parse_yaml(_read(stack_file))
    except SourceError as e:
        raise _file_problems(e, name, project) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError([Problem(name, f"must be a mapping with a `config:` key, got a {type(doc).__name__}", origin=name)])
    found = [Problem(str(k), f"unknown top-level key; allowed: {', '.join(STACK_FILE_KEYS)}", origin=f"{name}:{lines.get((k,), 1)}")
             for k in doc if k not in STACK_FILE_KEYS]
    raw = doc.get("config")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        found.append(Problem("config", f"must be a mapping of KEY: VALUE, got a {type(raw).__name__}",
                             origin=f"{name}:{lines.get(('config',), 1)}"))
        raise ConfigError(found)
    config: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    for given, value in raw.items():
        key = full_key(given, project)
        line = lines.get(("config", given), 1)
        problem = key_problem(key, project)
        if key in config:
            problem = f"set twice ({given!r} is {key} without its namespace)"
        if problem:
            found.append(Problem(key, problem, origin=f"{name}:{line}"))
            continue
        config[key] = value
        for path, at in lines.items():
            if path[:2] == ("config", given):
                key_lines[".".join([key, *map(str, path[2:])])] = at
        found += [Problem(".".join(map(str, p.path)), p.message, origin=f"{name}:{key_lines.get('.'.join(map(str, p.path)), line)}")
                  for p in secure_problems(value, (key,))]
    changes = list((overrides or {}).items())
    for item in sets:
        try:
            parsed = parse_set(item, project)
        except SourceError as e:
            found += [Problem(".".join(map(str, p.path)) or "--set", p.message, origin="--set") for p in e.problems]
            continue
        changes.append((parsed.key, parsed.value))
    set_keys: list[str] = []
    for path, value in changes:
        head, dot, rest = path.partition(".")
        path = full_key(head, project) + dot + rest
        problem = key_problem(full_key(head, project), project)
        shape = json_shape_problem(value)
        if problem or shape:
            where = path if problem or not shape[0] else ".".join([path, *map(str, shape[0])])
            found.append(Problem(where, problem or shape[1], origin="--set"))
            continue
        services = config.get(f"{project}:services")
        svc, _, sub = path.partition(f"{project}:services.")[2].partition(".")
        if sub and isinstance(services, dict) and svc not in services and path.startswith(f"{project}:services."):
            # a sub-key of a service the stack does not have, close to one it has: a typo, not a new service
            import difflib

            from infra.config.services import unknown_service

            if difflib.get_close_matches(svc, list(services), n=1, cutoff=0.6):
                found.append(Problem(f"{project}:services.{svc}", unknown_service(svc, services) + "; a new "
                                     "service needs a name of its own", origin="--set"))
                continue
        try:
            set_path(config, path, value)
        except ConfigError as e:
            found += e.problems
        set_keys.append(path)
    if found:
        raise ConfigError(found)
    flat, secret_keys = {}, []
    for key, value in config.items():
        plain, is_secret = _strip_secure(value)
        flat[key] = encode(plain)
        if is_secret:
            secret_keys.append(key)
    return StackFile(project=project, stack=stack, config=flat, secret_keys=tuple(secret_keys), file=name,
                     lines=key_lines, set_keys=tuple(set_keys), secret_paths=tuple(secure_paths(config)))


__all__ = ["OFFLINE_SECRET", "PROJECT_ROOT", "SetValue", "StackFile", "StackFileError", "encode", "read_stack", "set_path"]
