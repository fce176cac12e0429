"""`python -m infra gate`: judge a service's candidate revision against its stable one, live.

Exit codes: 0 promote, 1 rollback, 3 hold (no decision by --max-duration, or nothing to judge),
2 bad usage. Import-light: google.cloud, grpc, numpy and scipy are imported only inside `run`.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from dataclasses import dataclass

EXIT_USAGE = 2
EXIT_HOLD = 3


class UsageError(Exception):
    """One-line user error naming the argument and what is allowed (exit 2)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gate",
        help="judge a canary from live Cloud Monitoring metrics: promote, rollback or hold",
        description=(
            "Compare the candidate revision of one service with its stable revision, interval by interval, "
            "with sequential anytime-valid tests (5xx and slow requests vs stable, and the seed's absolute "
            "rollback triggers). Exit 0 promote, 1 rollback, 3 hold, 2 usage error."
        ),
    )
    add_gate_arguments(p)
    p.add_argument("--service", help="service key (frontend, backend, auth) or Cloud Run service name")
    p.add_argument("--json", action="store_true", help="print the verdict JSON on stdout (progress goes to stderr)")
    p.add_argument("--verdict-file", metavar="PATH",
                   help="where to write the verdict JSON (default: verdict-STACK-SERVICE.json)")
    p.add_argument("--project", help="GCP project (default: the stack's gcpProject output)")
    p.add_argument("--stable-revision", metavar="REV", help="override the stable revision from the stack")
    p.add_argument("--candidate-revision", metavar="REV", help="override the candidate revision from the stack")
    p.set_defaults(func=run)


def add_gate_arguments(p) -> None:
    """Flags shared by `gate` and `rollout` (values are validated in `gate_settings`)."""
    p.add_argument("--stack", help="stack name (reads Pulumi.STACK.yaml through the offline plan)")
    p.add_argument("--interval", default="60", metavar="SECONDS",
                   help="observation interval, 1..3600 s (default 60; Cloud Run samples every 60 s)")
    p.add_argument("--max-duration", default="3600", metavar="SECONDS",
                   help="observed time without a decision before the verdict is hold (default 3600)")
    p.add_argument("--monitoring-endpoint", metavar="HOST:PORT",
                   help="insecure gRPC Cloud Monitoring endpoint with anonymous credentials (tests, emulators)")
    p.add_argument("--lag", default="180", metavar="SECONDS",
                   help="wait this long after each interval before reading it (metric ingestion delay; default 180)")
    p.add_argument("--min-soak", default="600", metavar="SECONDS",
                   help="clean observation time required before a promote (default 600)")
    p.add_argument("--min-requests", default="500", metavar="N",
                   help="requests each revision must serve before a promote (default 500)")
    p.add_argument("--alpha", default="0.01", metavar="P",
                   help="bound on the false-rollback probability of one gate, all tests together (default 0.01)")
    p.add_argument("--error-tolerance", default="1.1", metavar="X",
                   help="canary 5xx rate may be up to X times stable's (default 1.1)")
    p.add_argument("--latency-tolerance", default="1.25", metavar="X",
                   help="canary share of requests slower than stable's p95 may be up to X times stable's (default 1.25)")


def _number(value, flag: str, lo: float, hi: float, what: str, integer: bool = False) -> float:
    try:
        x = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} must be {what}, got {value!r}") from None
    if not (lo <= x <= hi) or x != x:
        raise UsageError(f"{flag} must be {what}, got {value!r}")
    return x


_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-_]+)):(?P<port>\d{1,5})$")


def parse_endpoint(value: str) -> str:
    m = _ENDPOINT.match(value or "")
    if not m or not (1 <= int(m.group("port")) <= 65535):
        raise UsageError(
            f"--monitoring-endpoint must be HOST:PORT (e.g. 127.0.0.1:8085 or [::1]:8085, port 1..65535), got {value!r}"
        )
    return value


@dataclass(frozen=True)
class GateSettings:
    options: object  # infra.canary.gate.GateOptions
    judge: object  # infra.canary.judge.JudgeConfig
    endpoint: str | None


def gate_settings(args) -> GateSettings:
    """Validate the shared gate flags (raises UsageError)."""
    from infra.canary.gate import GateOptions
    from infra.canary.judge import JudgeConfig

    interval = _number(args.interval, "--interval", 1, 3600, "a number of seconds between 1 and 3600")
    max_duration = _number(args.max_duration, "--max-duration", interval, 7 * 86400,
                           f"a number of seconds between --interval ({interval:g}) and 604800")
    lag = _number(args.lag, "--lag", 0, 3600, "a number of seconds between 0 and 3600")
    min_soak = _number(args.min_soak, "--min-soak", 0, 86400, "a number of seconds between 0 and 86400")
    min_requests = int(_number(args.min_requests, "--min-requests", 0, 10**9, "a whole number >= 0", integer=True))
    alpha = _number(args.alpha, "--alpha", 1e-9, 0.5, "a probability in (0, 0.5]")
    err_tol = _number(args.error_tolerance, "--error-tolerance", 1, 2.9, "a ratio between 1 and 2.9")
    lat_tol = _number(args.latency_tolerance, "--latency-tolerance", 1, 2.9, "a ratio between 1 and 2.9")
    endpoint = parse_endpoint(args.monitoring_endpoint) if args.monitoring_endpoint is not None else None
    judge = JudgeConfig(alpha=alpha, error_tolerance=err_tol, latency_tolerance=lat_tol, min_soak_s=min_soak,
                        min_canary_requests=min_requests, min_stable_requests=min_requests)
    judge.validate()
    return GateSettings(GateOptions(interval_s=interval, max_duration_s=max_duration, lag_s=lag), judge, endpoint)


