"""Where a `secure:` config value may go: a Pulumi secret end to end, or refused naming its key.

The engine tells a program only which top-level keys hold a secret (`netra:services`), not which
value inside; the stack file does (`pulumi config set --secret --path` writes `{secure: ...}` at the
leaf). So the leaf paths come from `Pulumi.<stack>.yaml`, and each must land on a field typed
`SecretStr` (the fields whose consumers wrap the value in `pulumi.Output.secret`): a secret anywhere
else would be shown as a secret in the plan and still reach a resource in plaintext (a service's `env`
becomes plain text in the Cloud Run revision) or be a value that is no credential at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from pydantic import BaseModel, SecretStr

from .base import type_at, unwrap_type
from .source import is_secure

NAMESPACE = "netra"
ENV_HINT = ("a secret in `env` would be plain text in the Cloud Run revision (anyone who can read the service "
            "reads it); keep it in Secret Manager and read it through `secrets`")
PLAIN_HINT = "takes no secret (it is not a credential); set it as a plain value, without --secret"


def secure_paths(config: Mapping[str, Any]) -> list[str]:
    """Dotted keys of every `{secure: ...}` value in a stack file's `config:` mapping."""
    def walk(value: Any, path: str) -> Iterator[str]:
        if is_secure(value):
            yield path
        elif isinstance(value, Mapping):
            for k, v in value.items():
                yield from walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, f"{path}.{i}")

    return [p for key, value in config.items() for p in walk(value, str(key))]


def stack_file_secure_paths(stack: str, root: Path | None = None) -> list[str]:
    """The secure paths of `Pulumi.<stack>.yaml` (what the Pulumi program reads under `pulumi up`); [] when
    there is no readable stack file (the engine's config then carries no secure value of ours)."""
    from .source import SourceError, parse_yaml

    path = (root or Path.cwd()) / f"Pulumi.{stack}.yaml"
    try:
        doc, _ = parse_yaml(path.read_bytes())  # the one loader: bounded, no alias bomb
    except (OSError, SourceError):
        return []
    config = doc.get("config") if isinstance(doc, dict) else None
    return secure_paths(config) if isinstance(config, dict) else []


def _secret_field(model: type[BaseModel], parts: list[str]) -> bool | None:
    """True if `parts` leads to a SecretStr field (or a map of them), False if to another field, None if
    the path is not in the model (the loader reports unknown keys itself)."""
    node = type_at(model, parts)
    if node is None:
        return None
    return unwrap_type(node) is SecretStr


def secret_problems(paths: Iterable[str], model: type[BaseModel]) -> list[tuple[str, str]]:
    """(key, message) for every secure value of `netra:` that is not on a secret field."""
    found = []
    for key in paths:
        namespace, _, rest = key.partition(":")
        if namespace != NAMESPACE or not rest:
            continue
        parts = rest.split(".")
        verdict = _secret_field(model, parts)
        if verdict is False:
            in_env = len(parts) >= 4 and parts[0] == "services" and parts[2] == "env"
            found.append((key, ENV_HINT if in_env else PLAIN_HINT))
    return found
