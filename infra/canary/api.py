"""The gate as a library: what `python -m infra gate` and `python -m infra rollout` both call.

    settings = gate_settings(args)                       # flags + the stack's rollback triggers
    revisions = deployed_revisions("prod", "backend")    # what Cloud Run serves (traffic tags)
    verdict = judge(revisions, settings)                 # -> Verdict (decision, reason, details)

`judge` never raises for a runtime problem: an unexpected error becomes a Verdict with
Decision.ERROR (exit 4), never ROLLBACK. Only `gate_settings` and the revision look-ups raise
UsageError, for mistakes the user can fix (exit 2). Import-light: google.cloud, grpc, numpy and scipy
are imported only when a gate runs.
"""
from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, replace

from infra.canary.stack import ServiceInfo, StackError
from infra.canary.verdict import Decision, Verdict

# The revisions a gate compares: stable and candidate of one Cloud Run service (canary_percent -1:
# unknown, e.g. revisions named by hand).
Revisions = ServiceInfo

CLOUD_RUN_API = "https://run.googleapis.com/v2/"


class UsageError(Exception):
    """One-line user error naming the argument and what is allowed (exit 2)."""


class DeployedStateError(Exception):
    """The deployed state could not be read (no credentials, API error): exit 4, never a rollback."""


@dataclass(frozen=True)
class GateSettings:
    options: object  # infra.canary.gate.GateOptions
    judge: object  # infra.canary.judge.JudgeConfig
    endpoint: str | None = None  # insecure Cloud Monitoring endpoint (tests, emulators)


# ---- flags ------------------------------------------------------------------------------------------

def add_gate_arguments(p, stack_required: bool = False) -> None:
    """Flags shared by `gate` and `rollout` (values are validated in `gate_settings`); `rollout` needs --stack,
    the gate can run on explicit revisions without one."""
    p.add_argument("--stack", required=stack_required,
                   help="stack name: its rollback triggers (netra:observability.thresholds) and services")
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
    p.add_argument("--warmup", default="120", metavar="SECONDS",
                   help="candidate warm-up: its evidence is capped so a cold start alone never rolls back (default 120)")
    p.add_argument("--incident-max", default="600", metavar="SECONDS",
                   help="a breach shared with the stable revision is an incident (hold) for up to this long; "
                        "then the seed's rule applies again (default 600)")
    p.add_argument("--history", default="1800", metavar="SECONDS",
                   help="stable's pre-canary history read once to calibrate the 5xx test (default 1800; 0: none)")
    p.add_argument("--error-tolerance", default="1.0", metavar="X",
                   help="canary 5xx / token / WebSocket failure rate may be up to X times stable's before it is a "
                        "regression (default 1.0)")
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


def _typed_stack(stack: str):
    """The validated StackConfig of Pulumi.<stack>.yaml, without running the program. Raises UsageError."""
    from infra.config import ConfigError, load_stack_config
    from infra.plan.stackfile import StackFileError, read_stack

    try:
        return load_stack_config(read_stack(stack).config, stack)
    except StackFileError as exc:
        raise UsageError(str(exc)) from None
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else exc
        raise UsageError(f"--stack {stack}: invalid stack config: {first}") from None


def stack_limits(stack: str) -> dict[str, float]:
    """The seed's rollback triggers as the stack configures them (`netra:observability.thresholds.*`,
    the same values the alerts use), as JudgeConfig fields. Raises UsageError naming the key."""
    return trigger_limits(_typed_stack(stack))


def trigger_limits(cfg) -> dict[str, float]:
    """`stack_limits` of an already validated StackConfig."""
    t = cfg.observability.thresholds
    return {
        "max_error_rate": t.error_rate_percent / 100.0,
        "max_p95_ms": float(t.p95_latency_ms),
        "max_token_failure": t.token_optimization_failure_percent / 100.0,
        "max_websocket_failure": t.websocket_connection_failure_percent / 100.0,
    }


