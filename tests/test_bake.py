"""The bake window after 100 % (issue 14 part 5): the `previous` tag at 0 %, the one-step rollback to it
(pulumi up and --direct), the rollout opening and ending windows, the watch judge on one revision, and
`python -m infra bake` against the real google-cloud-monitoring client on a local gRPC emulator."""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import io

import numpy as np
import pytest

from infra.release import bake
from infra.release import emergency
from infra.release import model as release
from infra.release.cli import bake as bake_cli
from infra.release import backends as be
from infra.release import driver as drv
from infra.release.cli import rollback as rollback_cli
from infra.release import state as rs
from infra.release import revision as rv
from infra.release.cli import status as status_cli
from infra.canary.buckets import CLOUD_RUN_LATENCY as LAYOUT
from infra.canary.counts import Interval
from infra.canary.emulator import Fault, FakeMetricService, Profile, serve
from infra.canary.judge import JudgeConfig
from infra.canary.watch import Watch
from infra.notify import Notifier

from .conftest import config_problems, plan_of, stack_config
from .test_emergency import Recorder, admin_api, args as rollback_args

pytestmark = pytest.mark.usefixtures("reuse_plans")

OLD = "netra-backend-prod-a41c9e07"  # Pulumi.prod.yaml's stableRevision
SERVICE = "netra-backend-prod"
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


def baked_config(candidate: str, hours: float = 48, started: dt.datetime = NOW) -> dict:
    """prod right after a finalize of backend's candidate: stableRevision := candidate, a bake record."""
    cfg = stack_config("prod")
    cfg["netra:services"]["backend"]["stableRevision"] = candidate
    cfg["netra:release"] = {"approvals": {}, "bake": {"backend": {
        "revision": candidate, "previous": OLD, "started": started.isoformat(),
        "until": (started + dt.timedelta(hours=hours)).isoformat()}}}
    return cfg


@pytest.fixture(scope="module")
def candidate(prod_plan) -> str:
    return prod_plan["outputs"]["services"]["backend"]["candidateRevision"]


def traffic(doc, key="backend"):
    return [(t["revision"], t["percent"], t["tag"]) for t in doc["outputs"]["services"][key]["traffic"]]


# ---- the traffic block ---------------------------------------------------------------------------

def test_previous_is_kept_at_zero_only_while_it_is_another_revision():
    plan = release.traffic_plan(SERVICE, "netra-backend-prod-new", "netra-backend-prod-new", 0, OLD)
    assert [(t.revision, t.percent, t.tag) for t in plan.targets] == [
        ("netra-backend-prod-new", 100, "stable"), (OLD, 0, "previous")]
    # a template edit during the bake: the new candidate at 0 %, previous still one step away
    plan = release.traffic_plan(SERVICE, "netra-backend-prod-edit", "netra-backend-prod-new", 0, OLD)
    assert [t.tag for t in plan.targets] == ["stable", "canary", "previous"]
    # the template reverted to the previous revision's: its canary target covers it (no duplicate)
    assert [t.tag for t in release.traffic_plan(SERVICE, OLD, "netra-backend-prod-new", 0, OLD).targets] == ["stable", "canary"]
    assert [t.tag for t in release.traffic_plan(SERVICE, "netra-backend-prod-x", None, 0, OLD).targets] == ["canary"]


def test_a_baking_service_keeps_previous_at_zero_and_the_policy_pack_agrees(candidate):
    cfg = baked_config(candidate)
    doc = plan_of("prod", {"netra:services.backend.stableRevision": candidate,
                           "netra:release": cfg["netra:release"]}, policy=True)
    assert traffic(doc) == [(candidate, 100, "stable"), (OLD, 0, "previous")]
    assert traffic(doc, "auth")[0][2] == "stable" and len(traffic(doc, "auth")) == 2  # others untouched
    assert [v for v in doc["policy"]["violations"] if v["level"] == "mandatory"] == []


def test_a_stale_bake_record_tags_nothing(candidate):
    """After a rollback (stableRevision is no longer the baked revision) the record is ignored."""
    from infra.config import load_stack_config
    from infra.wiring import bake_previous

    cfg = baked_config(candidate)
    assert bake_previous(load_stack_config(cfg, "prod"), "backend") == OLD
    cfg["netra:services"]["backend"]["stableRevision"] = OLD
    typed = load_stack_config(cfg, "prod")
    assert bake_previous(typed, "backend") is None and bake_previous(typed, "auth") is None


