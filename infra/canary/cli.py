"""`python -m infra gate`: judge a service's candidate revision against its stable one, live.

Exit codes: 0 promote, 1 rollback, 3 hold (no decision by --max-duration, a data fault or an incident
that outlasted it, or nothing to judge), 4 error (credentials, API, anything unexpected: never 1),
2 bad usage. The command only parses flags, picks the revisions and writes the verdict; the gate
itself is `infra.canary.api`. Import-light: google.cloud, grpc, numpy and scipy load only in `run`.
"""
from __future__ import annotations

import json
import sys
import time

from infra.canary.api import (
    DeployedStateError,
    GateSettings,  # noqa: F401  (re-exported for callers of the old module)
    UsageError,
    add_gate_arguments,
    deployed_revisions,
    describe_error,
    gate_settings,
    judge,
    planned_revisions,
    with_overrides,
)
from infra.canary.stack import ServiceInfo
from infra.canary.verdict import EXIT_USAGE, Decision, Verdict


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gate",
        help="judge a canary from live Cloud Monitoring metrics: promote, rollback or hold",
        description=(
            "Compare the candidate revision of one service with its stable revision, interval by interval, "
            "with sequential anytime-valid tests (5xx, slow requests, token-optimization and WebSocket failures "
            "vs stable, and the stack's rollback triggers). "
            "Exit 0 promote, 1 rollback, 3 hold, 4 error, 2 usage error."
        ),
    )
    add_gate_arguments(p)
    p.add_argument("--service", help="service key (frontend, backend, auth) or Cloud Run service name")
    p.add_argument("--revisions-from", choices=("deployed", "plan"), default="deployed",
                   help="deployed: the service's `stable`/`canary` traffic tags (Cloud Run Admin API, default); "
                        "plan: the offline plan of the stack config (tests, no credentials)")
    p.add_argument("--json", action="store_true", help="print the verdict JSON on stdout (progress goes to stderr)")
    p.add_argument("--verdict-file", metavar="PATH",
                   help="where to write the verdict JSON (default: verdict-STACK-SERVICE.json)")
    p.add_argument("--project", help="GCP project (default: the stack's gcp:project)")
    p.add_argument("--stable-revision", metavar="REV", help="override the stable revision")
    p.add_argument("--candidate-revision", metavar="REV", help="override the candidate revision")
    p.set_defaults(func=run)


def resolve_service(args, session=None) -> ServiceInfo:
    """The revisions to compare (raises UsageError or DeployedStateError)."""
    if not args.service:
        raise UsageError("--service is required (a service key such as backend, or a Cloud Run service name)")
    overrides = (args.project, args.stable_revision, args.candidate_revision)
    if all(overrides) and not args.stack:
        return ServiceInfo(args.service, args.service, args.candidate_revision, args.stable_revision, -1,
                           args.project, "")
    if not args.stack:
        raise UsageError("--stack is required (or all of --project, --stable-revision and --candidate-revision)")
    if getattr(args, "revisions_from", "deployed") == "plan":
        info = planned_revisions(args.stack, args.service)
    else:
        info = deployed_revisions(args.stack, args.service, session=session)
    return with_overrides(info, project=args.project, stable=args.stable_revision, candidate=args.candidate_revision)


def _write(verdict: Verdict, path: str, args, out, err) -> int:
    doc = {**verdict.as_dict(), "verdict_file": path}
    try:
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    except OSError as exc:
        print(f"infra gate: error: --verdict-file {path}: {exc.strerror}", file=err)
        return EXIT_USAGE
    if args.json:
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        print(f"{verdict.decision.label.upper()} {doc.get('service') or args.service}: {verdict.reason}", file=out)
        print(f"verdict written to {path}", file=out)
    return verdict.exit_code


def run(args, *, clock=time.time, sleep=time.sleep, client=None, retry=None, session=None, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    default_path = f"verdict-{args.stack or 'adhoc'}-{args.service or 'service'}.json"
    try:
        settings = gate_settings(args)
        info = resolve_service(args, session)
    except UsageError as exc:
        print(f"infra gate: error: {exc}", file=err)
        return EXIT_USAGE
    except Exception as exc:  # DeployedStateError, or anything unexpected: exit 4, never 1
        message = str(exc) if isinstance(exc, DeployedStateError) else describe_error(exc)
        print(f"infra gate: error: {message}", file=err)
        verdict = Verdict(Decision.ERROR, f"error: {message}", {"stack": args.stack or "", "service": args.service,
                                                                 "evidence": {}, "faults": []})
        return _write(verdict, args.verdict_file or default_path, args, out, err)
    path = args.verdict_file or f"verdict-{args.stack or 'adhoc'}-{info.key}.json"

    def progress(line: str) -> None:
        print(line, file=err, flush=True)

    print(
        f"[{info.key}] gate: {info.candidate} "
        f"({'stage unknown' if info.canary_percent < 0 else str(info.canary_percent) + ' %'}) vs {info.stable} in {info.project}, "
        f"every {settings.options.interval_s:g} s for up to {settings.options.max_duration_s:g} s",
        file=err, flush=True,
    )
    verdict = judge(info, settings, stack=args.stack or "", client=client, clock=clock, sleep=sleep,
                    progress=progress, retry=retry)
    if verdict.decision == Decision.ERROR:
        print(f"infra gate: {verdict.reason}", file=err)
    return _write(verdict, path, args, out, err)
