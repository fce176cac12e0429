"""`python -m infra bake --stack S`: the bake window after a release (seed 000, "48-hour validation period").

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
import sys
import time
from pathlib import Path
from typing import Optional

from infra import release as rel

EXIT_CLEAN, EXIT_TRIGGERED, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 4


def _parse_time(value) -> Optional[float]:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def window_seconds(record: dict, default_hours: float) -> float:
    """The length of a bake window: from its record (until - started), else the configured hours."""
    start, until = _parse_time(record.get("started")), _parse_time(record.get("until"))
    if start is not None and until is not None and until > start:
        return until - start
    return default_hours * 3600.0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bake", help="watch the bake window after a release: absolute triggers on the released revision, "
                     "one-step rollback to `previous`, close windows that are over",
        description="Close bake windows that are over (the `previous` tag is dropped), watch the open ones for "
                    "--max-duration with the gate's absolute triggers, and roll a service back to its previous "
                    "revision when one fires (netra:verification.bake.autoRollback). Run it hourly. "
                    "Exit 0 clean, 1 a trigger fired, 2 usage, 4 failed.")
    p.add_argument("--stack", help="stack name")
    p.add_argument("--service", help="watch only this service key (default: every baking service)")
    p.add_argument("--interval", default="60", metavar="SECONDS", help="observation interval, 1..3600 s (default 60)")
    p.add_argument("--max-duration", default="3300", metavar="SECONDS",
                   help="how long this run watches (default 3300: an hourly job with time to spare)")
    p.add_argument("--lag", default="180", metavar="SECONDS", help="metric ingestion delay waited per interval (default 180)")
    p.add_argument("--alpha", default="0.01", metavar="P",
                   help="bound on the false-rollback probability of a whole bake window (default 0.01)")
    p.add_argument("--history", default="1800", metavar="SECONDS",
                   help="the revision's own history read to calibrate the 5xx test (default 1800; 0: none)")
    p.add_argument("--monitoring-endpoint", metavar="HOST:PORT",
                   help="insecure gRPC Cloud Monitoring endpoint with anonymous credentials (tests, emulators)")
    p.add_argument("--dry-run", action="store_true", help="say what is baking and what would be closed; change nothing")
    p.set_defaults(func=run_bake)


def run_bake(args, *, backend=None, client=None, clock=time.time, sleep=time.sleep, notifier=None, log=None,
             lock_dir: Optional[Path] = None, out=None) -> int:
    from infra import emergency
    from infra.canary.api import UsageError, _typed_stack, observation_options, quiet_google_warnings, trigger_limits
    from infra.canary.stack import PROJECT_ROOT
    from infra.config.services import unknown_service
    from infra.notify import Notifier
    from infra.rollout import LockBusy, StackLock, _stack_raw_config

    quiet_google_warnings()
    out = out or sys.stdout
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    if not args.stack:
        print("infra bake: error: --stack is required (a stack name such as prod or staging)", file=sys.stderr)
        return EXIT_USAGE
    try:
        options, alpha, endpoint = observation_options(args, max_duration_limit=86400)
        cfg = _typed_stack(args.stack)
        limits = trigger_limits(cfg)
        if args.service is not None and args.service not in cfg.services:
            raise UsageError(f"--service: {unknown_service(args.service, cfg.services)}")
    except UsageError as exc:
        print(f"infra bake: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if backend is None and not args.dry_run:
        try:
            backend = emergency.open_backend(args.stack, log)
        except Exception as exc:  # no Pulumi CLI, no stack, no login
            text = str(exc).strip()
            print(f"infra bake: error: cannot open stack {args.stack!r} with the Automation API: "
                  f"{text.splitlines()[-1] if text else type(exc).__name__}", file=sys.stderr)
            return EXIT_FAILED
    notifier = notifier or Notifier.from_env(args.stack)
    try:
        with StackLock(args.stack, lock_dir or PROJECT_ROOT / ".netra"):
            try:
                config = backend.read() if backend is not None else _stack_raw_config(args.stack)
            except Exception as exc:  # noqa: BLE001 - the stack's config cannot be read: nothing judged
                print(f"infra bake: error: cannot read the config of stack {args.stack!r}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                return EXIT_FAILED
            bakes = emergency.baking(config)
            if args.service is not None:
                bakes = {k: b for k, b in bakes.items() if k == args.service}
            if not bakes:
                say("no bake window is open" + (f" for {args.service}" if args.service else ""))
                return EXIT_CLEAN
            now = clock()
            over = sorted(k for k, b in bakes.items() if (_parse_time(b.get("until")) or 0) <= now)
            watching = {k: b for k, b in bakes.items() if k not in over}
            if args.dry_run:
                for k in over:
                    say(f"would close the bake window of {k} (ended {bakes[k].get('until')}): drop the `previous` tag "
                        f"{bakes[k]['previous']}")
                for k, b in sorted(watching.items()):
                    say(f"{k}: {b['revision']} bakes until {b.get('until')}; `rollback` returns to {b['previous']}")
                return EXIT_CLEAN
            if over:
                code = _close(backend, config, over, notifier, say)
                if code:
                    return code
            if not watching:
                return EXIT_CLEAN
            remaining = min((_parse_time(b.get("until")) or now) for b in watching.values()) - now
            duration = min(options.max_duration_s, remaining)
            if duration < options.interval_s:
                say(f"the bake window of {', '.join(sorted(watching))} ends in {remaining:.0f} s (< one interval): "
                    f"nothing to watch; the next run closes it")
                return EXIT_CLEAN
            window = max(window_seconds(b, cfg.verification.bake.hours) for b in watching.values())
            run_alpha = alpha * duration / window
            verdicts = _watch(cfg, watching, limits, options, duration, run_alpha, endpoint, client, clock, sleep, log)
            return _act(args.stack, backend, watching, verdicts, cfg.verification.bake.auto_rollback, notifier, say)
    except LockBusy as exc:
        print(f"infra bake: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _close(backend, config: dict, keys: list[str], notifier, say) -> int:
    """Close the windows that are over: the records go, the `pulumi up` drops the `previous` tags."""
    from infra.rollout import RELEASE_KEY, read_release_doc

    doc = read_release_doc(config)
    doc["bake"] = {k: b for k, b in (doc.get("bake") or {}).items() if k not in keys}
    try:
        backend.write({RELEASE_KEY: doc})
        backend.up(f"netra bake: window over for {', '.join(keys)}; the previous tag is dropped")
    except Exception as exc:  # noqa: BLE001 - a failed config write (CLI error) or up: said, exit 4
        say(f"not done: closing the bake window of {', '.join(keys)}: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    notifier.emit("bake", f"bake window over for {', '.join(keys)}: the previous tag is dropped", services=keys)
    say(f"done: the bake window of {', '.join(keys)} is over; the previous tag is dropped")
    return EXIT_CLEAN


def _watch(cfg, watching: dict, limits: dict, options, duration: float, alpha: float, endpoint, client, clock, sleep,
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


def _act(stack: str, backend, watching: dict, verdicts: dict, auto_rollback: bool, notifier, say) -> int:
    """Report each service's verdict; roll the triggered ones back to `previous` (one write, one up)."""
    from infra import emergency
    from infra.rollout import read_release_doc

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
        config = backend.read()
        services = [s for s in emergency.stable_revisions(config, stack)[0] if s.key in fired and s.baked]
        values = emergency.bake_rollback_values(read_release_doc(config), services, "gate",
                                                rel.evidence_digest({k: doc[k] for k in fired}))
        try:
            backend.write(values)
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
