"""The rollout: the pure stage machine explored exhaustively, the Automation API orchestration with an
injected fake `Stack` object, the migration job call, the emergency rollback and the dry run."""
from __future__ import annotations

import argparse
import subprocess

import pytest

from infra import rollout as ro
from infra.rollout import (
    Done, Finalize, Gate, Migrate, SetPercent, Tag, Up, initial_state, transition,
)

from .conftest import cli

# the rollout and the rollback plan the stack themselves: from the session's plan cache
pytestmark = pytest.mark.usefixtures("reuse_plans")
LADDERS = [(0, 10, 100), (0, 10, 50, 100), (0, 5, 25, 50, 75, 100)]
EVENTS = {Migrate: ("migrate_ok", "migrate_failed"), Up: ("up_ok", "up_failed"),
          Gate: ("promote", "rollback", "hold"), Tag: ("tag_ok", "tag_failed")}


def no_migration():
    """The plan now declares a migration job; these tests are about the ladder, not the job."""


def explore(state):
    """Every path of the machine from `start`: lists of (action or event) items."""
    paths = []

    def walk(st, actions, trail):
        assert len(trail) < 200, "the machine must terminate"
        trail = trail + list(actions)
        if isinstance(actions[-1], Done):
            assert st.phase == "done"
            paths.append(trail)
            return
        last = actions[-1]
        for ev in EVENTS[type(last)]:
            nst, nacts = transition(st, ev)
            walk(nst, nacts, trail + [ev])

    st, acts = transition(state, "start")
    walk(st, acts, [])
    return paths


def check_path(ladder, start, has_migration, tag, path):
    done = path[-1]
    events = [x for x in path if isinstance(x, str)]
    percent = start
    last_up_ok_at = None
    promoted_from = None
    after_rollback = False
    for i, x in enumerate(path):
        if isinstance(x, SetPercent):
            if after_rollback:
                assert x.percent == 0
            elif x.percent > percent and percent > 0:
                # traffic rises only one rung, and only right after a promote at the rung below
                assert ladder.index(x.percent) == ladder.index(percent) + 1
                assert promoted_from == percent and path[i - 1] == "promote"
            elif x.percent > percent:
                assert ladder.index(x.percent) == 1 and percent == 0
            elif x.percent < percent:
                assert x.percent == 0 and path[i - 1] in ("rollback", "up_failed")
                assert isinstance(path[i + 1], Up)  # the rollback update follows at once
            percent = x.percent
        if x == "rollback":
            after_rollback = True
            assert path[i + 1] == SetPercent(0)
        if x == "promote":
            promoted_from = percent
        if isinstance(x, Gate):
            assert x.percent == percent and 0 < percent < 100
            assert path[i - 1] == "up_ok" or i == 0  # judged right after its update, or on resume
        if isinstance(x, Migrate):
            assert has_migration and start == 0 and i == 0
        if isinstance(x, Finalize):
            assert percent == 100 and (path[i - 1] == "up_ok" or i == 0)
        if x == "up_ok":
            last_up_ok_at = percent
    if has_migration and start == 0:
        assert isinstance(path[0], Migrate)
    else:
        assert not any(isinstance(x, Migrate) for x in path)
    if "hold" in events:
        assert events[-1] == "hold" and done.exit_code == 3
    if done.exit_code == 0:
        assert any(isinstance(x, Finalize) for x in path) and (not tag or events[-1] == "tag_ok")
    if done.exit_code == 1:
        assert "rollback" in events and events[-1] == "up_ok" and percent == 0
    if done.exit_code == 3:
        assert events[-1] == "hold"
    if done.exit_code == 4:
        assert events[-1] in ("migrate_failed", "up_failed", "tag_failed") or "up_failed" in events
    assert done.exit_code in (0, 1, 3, 4)
    return last_up_ok_at


@pytest.mark.parametrize("ladder", LADDERS, ids=lambda l: "-".join(map(str, l)))
def test_state_machine_exhaustively(ladder):
    total = 0
    for start in ladder:
        for has_migration in (False, True):
            for tag in (False, True):
                paths = explore(initial_state(ladder, start, has_migration, tag))
                for p in paths:
                    check_path(ladder, start, has_migration, tag, p)
                total += len(paths)
                # the all-good path releases
                good = [p for p in paths if all(e in ("migrate_ok", "up_ok", "promote", "tag_ok") for e in p if isinstance(e, str))]
                assert len(good) == 1 and good[0][-1].exit_code == 0
    assert total > 50


def test_happy_path_action_order():
    st = initial_state([0, 10, 50, 100], 0, True, True)
    order = []
    st, acts = transition(st, "start")
    script = iter(["migrate_ok", "up_ok", "up_ok", "promote", "up_ok", "promote", "up_ok", "up_ok", "tag_ok"])
    while True:
        order += acts
        if isinstance(acts[-1], Done):
            break
        st, acts = transition(st, next(script))
    assert order == [Migrate(), SetPercent(0), Up("stage 0 %"), SetPercent(10), Up("stage 10 %"), Gate(10),
                     SetPercent(50), Up("stage 50 %"), Gate(50), SetPercent(100), Up("stage 100 %"),
                     Finalize(), Up("finalize"), Tag(), Done(0, "released and tagged")]


