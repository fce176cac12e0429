"""docs/reference/policies.md from the policy pack: every policy `policies/__main__.py` packs, its kind,
what it checks (its description) and its enforcement level per stack (policies/config.<stack>.json, read
the way pulumi_policy reads it: a policy's own entry, else `all`, else the policy's default)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .markdown import GENERATED, cell, table

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("prod", "staging")


def _pack():
    path = str(ROOT / "policies")
    if path not in sys.path:
        sys.path.insert(0, path)
    import netra_policies

    return netra_policies


def level(policy, config: dict) -> str:
    entry = config.get(policy.name)
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and "enforcementLevel" in entry:
        return entry["enforcementLevel"]
    return config.get("all") or policy.enforcement_level.value


def settings(policy, config: dict) -> str:
    entry = config.get(policy.name)
    if not isinstance(entry, dict):
        return ""
    return ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in entry.items() if k != "enforcementLevel")


def render() -> str:
    pack = _pack()
    configs = {s: json.loads((ROOT / f"policies/config.{s}.json").read_text()) for s in STACKS}
    lines = [
        "# Policy reference",
        "",
        GENERATED.format(source="the policy pack (`policies/netra_policies`, `policies/config.<stack>.json`)",
                         target="docs-reference"),
        "",
        f"The pack `{pack.PACK_NAME}` holds {len(pack.ALL)} policies. `pulumi preview --policy-pack policies "
        "--policy-pack-config policies/config.<stack>.json` runs them in the real engine; `python -m infra plan` runs "
        "the same pack over the same analyzer protocol offline. A `mandatory` violation fails the preview, the "
        "update and the offline plan (exit 1); `advisory` only reports; `disabled` does not run.",
        "",
    ]
    by_module: dict[str, list] = {}
    for policy in pack.ALL:
        by_module.setdefault(_area(pack, policy), []).append(policy)
    for area, policies in by_module.items():
        lines += [f"## {area}", ""]
        rows = []
        for p in policies:
            kind = "stack" if type(p).__name__.startswith("Stack") else "resource"
            config = "; ".join(f"{s}: {c}" for s in STACKS if (c := settings(p, configs[s])))
            rows.append([f"`{p.name}`", kind, *(level(p, configs[s]) for s in STACKS), cell(p.description),
                         config])
        lines += table(["policy", "kind", "prod", "staging", "what it checks", "config"], rows) + [""]
    return "\n".join(lines)


def _area(pack, policy) -> str:
    """The netra_policies module whose POLICIES list holds `policy` (cloudrun, data, iam, ...)."""
    for name in sorted(vars(pack)):
        module = getattr(pack, name)
        if policy in getattr(module, "POLICIES", ()):
            doc = (module.__doc__ or "").strip().splitlines()
            return f"{name}: {doc[0].rstrip('.')}" if doc else name
    return "other"
