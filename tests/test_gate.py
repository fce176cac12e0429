"""The gate end to end: the real google-cloud-monitoring client over real gRPC to a MetricService on
127.0.0.1 (infra.canary.emulator) serving synthetic per-revision series, with faults injected per test.
The loop runs in virtual time (injected clock and sleep); the wire, the retries and the parsing are real."""
from __future__ import annotations

import argparse
import json

import grpc
import pytest

from infra.canary.api import GateSettings, judge
from infra.canary.cli import run
from infra.canary.emulator import FakeMetricService, Fault, Profile, serve
from infra.canary.gate import GateOptions
from infra.canary.judge import JudgeConfig
from infra.canary.monitoring import REQUEST_COUNT, REQUEST_LATENCIES, default_retry, make_client
from infra.canary.stack import ServiceInfo
from infra.signals import TOKEN_OPTIMIZATION

SERVICE = "netra-backend-prod"
STABLE = "netra-backend-prod-a41c9e07"
CANARY = "netra-backend-prod-c0e5def9"
INFO = ServiceInfo("backend", SERVICE, CANARY, STABLE, 10, "netra-production", "us-central1")
T0 = 1_700_000_000.0


def gate_service(info, settings, **kw) -> dict:
    return judge(info, settings, **kw).as_dict()


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture
def monitoring():
    """(fake, endpoint, client); the fake serves A/A traffic at 50 rps, 10 % to the canary."""
    fake = FakeMetricService(SERVICE, {STABLE: Profile(rps=45.0), CANARY: Profile(rps=5.0)}, seed=1)
    server, endpoint = serve(fake)
    client = make_client(endpoint)
    yield fake, endpoint, client
    client.transport.close()
    server.stop(0)


def settings(max_duration=3600.0, **judge) -> GateSettings:
    return GateSettings(GateOptions(interval_s=60.0, max_duration_s=max_duration, lag_s=0.0), JudgeConfig(**judge), None)


def gate(client, s=None, progress=None, retry_s=0.3):
    clock = Clock()
    return gate_service(INFO, s or settings(), stack="prod", client=client, clock=clock, sleep=clock.sleep,
                        progress=progress, retry=default_retry(timeout_s=retry_s, initial_s=0.01), rpc_timeout_s=0.5)


def test_healthy_canary_is_promoted_after_the_soak(monitoring):
    fake, _, client = monitoring
    lines = []
    v = gate(client, progress=lines.append)
    assert v["decision"] == "promote" and v["exit_code"] == 0
    assert v["soak_s"] >= 600 and v["faulted_intervals"] == 0
    assert v["requests"]["canary"] >= 500
    assert v["candidateRevision"] == CANARY and v["stableRevision"] == STABLE
    assert set(v["evidence"]) >= {"errors", "latency", "error_rate", "p95_latency"}
    assert len(lines) == v["clean_intervals"] and "[backend 10%]" in lines[0] and "canary" in lines[0]
    json.dumps(v, allow_nan=False)  # the verdict is plain JSON (no NaN or Infinity)


def test_queries_are_server_side_aggregated_per_revision(monitoring):
    fake, _, client = monitoring
    gate(client, settings(max_duration=60))
    def span(r):
        return r.interval.end_time.timestamp() - r.interval.start_time.timestamp()

    history, calls = fake.calls[0], [r for r in fake.calls if span(r) != 1800]
    # the calibration: stable's 30 min before the canary, one point per interval, read first
    assert history.filter.split('"')[1] == REQUEST_COUNT
    assert history.interval.end_time.timestamp() - history.interval.start_time.timestamp() == 1800
    assert history.aggregation.alignment_period.total_seconds() == 60
    by_type = {}
    for req in calls:
        by_type.setdefault(req.filter.split('"')[1], req)
    rc = by_type[REQUEST_COUNT]
    agg = rc.aggregation
    assert rc.name == "projects/netra-production"
    assert f'one_of("{STABLE}", "{CANARY}")' in rc.filter and f'service_name = "{SERVICE}"' in rc.filter
    assert agg.per_series_aligner.name == "ALIGN_DELTA" and agg.cross_series_reducer.name == "REDUCE_SUM"
    assert list(agg.group_by_fields) == ["resource.label.revision_name", "metric.label.response_code_class"]
    assert agg.alignment_period.seconds == 60
    assert rc.interval.end_time.timestamp() - rc.interval.start_time.timestamp() == 60
    assert list(by_type[REQUEST_LATENCIES].aggregation.group_by_fields) == ["resource.label.revision_name"]
    tok = by_type[TOKEN_OPTIMIZATION.metric_type]
    assert list(tok.aggregation.group_by_fields) == ["resource.label.revision_name", "metric.label.outcome"]