def gate_settings(args) -> GateSettings:
    """Validate the shared gate flags and read the stack's rollback triggers (raises UsageError)."""
    from infra.canary.judge import JudgeConfig

    options, alpha, endpoint = observation_options(args)
    min_soak = _number(args.min_soak, "--min-soak", 0, 86400, "a number of seconds between 0 and 86400")
    min_requests = int(_number(args.min_requests, "--min-requests", 0, 10**9, "a whole number >= 0", integer=True))
    err_tol = _number(args.error_tolerance, "--error-tolerance", 1, 1.8, "a ratio between 1 and 1.8")
    lat_tol = _number(args.latency_tolerance, "--latency-tolerance", 1, 1.8, "a ratio between 1 and 1.8")
    warmup = _number(getattr(args, "warmup", "120"), "--warmup", 0, 3600, "a number of seconds between 0 and 3600")
    incident_max = _number(getattr(args, "incident_max", "600"), "--incident-max", 0, 86400,
                           "a number of seconds between 0 and 86400")
    limits = stack_limits(args.stack) if getattr(args, "stack", None) else {}
    judge = JudgeConfig(alpha=alpha, error_tolerance=err_tol, latency_tolerance=lat_tol, min_soak_s=min_soak,
                        min_canary_requests=min_requests, min_stable_requests=min_requests, warmup_s=warmup,
                        incident_max_s=incident_max, **limits)
    try:
        judge.validate()
    except ValueError as exc:
        raise UsageError(f"--stack {args.stack}: netra:observability.thresholds: {exc}") from None
    return GateSettings(options, judge, endpoint)


def observation_options(args, max_duration_limit: int = 7 * 86400):
    """(GateOptions, alpha, endpoint) from the flags of how a gate or the bake watch observes: --interval,
    --max-duration (up to `max_duration_limit` s), --lag, --history, --alpha, --monitoring-endpoint.
    Raises UsageError naming the flag."""
    from infra.canary.gate import GateOptions

    interval = _number(args.interval, "--interval", 1, 3600, "a number of seconds between 1 and 3600")
    max_duration = _number(args.max_duration, "--max-duration", interval, max_duration_limit,
                           f"a number of seconds between --interval ({interval:g}) and {max_duration_limit}")
    lag = _number(args.lag, "--lag", 0, 3600, "a number of seconds between 0 and 3600")
    history = _number(getattr(args, "history", "1800"), "--history", 0, 86400, "a number of seconds between 0 and 86400")
    alpha = _number(args.alpha, "--alpha", 1e-9, 0.5, "a probability in (0, 0.5]")
    endpoint = parse_endpoint(args.monitoring_endpoint) if args.monitoring_endpoint is not None else None
    options = GateOptions(interval_s=interval, max_duration_s=max_duration, lag_s=lag, history_s=history)
    return options, alpha, endpoint


def quiet_google_warnings() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")


# ---- which revisions ------------------------------------------------------------------------------

def nothing_to_judge(rev: Revisions) -> str | None:
    """Why there is nothing to compare (then the verdict is hold), or None."""
    if not rev.stable or rev.stable == rev.candidate:
        return "no stable revision to compare with (first deploy or already finalized)"
    if rev.canary_percent == 0:
        return "the candidate receives 0 % of traffic (stage 0 or rolled back)"
    if rev.canary_percent >= 100:
        return "the candidate receives 100 % of traffic: the stable revision has nothing to compare"
    return None


def planned_revisions(stack: str, service: str) -> Revisions:
    """Revisions from the offline plan (the program under mocks): what the stack config *says*.
    The path for tests and dry runs; a live gate uses `deployed_revisions`."""
    from infra.canary.stack import revisions_for

    try:
        return revisions_for(stack, service)
    except StackError as exc:
        raise UsageError(str(exc)) from None


def service_location(stack: str, service: str) -> tuple[str, str, str, str]:
    """(key, Cloud Run service name, project, region) of `service` (a key or a service name) from the
    typed stack config, without running the program. Raises UsageError."""
    from infra.config import service_name

    cfg = _typed_stack(stack)
    names = {key: service_name(key, cfg.environment) for key in _service_keys(cfg)}
    key = service if service in names else next((k for k, n in names.items() if n == service), None)
    if key is None:
        raise UsageError(f"--service: unknown service {service!r}; allowed: {', '.join(sorted(names)) or '(none)'}")
    return key, names[key], cfg.project, cfg.region


def _service_keys(cfg) -> list[str]:
    return sorted(key for key, _ in cfg.services.items())  # a pydantic model or a plain map