def quiet_google_warnings() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")


def gate_service(info, settings: GateSettings, *, stack: str = "", client=None, clock=time.time,
                 sleep=time.sleep, progress=None, retry=None, rpc_timeout_s: float = 20.0) -> dict:
    """Run the gate for one service (an infra.canary.stack.ServiceInfo); returns the verdict dict."""
    quiet_google_warnings()
    from infra.canary.gate import EXIT_CODES, run_gate
    from infra.canary.judge import Judge

    base = {
        "stack": stack,
        "service": info.key,
        "serviceName": info.service_name,
        "project": info.project,
        "stableRevision": info.stable,
        "candidateRevision": info.candidate,
        "canaryPercent": info.canary_percent,
    }
    nothing = None
    if not info.stable or info.stable == info.candidate:
        nothing = "no stable revision to compare with (first deploy or already finalized)"
    elif info.canary_percent == 0:
        nothing = "the candidate receives 0 % of traffic (stage 0 or rolled back)"
    elif info.canary_percent >= 100:
        nothing = "the candidate receives 100 % of traffic: the stable revision has nothing to compare"
    if nothing:
        return {**base, "decision": "hold", "exit_code": EXIT_CODES["hold"], "reason": f"hold: nothing to judge: {nothing}",
                "evidence": {}, "faults": []}

    from infra.canary.monitoring import MonitoringSource, Target, make_client

    if client is None:
        client = make_client(settings.endpoint)
    target = Target(info.project, info.service_name, info.stable, info.candidate)
    source = MonitoringSource(client, target, retry=retry, rpc_timeout_s=rpc_timeout_s)
    judge = Judge(settings.judge)
    label = f"{info.key} {info.canary_percent}%" if info.canary_percent >= 0 else info.key
    v = run_gate(source, judge, settings.options, label=label, clock=clock, sleep=sleep, progress=progress)
    return {**base, **v}


def resolve_service(args):
    from infra.canary.stack import ServiceInfo, StackError, revisions_for

    if not args.service:
        raise UsageError("--service is required (a service key such as backend, or a Cloud Run service name)")
    overrides = (args.project, args.stable_revision, args.candidate_revision)
    if all(overrides) and not args.stack:
        return ServiceInfo(args.service, args.service, args.candidate_revision, args.stable_revision, -1,
                           args.project, "")
    if not args.stack:
        raise UsageError("--stack is required (or all of --project, --stable-revision and --candidate-revision)")
    try:
        info = revisions_for(args.stack, args.service)
    except StackError as exc:
        raise UsageError(str(exc)) from None
    return ServiceInfo(
        info.key, info.service_name, args.candidate_revision or info.candidate,
        args.stable_revision or info.stable, info.canary_percent, args.project or info.project, info.region,
    )


def run(args, *, clock=time.time, sleep=time.sleep, client=None, retry=None, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        settings = gate_settings(args)
        info = resolve_service(args)
    except (UsageError, ValueError) as exc:
        print(f"infra gate: error: {exc}", file=err)
        return EXIT_USAGE
    path = args.verdict_file or f"verdict-{args.stack or 'adhoc'}-{info.key}.json"

    def progress(line: str) -> None:
        print(line, file=err, flush=True)

    print(
        f"[{info.key}] gate: {info.candidate} "
        f"({'stage unknown' if info.canary_percent < 0 else str(info.canary_percent) + ' %'}) vs {info.stable} in {info.project}, "
        f"every {settings.options.interval_s:g} s for up to {settings.options.max_duration_s:g} s",
        file=err, flush=True,
    )
    verdict = gate_service(info, settings, stack=args.stack or "", client=client, clock=clock, sleep=sleep,
                           progress=progress, retry=retry)
    verdict["verdict_file"] = path
    try:
        with open(path, "w") as f:
            json.dump(verdict, f, indent=2)
            f.write("\n")
    except OSError as exc:
        print(f"infra gate: error: --verdict-file {path}: {exc.strerror}", file=err)
        return EXIT_USAGE
    if args.json:
        json.dump(verdict, out, indent=2)
        out.write("\n")
    else:
        print(f"{verdict['decision'].upper()} {info.key}: {verdict['reason']}", file=out)
        print(f"verdict written to {path}", file=out)
    return int(verdict["exit_code"])
