"""The emergency rollback that always works (`python -m infra rollback --stack S [--direct]`, cli/rollback.py).

A rollback always wins: its first act is one ledger write (`fence`) that moves the rollback fence and
records every decision below; it never waits for the lease. Every rollout, flag ramp and bake looks at the
ledger before each effect and stops when the fence moved.

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


def _until(record: dict) -> float:
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(str(record.get("until")))
    except ValueError:
        return float("inf")  # unreadable end: still open (the typed config refuses it anyway)
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def bake_records_of(config: dict) -> dict[str, dict]:
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


def baking(config: dict, now_s: Optional[float] = None) -> dict[str, dict]:
    """The bake windows still open at `now_s` (default: now): a window past its end is over even before
    `bake` closes it, and a rollback never sends a service back to its `previous` revision for it."""
    now_s = time.time() if now_s is None else now_s
    return {k: r for k, r in bake_records_of(config).items() if _until(r) > now_s}


def stable_revisions(config: dict, stack: str, now_s: Optional[float] = None) -> tuple[list[Stable], str, str, list[str]]:
    """(services, project, region, problems) from the raw config: only what a rollback needs. During a
    bake window the rollback target is the `previous` revision."""
    from infra.release.state import decode

    problems = []
    services = decode(config.get("netra:services"))
    if not isinstance(services, dict) or not services:
        return [], "", "", ["netra:services: no services in the stack config, nothing to roll back"]
    env = decode(config.get("netra:environment")) or stack
    bakes = baking(config, now_s)
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


@dataclass(frozen=True)
class Fenced:
    """What one rollback decided, in the ledger write that also moved the fence."""

    services: list[Stable]
    fence: dict
    notes: list[str]
    values: dict  # the config the program renders, as changed (path -> value, None: removed)


def fence(doc: dict, config: dict, stack: str, by: str, why: str, now_s: float, evidence: str = "",
          only: Optional[set[str]] = None) -> Fenced:
    """Into the fresh ledger document `doc`, in ONE compare-and-swap write: the rollback fence (seq + 1, who,
    when, why, the revisions it rejects) and every release decision of a rollback:
    - the stage 0 (netra:canaryPercent) and no per-service override;
    - a rollout in progress marked rejected, and its candidates' approvals rejected (they never climb again
      without a new, explicit release: `approve` or a new candidate);
    - a flag ramping: back to 0 %, its ramp rejected;
    - baking services back on `previous` (stableRevision := previous, the released revision rejected);
      windows already over are closed, never applied.
    `config` is the stack config the ledger's overlay applies to. `only`: the service keys of a bake rollback
    (no stage change, no rollout touched). Everything else running sees the fence and stops."""
    from infra.release import model as rel
    from infra.release.ledger import Snapshot
    from infra.release.state import decode, now
    from infra.release.view import overlay_of

    view = overlay_of(config, Snapshot(doc, 0))
    services, _, _, _ = stable_revisions(view, stack, now_s)
    if only is not None:
        services = [s for s in services if s.key in only]
    release, values = doc["release"], doc["config"]
    at = now()
    evidence = evidence or rel.evidence_digest({"rollback": {s.key: s.stable for s in services}, "by": by, "at": at})
    rejected: dict[str, str] = {}
    notes: list[str] = []
    approvals = dict(release.get("approvals") or {})
    journal = release.get("rollout")
    if only is None:
        values["netra:canaryPercent"] = 0
        raw = decode(view.get("netra:services")) or {}
        for s in services:
            if isinstance(raw.get(s.key), dict) and "canaryPercent" in raw[s.key]:
                values[f"netra:services.{s.key}.canaryPercent"] = None
        if journal and not journal.get("rejected"):
            release["rollout"] = {**journal, "rejected": f"rollback by {by}: {why}"}
            for key, candidate in (journal.get("candidates") or {}).items():
                approvals[key] = {"revision": candidate, "stage": max(int(journal.get("live", 0)), 0), "by": by,
                                  "evidence": evidence, "at": at, "rejected": True}
                rejected[key] = candidate
            notes.append("the rollout in progress marked rejected")
        ramp = release.get("flagRamp")
        if ramp and ramp.get("flag") and not ramp.get("rejected"):
            # a flag ramping is the newest change: it goes back to 0 % too (`rollout --flag` then closes its journal)
            release["flagRamp"] = {**ramp, "rejected": f"rollback by {by}: {why}"}
            values[f"netra:platform.featureFlags.{ramp['flag']}.percent"] = 0
            rejected[f"flag:{ramp['flag']}"] = "on"
            notes.append(f"the ramp of flag {ramp['flag']} marked rejected (its percent 0)")
    bakes = dict(release.get("bake") or {})
    for s in services:
        if s.baked is None:
            continue
        values[f"netra:services.{s.key}.stableRevision"] = s.stable
        bakes.pop(s.key, None)
        approvals[s.key] = {"revision": s.baked, "stage": 100, "by": by, "evidence": evidence, "at": at,
                            "rejected": True}
        rejected[s.key] = s.baked
        notes.append(f"{s.key}.stableRevision := {s.stable}, its bake closed")
    over = sorted(k for k in bake_records_of(view) if k not in baking(view, now_s) and (only is None or k in only))
    for k in over:
        bakes.pop(k, None)
    if over:
        notes.append(f"the bake window of {', '.join(over)} was over: closed, not applied")
    release["bake"] = bakes
    release["approvals"] = approvals
    doc["fence"] = {"seq": int((doc.get("fence") or {}).get("seq", 0)) + 1, "by": by, "at": at, "why": why,
                    "rejected": rejected}
    return Fenced(services, doc["fence"], notes, dict(values))


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


def login(name: str) -> str:
    """A login usable in an approval record's `operator:<who>` (letters, digits, . _ @ -)."""
    import re

    from infra.config.release import LOGIN_CHARS

    return re.sub(rf"[^{LOGIN_CHARS}]", "-", name)[:64] or "unknown"
