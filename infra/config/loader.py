"""Turn Pulumi's flat config (`netra:key` -> value) into a `StackConfig`, or a list of problems.

Both the Pulumi program and the offline plan come through here, so `pulumi up` and `python -m infra
plan` refuse exactly the same configs with exactly the same messages.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from pydantic import BaseModel, ValidationError

from .base import PROBLEMS_ERROR, accepts_container, model_alias_fields, type_at, unwrap_type
from .platform import app_secret_keys, plaintext_secret_problems
from .secure import secret_problems
from .services import environment_problems
from .source import (PROVIDER_KEYS, EngineValueError, decode_engine_value, full_key, key_problem,
                     provider_value_problem)
from .stack import ENVIRONMENTS, PLATFORM_SECRETS, StackConfig

NAMESPACE = "netra"


@dataclass(frozen=True)
class Problem:
    key: str  # as the user writes it: netra:services.backend.minInstances
    message: str
    origin: str = ""  # where the value came from, when known: Pulumi.prod.yaml:12, --set

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" + (f"  [{self.origin}]" if self.origin else "")

    def to_json(self) -> dict:
        return {"key": self.key, "message": self.message, **({"origin": self.origin} if self.origin else {})}


class ConfigError(Exception):
    """Every problem of a config at once; `str()` is the user-facing report."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def decode_pulumi_value(value: Any) -> Any:
    """Pulumi hands config to programs as strings, structured values JSON-encoded (ValueError if malformed)."""
    return decode_engine_value(value)


def load_stack_config(flat: Mapping[str, Any], stack: str, origin_of: Callable[[str], str] | None = None,
                      secret_paths: Iterable[str] | None = None) -> StackConfig:
    """Validate `flat` (the engine's config: every key of the stack, values as strings) for `stack`;
    raise ConfigError listing every problem. `origin_of(key)` names where a key's value came from.
    `secret_paths`: keys whose value was `secure:` (infra/config/secure.py); each must be a secret field,
    and a value that must be secret (an app secret's) must be among them. None: not known (a reader of an
    already deployed stack, such as the gate), so only the first check cannot fail."""
    paths = None if secret_paths is None else tuple(secret_paths)
    found = [Problem(k, m) for k, m in secret_problems(paths or (), StackConfig)]
    try:
        config = _load(flat, stack, paths)
    except ConfigError as e:
        found = sorted([*e.problems, *found], key=lambda p: p.key)
    else:
        if not found:
            return config
    if origin_of is not None:
        found = [Problem(p.key, p.message, p.origin or origin_of(p.key)) for p in found]
    raise ConfigError(for_stack(found, stack)) from None


STACK_PLACEHOLDER = "--stack <stack>"


def for_stack(found: Iterable[Problem], stack: str) -> list[Problem]:
    """Problems whose messages name commands with `--stack <stack>`, naming this stack instead, so a command
    in an error can be pasted as it is."""
    return [Problem(p.key, p.message.replace(STACK_PLACEHOLDER, f"--stack {stack}"), p.origin) for p in found]


STACK_FIELDS = model_alias_fields(StackConfig)


def _load(flat: Mapping[str, Any], stack: str, secret_paths: tuple[str, ...] | None = None) -> StackConfig:
    raw: dict[str, Any] = {}
    found: list[Problem] = []
    broken: list[str] = []  # keys whose value could not be read: no "missing" noise about them
    for given, value in flat.items():
        key = full_key(str(given), NAMESPACE)
        problem = key_problem(key, NAMESPACE)
        if problem:
            found.append(Problem(key, problem))
            continue
        field = STACK_FIELDS.get(PROVIDER_KEYS.get(key) or key.partition(":")[2])
        try:
            # the engine hands an object as a JSON string, and a string as itself: decode where the key
            # takes an object (or an unknown key, refused below with its decoded shape)
            value = decode_pulumi_value(value) if field is None or accepts_container(field.annotation) else value
        except EngineValueError as e:
            found.append(Problem(".".join([key, *map(str, e.path)]), str(e)))
            broken.append(key)
            continue
        if key.startswith("gcp:") and key not in PROVIDER_KEYS:  # the provider's own setting, not the program's
            if (problem := provider_value_problem(key, value)):
                found.append(Problem(key, problem))
            continue
        name = PROVIDER_KEYS.get(key) or key.partition(":")[2]
        if name in raw:
            found.append(Problem(key, "set twice (with and without its namespace)"))
            continue
        raw[name] = value
    if stack in ENVIRONMENTS:
        raw.setdefault("environment", stack)
    if raw.get("environment") in ENVIRONMENTS:
        found += [Problem(f"{NAMESPACE}:services.{k}", m) for k, m in environment_problems(raw.get("services"), raw["environment"])]
    if secret_paths is not None:
        found += [Problem(k, m) for k, m in plaintext_secret_problems(raw.get("platform"), secret_paths)]
    # a service may read the platform's secrets and the app secrets declared beside them (platform is
    # validated after services, so the declared keys are taken from the raw map; a bad one is reported there)
    context = {"known_secrets": PLATFORM_SECRETS | app_secret_keys(raw.get("platform"))}
    try:
        config = StackConfig.model_validate(raw, context=context)
    except ValidationError as e:
        found.extend(p for p in _problems_from(e) if not any(p.key == b or p.key.startswith(b + ".") for b in broken))
        config = None
    if found:
        raise ConfigError(sorted(found, key=lambda p: p.key))
    return config


def _key(loc: tuple[Any, ...]) -> str:
    if not loc:
        return f"{NAMESPACE}:"
    head, rest = loc[0], loc[1:]
    if head in PROVIDER_KEYS.values():
        head = f"gcp:{head}"
    else:
        head = f"{NAMESPACE}:{head}"
    return ".".join([head, *(str(p) for p in rest)])


def _problems_from(error: ValidationError) -> list[Problem]:
    out = []
    for e in error.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not _is_union_tag(p))
        if e["type"] == PROBLEMS_ERROR:
            # a sub-key starting with `netra:` is absolute: the fix is elsewhere than where it was found
            out.extend(Problem(sub if sub.startswith(f"{NAMESPACE}:") else _key(loc + tuple(sub.split("."))), msg)
                       for sub, msg in e["ctx"]["problems"])
        elif e["type"] == "extra_forbidden":
            out.append(Problem(_key(loc), _unknown_key_message(loc)))
        elif e["type"] == "missing":
            field = _field_at(loc)
            hint = f": {field.description}" if field is not None and field.description else ""
            out.append(Problem(_key(loc), f"required key is missing{hint}"))
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            if e["type"] not in ("value_error",) and not isinstance(got, (dict, list)):
                msg = f"{msg}, got {got!r}"
            out.append(Problem(_key(loc), msg))
    return out


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts type names like 'function-after[...]' into locations of wrapped validators
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _unknown_key_message(loc: tuple[Any, ...]) -> str:
    allowed = _allowed_keys(loc[:-1])
    name = str(loc[-1])
    if allowed is None:
        return "unknown key"
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key; {hint}allowed: {', '.join(sorted(allowed))}"


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo at `loc`, or None."""
    node = unwrap_type(_node_at(loc[:-1]))
    if isinstance(node, type) and issubclass(node, BaseModel):
        return model_alias_fields(node).get(loc[-1]) if loc else None
    return None


def _allowed_keys(parent: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed at `parent`, or None where any key is allowed."""
    node = unwrap_type(_node_at(parent))
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(model_alias_fields(node))
    return None


def _node_at(parent: tuple[Any, ...]) -> Any:
    """Walk the model tree along `parent` to the type found there."""
    return type_at(StackConfig, parent)


