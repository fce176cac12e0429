"""`python -m infra bake --stack S`: the bake window after a release (bake.py says what it does).
Exit codes: 0 clean, 1 a trigger fired, 2 usage, 4 failed."""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Optional

from infra.release import emergency
from infra.release.backends import automation_backend, stack_raw_config
from infra.release.bake import (EXIT_CLEAN, EXIT_FAILED, EXIT_TRIGGERED, EXIT_USAGE, act, close_windows, parse_time,
                                watch, window_seconds)
from infra.release.effects import between_intervals
from infra.release.ledger import LedgerError
from infra.release.lock import DEFAULT_TTL_S, FenceWatch, Lease, LockBusy
from infra.release.state import Superseded
from infra.release.view import current
from infra.release import sandbox


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
    sandbox.add_argument(p)
    p.set_defaults(func=run_bake)


def run_bake(args, *, backend=None, client=None, clock=time.time, sleep=time.sleep, notifier=None, log=None,
             lease_s: Optional[float] = None, out=None) -> int:
    from infra.canary.api import UsageError, _typed_stack, observation_options, quiet_google_warnings, trigger_limits
    from infra.config.services import unknown_service
    from infra.notify import Notifier

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
            backend = automation_backend(args.stack, log)
        except Exception as exc:  # no Pulumi CLI, no stack, no login
            text = str(exc).strip()
            print(f"infra bake: error: cannot open stack {args.stack!r} with the Automation API: "
                  f"{text.splitlines()[-1] if text else type(exc).__name__}", file=sys.stderr)
            return EXIT_FAILED
    notifier = notifier or Notifier.from_env(args.stack)
    try:
        with (Lease(backend.ledger, f"bake {args.stack}", ttl_s=lease_s or DEFAULT_TTL_S, clock=clock,
                    heartbeat=lease_s is None) if backend is not None else contextlib.nullcontext()):
            try:
                config = current(backend)[0] if backend is not None else stack_raw_config(args.stack)
            except Exception as exc:  # noqa: BLE001 - the stack's config cannot be read: nothing judged
                print(f"infra bake: error: cannot read the config of stack {args.stack!r}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                return EXIT_FAILED
            bakes = emergency.bake_records_of(config)
            if args.service is not None:
                bakes = {k: b for k, b in bakes.items() if k == args.service}
            if not bakes:
                say("no bake window is open" + (f" for {args.service}" if args.service else ""))
                return EXIT_CLEAN
            now = clock()
            over = sorted(k for k, b in bakes.items() if (parse_time(b.get("until")) or 0) <= now)
            watching = {k: b for k, b in bakes.items() if k not in over}
            if args.dry_run:
                for k in over:
                    say(f"would close the bake window of {k} (ended {bakes[k].get('until')}): drop the `previous` tag "
                        f"{bakes[k]['previous']}")
                for k, b in sorted(watching.items()):
                    say(f"{k}: {b['revision']} bakes until {b.get('until')}; `rollback` returns to {b['previous']}")
                return EXIT_CLEAN
            fence = FenceWatch(backend.ledger)
            if over:
                code = close_windows(backend, over, notifier, say, fence)
                if code:
                    return code
            if not watching:
                return EXIT_CLEAN
            remaining = min((parse_time(b.get("until")) or now) for b in watching.values()) - now
            duration = min(options.max_duration_s, remaining)
            if duration < options.interval_s:
                say(f"the bake window of {', '.join(sorted(watching))} ends in {remaining:.0f} s (< one interval): "
                    f"nothing to watch; the next run closes it")
                return EXIT_CLEAN
            window = max(window_seconds(b, cfg.verification.bake.hours) for b in watching.values())
            run_alpha = alpha * duration / window
            verdicts = watch(cfg, watching, limits, options, duration, run_alpha, endpoint, client, clock, sleep,
                             between_intervals(log, fence.check))
            fence.check()
            return act(args.stack, backend, watching, verdicts, cfg.verification.bake.auto_rollback, notifier, say,
                       fence, clock)
    except Superseded as stop:
        f = stop.fence
        why = f"superseded: {f.get('by')} rolled back at {f.get('at')} ({f.get('why')}); the bake stopped"
        notifier.emit("superseded", why, by=f.get("by"), at=f.get("at"), fence=f.get("seq"))
        say(why)
        return EXIT_TRIGGERED
    except LockBusy as exc:
        print(f"infra bake: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LedgerError as exc:
        print(f"infra bake: error: {exc}; nothing more was done", file=sys.stderr)
        return EXIT_FAILED
