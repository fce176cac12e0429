"""docs/reference/alerts.md from the program: every Cloud Monitoring alert policy the offline plans of prod
and staging register, with the rule, severity and notification routing written into its runbook
(`documentation`), so the page says exactly what `pulumi up` creates."""
from __future__ import annotations

import re

from .markdown import GENERATED, cell, table

STACKS = ("prod", "staging")
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"


def _field(doc: str, name: str) -> str:
    m = re.search(rf"\*\*{name}:\*\*\s*(.*?)\s*$", doc, re.M)
    return m.group(1) if m else ""


def alerts(stack: str) -> dict[str, dict]:
    """alert resource name -> {title, rule, severity, group} from the offline plan of `stack`."""
    from infra.plan import plan_stack

    out = {}
    for r in plan_stack(stack, policy=False)["resources"]:
        if r["type"] != ALERT:
            continue
        inputs = r["inputs"]
        doc = inputs.get("documentation", {}).get("content", "")
        title = next((line[3:] for line in doc.splitlines() if line.startswith("## ")), inputs["displayName"])
        out[r["name"]] = {
            "title": title,
            "rule": _field(doc, "Rule"),
            "severity": _field(doc, "Severity") or inputs.get("severity", "").lower(),
            "group": r["parent"].rsplit("::", 1)[-1],
        }
    return out


def render() -> str:
    plans = {s: alerts(s) for s in STACKS}
    prod, staging = plans["prod"], plans["staging"]
    lines = [
        "# Alert reference",
        "",
        GENERATED.format(source="the offline plans of prod and staging (every `AlertPolicy` the program registers)",
                         target="docs-reference"),
        "",
        f"prod registers {len(prod)} alert policies, staging {len(staging)}. Each carries a runbook (what it means, "
        "what to check, how to roll back) as its documentation, shown in the incident. Severity decides the "
        "channels (`netra:observability.routing`); thresholds come from `netra:observability.thresholds` and "
        "the seed's rollback triggers, the same values the canary gate judges.",
        "",
    ]
    groups: dict[str, list[str]] = {}
    for name in sorted(set(prod) | set(staging)):
        groups.setdefault((prod.get(name) or staging[name])["group"], []).append(name)
    for group, names in groups.items():
        lines += [f"## {group}", ""]
        rows = []
        for name in names:
            a = prod.get(name) or staging[name]
            where = " / ".join(s for s in STACKS if name in plans[s])
            rows.append([f"`{name}`", cell(a["title"]), cell(a["rule"]), cell(a["severity"]), where])
        lines += table(["alert", "title", "rule", "severity (prod)", "stacks"], rows) + [""]
    return "\n".join(lines)