def test_error_regression_rolls_back(monitoring):
    fake, _, client = monitoring
    fake.revisions[CANARY] = Profile(rps=5.0, error_rate=0.01)
    v = gate(client)
    assert v["decision"] == "rollback" and v["exit_code"] == 1
    assert v["reason"].startswith("rollback: errors") and v["evidence"]["errors"]["over_threshold"]
    assert v["elapsed_s"] <= 900


def test_latency_regression_rolls_back(monitoring):
    fake, _, client = monitoring
    fake.revisions[CANARY] = Profile(rps=5.0, latency_p95_ms=1350.0)
    v = gate(client)
    assert v["decision"] == "rollback" and "latency" in v["reason"]


def test_token_optimization_failures_from_the_log_metric_roll_back(monitoring):
    fake, _, client = monitoring
    fake.revisions[STABLE] = Profile(rps=45.0, token_rps=2.0, token_failure=0.02)
    fake.revisions[CANARY] = Profile(rps=5.0, token_rps=2.0, token_failure=0.35)
    v = gate(client)
    assert v["decision"] == "rollback" and "token_optimization" in v["reason"]


def test_transient_unavailable_is_retried_and_gives_evidence(monitoring):
    fake, _, client = monitoring
    fake.fault = lambda metric, n: Fault(code=grpc.StatusCode.UNAVAILABLE) if metric == REQUEST_COUNT and n <= 2 else None
    # a retry budget a loaded machine cannot exhaust with two quick failures (0.3 s could: a faulted interval)
    v = gate(client, retry_s=10.0)
    assert v["decision"] == "promote" and v["faulted_intervals"] == 0


