"""The emergency rollback that always works (`python -m infra rollback --stack S [--direct]`, cli/rollback.py).

It needs nothing but the service names and their `stableRevision`s, read from the raw stack config
(no validation of anything else, so an invalid config -- even the off-ladder canaryPercent it is meant
to fix -- does not stop it). It says, per service, what it did and what it did not do.

- default: `netra:canaryPercent` := 0, every per-service canaryPercent override removed, a rollout in
  progress marked rejected (a restarted rollout finishes the rollback instead of climbing), one `pulumi up`.
- during a bake window (`netra:release.bake`, opened at finalize) a baking service goes back to its
  `previous` revision in the same step: stableRevision := previous, the released revision rejected.
- `--direct`: when `pulumi up` itself is what is broken, PATCH each service's traffic through the Cloud
  Run Admin API v2 (`services.patch?updateMask=traffic`, stable revision 100 %), wait for each operation,
  then reconcile the stack config the same way (so the next `pulumi up` keeps the stable revisions).

Exit codes: 0 everything done, 2 usage, 4 something was not done (listed).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

EXIT_DONE, EXIT_USAGE, EXIT_FAILED = 0, 2, 4
ADMIN_API = "https://run.googleapis.com"
REVISION_TRAFFIC = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


@dataclass(frozen=True)
class Stable:
    key: str
    service_name: str
    stable: Optional[str]  # the revision the rollback gives 100 %
    baked: Optional[str] = None  # during a bake window: the released revision it leaves (stable is `previous`)


def baking(config: dict) -> dict[str, dict]:
    """Service key -> its bake record (netra:release.bake), for the services whose stableRevision is still
    the baked revision, from the raw config (a rollback must work when the rest of it is broken)."""
    from infra.release.state import decode, read_release_doc

    services = decode(config.get("netra:services"))
    records = read_release_doc(config).get("bake")
    if not isinstance(services, dict) or not isinstance(records, dict):
        return {}
    out = {}
    for key, record in records.items():
        svc = services.get(key)
        if (isinstance(record, dict) and isinstance(svc, dict) and isinstance(record.get("previous"), str)
                and record.get("previous") and record.get("revision") == svc.get("stableRevision")):
            out[key] = record
    return out


def stable_revisions(config: dict, stack: str) -> tuple[list[Stable], str, str, list[str]]:
    """(services, project, region, problems) from the raw config: only what a rollback needs. During a
    bake window the rollback target is the `previous` revision."""
    from infra.release.state import decode

    problems = []
    services = decode(config.get("netra:services"))
    if not isinstance(services, dict) or not services:
        return [], "", "", ["netra:services: no services in the stack config, nothing to roll back"]
    env = decode(config.get("netra:environment")) or stack
    bakes = baking(config)
    out = []
    for key in sorted(services):
        svc = services.get(key)
        stable = svc.get("stableRevision") if isinstance(svc, dict) else None
        stable = stable if isinstance(stable, str) and stable else None
        if key in bakes:
            out.append(Stable(key, f"netra-{key}-{env}", bakes[key]["previous"], baked=stable))
        else:
            out.append(Stable(key, f"netra-{key}-{env}", stable))
    return out, str(decode(config.get("gcp:project")) or ""), str(decode(config.get("gcp:region")) or "us-central1"), problems


def bake_rollback_values(doc: dict, services: list[Stable], by: str, evidence: str) -> dict:
    """Config writes that return baking services to `previous` in one step: stableRevision := previous,
    the bake record closed, and the released revision rejected (it never climbs back by itself; the
    program deploys it at 0 % beside the restored stable until a new approval or a new candidate).
    `doc` (netra:release) is updated in place."""
    from infra.release.state import RELEASE_KEY, now

    values: dict[str, Any] = {}
    for s in services:
        if s.baked is None:
            continue
        values[f"netra:services.{s.key}.stableRevision"] = s.stable
        (doc.get("bake") or {}).pop(s.key, None)
        doc["approvals"] = {**doc.get("approvals", {}), s.key: {
            "revision": s.baked, "stage": 100, "by": by, "evidence": evidence, "at": now(), "rejected": True}}
    if values:
        values[RELEASE_KEY] = doc
    return values


def reconcile_values(config: dict, services: list[Stable], by: str = "operator:unknown",
                     evidence: str = "") -> tuple[dict, tuple[str, ...]]:
    """Config writes that make the stack ask for what the rollback did: stage 0, no overrides, a running
    rollout rejected, baking services back on `previous`."""
    from infra.release import model as rel
    from infra.release.state import RELEASE_KEY, decode, read_release_doc

    values: dict[str, Any] = {"netra:canaryPercent": 0}
    raw = decode(config.get("netra:services")) or {}
    remove = tuple(f"netra:services.{s.key}.canaryPercent" for s in services
                   if isinstance(raw.get(s.key), dict) and "canaryPercent" in raw[s.key])
    doc = read_release_doc(config)
    if doc.get("rollout") and not doc["rollout"].get("rejected"):
        doc["rollout"] = {**doc["rollout"], "rejected": "emergency rollback by an operator"}
        values[RELEASE_KEY] = doc
    ramp = doc.get("flagRamp")
    if ramp and ramp.get("flag") and not ramp.get("rejected"):
        # a flag ramping is the newest change: it goes back to 0 % too (`rollout --flag` then closes its journal)
        doc["flagRamp"] = {**ramp, "rejected": "emergency rollback by an operator"}
        values[f"netra:platform.featureFlags.{ramp['flag']}.percent"] = 0
        values[RELEASE_KEY] = doc
    values.update(bake_rollback_values(doc, services, by, evidence or rel.evidence_digest(
        {"emergency rollback": {s.key: s.stable for s in services}, "by": by})))
    return values, remove


def patch_traffic(session, endpoint: str, project: str, region: str, svc: Stable, sleep=time.sleep,
                  timeout_s: float = 300.0, poll_s: float = 2.0) -> None:
    """Stable revision 100 % through the Admin API; waits for the long-running operation."""
    from infra.release.effects import wait_run_operation
    from infra.release.state import OperationFailed

    name = f"projects/{project}/locations/{region}/services/{svc.service_name}"
    body = {"traffic": [{"type": REVISION_TRAFFIC, "revision": svc.stable, "percent": 100, "tag": "stable"}]}
    r = session.patch(f"{endpoint}/v2/{name}", params={"updateMask": "traffic"}, json=body, timeout=30)
    if r.status_code >= 300:
        raise OperationFailed(f"PATCH {name} returned HTTP {r.status_code}: {r.text[:200]}")
    wait_run_operation(session, f"{endpoint}/v2/", r.json(), f"traffic update of {name}",
                       timeout_s=timeout_s, poll_s=poll_s, sleep=sleep)


def bake_note(s: Stable) -> str:
    return f" (bake window: back to the previous revision; {s.baked} rejected)" if s.baked else ""


def release_note(config: dict, services: list[Stable]) -> str:
    from infra.release.state import read_release_doc

    doc = read_release_doc(config)
    notes = ["the rollout in progress marked rejected"] if (doc.get("rollout") or {}) else []
    if (doc.get("flagRamp") or {}).get("flag"):
        notes.append(f"the ramp of flag {doc['flagRamp']['flag']} marked rejected (its percent 0)")
    notes += [f"{s.key}.stableRevision := {s.stable}, its bake closed" for s in services if s.baked]
    return ", ".join(notes)


def login(name: str) -> str:
    """A login usable in an approval record's `operator:<who>` (letters, digits, . _ @ -)."""
    import re

    from infra.config.release import LOGIN_CHARS

    return re.sub(rf"[^{LOGIN_CHARS}]", "-", name)[:64] or "unknown"
