"""Supply-chain checks that need no network: placeholder image digests in a stack's config, and base
images of the repository's Dockerfiles pinned by digest (docs/supply-chain.md).

A stack file may carry an image pinned to the all-zero digest (`...@sha256:000...0`) until someone with
registry access supplies the real one: the offline plan only warns about it, while `pulumi preview` and
`pulumi up` (the program not running under the offline plan's mocks) refuse the stack and list every
image to supply, before anything registers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
_PLACEHOLDER = re.compile(r"@sha256:0{64}(?![0-9a-f])")
# FROM [--platform=...] image[:tag]@sha256:<64 hex> [AS name]
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?\s*$", re.I)
_PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
HOW_TO_PIN = ("the digest of the exact image you reviewed: `docker buildx imagetools inspect IMAGE:TAG` (the "
              "`Digest:` line, the multi-arch index) or `gcloud artifacts docker images describe IMAGE:TAG` for "
              "Artifact Registry")


def _walk(value: Any, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def placeholder_images(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(config key, image) for every value pinned to the all-zero digest. `config`: the stack's config as
    the engine passes it (`namespace:key` -> value, objects as JSON text) or already parsed."""
    found = []
    for key, raw in sorted(config.items()):
        value = raw
        if isinstance(raw, str) and raw[:1] in "{[":
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        found += [(path, text) for path, text in _walk(value, key) if _PLACEHOLDER.search(text)]
    return found


def placeholder_message(stack: str, found: list[tuple[str, str]]) -> str:
    lines = [f"stack {stack} pins {len(found)} image(s) to the all-zero placeholder digest; supply each real digest "
             f"before `pulumi preview` / `pulumi up` (docs/supply-chain.md):"]
    lines += [f"  {key}: {image}" for key, image in found]
    lines.append(f"  where from: {HOW_TO_PIN}")
    return "\n".join(lines)


def dockerfile_problems(text: str, name: str = "Dockerfile") -> list[str]:
    """Why a Dockerfile's base images are not pinned: every FROM names an image by digest, or an earlier
    stage of the same file. A placeholder digest passes here (its build fails at the registry); the docs
    list it as one to supply."""
    stages: set[str] = set()
    found = []
    lines = text.replace("\\\n", " ").splitlines()
    for n, line in enumerate(lines, 1):
        if not re.match(r"^\s*FROM\b", line, re.I):
            continue
        m = _FROM.match(line)
        if not m:
            found.append(f"{name}:{n}: cannot read this FROM line: {line.strip()!r}")
            continue
        image = m["image"]
        if image.lower() not in stages and not _PINNED.match(image):
            found.append(f"{name}:{n}: base image {image!r} is not pinned by digest: use {image.split('@')[0]}@sha256:<64 hex>, "
                         f"{HOW_TO_PIN}")
        if m["stage"]:
            stages.add(m["stage"].lower())
    return found


def dockerfiles(root: Path = ROOT) -> list[Path]:
    skip = {".venv", ".venv-checkov", ".git", "node_modules"}
    return sorted(p for p in root.rglob("*Dockerfile*") if p.is_file() and not skip & set(p.relative_to(root).parts))


def dockerfile_placeholders(root: Path = ROOT) -> list[str]:
    """`path:line` of every FROM still pinned to the placeholder digest."""
    return [f"{p.relative_to(root)}:{n}" for p in dockerfiles(root)
            for n, line in enumerate(p.read_text().splitlines(), 1)
            if re.match(r"^\s*FROM\b", line, re.I) and _PLACEHOLDER.search(line)]