def deployed_revisions(stack: str, service: str, *, session=None) -> Revisions:
    """What Cloud Run serves now: the service's `stable` and `canary` traffic tags, read through the
    Cloud Run Admin API v2 (services.get). `trafficStatuses` (what is actually serving) is preferred
    over `traffic` (what was asked for). Raises UsageError (bad --stack/--service) or
    DeployedStateError (no credentials, API error, no `stable` tag)."""
    key, name, project, region = service_location(stack, service)
    if session is None:
        session = _authorized_session()
    url = f"{CLOUD_RUN_API}projects/{project}/locations/{region}/services/{name}"
    try:
        r = session.get(url, timeout=30)
    except Exception as exc:  # transport errors of any HTTP library
        raise DeployedStateError(f"Cloud Run Admin API: GET {url}: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise DeployedStateError(f"Cloud Run Admin API: GET {url}: HTTP {r.status_code}: {r.text[:200]}")
    doc = r.json()
    entries = doc.get("trafficStatuses") or doc.get("traffic") or []
    tagged = {e.get("tag"): e for e in entries if isinstance(e, dict) and e.get("tag")}
    stable = tagged.get("stable")
    if stable is None or not stable.get("revision"):
        raise DeployedStateError(f"{name}: no revision carries the `stable` traffic tag (first deploy?)")
    canary = tagged.get("canary")
    candidate = (canary or {}).get("revision") or stable["revision"]
    percent = int((canary or {}).get("percent") or 0)
    return ServiceInfo(key, name, candidate, stable["revision"], percent, project, region)


def _authorized_session():
    from infra.release import sandbox

    if sandbox.running() is not None:  # `--sandbox DIR`: the local Cloud Run Admin API
        return sandbox.google_session()
    try:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except Exception as exc:  # DefaultCredentialsError and friends
        raise DeployedStateError(f"no Google credentials ({type(exc).__name__}): run `gcloud auth "
                                 "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS") from None
    return AuthorizedSession(creds)


# ---- one gate --------------------------------------------------------------------------------------

def judge(rev: Revisions, settings: GateSettings, *, stack: str = "", client=None, clock=time.time,
          sleep=time.sleep, progress=None, retry=None, rpc_timeout_s: float = 20.0, criteria=None) -> Verdict:
    """Judge `rev.candidate` against `rev.stable` from live Cloud Monitoring data until promote,
    rollback or `settings.options.max_duration_s`; with `criteria` (infra.canary.value.Criteria, a flag
    ramp's success criteria) a promote also needs every criterion met, and a confident miss ends the
    gate (hold, or rollback with on_miss). Never raises: an unexpected error is ERROR."""
    base = {
        "stack": stack,
        "service": rev.key,
        "serviceName": rev.service_name,
        "project": rev.project,
        "stableRevision": rev.stable,
        "candidateRevision": rev.candidate,
        "canaryPercent": rev.canary_percent,
    }
    nothing = nothing_to_judge(rev)
    if nothing:
        return Verdict(Decision.HOLD, f"hold: nothing to judge: {nothing}", {**base, "evidence": {}, "faults": []})
    try:
        quiet_google_warnings()
        from infra.canary.gate import run_gate
        from infra.canary.monitoring import MonitoringSource, Target, make_client

        if client is None:
            client = make_client(settings.endpoint)
        target = Target(rev.project, rev.service_name, rev.stable, rev.candidate)
        source = MonitoringSource(client, target, retry=retry, rpc_timeout_s=rpc_timeout_s)
        label = f"{rev.key} {rev.canary_percent}%" if rev.canary_percent >= 0 else rev.key
        share = rev.canary_percent / 100.0 if 0 < rev.canary_percent < 100 else None
        verdict = run_gate(source, settings.judge, settings.options, configured_share=share, label=label,
                           clock=clock, sleep=sleep, progress=progress, criteria=criteria)
    except Exception as exc:  # the gate never crashes into a rollback: one line, ERROR (exit 4)
        return Verdict(Decision.ERROR, f"error: {describe_error(exc)}", {**base, "evidence": {}, "faults": []})
    verdict.details = {**base, **verdict.details}
    return verdict


def describe_error(exc: BaseException) -> str:
    """One line for an unexpected exception (credentials get a hint)."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())[:300]
    if name == "DefaultCredentialsError":
        return ("no Google credentials: run `gcloud auth application-default login` or set "
                "GOOGLE_APPLICATION_CREDENTIALS")
    return f"{name}: {text}" if text else name


def with_overrides(rev: Revisions, *, project=None, stable=None, candidate=None) -> Revisions:
    return replace(rev, project=project or rev.project, stable=stable or rev.stable,
                   candidate=candidate or rev.candidate)