@pytest.mark.parametrize("bake, key, words", [
    ({"payments": {"revision": "netra-payments-prod-1", "previous": "netra-payments-prod-0", "until": "2026-11-25"}},
     "netra:release.bake.payments", "unknown service 'payments'; allowed: auth, backend, frontend"),
    ({"backend": {"revision": "netra-auth-prod-1", "previous": OLD, "until": "2026-11-25"}},
     "netra:release.bake.backend.revision", "must start with the service name 'netra-backend-prod-'"),
    ({"backend": {"revision": OLD, "previous": OLD, "until": "2026-11-25T10:00:00+00:00"}},
     "netra:release.bake.backend.previous", "is the baked revision itself"),
    ({"backend": {"revision": OLD, "previous": "netra-backend-prod-0", "until": "in two days"}},
     "netra:release.bake.backend.until", "must be an ISO 8601 time"),
])
def test_bad_bake_records_name_the_key(bake, key, words):
    cfg = stack_config("prod")
    cfg["netra:release"] = {"bake": bake}
    problems = config_problems(cfg)
    assert key in problems and words in problems[key], problems


# ---- the rollout opens and ends windows ------------------------------------------------------------

def released(candidate: str, hours: float, stable=OLD) -> tuple[rs.Outcome, dict]:
    rel_ = rv.Release("prod", (rs.Target("backend", SERVICE, candidate, stable),), (0, 10, 50, 100), bake_hours=hours)
    outcome, _, backend = drv.simulate(rel_, stack_config("prod"))
    return outcome, backend.config


def test_finalize_opens_the_bake_window_and_the_next_release_ends_it(candidate):
    outcome, cfg = released(candidate, 48)
    assert outcome.exit_code == rs.EXIT_RELEASED and "baking until" in outcome.reason
    record = cfg["netra:release"]["bake"]["backend"]
    assert (record["revision"], record["previous"]) == (candidate, OLD)
    hours = (dt.datetime.fromisoformat(record["until"]) - dt.datetime.fromisoformat(record["started"])) / dt.timedelta(hours=1)
    assert hours == 48
    assert "rollout" not in cfg["netra:release"]  # the journal is closed; the bake record stays
    # the next release of backend starts from the baked revision: its begin drops the bake
    nxt = rv.Release("prod", (rs.Target("backend", SERVICE, "netra-backend-prod-99999999", candidate),),
                     (0, 10, 50, 100), bake_hours=48)
    backend = be.MemoryBackend(cfg)
    driver = drv.Driver(nxt, backend, gate=drv.dry_run_gate(), verify=drv.dry_run_gate(), log=lambda line: None)
    driver.steps = rv.STEPS[:2]  # begin only: stop before anything else happens
    with pytest.raises(RuntimeError):
        driver.run()
    assert "backend" not in backend.config["netra:release"].get("bake", {})


def test_no_bake_on_a_first_deploy_or_with_zero_hours(candidate):
    assert "bake" not in released(candidate, 0)[1]["netra:release"] or not released(candidate, 0)[1]["netra:release"]["bake"]
    outcome, cfg = released(candidate, 48, stable=None)
    assert outcome.exit_code == rs.EXIT_RELEASED and not cfg["netra:release"].get("bake")


# ---- rollback during the bake: one step back to previous -----------------------------------------

def open_now(candidate: str) -> dict:
    """A bake window open now (a rollback compares its end with the real clock)."""
    return baked_config(candidate, started=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))


def test_rollback_during_the_bake_returns_to_previous_in_one_up(candidate):
    backend = be.MemoryBackend(open_now(candidate))
    out = io.StringIO()
    assert rollback_cli.run_rollback(rollback_args(), backend=backend, out=out) == emergency.EXIT_DONE
    assert len(backend.ups) == 1
    cfg = backend.config
    assert cfg["netra:services"]["backend"]["stableRevision"] == OLD
    assert "backend" not in cfg["netra:release"]["bake"]
    rejected = cfg["netra:release"]["approvals"]["backend"]
    assert rejected["revision"] == candidate and rejected["rejected"] and rejected["by"].startswith("operator:")
    assert f"serves {OLD} 100 %" in out.getvalue() and "bake window" in out.getvalue()
    # what the next pulumi up deploys: the previous revision 100 %, the rejected one at 0 %
    doc = plan_of("prod", {"netra:services.backend.stableRevision": OLD,
                           "netra:release": cfg["netra:release"]}, policy=True)
    assert traffic(doc) == [(OLD, 100, "stable"), (candidate, 0, "canary")]
    assert [v for v in doc["policy"]["violations"] if v["level"] == "mandatory"] == []


