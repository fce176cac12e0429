"""What a change does: the difference between two offline plans (`plan --against FILE|GITREF`).

Per resource (by URN): create, delete, or update with the input paths that changed. Secret values are
never in a plan document; each plan carries a digest per secret input path (`secretDigests`, a SHA-256
salted with the URN and the path, truncated), so a changed secret (a feature-flag flip, a rotated
password) shows as "changed (secret)" without its value or digest being printed. Per service: the
candidate revision and the traffic table before and after.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .engine import SECRET_TEXT, is_secret
from .replace import classify


class AgainstError(Exception):
    """--against names nothing usable (exit 2)."""


def secret_digest(urn: str, path: str, value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{urn}\n{path}\n{canonical}".encode()).hexdigest()[:16]


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs; a secret is a leaf (its wire form), as are empty containers."""
    if is_secret(value):
        yield path, value
    elif isinstance(value, dict) and value:
        for k in sorted(value):
            yield from leaves(value[k], f"{path}.{k}" if path else str(k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def secret_digests(resources) -> dict[str, dict[str, str]]:
    """urn -> {input path: digest} for every secret input of the planned resources (wire form)."""
    out: dict[str, dict[str, str]] = {}
    for r in resources:
        found = {path: secret_digest(r.urn, path, v.get("value")) for path, v in leaves(r.inputs) if is_secret(v)}
        if found:
            out[r.urn] = found
    return out


def _flat(inputs: dict) -> dict[str, Any]:
    """Leaves, with JSON-encoded strings (a dashboard's dashboardJson) opened up, so a change inside one
    shows as the path that changed rather than as one long string."""
    out = {}
    for path, value in leaves(inputs):
        if isinstance(value, str) and value[:1] in "{[" and value != SECRET_TEXT:
            try:
                inner = json.loads(value)
            except ValueError:
                inner = None
            if isinstance(inner, (dict, list)):
                out.update({f"{path}#{p}" if p else path: v for p, v in leaves(inner)})
                continue
        out[path] = value
    return out


def diff_plans(before: dict, after: dict) -> dict:
    """The difference of two plan documents (`plan --json`), deterministic (sorted by URN / key)."""
    old = {r["urn"]: r for r in before.get("resources", [])}
    new = {r["urn"]: r for r in after.get("resources", [])}
    old_secrets, new_secrets = before.get("secretDigests") or {}, after.get("secretDigests") or {}
    comparable = "secretDigests" in before and "secretDigests" in after  # older plans have no digests
    changes = []
    for urn in sorted(set(old) | set(new)):
        if urn not in old:
            changes.append({"action": "create", "urn": urn, "type": new[urn]["type"], "name": new[urn]["name"]})
            continue
        if urn not in new:
            changes.append({"action": "delete", "urn": urn, "type": old[urn]["type"], "name": old[urn]["name"]})
            continue
        a, b = _flat(old[urn]["inputs"]), _flat(new[urn]["inputs"])
        paths = []
        for path in sorted(set(a) | set(b)):
            va, vb = a.get(path, None), b.get(path, None)
            if va == SECRET_TEXT or vb == SECRET_TEXT:
                da, db = (old_secrets.get(urn) or {}).get(path), (new_secrets.get(urn) or {}).get(path)
                if va != vb or (comparable and da != db):  # secret <-> plain, or a different digest
                    paths.append({"path": path, "secret": True})
            elif va != vb:
                paths.append({"path": path, "before": va, "after": vb})
        if paths:
            changes.append({"action": "update", "urn": urn, "type": new[urn]["type"], "name": new[urn]["name"],
                            "paths": paths})
    services = []
    so, sn = (before.get("outputs") or {}).get("services") or {}, (after.get("outputs") or {}).get("services") or {}
    for key in sorted(set(so) | set(sn)):
        x, y = so.get(key) or {}, sn.get(key) or {}
        row = {"service": key,
               "revision": {"before": x.get("candidateRevision"), "after": y.get("candidateRevision")},
               "stable": {"before": x.get("stableRevision"), "after": y.get("stableRevision")},
               "traffic": {"before": x.get("traffic"), "after": y.get("traffic")}}
        row["changed"] = any(v["before"] != v["after"] for k, v in row.items() if isinstance(v, dict))
        services.append(row)
    # mocks never replace: which updates replace, what a delete-before-replace deletes first, and which
    # replacement or delete of a stateful resource no allowance covers (infra/plan/replace.py)
    refused = classify(changes, before, after)
    vo = {(v["policy"], v.get("urn", ""), v["message"]) for v in (before.get("policy") or {}).get("violations", [])}
    vn = {(v["policy"], v.get("urn", ""), v["message"]) for v in (after.get("policy") or {}).get("violations", [])}
    return {
        "stack": after.get("stack"),
        "secretsCompared": comparable,
        "summary": {a: sum(1 for c in changes if c["action"] == a) for a in ("create", "update", "replace", "delete")},
        "resources": changes,
        "refused": refused,
        "services": services,
        "policy": {"new": [dict(zip(("policy", "urn", "message"), v)) for v in sorted(vn - vo)],
                   "resolved": [dict(zip(("policy", "urn", "message"), v)) for v in sorted(vo - vn)]},
    }


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def _pair(a: Any, b: Any) -> str:
    """`before -> after`; two long strings are shown from a little before where they start to differ."""
    if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) > 80:
        p = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        start = max(0, p - 20)
        cut = lambda t: ("..." if start else "") + t[start:start + 70] + ("..." if len(t) > start + 70 else "")  # noqa: E731
        return f"{cut(a)} -> {cut(b)}"
    return f"{_short(a)} -> {_short(b)}"


def _traffic(table) -> str:
    if not table:
        return "(none)"
    return ", ".join(f"{t['percent']} % {t['tag']} {t['revision']}" for t in table)


def render_diff(d: dict, against: str) -> str:
    s = d["summary"]
    lines = [f"Plan diff of {d['stack']} against {against}: {s['create']} to create, {s['update']} to update, "
             f"{s.get('replace', 0)} to replace, {s['delete']} to delete", ""]
    sign = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}
    for c in d["resources"]:
        how = ""
        if c["action"] == "replace":
            sign_ = "-+" if c.get("deleteBeforeReplace") else "+-"
            how = "  (delete before replace)" if c.get("deleteBeforeReplace") else "  (replace)"
            if c.get("replacedBy"):
                how = f"  (deleted first, recreated after: it refers to {', '.join(u.rsplit('::', 1)[-1] for u in c['replacedBy'])})"
        else:
            sign_ = sign[c["action"]]
        lines.append(f"{sign_} {c['type']}  {c['name']}{how}")
        if c.get("reasons"):
            lines.append(f"    replaced because: {', '.join(c['reasons'])}")
        for p in c.get("paths", []):
            if p.get("secret"):
                lines.append(f"    {p['path']}: changed (secret)")
            else:
                lines.append(f"    {p['path']}: {_pair(p['before'], p['after'])}")
    if not d["resources"]:
        lines.append("  no resource changes")
    if not d.get("secretsCompared", True):
        lines.append("  (secret values not compared: the other plan has no secret digests)")
    if d.get("refused"):
        lines += ["", f"Refused: {len(d['refused'])} resource(s) holding data would be destroyed, and no "
                      "netra:allowReplace names them (docs/data-safety.md):"]
        for r in d["refused"]:
            lines.append(f"  {r['action']} {r['resource']}: {'; '.join(r['because'])}")
        lines.append("  to allow it, add to the stack config: netra:allowReplace: "
                     + json.dumps([{"resource": r["resource"], "reason": "<why the data may go>"} for r in d["refused"]]))
    lines += ["", "Services (revision, traffic):"]
    for row in d["services"]:
        mark = "~" if row["changed"] else " "
        rev = row["revision"]
        if rev["before"] is None:
            lines.append(f"{mark} {row['service']}: new service, candidate {rev['after']} (first deploy)")
        elif rev["after"] is None:
            lines.append(f"{mark} {row['service']}: removed (was candidate {rev['before']})")
        elif rev["before"] != rev["after"]:
            lines.append(f"{mark} {row['service']}: candidate {rev['before']} -> {rev['after']}")
        else:
            lines.append(f"{mark} {row['service']}: candidate {rev['after']} (unchanged)")
        if row["stable"]["before"] != row["stable"]["after"]:
            lines.append(f"    stable: {row['stable']['before'] or '(none)'} -> {row['stable']['after'] or '(none)'}")
        if row["traffic"]["before"] != row["traffic"]["after"]:
            lines.append(f"    traffic before: {_traffic(row['traffic']['before'])}")
            lines.append(f"    traffic after:  {_traffic(row['traffic']['after'])}")
    pol = d["policy"]
    if pol["new"] or pol["resolved"]:
        lines += ["", "Policy:"]
        lines += [f"  new [{v['policy']}] {v['message']}" for v in pol["new"]]
        lines += [f"  resolved [{v['policy']}] {v['message']}" for v in pol["resolved"]]
    return "\n".join(lines) + "\n"


