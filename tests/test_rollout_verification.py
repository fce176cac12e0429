"""The rollout's verification steps: a Cloud SQL backup before the migration job, the load test at 0 %.

Reuses test_rollout's World (every effect countable and killable) and its invariants: kill the rollout at
every effect, before and after, restart it, and it converges; a failing load test rejects the candidate
before any traffic; the backup id is in the journal before the migration job runs.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from infra.release import model as rel
from infra.release import state as rs
from infra.release.view import current
from infra.release import revision as rv

from .conftest import stack_config
from .test_rollout import World, check_invariants, every_target, make_release

pytestmark = pytest.mark.usefixtures("reuse_plans")


class VWorld(World):
    def __init__(self, config, load_test="pass", load_test_raises=False, **kw):
        super().__init__(config, **kw)
        self.load_test_decision, self.load_test_raises = load_test, load_test_raises
        self.backups: list[str] = []
        self.load_tests: list[tuple[str, int]] = []  # (revision, stage of the last up)
        self.journal_at_migrate: list[dict] = []
        self.ups_at_migrate: list[list[str]] = []

    def backup(self):
        def do():
            self.backups.append(f"17000000000{len(self.backups):02d}")
            return self.backups[-1]
        return self.point(do)

    def migrate(self):
        self.journal_at_migrate.append(dict(self.ledger.read().release.get("rollout") or {}))
        self.ups_at_migrate.append([m for m, _ in self.backend.ups])
        return super().migrate()

    def load_test(self, t: rs.Target) -> dict:
        def do():
            if self.load_test_raises:
                raise RuntimeError("the load-test job could not start")
            last = rv.desired_stage(self.release, self.backend.ups[-1][1]) if self.backend.ups else -1
            self.load_tests.append((t.candidate, last))
            if self.load_test_decision != "pass":
                self.rejected.add(t.candidate)
                self.ups_at_rejection.setdefault(t.candidate, len(self.backend.ups))
            return {"decision": self.load_test_decision, "reason": "WebSocket event latency p95 151 ms > 100 ms"
                    if self.load_test_decision != "pass" else "every load-test criterion met",
                    "figures": {"requests": 270000}}
        return self.point(do)

    def driver(self, release, tag=False, notifier=None):
        d = super().driver(release, tag, notifier)
        d.backup, d.load_test = self.backup, self.load_test
        return d


def verified_release(plan, keys=("auth", "backend", "frontend"), scope="stack"):
    return replace(make_release(plan, keys, scope), backup_before_migrate=True, load_test_service="backend")


def test_backup_then_migrate_then_load_test_before_any_traffic(prod_plan):
    release = verified_release(prod_plan, ("backend",), "service")
    world = VWorld(stack_config("prod"))
    driver = world.driver(release)
    assert driver.run().exit_code == 0
    steps = [name for kind, name in driver.trace if kind == "step"]
    assert steps[:7] == ["begin", "apply", "backup", "migrate", "check", "load-test", "climb"]
    # the backup's id is recorded before the migration job runs
    assert world.journal_at_migrate[0]["backup"] == world.backups[0] == "1700000000000"
    # the job runs after the stage-0 `up` has uploaded this release's migration files, before any traffic
    assert world.ups_at_migrate == [["netra rollout: stage 0 %"]]
    # the load test ran against the candidate deployed at 0 %, before the first traffic stage
    assert world.load_tests == [(release.targets[0].candidate, 0)]
    assert [m for m, _ in world.backend.ups][:2] == ["netra rollout: stage 0 %", "netra rollout: stage 10 %"]


def test_a_failing_load_test_stops_the_release_before_production_traffic(prod_plan):
    release = verified_release(prod_plan)
    world = VWorld(stack_config("prod"), load_test="fail")
    outcome = world.driver(release).run()
    assert outcome.exit_code == 1
    assert "the load test rejected backend at 0 %: WebSocket event latency p95 151 ms > 100 ms" in outcome.reason
    assert all(rv.desired_stage(release, snap) == 0 for _, snap in world.backend.ups)  # never above 0 %
    approvals = rs.read_release_doc(world.backend.config)["approvals"]
    assert approvals["backend"]["rejected"] is True and approvals["backend"]["revision"] == release.targets[1].candidate
    # run again: the rejected candidate does not climb by itself
    again = world.driver(release).run()
    assert again.exit_code == 1 and len(world.load_tests) == 1


def test_a_load_test_that_cannot_run_is_a_failure_exit_4(prod_plan):
    world = VWorld(stack_config("prod"), load_test_raises=True)
    outcome = world.driver(verified_release(prod_plan)).run()
    assert outcome.exit_code == 4 and "the load test failed to run" in outcome.reason
    assert all(rv.desired_stage(world.release, snap) == 0 for _, snap in world.backend.ups)


@pytest.mark.parametrize("decision,expected", [("pass", 0), ("fail", 1)])
def test_every_interruption_point_converges_with_backup_and_load_test(prod_plan, decision, expected):
    release = verified_release(prod_plan)
    base = stack_config("prod")
    clean = VWorld(base, load_test=decision)
    assert clean.driver(release, tag=True).run().exit_code == expected
    effects = clean.count
    for n in range(1, effects + 1):
        for after in (False, True):
            world = VWorld(base, load_test=decision)
            world.kill_at, world.after = n, after
            with pytest.raises(rs.Killed):
                world.driver(release, tag=True).run()
            world.kill_at = None
            again = rv.resume(release, current(world)[0], every_target(prod_plan))
            again = replace(again, backup_before_migrate=True, load_test_service="backend")
            outcome = world.driver(again, tag=True).run()
            check_invariants(world, release, outcome.exit_code, expected)
            # a backup precedes every migration job run, and no load test saw traffic above 0 %
            assert len(world.backups) >= 1 and all(j.get("backup") for j in world.journal_at_migrate)
            assert all(stage == 0 for _, stage in world.load_tests)


def test_journal_fields_are_in_the_release_model(prod_plan):
    """What the steps write validates against netra:release (RolloutJournal)."""
    from infra.config.release import ReleaseConfig

    world = VWorld(stack_config("prod"))
    release = verified_release(prod_plan)
    driver = world.driver(release)
    seen = []
    real_write = world.backend.write

    def spy(values, remove=()):
        if rs.RELEASE_KEY in values:
            seen.append(json.loads(json.dumps(values[rs.RELEASE_KEY])))
        real_write(values, remove)

    world.backend.write = spy
    assert driver.run().exit_code == 0
    journals = [d["rollout"] for d in seen if d.get("rollout")]
    assert any("backup" in j for j in journals) and any(str(j.get("loadTest", "")).startswith("pass:") for j in journals)
    for d in seen:
        ReleaseConfig.model_validate(d)


# ---- the load-test step's effects: Cloud Run, the job, the verdict object, Cloud Monitoring ------------

class _R:
    def __init__(self, code, body):
        self.status_code, self._body = code, body
        self.text = body if isinstance(body, str) else json.dumps(body)

    def json(self):
        return self._body


def test_load_test_step_runs_the_job_on_the_tagged_url_and_adds_memory_growth(tmp_path, monkeypatch):
    from google.api import metric_pb2
    from google.cloud import monitoring_v3

    from infra.release.load_test import MEMORY_METRIC, LoadTestStep
    from loadtest.summary import Summary
    from loadtest.verdict import Criteria, judge

    monkeypatch.chdir(tmp_path)
    s = Summary()
    for _ in range(2000):
        s.record("GET", 30, None)
    for _ in range(300):
        s.record("WSEVENT", 20, None)
    s.started_at, s.ended_at = 1_800_000_000.0, 1_800_003_600.0
    job_verdict = judge(s, Criteria(memory_growth_percent=None))
    job_verdict.update(summary=s.as_dict(), websocketExpected=True, profile={"users": 150})
    objects, runs = {}, []

    class Session:
        def get(self, url, params=None, timeout=None):
            if url.endswith("/services/netra-backend-staging"):
                return _R(200, {"trafficStatuses": [
                    {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "netra-backend-staging-1111", "percent": 100, "tag": "stable",
                     "uri": "https://stable---netra-backend-staging-abc-uc.a.run.app"},
                    {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "netra-backend-staging-2222", "percent": 0, "tag": "canary",
                     "uri": "https://canary---netra-backend-staging-abc-uc.a.run.app"}]})
            name = url.split("/o/", 1)[1].replace("%2F", "/")
            return _R(200, json.dumps(objects[name])) if name in objects else _R(404, "not found")

    def run_job(job, project, overrides):
        env = {e["name"]: e["value"] for e in overrides["containerOverrides"][0]["env"]}
        runs.append(env)
        objects[env["LOADTEST_RESULTS_URI"].split("/", 3)[3]] = job_verdict  # the job wrote its verdict
        raise rs.OperationFailed("job netra-loadtest-staging failed: Task exited with code 1")  # read it all the same

    def monitoring(growth_to):
        class Client:
            def list_time_series(self, request):
                assert MEMORY_METRIC in request.filter and 'revision_name = "netra-backend-staging-2222"' in request.filter
                points = [monitoring_v3.Point(
                    interval=monitoring_v3.TimeInterval(end_time={"seconds": int(s.started_at) + 60 * i}),
                    value=monitoring_v3.TypedValue(double_value=0.40 + (growth_to - 0.40) * i / 59)) for i in range(60)]
                return [monitoring_v3.TimeSeries(metric=metric_pb2.Metric(type=MEMORY_METRIC), points=points)]
        return Client()

    job = {"name": "netra-loadtest-staging", "region": "us-central1", "resultsBucket": "netra-staging-loadtest-results",
           "service": "netra-backend-staging"}
    step = LoadTestStep("staging", "netra-staging", "us-central1", job, Criteria(), session=Session(),
                        monitoring=monitoring(0.41), run_job=run_job, log=lambda *_: None, clock=lambda: 1_800_000_000)
    v = step.run("netra-backend-staging", "netra-backend-staging-2222")
    assert runs[0]["LOADTEST_TARGET_URL"] == "https://canary---netra-backend-staging-abc-uc.a.run.app"
    assert runs[0]["LOADTEST_RESULTS_URI"] == "gs://netra-staging-loadtest-results/staging/netra-backend-staging-2222/1800000000.json"
    assert v["decision"] == "pass" and 0 < v["figures"]["memory"]["growthPercent"] < 5, v["reasons"]
    assert v["jobError"].endswith("code 1")
    assert json.loads((tmp_path / "verdict-loadtest-staging-netra-backend-staging.json").read_text())["decision"] == "pass"
    # a leaking candidate: 40 % -> 52 % memory utilization over the hour fails the seed's < 5 % growth
    step.monitoring = monitoring(0.52)
    leak = step.run("netra-backend-staging", "netra-backend-staging-2222")
    assert leak["decision"] == "fail" and leak["reasons"][0].startswith("memory grew")