def test_a_rollback_closes_a_bake_window_that_is_over_instead_of_applying_it(candidate):
    """The window ended (bake had not run yet to close it): the released revision is the stable one now; a
    rollback must not send the service back to the old `previous` revision."""
    backend = be.MemoryBackend(baked_config(candidate, started=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=49)))
    out = io.StringIO()
    assert rollback_cli.run_rollback(rollback_args(), backend=backend, out=out) == emergency.EXIT_DONE
    cfg = backend.config
    assert cfg["netra:services"]["backend"]["stableRevision"] == candidate
    assert "backend" not in cfg["netra:release"]["bake"] and "backend" not in cfg["netra:release"]["approvals"]
    assert "the bake window of backend was over: closed, not applied" in out.getvalue()
    assert f"serves {candidate} 100 %" in out.getvalue() and OLD not in out.getvalue()


def test_direct_rollback_during_the_bake_patches_previous_in(candidate):
    backend = be.MemoryBackend(open_now(candidate))
    with Recorder(admin_api) as api:
        code = rollback_cli.run_rollback(rollback_args(direct=True, api_endpoint=api.url), backend=backend,
                                      sleep=lambda s: None, out=io.StringIO())
    assert code == emergency.EXIT_DONE
    patches = {path.split("?")[0].rsplit("/", 1)[-1]: body for cmd, path, body in api.requests if cmd == "PATCH"}
    assert patches[SERVICE]["traffic"] == [{"type": emergency.REVISION_TRAFFIC, "revision": OLD, "percent": 100,
                                            "tag": "stable"}]
    assert backend.config["netra:services"]["backend"]["stableRevision"] == OLD


# ---- the watch judge -------------------------------------------------------------------------------

def hist(n, slow_share=0.0, slow_ms=3000.0):
    h = np.zeros(LAYOUT.num_buckets)
    h[LAYOUT.first_bucket_at_or_above(200.0)] = n * (1 - slow_share)
    h[LAYOUT.first_bucket_at_or_above(slow_ms)] += n * slow_share
    return list(h)


def interval(rng, n=600, err=0.002, slow=0.01, **kw):
    e = float(rng.binomial(n, err)) if err else 0.0
    h = hist(n, slow)
    return Interval(60, n, n, e, e, h, h, LAYOUT, **kw)


def test_a_healthy_revision_is_never_rolled_back_over_a_long_watch():
    """200 watches (one vectorised Watch) of 60 intervals at half the 5xx limit and 1 % slow requests:
    with the run's alpha (0.01 x 1 h / 48 h) the union bound allows 0.04 false rollbacks in 200; any
    would show a bug."""
    from infra.canary.counts import Batch

    rng, R = np.random.default_rng(7), 200
    w = Watch(JudgeConfig(), 0.01 / 48, 60, runs=R)
    n = np.full(R, 600.0)
    h = np.tile(hist(600, 0.01), (R, 1))
    for _ in range(60):
        e = rng.binomial(600, 0.005, size=R).astype(float)
        fired = w.step(Batch(60.0, n, n, e, e, h, h))
    assert w.intervals == 60 and int(w.faulted.sum()) == 0
    assert not fired.any()


@pytest.mark.parametrize("what, kw, test", [
    ("5xx at 3 %", dict(err=0.03), "error_rate"),
    ("p95 over 2 s", dict(slow=0.2), "p95_latency"),
    ("token failures at 25 %", dict(canary_token=(450.0, 150.0)), "token_failure_rate"),
    ("WebSocket failures at 20 %", dict(canary_websocket=(80.0, 20.0)), "websocket_failure_rate"),
])
def test_each_trigger_fires_on_its_own_signal(what, kw, test):
    rng = np.random.default_rng(3)
    w = Watch(JudgeConfig(), 0.01 / 48, 60)
    decisions = [w.observe(interval(rng, **kw)) for _ in range(10)]
    assert "rollback" in decisions[:5], (what, w.reason())
    assert w.fired == [test] and w.reason().startswith("rollback: ")


def test_faulty_data_never_rolls_back_and_is_named():
    w = Watch(JudgeConfig(), 0.01 / 48, 60)
    h = hist(600)
    bad = [Interval(60, 600, 600, 900, 900, h, h, LAYOUT),  # more 5xx than requests
           Interval(60, float("nan"), float("nan"), 5, 5, h, h, LAYOUT),
           Interval(60, 600, 600, -3, -3, h, h, LAYOUT),
           Interval(60, fault="request_count: retries exhausted (UNAVAILABLE)")]
    assert [w.observe(iv) for iv in bad * 5] == ["clean"] * 20
    assert w.faulted == 20 and "more 5xx than requests" in " ".join(w.faults)
    assert "gave no evidence" in w.reason()