@pytest.mark.parametrize("stages, current", [([10, 50, 100], 10), ([0, 50, 10, 100], 0), ([0, 100], 0), ([0, 50], 0), ([0, 10, 100], 20)])
def test_bad_ladders_are_refused(stages, current):
    with pytest.raises(ValueError):
        initial_state(stages, current, False, False)


def test_an_event_out_of_place_is_an_error():
    st, _ = transition(initial_state([0, 10, 100], 10, False, False), "start")
    with pytest.raises(ValueError):
        transition(st, "up_ok")


# ---- the real orchestration with a fake Automation API stack -------------------------------------

class FakeStack:
    """Stands in for pulumi.automation.Stack: records set_config / up calls."""

    def __init__(self, fail_up_at: int | None = None):
        self.calls = []
        self.ups = 0
        self.fail_up_at = fail_up_at

    def set_config(self, key, value, *, path=False):
        from pulumi import automation as auto

        assert isinstance(value, auto.ConfigValue) and path is True
        self.calls.append(("set", key, value.value))

    def up(self, message=None, on_output=None, **kw):
        from pulumi.automation import errors

        self.ups += 1
        self.calls.append(("up", message))
        if on_output:
            on_output("Updating (prod):\n")
        if self.fail_up_at == self.ups:
            raise errors.CommandError(type("R", (), {"stdout": "", "stderr": "error: boom", "code": 255,
                                                     "__str__": lambda s: "error: boom"})())
        return type("UpResult", (), {"summary": type("S", (), {"result": "succeeded"})()})()


def rollout_args(**kw):
    base = dict(stack="prod", service=None, dry_run=False, tag=None, interval="60", max_duration="3600",
                monitoring_endpoint=None, lag="180", min_soak="600", min_requests="500", alpha="0.01",
                error_tolerance="1.1", latency_tolerance="1.25")
    base.update(kw)
    return argparse.Namespace(**base)


def scripted_gate(*decisions):
    it = iter(decisions)
    seen = []

    def gate(keys, percent):
        seen.append((tuple(keys), percent))
        return next(it), {}

    gate.seen = seen
    return gate


def test_rollout_drives_the_automation_api_through_the_ladder(prod_plan, capsys):
    fake = FakeStack()
    gate = scripted_gate("promote", "promote")
    code = ro.run_rollout(rollout_args(service="backend"), backend=ro.AutomationStack(fake, log=lambda l: None),
                          gate=gate, log=lambda l: None, migrate=no_migration)
    assert code == 0
    cand = prod_plan["outputs"]["services"]["backend"]["candidateRevision"]
    k = "netra:services.backend.canaryPercent"
    assert fake.calls == [
        ("set", k, "0"), ("up", "netra rollout: stage 0 %"),
        ("set", k, "10"), ("up", "netra rollout: stage 10 %"),
        ("set", k, "50"), ("up", "netra rollout: stage 50 %"),
        ("set", k, "100"), ("up", "netra rollout: stage 100 %"),
        ("set", "netra:services.backend.stableRevision", cand), ("set", k, "0"), ("up", "netra rollout: finalize"),
    ]
    assert gate.seen == [(("backend",), 10), (("backend",), 50)]
    assert "released" in capsys.readouterr().out


def test_rollback_verdict_sets_zero_and_updates_at_once():
    fake = FakeStack()
    code = ro.run_rollout(rollout_args(service="auth"), backend=ro.AutomationStack(fake, log=lambda l: None),
                          gate=scripted_gate("promote", "rollback"), log=lambda l: None, migrate=no_migration)
    assert code == 1
    assert fake.calls[-2:] == [("set", "netra:services.auth.canaryPercent", "0"),
                               ("up", "netra rollout: rollback: the gate failed the canary at 50 %")]


def test_hold_leaves_traffic_where_it_is():
    fake = FakeStack()
    code = ro.run_rollout(rollout_args(service="auth"), backend=ro.AutomationStack(fake, log=lambda l: None),
                          gate=scripted_gate("hold"), log=lambda l: None, migrate=no_migration)
    assert code == 3
    assert fake.calls[-1] == ("up", "netra rollout: stage 10 %")


def test_failed_update_at_a_stage_rolls_back_and_reports_failure():
    fake = FakeStack(fail_up_at=2)  # stage 10 % fails
    code = ro.run_rollout(rollout_args(service="auth"), backend=ro.AutomationStack(fake, log=lambda l: None),
                          gate=scripted_gate(), log=lambda l: None, migrate=no_migration)
    assert code == 4
    assert fake.calls[-2:] == [("set", "netra:services.auth.canaryPercent", "0"),
                               ("up", "netra rollout: rollback after a failed update")]


def test_all_services_move_together_and_gate_together():
    fake = FakeStack()
    gate = scripted_gate("promote", "promote")
    assert ro.run_rollout(rollout_args(), backend=ro.AutomationStack(fake, log=lambda l: None), gate=gate,
                          log=lambda l: None, migrate=no_migration) == 0
    first_stage = [c for c in fake.calls[:4] if c[0] == "set"]
    assert {c[1] for c in first_stage} == {f"netra:services.{k}.canaryPercent" for k in ("auth", "backend", "frontend")}
    assert gate.seen[0] == (("auth", "backend", "frontend"), 10)


