"""`python -m infra rollback --stack S [--direct]`: the emergency rollback that always works.

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

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

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
    from infra.rollout import _decode, read_release_doc

    services = _decode(config.get("netra:services"))
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
    from infra.rollout import _decode

    problems = []
    services = _decode(config.get("netra:services"))
    if not isinstance(services, dict) or not services:
        return [], "", "", ["netra:services: no services in the stack config, nothing to roll back"]
    env = _decode(config.get("netra:environment")) or stack
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
    return out, str(_decode(config.get("gcp:project")) or ""), str(_decode(config.get("gcp:region")) or "us-central1"), problems


def bake_rollback_values(doc: dict, services: list[Stable], by: str, evidence: str) -> dict:
    """Config writes that return baking services to `previous` in one step: stableRevision := previous,
    the bake record closed, and the released revision rejected (it never climbs back by itself; the
    program deploys it at 0 % beside the restored stable until a new approval or a new candidate).
    `doc` (netra:release) is updated in place."""
    from infra.rollout import RELEASE_KEY, _now

    values: dict[str, Any] = {}
    for s in services:
        if s.baked is None:
            continue
        values[f"netra:services.{s.key}.stableRevision"] = s.stable
        (doc.get("bake") or {}).pop(s.key, None)
        doc["approvals"] = {**doc.get("approvals", {}), s.key: {
            "revision": s.baked, "stage": 100, "by": by, "evidence": evidence, "at": _now(), "rejected": True}}
    if values:
        values[RELEASE_KEY] = doc
    return values


def reconcile_values(config: dict, services: list[Stable], by: str = "operator:unknown",
                     evidence: str = "") -> tuple[dict, tuple[str, ...]]:
    """Config writes that make the stack ask for what the rollback did: stage 0, no overrides, a running
    rollout rejected, baking services back on `previous`."""
    from infra import release as rel
    from infra.rollout import RELEASE_KEY, _decode, read_release_doc

    values: dict[str, Any] = {"netra:canaryPercent": 0}
    raw = _decode(config.get("netra:services")) or {}
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
    from infra.rollout import OperationFailed, wait_run_operation

    name = f"projects/{project}/locations/{region}/services/{svc.service_name}"
    body = {"traffic": [{"type": REVISION_TRAFFIC, "revision": svc.stable, "percent": 100, "tag": "stable"}]}
    r = session.patch(f"{endpoint}/v2/{name}", params={"updateMask": "traffic"}, json=body, timeout=30)
    if r.status_code >= 300:
        raise OperationFailed(f"PATCH {name} returned HTTP {r.status_code}: {r.text[:200]}")
    wait_run_operation(session, f"{endpoint}/v2/", r.json(), f"traffic update of {name}",
                       timeout_s=timeout_s, poll_s=poll_s, sleep=sleep)


def _bake_note(s: Stable) -> str:
    return f" (bake window: back to the previous revision; {s.baked} rejected)" if s.baked else ""


def _release_note(config: dict, services: list[Stable]) -> str:
    from infra.rollout import read_release_doc

    doc = read_release_doc(config)
    notes = ["the rollout in progress marked rejected"] if (doc.get("rollout") or {}) else []
    if (doc.get("flagRamp") or {}).get("flag"):
        notes.append(f"the ramp of flag {doc['flagRamp']['flag']} marked rejected (its percent 0)")
    notes += [f"{s.key}.stableRevision := {s.stable}, its bake closed" for s in services if s.baked]
    return ", ".join(notes)


def _login(name: str) -> str:
    """A login usable in an approval record's `operator:<who>` (letters, digits, . _ @ -)."""
    import re

    from infra.config.release import LOGIN_CHARS

    return re.sub(rf"[^{LOGIN_CHARS}]", "-", name)[:64] or "unknown"


def register(subparsers) -> None:
    r = subparsers.add_parser(
        "rollback", help="emergency rollback: the stable revisions take 100 % (pulumi up, or --direct)",
        description="Needs only the services' stableRevision. Stage 0 for every service, overrides removed, a "
                    "rollout in progress marked rejected, one pulumi up; --direct sets traffic through the Cloud "
                    "Run Admin API first. Exit 0 done, 2 usage, 4 something not done (listed).")
    r.add_argument("--stack", help="stack name")
    r.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    r.add_argument("--direct", action="store_true",
                   help="set traffic with the Cloud Run Admin API (when pulumi up is broken), then reconcile config")
    r.add_argument("--api-endpoint", default=ADMIN_API, metavar="URL",
                   help="Cloud Run Admin API base URL (default https://run.googleapis.com; http://127.0.0.1:PORT for "
                        "tests, unauthenticated)")
    r.set_defaults(func=run_rollback)