def test_overdispersed_errors_are_tempered_by_the_revisions_own_history():
    """Clumped 5xx averaging 0.6 % (a crash kills in-flight requests): untempered, the 1 % trigger fires
    on the clumps; calibrated on the revision's own history it does not, and a real 3 % still fires."""
    from infra.canary.calibration import calibrate

    rng = np.random.default_rng(11)

    def clumped(rate):
        n = 600
        return float(min(n, rng.negative_binomial(0.5, 0.5 / (0.5 + rate * n))))

    hist_n = np.full(30, 600.0)
    hist_e = np.array([clumped(0.006) for _ in range(30)])
    cal = calibrate(hist_n[None, :], hist_e[None, :])
    assert cal.dispersion[0] > 2

    def watch(calibration, rate, runs=40):
        fired = 0
        for _ in range(runs):
            w = Watch(JudgeConfig(), 0.01 / 48, 60, calibration)
            for _ in range(60):
                e = clumped(rate)
                if w.observe(Interval(60, 600, 600, e, e, hist(600), hist(600), LAYOUT)) == "rollback":
                    fired += 1
                    break
        return fired

    assert watch(None, 0.006) > 0  # the binomial reading of clumps: false alarms
    assert watch(cal, 0.006) == 0
    assert watch(cal, 0.03, runs=10) == 10


# ---- python -m infra bake, end to end over gRPC ---------------------------------------------------

