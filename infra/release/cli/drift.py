"""`python -m infra drift --stack S`: does Cloud Run serve what the release ledger says? (release/drift.py)

Exit 0 clean, 1 drift (the diff printed, a `drift` event sent: stdout JSON line, webhook, job summary),
2 usage, 4 error (live traffic or the release state unreadable)."""
from __future__ import annotations

import json
import sys

from infra.release.cli.common import err
from infra.release.drift import EXIT_CLEAN, EXIT_DRIFT, EXIT_ERROR, DriftError, check, render
from infra.release.emergency import ADMIN_API
from infra.release import sandbox


def register(subparsers) -> None:
    d = subparsers.add_parser(
        "drift", help="compare each service's live traffic (Cloud Run Admin API) with the release state",
        description="Reads every service's traffic through the Cloud Run Admin API v2 and compares it with what "
                    "the release state renders (the offline plan of the stack). Exit 0 clean, 1 drift (diff and "
                    "a notification event), 2 usage, 4 error.")
    d.add_argument("--stack", help="stack name")
    d.add_argument("--json", action="store_true", help="the report as one JSON object on stdout (no event line)")
    d.add_argument("--api-endpoint", default=ADMIN_API, metavar="URL",
                   help="Cloud Run Admin API base URL (default https://run.googleapis.com; http://127.0.0.1:PORT for "
                        "a local server, unauthenticated)")
    sandbox.add_argument(d)
    d.set_defaults(func=run_drift)


def session_for(endpoint: str):
    """Google credentials for the real API; a plain session for a local server (http://127.0.0.1)."""
    if endpoint == ADMIN_API:
        from infra.release.effects import authorized_session

        return authorized_session()
    import requests

    return requests.Session()


def ledger_outputs(stack: str) -> dict:
    """The plan outputs of the stack config as the release ledger says it must be: the ledger-owned keys
    (stage, stable revisions, the stamped release record) overlaid, exactly what the next `pulumi up` of
    any actor renders. Raises LedgerError (ledger unreadable) or StackError (config refused)."""
    from infra.canary.stack import plan_outputs
    from infra.release.backends import stack_ledger, stack_raw_config
    from infra.release.state import RELEASE_KEY
    from infra.release.view import overlay_of, stamped

    config = stack_raw_config(stack)
    snap = stack_ledger(stack, lambda: config).read()
    view = overlay_of(config, snap)
    owned = {path.split(".", 1)[0] for path in snap.config} | {RELEASE_KEY}
    return plan_outputs(stack, overrides={key: view[key] for key in owned if key in view} | {
        RELEASE_KEY: stamped(snap, view)})


def run_drift(args, *, outputs=None, session=None, notifier=None, out=None) -> int:
    """`drift`. `outputs`: the release state as plan outputs (tests pass their own); by default the
    stack's release ledger rendered by the offline plan."""
    from infra.canary.stack import StackError
    from infra.notify import Notifier
    from infra.release.ledger import LedgerError

    out = out or sys.stdout
    if not args.stack:
        return err("drift", "--stack is required (a stack name such as prod or staging)")
    if not str(args.api_endpoint).startswith(("http://", "https://")):
        return err("drift", f"--api-endpoint must be an http(s) URL, got {args.api_endpoint!r}")
    try:
        outputs = outputs if outputs is not None else ledger_outputs(args.stack)
    except StackError as exc:
        if "unknown stack" in str(exc):
            return err("drift", str(exc))
        print(f"infra drift: error: the release state cannot be rendered: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except LedgerError as exc:
        print(f"infra drift: error: the release ledger cannot be read: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        report = check(args.stack, outputs, session or session_for(args.api_endpoint), args.api_endpoint)
    except DriftError as exc:
        print(f"infra drift: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # no credentials, a broken client: an error, never "clean"
        print(f"infra drift: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report.as_dict(), indent=2), file=out)
    else:
        for line in render(report):
            print(line, file=out)
    if not report.drifted:
        return EXIT_CLEAN
    notifier = notifier or Notifier.from_env(args.stack, out=sys.stderr if args.json else out)
    keys = [s.key for s in report.drifted]
    notifier.emit("drift", f"live traffic differs from the release state: {', '.join(keys)}", services=keys,
                  diff="; ".join(f"{s.key}: {p}" for s in report.drifted for p in s.problems))
    return EXIT_DRIFT