@pytest.mark.parametrize(
    "fault, expect",
    [
        (Fault(code=grpc.StatusCode.UNAVAILABLE), "UNAVAILABLE"),
        (Fault(code=grpc.StatusCode.DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED"),
        (Fault(empty=True), "empty series"),
        (Fault(drop_revision=CANARY), f"canary revision {CANARY}"),
        (Fault(drop_revision=STABLE), f"stable revision {STABLE}"),
        (Fault(code=grpc.StatusCode.PERMISSION_DENIED), "PERMISSION_DENIED"),
    ],
    ids=["unavailable", "deadline", "empty", "canary-missing", "stable-missing", "permission"],
)
def test_persistent_faults_end_in_hold_never_promote(monitoring, fault, expect):
    fake, _, client = monitoring
    fake.fault = lambda metric, n: fault if metric == REQUEST_COUNT else None
    v = gate(client, settings(max_duration=300))
    assert v["decision"] == "hold" and v["exit_code"] == 3
    assert v["clean_intervals"] == 0 and v["faulted_intervals"] == 5
    assert any(expect in f for f in v["faults"]), v["faults"]
    assert "max duration" in v["reason"]


@pytest.mark.parametrize("fault, expect", [
    (Fault(duplicate=True), "duplicated series"),
    (Fault(unlabel_revision=CANARY), "without a revision label"),
    (Fault(value_revision=CANARY, value=float("nan")), "non-finite"),
    (Fault(value_revision=CANARY, value=-3.0), "negative count"),
], ids=["duplicated", "unlabelled", "nan", "negative"])
def test_malformed_series_are_named_faults_never_evidence(monitoring, fault, expect):
    fake, _, client = monitoring
    fake.revisions[CANARY] = Profile(rps=5.0, error_rate=0.05)  # 25x the errors: must never promote
    fake.fault = lambda metric, n: fault if metric == REQUEST_COUNT and n > 1 else None  # call 1: the history
    v = gate(client, settings(max_duration=300))
    assert v["decision"] == "hold" and v["clean_intervals"] == 0
    assert any(expect in f for f in v["faults"]), v["faults"]
    json.dumps(v, allow_nan=False)


def test_a_shared_outage_is_an_incident_in_the_progress_line_and_the_verdict(monitoring):
    fake, _, client = monitoring
    fake.revisions[STABLE] = Profile(rps=45.0, error_rate=0.05)
    fake.revisions[CANARY] = Profile(rps=5.0, error_rate=0.05)
    lines = []
    v = gate(client, settings(max_duration=300), progress=lines.append)
    assert v["decision"] == "hold" and v["incident"] == ["errors"]
    assert "incident" in v["reason"] and any("INCIDENT errors" in line for line in lines)


def test_the_calibration_reads_stable_history_before_the_canary(monitoring):
    _, _, client = monitoring
    v = gate(client, settings(max_duration=120))
    cal = v["calibration"]
    assert cal["history_intervals"] == 30 and cal["dispersion_used"] >= 1.0
    assert "30 stable intervals" in cal["note"]


def test_a_real_deadline_is_a_fault(monitoring):
    fake, _, client = monitoring
    fake.fault = lambda metric, n: Fault(delay_s=0.4) if metric == REQUEST_LATENCIES else None
    clock = Clock()
    v = gate_service(INFO, settings(max_duration=120), client=client, clock=clock, sleep=clock.sleep,
                     retry=default_retry(timeout_s=0.2, initial_s=0.05), rpc_timeout_s=0.1)
    assert v["decision"] == "hold" and v["faulted_intervals"] == 2
    assert any("request_latencies" in f for f in v["faults"])


def test_faults_on_a_bad_canary_never_promote(monitoring):
    fake, _, client = monitoring
    fake.revisions[CANARY] = Profile(rps=5.0, error_rate=0.01)
    fake.fault = lambda metric, n: Fault(drop_revision=CANARY) if metric == REQUEST_LATENCIES else None
    v = gate(client, settings(max_duration=1200))
    assert v["decision"] == "hold"


def test_intermittent_faults_delay_but_do_not_block_a_promote(monitoring):
    fake, _, client = monitoring
    # every third interval loses the canary's latency series
    fake.fault = lambda metric, n: Fault(drop_revision=CANARY) if metric == REQUEST_LATENCIES and n % 3 == 0 else None
    v = gate(client)
    assert v["decision"] == "promote"
    assert v["faulted_intervals"] >= 1 and v["soak_s"] >= 600
    assert v["elapsed_s"] > v["soak_s"]


def test_missing_log_metric_is_no_data_not_a_fault(monitoring):
    fake, _, client = monitoring
    fake.fault = lambda metric, n: Fault(code=grpc.StatusCode.NOT_FOUND) if metric == TOKEN_OPTIMIZATION.metric_type else None
    v = gate(client)
    assert v["decision"] == "promote" and v["faulted_intervals"] == 0
    assert v["evidence"]["token_optimization"]["canary_observations"] == 0


def test_nothing_to_judge_at_stage_zero_is_hold(monitoring):
    _, _, client = monitoring
    info = ServiceInfo("backend", SERVICE, CANARY, STABLE, 0, "netra-production", "us-central1")
    v = gate_service(info, settings(), client=client)
    assert v["decision"] == "hold" and "0 %" in v["reason"]


# ---- the command (run(args) in process, virtual time) -------------------------------------------------

def args_for(endpoint, tmp_path, **kw) -> argparse.Namespace:
    base = dict(stack=None, service=SERVICE, json=True, interval="60", max_duration="1800", lag="0",
                monitoring_endpoint=endpoint, min_soak="600", min_requests="500", alpha="0.01",
                error_tolerance="1.1", latency_tolerance="1.25", verdict_file=str(tmp_path / "verdict.json"),
                project="netra-production", stable_revision=STABLE, candidate_revision=CANARY)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("canary, code, decision", [
    (Profile(rps=5.0), 0, "promote"),
    (Profile(rps=5.0, error_rate=0.02), 1, "rollback"),
])
def test_command_exit_codes_json_and_verdict_file(monitoring, tmp_path, capsys, canary, code, decision):
    fake, endpoint, _ = monitoring
    fake.revisions[CANARY] = canary
    clock = Clock()
    rc = run(args_for(endpoint, tmp_path), clock=clock, sleep=clock.sleep)
    out, err = capsys.readouterr()
    assert rc == code
    doc = json.loads(out)
    assert doc["decision"] == decision
    assert json.loads((tmp_path / "verdict.json").read_text())["decision"] == decision
    assert f"[{SERVICE}]" in err  # live progress on stderr


def test_command_hold_when_the_endpoint_keeps_failing(monitoring, tmp_path, capsys):
    fake, endpoint, _ = monitoring
    fake.fault = lambda metric, n: Fault(code=grpc.StatusCode.INTERNAL)
    clock = Clock()
    rc = run(args_for(endpoint, tmp_path, max_duration="180"), clock=clock, sleep=clock.sleep,
             retry=default_retry(timeout_s=0.2, initial_s=0.02))
    assert rc == 3
    assert json.loads(capsys.readouterr().out)["decision"] == "hold"


def test_command_on_the_prod_stack_at_stage_zero_holds(tmp_path, capsys, reuse_plans):
    args = args_for("127.0.0.1:1", tmp_path, stack="prod", service="backend", project=None,
                    stable_revision=None, candidate_revision=None, json=False, revisions_from="plan")
    assert run(args) == 3
    out = capsys.readouterr().out
    assert out.startswith("HOLD backend: hold: nothing to judge")