class Clock:
    """Virtual time: the watch loop sleeps by advancing it."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def bake_args(**kw):
    base = dict(stack="prod", service=None, interval="60", max_duration="600", lag="0", alpha="0.01", history="0",
                monitoring_endpoint=None, dry_run=False)
    base.update(kw)
    return argparse.Namespace(**base)


def run(candidate, tmp_path, monkeypatch, profile=None, fault=None, at=NOW + dt.timedelta(hours=1), config=None, **kw):
    monkeypatch.chdir(tmp_path)  # the verdict file
    backend = be.MemoryBackend(config or baked_config(candidate))
    fake = FakeMetricService(SERVICE, {candidate: profile or Profile(rps=20.0)}, fault=fault)
    server, endpoint = serve(fake)
    clock, out, notes = Clock(at.timestamp()), io.StringIO(), io.StringIO()
    try:
        code = bake_cli.run_bake(bake_args(monitoring_endpoint=endpoint, **kw), backend=backend, clock=clock,
                             sleep=clock.sleep, notifier=Notifier("prod", out=notes), log=lambda line: None,
                             lease_s=600, out=out)
    finally:
        server.stop(0)
    return code, backend, out.getvalue(), notes.getvalue(), fake


def test_a_clean_watch_changes_nothing(candidate, tmp_path, monkeypatch):
    code, backend, out, _, fake = run(candidate, tmp_path, monkeypatch)
    assert code == bake.EXIT_CLEAN and backend.ups == [] and "clean: no rollback trigger fired over 10" in out
    # the watched revision alone, once in the filter (the real API reads one_of as a set)
    assert all(f'one_of("{candidate}")' in r.filter for r in fake.calls)
    assert (tmp_path / "bake-verdict-prod.json").exists()


def test_a_trigger_rolls_back_to_previous_in_one_up(candidate, tmp_path, monkeypatch):
    code, backend, out, notes, _ = run(candidate, tmp_path, monkeypatch, Profile(rps=20.0, error_rate=0.05))
    assert code == bake.EXIT_TRIGGERED, out
    assert [m for m, _ in backend.ups] == ["netra bake: rollback of backend to the previous revision"]
    cfg = backend.config
    assert cfg["netra:services"]["backend"]["stableRevision"] == OLD and not cfg["netra:release"]["bake"]
    assert cfg["netra:release"]["approvals"]["backend"]["by"] == "gate"
    assert cfg["netra:release"]["approvals"]["backend"]["rejected"] is True
    assert "5xx" in out and f"{OLD} serves 100 % again" in out and '"event": "rollback"' in notes


def test_auto_rollback_off_only_pages(candidate, tmp_path, monkeypatch):
    cfg = baked_config(candidate)
    cfg["netra:verification"]["bake"] = {"autoRollback": False}
    monkeypatch.setattr("infra.canary.api._typed_stack", lambda stack: _typed(cfg))
    code, backend, out, notes, _ = run(candidate, tmp_path, monkeypatch, Profile(rps=20.0, error_rate=0.05), config=cfg)
    assert code == bake.EXIT_TRIGGERED and backend.ups == [] and "autoRollback is false" in out
    assert '"event": "bake"' in notes


def _typed(cfg):
    from infra.config import load_stack_config

    return load_stack_config(cfg, "prod")


def test_no_metrics_is_a_failure_never_a_rollback(candidate, tmp_path, monkeypatch):
    import grpc

    code, backend, out, notes, _ = run(candidate, tmp_path, monkeypatch, Profile(rps=20.0, error_rate=0.05),
                                       fault=lambda metric, n: Fault(code=grpc.StatusCode.PERMISSION_DENIED))
    assert code == bake.EXIT_FAILED
    assert backend.ups == [] and backend.config["netra:services"]["backend"]["stableRevision"] == candidate
    assert "error: no usable interval in 10: request_count: PERMISSION_DENIED" in out, out
    assert '"event": "failure"' in notes


def test_a_window_that_is_over_is_closed(candidate, tmp_path, monkeypatch):
    code, backend, out, notes, fake = run(candidate, tmp_path, monkeypatch, at=NOW + dt.timedelta(hours=49))
    assert code == bake.EXIT_CLEAN and fake.calls == []
    assert [m for m, _ in backend.ups] == ["netra bake: window over for backend; the previous tag is dropped"]
    assert backend.config["netra:release"]["bake"] == {} and "is over" in out
    assert backend.config["netra:services"]["backend"]["stableRevision"] == candidate


def test_the_run_alpha_is_a_share_of_the_window(candidate, tmp_path, monkeypatch):
    import json

    run(candidate, tmp_path, monkeypatch)
    doc = json.loads((tmp_path / "bake-verdict-prod.json").read_text())
    assert doc["backend"]["alpha"] == pytest.approx(0.01 * 600 / (48 * 3600))


def test_bake_exits_2_naming_the_argument(candidate, tmp_path, monkeypatch):
    from .conftest import cli

    for argv, flag in ((["--stack", "prod", "--alpha", "2"], "--alpha"), (["--stack", "prod", "--service", "x"], "--service"),
                       (["--stack", "prod", "--max-duration", "5"], "--max-duration"), ([], "--stack")):
        r = cli("bake", *argv)
        assert r.returncode == 2 and flag in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_status_shows_the_bake_window(prod_plan):
    outputs = prod_plan["outputs"]
    doc = {"bake": {"backend": {"revision": OLD, "previous": "netra-backend-prod-00000001", "until": "2026-11-25T12:00:00+00:00"}}}
    rows = {r["service"]: r for r in status_cli.service_status(outputs, doc, (0, 10, 50, 100))}
    assert rows["backend"]["bake"] == {"previous": "netra-backend-prod-00000001", "until": "2026-11-25T12:00:00+00:00"}
    assert rows["auth"]["bake"] is None
    stale = {"bake": {"backend": {"revision": "netra-backend-prod-77777777", "previous": OLD, "until": "x"}}}
    assert {r["service"]: r for r in status_cli.service_status(outputs, stale, (0, 10, 50, 100))}["backend"]["bake"] is None


def test_a_failed_rollback_update_is_exit_4_and_names_the_direct_path(candidate, tmp_path, monkeypatch):
    class BrokenUp(be.MemoryBackend):
        def up(self, message):
            raise rs.OperationFailed("pulumi up failed: error: 429 quota exceeded")

    monkeypatch.chdir(tmp_path)
    backend = BrokenUp(baked_config(candidate))
    fake = FakeMetricService(SERVICE, {candidate: Profile(rps=20.0, error_rate=0.05)})
    server, endpoint = serve(fake)
    clock, out, notes = Clock((NOW + dt.timedelta(hours=1)).timestamp()), io.StringIO(), io.StringIO()
    try:
        code = bake_cli.run_bake(bake_args(monitoring_endpoint=endpoint), backend=backend, clock=clock, sleep=clock.sleep,
                             notifier=Notifier("prod", out=notes), log=lambda line: None, lease_s=600, out=out)
    finally:
        server.stop(0)
    assert code == bake.EXIT_FAILED
    assert "rollback to the previous revision FAILED" in out.getvalue() and "--direct" in out.getvalue()
    assert '"event": "failure"' in notes.getvalue()