def load_against(against: str, stack: str, root: Path) -> dict:
    """The plan document to compare with: a plan JSON file, or the plan of a git ref (its tree exported
    to a temporary directory and planned there with this interpreter)."""
    path = Path(against)
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise AgainstError(f"--against {against}: not a plan JSON file ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
            raise AgainstError(f"--against {against}: not a plan JSON document (`plan --json` output)")
        return doc
    ref = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}"], cwd=root,
                         capture_output=True, text=True)
    if ref.returncode != 0:
        raise AgainstError(f"--against {against!r}: neither a plan JSON file nor a git ref of this repository")
    commit = ref.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="netra-plan-") as tmp:
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=root, capture_output=True)
        if archive.returncode != 0:
            raise AgainstError(f"--against {against}: git archive failed: {archive.stderr.decode()[:200]}")
        tar_path = Path(tmp) / "tree.tar"
        tar_path.write_bytes(archive.stdout)
        with tarfile.open(tar_path) as tar:
            tar.extractall(Path(tmp) / "tree", filter="data")
        tree = Path(tmp) / "tree"
        r = subprocess.run([sys.executable, "-m", "infra", "plan", "--stack", stack, "--json"], cwd=tree,
                           capture_output=True, text=True, timeout=600)
    try:  # file assets name absolute paths: the export's are the checkout's
        doc = json.loads(r.stdout.replace(json.dumps(str(tree))[1:-1], json.dumps(str(root))[1:-1]))
    except ValueError:
        doc = None
    if r.returncode not in (0, 1) or not isinstance(doc, dict) or "resources" not in doc:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise AgainstError(f"--against {against}: the plan of {commit[:12]} failed (exit {r.returncode}): {last}")
    return doc
