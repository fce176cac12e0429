"""`python -m infra sandbox init|metrics|traffic`: create an offline release sandbox and drive its local
Cloud Run and Monitoring state (infra/release/sandbox.py, docs/sandbox.md). Exit 0 done, 2 usage, 4 error."""
from __future__ import annotations

import math
import sys

from infra.release.cli.common import err

EXIT_DONE, EXIT_ERROR = 0, 4


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sandbox", help="offline release sandbox: init DIR, set per-revision metrics, change live traffic",
        description="An offline release sandbox: its own stack config, a local Cloud Run Admin API and a local "
                    "Cloud Monitoring. Then run rollout, rollback, approve, status, bake and drift with "
                    "--sandbox DIR. Exit 0 done, 2 usage, 4 error.")
    sub = p.add_subparsers(dest="action", required=True)
    i = sub.add_parser("init", help="create a sandbox from a stack of this repository",
                       description="Copies Pulumi.<stack>.yaml and creates the local Cloud Run state from its plan.")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--stack", help="stack name (prod, staging)")
    i.add_argument("--rps", default="2000", help="requests per second each service serves in the Monitoring emulator "
                                                 "(default 2000)")
    i.add_argument("--force", action="store_true", help="replace an existing sandbox in DIR")
    m = sub.add_parser("metrics", help="how a revision behaves: its 5xx rate and p95 latency",
                       description="Sets what the local Monitoring emulator reports for REV (and how the 0 % "
                                   "verification's revision server answers as it).")
    m.add_argument("dir", metavar="DIR")
    m.add_argument("--service", help="service key or name")
    m.add_argument("--revision", help="revision name (see `status --sandbox DIR`)")
    m.add_argument("--error-rate", help="share of requests answered 5xx, 0..1")
    m.add_argument("--latency-p95-ms", help="p95 latency in milliseconds, > 0")
    t = sub.add_parser("traffic", help="change live traffic out of band (as gcloud run services update-traffic)",
                       description="Sets SVC's live traffic in the local Cloud Run: REV=PCT pairs summing to 100.")
    t.add_argument("dir", metavar="DIR")
    t.add_argument("--service", help="service key or name")
    t.add_argument("--set", action="append", default=[], metavar="REV=PCT", help="a revision and its percent (repeat)")
    p.set_defaults(func=run_sandbox)


def _number(value, flag: str, lo: float, hi: float, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be {what}, got {value!r}") from None
    if not math.isfinite(x) or not lo <= x <= hi:
        raise ValueError(f"{flag} must be {what}, got {value!r}")
    return x


def run_sandbox(args) -> int:
    from infra.release.cloudrun_local import REVISION, TrafficError
    from infra.release.sandbox import Sandbox, SandboxError
    from infra.release.state import OperationFailed

    cmd = f"sandbox {args.action}"
    try:
        if args.action == "init":
            if not args.stack:
                return err(cmd, "--stack is required (a stack name such as prod or staging)")
            rps = _number(args.rps, "--rps", 1, 1e6, "a number of requests per second, 1..1000000")
            box = Sandbox.init(args.dir, args.stack, rps, force=args.force)
            print(f"sandbox {box.dir} of stack {box.stack}:")
            for k, svc in sorted(box.cloud_run.read()["services"].items()):
                print(f"  {k.rsplit('/', 1)[-1]}: " + ", ".join(
                    f"{t['revision']} {t['percent']} %" + (f" ({t['tag']})" if t.get("tag") else "")
                    for t in svc["trafficStatuses"]))
            print(f"next: python -m infra status --sandbox {args.dir}")
            return EXIT_DONE
        box = Sandbox.open(args.dir)
        if not args.service:
            return err(cmd, "--service is required (a service key such as backend)")
        key, svc = box.service(args.service)
        name = key.rsplit("/", 1)[-1]
        if args.action == "metrics":
            if not args.revision:
                return err(cmd, f"--revision is required (one of {', '.join(svc['revisions'])})")
            if args.revision not in svc["revisions"]:
                return err(cmd, f"--revision: {args.revision!r} is not a revision of {name}; allowed: "
                                f"{', '.join(svc['revisions'])}")
            rate = _number(args.error_rate, "--error-rate", 0, 1, "a share between 0 and 1")
            p95 = _number(args.latency_p95_ms, "--latency-p95-ms", 0.001, 600000, "milliseconds between 0 and 600000")
            box.set_metrics(name, args.revision, rate, p95)
            print(f"{name} {args.revision}: error rate {rate:g}, p95 latency {p95:g} ms")
            return EXIT_DONE
        if not args.set:
            return err(cmd, "--set REV=PCT is required (repeat it; the percents sum to 100)")
        traffic = []
        for item in args.set:
            rev, sep, pct = item.partition("=")
            if not sep or not rev or not pct.isdigit():
                return err(cmd, f"--set must be REV=PCT (a revision and a whole percent), got {item!r}")
            traffic.append({"type": REVISION, "revision": rev, "percent": int(pct)})
        try:
            box.cloud_run.set_traffic(key, traffic)
        except TrafficError as exc:
            return err(cmd, f"--set: {exc}")
        print(f"{name} now serves " + ", ".join(f"{t['revision']} {t['percent']} %" for t in traffic)
              + " (out of band: `drift` reports it)")
        return EXIT_DONE
    except (SandboxError, ValueError) as exc:
        return err(cmd, str(exc))
    except OperationFailed as exc:
        print(f"infra {cmd}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