def open_backend(stack: str, log):
    from infra.canary.stack import PROJECT_ROOT
    from infra.plan import POLICY_DIR, policy_config_file
    from infra.rollout import AutomationBackend, select_stack

    return AutomationBackend(select_stack(stack), str(PROJECT_ROOT / POLICY_DIR), str(policy_config_file(stack)), log=log)


def run_rollback(args, *, backend=None, session=None, sleep=time.sleep, log=None, out=None) -> int:
    from infra.canary.stack import known_stacks
    from infra.rollout import OperationFailed, _stack_raw_config

    out = out or sys.stdout
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    if not args.stack:
        print("infra rollback: error: --stack is required (a stack name such as prod or staging)", file=sys.stderr)
        return EXIT_USAGE
    stacks = known_stacks()
    if backend is None and stacks and args.stack not in stacks:
        print(f"infra rollback: error: --stack: unknown stack {args.stack!r}; allowed: {', '.join(stacks)}", file=sys.stderr)
        return EXIT_USAGE
    if not args.api_endpoint.startswith(("http://", "https://")):
        print(f"infra rollback: error: --api-endpoint must be an http(s) URL, got {args.api_endpoint!r}", file=sys.stderr)
        return EXIT_USAGE
    opened_error = None
    if backend is None and not args.dry_run:
        try:
            backend = open_backend(args.stack, log)
        except Exception as exc:  # Pulumi CLI missing or broken: --direct can still act
            text = str(exc).strip()
            opened_error = text.splitlines()[-1] if text else type(exc).__name__
    try:
        config = backend.read() if backend is not None else _stack_raw_config(args.stack)
    except Exception as exc:
        opened_error = opened_error or f"{type(exc).__name__}: {exc}"
        config = _stack_raw_config(args.stack)
    services, project, region, problems = stable_revisions(config, args.stack)
    if problems:
        for p in problems:
            print(f"infra rollback: error: {p}", file=sys.stderr)
        return EXIT_FAILED
    did, not_done = [], []
    movable = [s for s in services if s.stable]
    for s in services:
        if not s.stable:
            not_done.append(f"{s.key}: NOT rolled back: no stableRevision (first deploy: there is nothing to go back to)")
    import getpass

    values, remove = reconcile_values(config, services, by=f"operator:{_login(getpass.getuser())}")
    if args.dry_run:
        for s in movable:
            say(f"would set {s.service_name} traffic: {s.stable} 100 %" + _bake_note(s)
                + (" (Cloud Run Admin API PATCH)" if args.direct else ""))
        for k, v in values.items():
            say(f"would set config {k} = {v if k != 'netra:release' else '(' + _release_note(config, services) + ')'}")
        for k in remove:
            say(f"would remove config {k}")
        if not args.direct:
            say("would run pulumi up (emergency rollback)")
        for line in not_done:
            say(line)
        return EXIT_DONE
    if args.direct:
        if session is None:
            if args.api_endpoint == ADMIN_API:
                from infra.rollout import authorized_session

                session = authorized_session()
            else:
                import requests

                session = requests.Session()
        for s in movable:
            try:
                patch_traffic(session, args.api_endpoint.rstrip("/"), project, region, s, sleep=sleep)
                did.append(f"{s.key}: {s.service_name} traffic set to {s.stable} 100 % (Cloud Run Admin API){_bake_note(s)}")
            except (OperationFailed, OSError) as exc:
                not_done.append(f"{s.key}: traffic NOT changed: {exc}")
            except Exception as exc:  # requests' errors: connection refused, timeouts
                not_done.append(f"{s.key}: traffic NOT changed: {type(exc).__name__}: {exc}")
    if backend is None and not args.direct:
        not_done.append(f"pulumi up NOT run (cannot open the stack: {opened_error}): traffic NOT changed; retry with --direct")
    if backend is None:
        not_done.append(f"stack config NOT reconciled (cannot open the stack: {opened_error}): run `pulumi config set "
                        f"netra:canaryPercent 0` and remove per-service canaryPercent overrides before the next pulumi up")
    else:
        try:
            backend.write(values, remove)
            did.append("stack config: netra:canaryPercent 0" + (f", removed {', '.join(remove)}" if remove else "")
                       + (f", {_release_note(config, services)}" if "netra:release" in values else ""))
        except Exception as exc:
            not_done.append(f"stack config NOT reconciled: {type(exc).__name__}: {exc}")
            backend = None
        if backend is not None and not args.direct:
            try:
                backend.up("netra emergency rollback: the stable revisions take 100 %")
                did += [f"{s.key}: {s.service_name} serves {s.stable} 100 % (pulumi up){_bake_note(s)}" for s in movable]
            except OperationFailed as exc:
                not_done.append(f"pulumi up FAILED ({exc}): traffic NOT changed; retry with --direct")
    for line in did:
        say(f"done: {line}")
    for line in not_done:
        say(f"not done: {line}")
    return EXIT_FAILED if not_done else EXIT_DONE
