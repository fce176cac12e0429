"""`python -m infra rollback --stack S [--direct]`: the emergency rollback that always works (emergency.py
says what it does). Exit codes: 0 everything done, 2 usage, 4 something was not done (listed)."""
from __future__ import annotations

import copy
import sys
import time

from infra.release.backends import automation_backend, stack_ledger, stack_raw_config
from infra.release.emergency import (ADMIN_API, EXIT_DONE, EXIT_FAILED, EXIT_USAGE, bake_note, fence, login,
                                     patch_traffic, stable_revisions)
from infra.release.ledger import LedgerError
from infra.release.state import OperationFailed
from infra.release.view import adopt, render
from infra.release import sandbox


def register(subparsers) -> None:
    r = subparsers.add_parser(
        "rollback", help="emergency rollback: the stable revisions take 100 %% (pulumi up, or --direct)",
        description="Needs only the services' stableRevision. First writes the rollback fence to the release ledger "
                    "(never waits for a running rollout: it stops at its next look at the ledger): stage 0 for every "
                    "service, overrides removed, a rollout in progress and its candidates rejected, baking services "
                    "back on their previous revision; then one pulumi up, or with --direct the Cloud Run Admin API. "
                    "Exit 0 done, 2 usage, 4 something not done (listed).")
    r.add_argument("--stack", help="stack name")
    r.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    r.add_argument("--direct", action="store_true",
                   help="set traffic with the Cloud Run Admin API (when pulumi up is broken), then reconcile config")
    r.add_argument("--api-endpoint", default=ADMIN_API, metavar="URL",
                   help="Cloud Run Admin API base URL (default https://run.googleapis.com; http://127.0.0.1:PORT for "
                        "tests, unauthenticated)")
    sandbox.add_argument(r)
    r.set_defaults(func=run_rollback)


def run_rollback(args, *, backend=None, session=None, sleep=time.sleep, log=None, out=None) -> int:
    from infra.canary.stack import known_stacks

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
    import getpass

    by = f"operator:{login(getpass.getuser())}"
    why = "emergency rollback (python -m infra rollback" + (" --direct)" if args.direct else ")")
    opened_error = None
    if backend is None and not args.dry_run:
        try:
            backend = automation_backend(args.stack, log)
        except Exception as exc:  # Pulumi CLI missing or broken: --direct can still act
            text = str(exc).strip()
            opened_error = text.splitlines()[-1] if text else type(exc).__name__
    try:
        config = backend.read() if backend is not None else stack_raw_config(args.stack)
    except Exception as exc:
        opened_error = opened_error or f"{type(exc).__name__}: {exc}"
        config = stack_raw_config(args.stack)
    ledger, ledger_error = _ledger(args.stack, backend)
    did, not_done = [], []
    # 1. the fence, first: one compare-and-swap of a fresh ledger read, no lease, no waiting
    try:
        if ledger is None or args.dry_run:
            doc = copy.deepcopy(ledger.read().doc) if ledger is not None else adopt(config, args.stack)
            fenced = fence(doc, config, args.stack, by, why, time.time())
            if not args.dry_run:
                not_done.append(f"release ledger NOT written ({ledger_error}): a running rollout is not stopped by it; "
                                f"stop it by hand")
        else:
            snap, fenced = ledger.update(lambda doc: fence(doc, config, args.stack, by, why, time.time()), by,
                                         f"rollback: the fence ({why})")
            did.append(f"release ledger: rollback fence {fenced.fence['seq']} by {by}"
                       + (f"; {', '.join(fenced.notes)}" if fenced.notes else ""))
    except LedgerError as exc:
        ledger = None
        doc = adopt(config, args.stack)
        fenced = fence(doc, config, args.stack, by, why, time.time())
        not_done.append(f"release ledger NOT written ({exc}): a running rollout is not stopped by it; stop it by hand")
    services = fenced.services
    _, project, region, problems = stable_revisions(config, args.stack)
    if problems:
        for p in problems:
            print(f"infra rollback: error: {p}", file=sys.stderr)
        return EXIT_FAILED
    movable = [s for s in services if s.stable]
    for s in services:
        if not s.stable:
            not_done.append(f"{s.key}: NOT rolled back: no stableRevision (first deploy: there is nothing to go back to)")
    if args.dry_run:
        for s in movable:
            say(f"would set {s.service_name} traffic: {s.stable} 100 %" + bake_note(s)
                + (" (Cloud Run Admin API PATCH)" if args.direct else ""))
        say(f"would write the rollback fence {fenced.fence['seq']} to the release ledger"
            + (f" ({', '.join(fenced.notes)})" if fenced.notes else ""))
        for k, v in sorted(fenced.values.items()):
            say(f"would remove config {k}" if v is None else f"would set config {k} = {v}")
        if not args.direct:
            say("would run pulumi up (emergency rollback)")
        for line in not_done:
            say(line)
        return EXIT_DONE
    if args.direct:
        if session is None:
            if args.api_endpoint == ADMIN_API:
                from infra.release.effects import authorized_session

                session = authorized_session()
            else:
                import requests

                session = requests.Session()
        for s in movable:
            try:
                patch_traffic(session, args.api_endpoint.rstrip("/"), project, region, s, sleep=sleep)
                did.append(f"{s.key}: {s.service_name} traffic set to {s.stable} 100 % (Cloud Run Admin API){bake_note(s)}")
            except (OperationFailed, OSError) as exc:
                not_done.append(f"{s.key}: traffic NOT changed: {exc}")
            except Exception as exc:  # requests' errors: connection refused, timeouts
                not_done.append(f"{s.key}: traffic NOT changed: {type(exc).__name__}: {exc}")
    if backend is None and not args.direct:
        not_done.append(f"pulumi up NOT run (cannot open the stack: {opened_error}): traffic NOT changed; retry with --direct")
    if backend is None or ledger is None:
        not_done.append(f"stack config NOT reconciled (cannot open the stack or its ledger: {opened_error or ledger_error}): "
                        f"run `python -m infra rollback --stack {args.stack}` again once it opens, before the next pulumi up")
    else:
        try:
            render(backend, ledger.read())  # the config from the ledger as it is now (the fence included)
            removed = [k for k, v in sorted(fenced.values.items()) if v is None]
            did.append("stack config rendered from the ledger: netra:canaryPercent 0"
                       + (f", removed {', '.join(removed)}" if removed else ""))
        except Exception as exc:
            not_done.append(f"stack config NOT reconciled: {type(exc).__name__}: {exc}")
            backend = None
        if backend is not None and not args.direct:
            try:
                backend.up("netra emergency rollback: the stable revisions take 100 %")
                did += [f"{s.key}: {s.service_name} serves {s.stable} 100 % (pulumi up){bake_note(s)}" for s in movable]
            except OperationFailed as exc:
                not_done.append(f"pulumi up FAILED ({exc}): traffic NOT changed; retry with --direct")
    for line in did:
        say(f"done: {line}")
    for line in not_done:
        say(f"not done: {line}")
    return EXIT_FAILED if not_done else EXIT_DONE


def _ledger(stack: str, backend):
    """(the stack's ledger, None) or (None, why it cannot be opened)."""
    if backend is not None and getattr(backend, "ledger", None) is not None:
        return backend.ledger, None
    try:
        return stack_ledger(stack, lambda: stack_raw_config(stack)), None
    except Exception as exc:  # noqa: BLE001 - no ledger declared, no credentials: said, the rest still acts
        return None, f"{type(exc).__name__}: {exc}"