def test_migration_runs_before_the_first_update_and_a_failure_moves_nothing(monkeypatch, prod_plan):
    real = ro.plan_release

    def with_job(stack, service, overrides=None):
        release, current, stages = real(stack, service, overrides)
        release.outputs = {**release.outputs, "migrationJob": {"name": "netra-migrate-prod", "region": "us-central1"}}
        return release, current, stages

    monkeypatch.setattr(ro, "plan_release", with_job)
    order = []
    fake = FakeStack()

    def migrate():
        order.append(("migrate", fake.ups))

    assert ro.run_rollout(rollout_args(service="backend"), backend=ro.AutomationStack(fake, log=lambda l: None),
                          migrate=migrate, gate=scripted_gate("promote", "promote"), log=lambda l: None) == 0
    assert order == [("migrate", 0)]

    def failing():
        raise ro.OperationFailed("job failed")

    fake2 = FakeStack()
    assert ro.run_rollout(rollout_args(service="backend"), backend=ro.AutomationStack(fake2, log=lambda l: None),
                          migrate=failing, gate=scripted_gate(), log=lambda l: None) == 4
    assert fake2.calls == []


class FakeSession:
    def __init__(self, final):
        self.final = final
        self.requests = []

    def _resp(self, code, body):
        return type("Resp", (), {"status_code": code, "json": lambda s: body, "text": str(body)})()

    def post(self, url, json=None):
        self.requests.append(("POST", url))
        return self._resp(200, {"name": "projects/p/locations/r/operations/op1", "done": False})

    def get(self, url):
        self.requests.append(("GET", url))
        return self._resp(200, {"name": "projects/p/locations/r/operations/op1", "done": True, **self.final})


def test_migration_job_is_run_through_the_cloud_run_admin_api():
    s = FakeSession({"response": {}})
    ro.run_migration_job({"name": "netra-migrate", "region": "us-central1"}, "netra-production", session=s,
                         sleep=lambda x: None, log=lambda l: None)
    assert s.requests[0] == ("POST", "https://run.googleapis.com/v2/projects/netra-production/locations/us-central1/jobs/netra-migrate:run")
    assert s.requests[1] == ("GET", "https://run.googleapis.com/v2/projects/p/locations/r/operations/op1")
    with pytest.raises(ro.OperationFailed, match="failed: bad sql"):
        ro.run_migration_job({"name": "netra-migrate", "region": "us-central1"}, "p",
                             session=FakeSession({"error": {"message": "bad sql"}}), sleep=lambda x: None, log=lambda l: None)


def test_emergency_rollback_sets_every_service_in_one_update():
    fake = FakeStack()
    assert ro.run_rollback(argparse.Namespace(stack="prod", dry_run=False), backend=ro.AutomationStack(fake),
                           log=lambda l: None) == 0
    sets = [c for c in fake.calls if c[0] == "set"]
    assert {c[1] for c in sets} == {"netra:canaryPercent", "netra:services.auth.canaryPercent",
                                    "netra:services.backend.canaryPercent", "netra:services.frontend.canaryPercent"}
    assert all(c[2] == "0" for c in sets) and fake.ups == 1 and fake.calls[-1][0] == "up"


def test_tag_after_finalize(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.name", "t"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.email", "t@x"], check=True)
    ro.git_tag("release-1", "released", tmp_path)
    assert "release-1" in subprocess.run(["git", "-C", str(tmp_path), "tag"], capture_output=True, text=True).stdout
    with pytest.raises(ro.OperationFailed):
        ro.git_tag("release-1", "again", tmp_path)


def test_dry_run_prints_the_ordered_actions():
    r = cli("rollout", "--stack", "prod", "--service", "backend", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    wanted = ["set config netra:services.backend.canaryPercent = 0", "pulumi up (stage 0 %)",
              "set config netra:services.backend.canaryPercent = 10", "pulumi up (stage 10 %)",
              "gate backend at 10 %", "set config netra:services.backend.canaryPercent = 50", "pulumi up (stage 50 %)",
              "gate backend at 50 %", "set config netra:services.backend.canaryPercent = 100", "pulumi up (stage 100 %)",
              "set config netra:services.backend.stableRevision = ", "pulumi up (finalize)"]
    pos = 0
    for w in wanted:
        while not lines[pos].startswith(w):
            pos += 1
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("argv, flag", [
    (["rollout", "--stack", "prod", "--service", "db"], "--service"),
    (["rollout", "--stack", "qa"], "--stack"),
    (["rollout"], "--stack"),
    (["rollout", "--stack", "prod", "--interval", "-1"], "--interval"),
    (["rollback"], "--stack"),
    (["rollback", "--stack", "qa", "--dry-run"], "--stack"),
])
def test_bad_input_is_one_line_exit_2(argv, flag):
    r = cli(*argv)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in r.stderr
