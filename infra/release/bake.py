"""The bake window after a release (seed 000, "48-hour validation period").

At finalize the rollout records, per released service, a bake window in `netra:release.bake`
(`netra:verification.bake.hours`, default 48): the stable revision before the release stays in the
traffic block at 0 % under the `previous` tag, so `python -m infra rollback` returns to it in one step
(stableRevision := previous, one `pulumi up`, or `--direct`). This command, run periodically (hourly from
`.github/workflows/bake.yml`), does what a human on the 48-hour checklist would:

1. a window that is over is closed: the bake record goes, the next `pulumi up` drops the `previous` tag;
2. every open window is watched for `--max-duration` with the gate's absolute triggers on the released
   revision alone (infra/canary/watch.py), at alpha x run / window so the whole window stays below alpha;
3. a trigger rolls that service back to `previous` (`bake.autoRollback`, default true) and pages.

Exit codes: 0 clean (or nothing to watch, or windows closed), 1 a trigger fired (rolled back, or would
have been with autoRollback false), 2 usage, 4 failed (no metrics, no stack, a failed update: nothing
rolled back on missing evidence).
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Optional

from infra.release import model as rel

EXIT_CLEAN, EXIT_TRIGGERED, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 4


def bake_records(release, now: dt.datetime) -> dict[str, dict]:
    """The bake window each released service opens at finalize (seed 000: 48-hour validation): its
    previous stable revision stays tagged `previous` at 0 %. None on a first deploy (nothing before)."""
    if release.bake_hours <= 0:
        return {}
    until = (now + dt.timedelta(hours=release.bake_hours)).isoformat(timespec="seconds")
    return {t.key: {"revision": t.candidate, "previous": t.stable, "until": until,
                    "started": now.isoformat(timespec="seconds")}
            for t in release.targets if t.stable is not None and t.stable != t.candidate}


def parse_time(value) -> Optional[float]:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def window_seconds(record: dict, default_hours: float) -> float:
    """The length of a bake window: from its record (until - started), else the configured hours."""
    start, until = parse_time(record.get("started")), parse_time(record.get("until"))
    if start is not None and until is not None and until > start:
        return until - start
    return default_hours * 3600.0


def close_windows(backend, keys: list[str], notifier, say, fence) -> int:
    """Close the windows that are over: the records go (one ledger write), the `pulumi up` drops the
    `previous` tags. `fence` (lock.FenceWatch) stops it when a rollback moved the fence."""
    from infra.release.view import commit

    def close(doc: dict) -> None:
        fence.check(doc)
        doc["release"]["bake"] = {k: b for k, b in (doc["release"].get("bake") or {}).items() if k not in keys}

    try:
        commit(backend, "bake", f"bake window over for {', '.join(keys)}", close)
        fence.check()
        backend.up(f"netra bake: window over for {', '.join(keys)}; the previous tag is dropped")
    except Exception as exc:  # noqa: BLE001 - a failed config write (CLI error) or up: said, exit 4
        say(f"not done: closing the bake window of {', '.join(keys)}: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    notifier.emit("bake", f"bake window over for {', '.join(keys)}: the previous tag is dropped", services=keys)
    say(f"done: the bake window of {', '.join(keys)} is over; the previous tag is dropped")
    return EXIT_CLEAN


def watch(cfg, watching: dict, limits: dict, options, duration: float, alpha: float, endpoint, client, clock, sleep,
           log) -> dict:
    from dataclasses import replace

    from infra.canary.judge import JudgeConfig
    from infra.canary.monitoring import MonitoringSource, Target, make_client
    from infra.canary.watch import run_watch
    from infra.config import service_name

    if client is None:
        client = make_client(endpoint)
    # the watched revision is both roles of the source: its own history calibrates the 5xx test
    sources = {k: MonitoringSource(client, Target(cfg.project, service_name(k, cfg.environment), b["revision"],
                                                  b["revision"]))
               for k, b in watching.items()}
    names = ", ".join(f"{k} {b['revision']}" for k, b in sorted(watching.items()))
    log(f"watching {names} for {duration:.0f} s "
        f"(alpha {alpha:.2g} for this run)")
    return run_watch(sources, JudgeConfig(**limits), replace(options, max_duration_s=duration), alpha,
                     clock=clock, sleep=sleep, progress=log)


def act(stack: str, backend, watching: dict, verdicts: dict, auto_rollback: bool, notifier, say, fence, clock) -> int:
    """Report each service's verdict; roll the triggered ones back to `previous` (one write, one up)."""
    from infra.release import emergency

    doc = {k: v.as_dict() for k, v in verdicts.items()}
    with open(f"bake-verdict-{stack}.json", "w") as f:
        json.dump(doc, f, indent=2)
    for k, v in sorted(verdicts.items()):
        say(f"{k} {watching[k]['revision']}: {v.reason}")
    fired = sorted(k for k, v in verdicts.items() if v.decision == "rollback")
    errors = sorted(k for k, v in verdicts.items() if v.decision == "error")
    if fired:
        why = "; ".join(f"{k}: {verdicts[k].reason}" for k in fired)
        if not auto_rollback:
            notifier.emit("bake", f"rollback trigger during the bake (autoRollback false, not rolled back): {why}",
                          services=fired)
            say(f"a trigger fired for {', '.join(fired)}; netra:verification.bake.autoRollback is false: roll back "
                f"with `python -m infra rollback --stack {stack}` if it is the release")
            return EXIT_TRIGGERED
        from infra.release.view import render

        evidence = rel.evidence_digest({k: doc[k] for k in fired})
        base = backend.read()

        def rollback(ledger_doc: dict):
            fence.check(ledger_doc)
            return emergency.fence(ledger_doc, base, stack, "gate", f"bake trigger: {why}", clock(), evidence,
                                   only=set(fired))

        try:
            snap, fenced = backend.ledger.update(rollback, "bake", f"bake rollback of {', '.join(fired)}")
            fence.moved_by_us(fenced.fence)
            services = [s for s in fenced.services if s.baked]
            render(backend, snap)
            backend.up(f"netra bake: rollback of {', '.join(fired)} to the previous revision")
        except Exception as exc:  # noqa: BLE001 - a failed config write (CLI error) or up: said, exit 4
            notifier.emit("failure", f"bake rollback of {', '.join(fired)} FAILED: {exc}", services=fired)
            say(f"not done: rollback to the previous revision FAILED ({exc}): run `python -m infra rollback --stack "
                f"{stack} --direct`")
            return EXIT_FAILED
        notifier.emit("rollback", f"bake: {', '.join(f'{s.key} back to {s.stable}' for s in services)} ({why})",
                      services=fired)
        for s in services:
            say(f"done: {s.key}: {s.stable} serves 100 % again; {s.baked} rejected")
        return EXIT_TRIGGERED
    if errors:
        notifier.emit("failure", f"bake watch could not judge {', '.join(errors)}: "
                                 + "; ".join(verdicts[k].reason for k in errors), services=errors)
        return EXIT_FAILED
    return EXIT_CLEAN
