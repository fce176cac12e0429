"""The rollout: a reconcile loop over a table of steps, state only in stack config.

The central test kills the rollout at EVERY effect (each config write, `pulumi up`, verification, gate,
migration, tag), before and after it happens, then restarts it with a fresh driver on the same config,
and checks that it converges to the uninterrupted outcome without ever giving traffic to an unapproved
or rejected candidate, skipping an `up`, or reporting a success that did not happen."""
from __future__ import annotations

import argparse
import io
import json
import subprocess

import pytest

from infra.release import model as rel
from infra.release import backends as be
from infra.release import driver as drv
from infra.release import effects as fx
from infra.release import lock as lk
from infra.release.ledger import Ledger, MemoryStore
from infra.release import view
from infra.release.view import adopt, current
from infra.release.cli import rollout as rollout_cli
from infra.release import state as rs
from infra.release import revision as rv
from infra.notify import Notifier

from infra.config import load_stack_config

from .conftest import cli, flat, stack_config

# the rollout, approve and status plan the stack themselves: from the session's plan cache
pytestmark = pytest.mark.usefixtures("reuse_plans")


class PointStore:
    """A ledger store whose saves are World effects (counted, killable before or after they happen)."""

    def __init__(self, world, store):
        self.world, self.store = world, store

    def load(self):
        return self.store.load()

    def save(self, doc, if_generation_match):
        return self.world.point(lambda: self.store.save(doc, if_generation_match))


def make_release(plan: dict, keys=("auth", "backend", "frontend"), scope="stack", first_deploy=False,
                 has_migration=True) -> rv.Release:
    services = plan["outputs"]["services"]
    targets = tuple(rs.Target(k, services[k]["serviceName"], services[k]["candidateRevision"],
                              None if first_deploy else services[k]["stableRevision"], services[k]["url"])
                    for k in keys)
    return rv.Release("prod", targets, tuple(plan["outputs"]["stages"]), scope, has_migration, "netra-production",
                      "us-central1")


def every_target(plan: dict) -> dict:
    return {t.key: t for t in make_release(plan, ("auth", "backend", "frontend")).targets}


class World:
    """The stack config and every effect, with a kill switch: effect number `kill_at` dies before
    (`after=False`) or after it happened. Records what each `pulumi up` applied and what each check saw."""

    def __init__(self, config: dict, decisions: dict | None = None, up_fails_at: int | None = None,
                 gate_raises_at: int | None = None):
        self.backend = be.MemoryBackend(config)
        # the ledger's compare-and-swap saves are effects too: countable and killable like the others
        self.ledger = Ledger(PointStore(self, MemoryStore(adopt(config, "prod"))), "prod")
        self.decisions = decisions or {}
        self.up_fails_at = up_fails_at
        self.gate_raises_at = gate_raises_at
        self.count = 0
        self.kill_at: int | None = None
        self.after = False
        self.checks: list[tuple[str, str, int, int]] = []  # (kind, revision, stage, stage of the last up)
        self.rejected: set[str] = set()
        self.ups_at_rejection: dict[str, int] = {}
        self.tags = 0
        self.migrations = 0

    def point(self, fn):
        self.count += 1
        if self.kill_at == self.count and not self.after:
            raise rs.Killed(self.count)
        try:
            result = fn()
        except Exception:
            if self.kill_at == self.count and self.after:  # died right after a failed effect
                raise rs.Killed(self.count) from None
            raise
        if self.kill_at == self.count and self.after:
            raise rs.Killed(self.count)
        return result

    def unchanged(self) -> tuple:
        """What a refused command must leave as it was: the release record, the rendered config, the ups."""
        doc = self.ledger.read().doc
        return (json.dumps([doc["release"], doc["config"], doc["fence"]], sort_keys=True),
                json.dumps(self.backend.config, sort_keys=True), len(self.backend.ups))

    # backend
    def read(self):
        return self.backend.read()

    def write(self, values, remove=()):
        return self.point(lambda: self.backend.write(values, remove))

    def up(self, message):
        def do():
            stage = rv.desired_stage(self.release, self.backend.config)
            if self.up_fails_at is not None and stage == self.up_fails_at and "rollback" not in message:
                raise rs.OperationFailed("pulumi up failed: error: boom")
            self.backend.up(message)
        return self.point(do)

    # checks and effects
    def check(self, kind):
        def call(t: rs.Target, stage: int) -> rel.Verdict:
            def do():
                if kind == "gate" and self.gate_raises_at == stage:
                    raise RuntimeError("monitoring API exploded")
                last = rv.desired_stage(self.release, self.backend.ups[-1][1]) if self.backend.ups else -1
                self.checks.append((kind, t.candidate, stage, last))
                decision = self.decisions.get(stage, "promote")
                if decision == "rollback":
                    self.rejected.add(t.candidate)
                    self.ups_at_rejection.setdefault(t.candidate, len(self.backend.ups))
                return rel.Verdict(decision, t.candidate, stage, rel.evidence_digest([kind, stage]), f"{kind} says {decision}",
                                   by=kind)
            return self.point(do)
        return call

    def migrate(self):
        def do():
            self.migrations += 1
            self.migrated_at = self.count
        return self.point(do)

    def tag(self):
        def do():
            self.tags += 1
        return self.point(do)

    def driver(self, release: rv.Release, tag=False, notifier=None) -> drv.Driver:
        self.release = release
        return drv.Driver(release, self, gate=self.check("gate"), verify=self.check("verify"), migrate=self.migrate,
                         tag=self.tag if tag else None, notifier=notifier, log=lambda line: None)


SCENARIOS = {
    "released": (dict(), 0),
    "rolled-back-at-50": (dict(decisions={50: "rollback"}), 1),
    "verification-fails": (dict(decisions={0: "rollback"}), 1),
    "held-at-10": (dict(decisions={10: "hold"}), 3),
    "gate-error-at-10": (dict(gate_raises_at=10), 4),
    "up-fails-at-50": (dict(up_fails_at=50), 4),
}


def check_invariants(world: World, release: rv.Release, code: int, expected: int) -> None:
    assert code == expected
    ups = world.backend.ups
    # no traffic without approval: the program would give every up exactly the stage it asks for
    for message, snap in ups:
        stage = rv.desired_stage(release, snap)
        doc = rs.read_release_doc(snap)
        for t in release.targets:
            stable = (snap["netra:services"][t.key].get("stableRevision") or None)
            a = doc["approvals"].get(t.key)
            approval = rel.Approval(a["revision"], a["stage"], a["by"], a["evidence"], a.get("rejected", False)) if a else None
            d = rel.decide_share(t.key, t.candidate, stable, stage, approval, release.stages)
            assert d.problem is None and d.percent == stage, (message, t.key, stage, a)
    # never judges a stage whose `up` did not happen
    for kind, revision, stage, last_up_stage in world.checks:
        assert last_up_stage == stage, (kind, revision, stage, last_up_stage)
    # never climbs a rejected candidate: after the rejection, every up is at 0 %
    for cand, n in world.ups_at_rejection.items():
        assert all(rv.desired_stage(release, snap) == 0 for _, snap in ups[n:])
    final = current(world)[0]  # the stack as the ledger says it is (the config render may trail a kill)
    doc = rs.read_release_doc(final)
    if expected in (0, 1, 4):
        assert "rollout" not in doc, doc.get("rollout")  # the journal is closed
        for t in release.targets:  # no stale override
            assert "canaryPercent" not in final["netra:services"][t.key]
    if expected == 0:  # success only after the finalize update, which carried the new stable revisions
        message, snap = ups[-1]
        assert message == "netra rollout: finalize"
        assert all(snap["netra:services"][t.key]["stableRevision"] == t.candidate for t in release.targets)
        assert rv.desired_stage(release, snap) == 0
    if expected in (1, 4):
        assert rv.desired_stage(release, ups[-1][1]) == 0 if ups else True
        assert all(snap["netra:services"][t.key]["stableRevision"] == t.stable for t in release.targets
                   for _, snap in ups)
    if expected == 3:
        assert doc["rollout"]["live"] == 10 and rv.desired_stage(release, final) == 10


@pytest.mark.parametrize("scope", ["stack", "service"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_interruption_point_converges(prod_plan, scenario, scope):
    kwargs, expected = SCENARIOS[scenario]
    keys = ("auth", "backend", "frontend") if scope == "stack" else ("backend",)
    release = make_release(prod_plan, keys, scope)
    base = stack_config("prod")

    clean = World(base, **kwargs)
    outcome = clean.driver(release, tag=True).run()
    check_invariants(clean, release, outcome.exit_code, expected)
    for _, snap in clean.backend.ups:  # the program accepts every config the rollout applies
        load_stack_config(flat(snap), "prod")
    load_stack_config(flat(clean.backend.config), "prod")
    effects = clean.count
    assert effects >= 8

    for n in range(1, effects + 1):
        for after in (False, True):
            world = World(base, **kwargs)
            world.kill_at, world.after = n, after
            with pytest.raises(rs.Killed):
                world.driver(release, tag=True).run()
            world.kill_at = None
            # a fresh driver on what the config recorded (as `run_rollout` does after re-planning)
            again = rv.resume(release, current(world)[0], every_target(prod_plan))
            outcome = world.driver(again, tag=True).run()
            check_invariants(world, release, outcome.exit_code, expected)
            if expected == 0:
                assert world.tags >= 1
            # the migration runs once, or twice when the kill fell between running it and recording it in
            # the ledger (the runner is idempotent: schema_migrations bookkeeping)
            m = clean.migrated_at
            between = (n == m and after) or (n == m + 1 and not after)
            # killed once the ledger closed the journal of a run that did not reject the candidate (the last
            # save, then the config render): the restart is a new rollout of the same candidate (a gate
            # error is not a verdict)
            anew = expected == 4 and ((n == effects - 1 and after) or n == effects)
            assert world.migrations == (2 if between or anew else 1)


def test_effect_order_on_the_happy_path(prod_plan):
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"))
    driver = world.driver(release)
    assert driver.run().exit_code == 0
    steps = [name for kind, name in driver.trace if kind == "step"]
    # the migration runs after the stage-0 `up`, which uploads this release's files, and before the verification
    assert steps == ["begin", "apply", "migrate", "check", "climb", "apply", "check", "climb", "apply", "check",
                     "climb", "apply", "finalize", "finalize-up", "done"]
    assert [m for m, _ in world.backend.ups] == ["netra rollout: stage 0 %", "netra rollout: stage 10 %",
                                                 "netra rollout: stage 50 %", "netra rollout: stage 100 %",
                                                 "netra rollout: finalize"]
    assert [(k, s) for k, _, s, _ in world.checks] == [("verify", 0), ("gate", 10), ("gate", 50)]


def test_a_rejected_candidate_never_climbs_again(prod_plan):
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"), decisions={10: "rollback"})
    assert world.driver(release).run().exit_code == 1
    ups = len(world.backend.ups)
    world.decisions = {}
    outcome = world.driver(release).run()
    assert outcome.exit_code == 1 and "rejected" in outcome.reason and len(world.backend.ups) == ups


def test_first_deploy_verifies_at_0_then_goes_to_100(prod_plan):
    release = make_release(prod_plan, ("auth",), "service", first_deploy=True)
    cfg = stack_config("prod")
    cfg["netra:services"]["auth"].pop("stableRevision")
    world = World(cfg)
    assert release.ladder == (0, 100)
    assert world.driver(release).run().exit_code == 0
    assert [(k, s) for k, _, s, _ in world.checks] == [("verify", 0)]
    assert [rv.desired_stage(release, snap) for _, snap in world.backend.ups] == [0, 100, 0]
    assert world.backend.config["netra:services"]["auth"]["stableRevision"] == release.targets[0].candidate


def test_stale_overrides_are_removed_and_the_stack_key_carries_the_stage(prod_plan):
    cfg = stack_config("prod")
    cfg["netra:services"]["backend"]["canaryPercent"] = 0  # left by an old rollout
    release = make_release(prod_plan)
    world = World(cfg)
    assert world.driver(release).run().exit_code == 0
    assert [snap["netra:canaryPercent"] for _, snap in world.backend.ups] == [0, 10, 50, 100, 0]
    assert all("canaryPercent" not in snap["netra:services"]["backend"] for _, snap in world.backend.ups)


def test_template_change_mid_rollout_restarts_the_new_candidate_at_0(prod_plan):
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"), decisions={50: "hold"})
    assert world.driver(release).run().exit_code == 3  # live at 50 %
    new = rs.Target("backend", "netra-backend-prod", "netra-backend-prod-99999999", release.targets[0].stable)
    newer = rv.Release("prod", (new,), release.stages, "service", True)
    world.decisions = {}
    world.driver(newer).run()
    first = rv.desired_stage(newer, world.backend.ups[-5][1])
    assert first == 0 and world.checks[-3][:3] == ("verify", "netra-backend-prod-99999999", 0)


def test_the_lease_keeps_two_rollouts_of_one_stack_apart_and_expires_with_a_dead_holder():
    clock = [1000.0]
    ledger = Ledger(MemoryStore(), "prod")
    first = lk.Lease(ledger, "rollout prod", holder="alice", ttl_s=60, clock=lambda: clock[0], heartbeat=False)
    first.acquire()
    with pytest.raises(lk.LockBusy, match="another rollout prod of this stack holds the lease: alice on .*expires"):
        lk.Lease(ledger, "rollout prod", holder="bob", ttl_s=60, clock=lambda: clock[0], heartbeat=False).acquire()
    other = Ledger(MemoryStore(), "staging")  # another stack's ledger is another lease
    lk.Lease(other, "rollout staging", holder="bob", heartbeat=False).acquire()
    clock[0] += 50
    first.renew(force=True)  # a heartbeat pushes the expiry
    clock[0] += 50
    with pytest.raises(lk.LockBusy):
        lk.Lease(ledger, "rollout prod", holder="bob", ttl_s=60, clock=lambda: clock[0], heartbeat=False).acquire()
    clock[0] += 61  # alice died: no heartbeat for longer than the ttl
    second = lk.Lease(ledger, "rollout prod", holder="bob", ttl_s=60, clock=lambda: clock[0], heartbeat=False)
    second.acquire()
    assert ledger.read().lease["holder"] == "bob"
    with pytest.raises(lk.LeaseLost):  # alice comes back: her lease is gone, she stops without writing
        first.renew(force=True)
    second.release()
    assert ledger.read().lease is None


def rollout_args(**kw):
    base = dict(stack="prod", service=None, dry_run=False, tag=None, interval="60", max_duration="3600",
                monitoring_endpoint=None, lag="180", min_soak="600", min_requests="500", alpha="0.01",
                error_tolerance="1.1", latency_tolerance="1.25", smoke_requests="5", smoke_path=[], verify_url=[])
    base.update(kw)
    return argparse.Namespace(**base)


def test_cli_rollout_with_the_lease_held_does_nothing_and_exits_4_naming_the_holder(capsys):
    world = World(stack_config("prod"))
    lk.Lease(world.ledger, "rollout prod", holder="alice", heartbeat=False).acquire()
    before = world.unchanged()
    code = rollout_cli.run_rollout(rollout_args(service="backend"), backend=world, gate=world.check("gate"),
                                   verify=world.check("verify"), migrate=world.migrate, log=lambda l: None,
                                   notifier=Notifier("prod", out=io.StringIO()), lease_s=600)
    assert code == 4 and world.unchanged() == before and world.migrations == 0
    assert "another rollout prod of this stack holds the lease: alice on " in capsys.readouterr().err


def test_cli_rollout_gate_error_rolls_back_and_exits_4(tmp_path, prod_plan):
    world = World(stack_config("prod"), gate_raises_at=10)
    world.release = make_release(prod_plan, ("backend",), "service")
    out = io.StringIO()
    code = rollout_cli.run_rollout(rollout_args(service="backend"), backend=world, gate=world.check("gate"),
                          verify=world.check("verify"), migrate=world.migrate, log=lambda l: None,
                          notifier=Notifier("prod", out=out), lease_s=600)
    assert code == 4
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events][-3:] == ["stage_up", "failure", "rollback"]
    assert "monitoring API exploded" in events[-2]["message"]
    assert world.backend.ups[-1][0].startswith("netra rollout: rollback to 0 %")


def test_a_verdict_for_another_revision_or_stage_is_an_error(prod_plan):
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"))
    driver = world.driver(release)
    driver.gate = lambda t, stage: rel.Verdict("promote", "netra-backend-prod-00000000", stage, "0" * 64)
    outcome = driver.run()
    assert outcome.exit_code == 4 and "names netra-backend-prod-00000000" in outcome.reason


def test_notifications_on_every_event(prod_plan):
    release = make_release(prod_plan, ("backend",), "service")
    out = io.StringIO()
    world = World(stack_config("prod"), decisions={50: "rollback"})
    assert world.driver(release, notifier=Notifier("prod", out=out)).run().exit_code == 1
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["start", "stage_up", "verdict", "stage_up", "verdict", "stage_up", "verdict",
                                            "rollback"]
    assert events[-2]["decision"] == "rollback" and events[-2]["revision"] == release.targets[0].candidate
    assert all(e["stack"] == "prod" and e["at"] for e in events)


def test_dry_run_shows_the_real_path_with_hold_and_rollback_branches():
    r = cli("rollout", "--stack", "prod", "--service", "backend", "--dry-run")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    order = ["-- begin", "pulumi up (stage 0 %)", "migrate (the migration job", "verify backend", "pulumi up (stage 10 %)",
             "gate backend", "pulumi up (stage 50 %)", "pulumi up (stage 100 %)",
             "set config netra:services.backend.stableRevision", "pulumi up (finalize)", "=> exit 0"]
    pos = [out.index(w) for w in order]
    assert pos == sorted(pos)
    assert "if the gate at 10 % answers rollback: exit 1" in out and "rollback to 0 %" in out
    assert "if the gate at 50 % answers hold: exit 3" in out and "if the verification at 0 % answers rollback" in out


def test_dry_run_of_a_first_deploy_climbs_0_then_100():
    r = cli("rollout", "--stack", "staging", "--service", "auth", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "along [0, 100] (first deploy)" in r.stdout and "pulumi up (stage 100 %)" in r.stdout
    assert "gate auth" not in r.stdout and "verify auth" in r.stdout and "=> exit 0" in r.stdout


class FakeSession:
    def __init__(self, final):
        self.final = final
        self.requests = []

    def _resp(self, code, body):
        return type("Resp", (), {"status_code": code, "json": lambda s: body, "text": str(body)})()

    def post(self, url, json=None):
        self.requests.append(("POST", url))
        return self._resp(200, {"name": "projects/p/locations/r/operations/op1", "done": False})

    def get(self, url, timeout=None):
        self.requests.append(("GET", url))
        return self._resp(200, {"name": "projects/p/locations/r/operations/op1", "done": True, **self.final})


def test_migration_job_is_run_through_the_cloud_run_admin_api():
    s = FakeSession({"response": {}})
    fx.run_migration_job({"name": "netra-migrate", "region": "us-central1"}, "netra-production", session=s,
                         sleep=lambda x: None, log=lambda l: None)
    assert s.requests[0] == ("POST", "https://run.googleapis.com/v2/projects/netra-production/locations/us-central1/jobs/netra-migrate:run")
    assert s.requests[1] == ("GET", "https://run.googleapis.com/v2/projects/p/locations/r/operations/op1")
    with pytest.raises(rs.OperationFailed, match="failed: bad sql"):
        fx.run_migration_job({"name": "netra-migrate", "region": "us-central1"}, "p",
                             session=FakeSession({"error": {"message": "bad sql"}}), sleep=lambda x: None, log=lambda l: None)


def test_tag_after_finalize(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.name", "t"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.email", "t@x"], check=True)
    fx.git_tag("release-1", "released", tmp_path)
    assert "release-1" in subprocess.run(["git", "-C", str(tmp_path), "tag"], capture_output=True, text=True).stdout
    with pytest.raises(rs.OperationFailed):
        fx.git_tag("release-1", "again", tmp_path)


class FakeAutomationStack:
    """pulumi.automation.Stack's config and up methods, recording calls."""

    def __init__(self):
        self.calls = []
        self.config = {}

    def get_all_config(self):
        from pulumi import automation as auto

        return {k: auto.ConfigValue(value=v) for k, v in self.config.items()}

    def set_all_config(self, values, *, path=False):
        assert path is True
        self.calls.append(("set", {k: v.value for k, v in values.items()}))
        self.config.update({k: v.value for k, v in values.items()})

    def remove_all_config(self, keys, *, path=False):
        self.calls.append(("remove", list(keys)))

    def up(self, **kw):
        self.calls.append(("up", kw))
        return type("UpResult", (), {"summary": type("S", (), {"result": "succeeded"})()})()


def test_automation_backend_runs_up_with_the_policy_pack_and_writes_json():
    stack = FakeAutomationStack()
    b = be.AutomationBackend(stack, "/repo/policies", "/repo/policies/config.prod.json", log=lambda l: None)
    b.write({"netra:canaryPercent": 10, "netra:release": {"approvals": {}}}, remove=("netra:services.backend.canaryPercent",))
    b.up("netra rollout: stage 10 %")
    assert stack.calls[0] == ("set", {"netra:canaryPercent": "10", "netra:release": '{"approvals":{}}'})
    assert stack.calls[1] == ("remove", ["netra:services.backend.canaryPercent"])
    up = stack.calls[2][1]
    assert up["policy_packs"] == ["/repo/policies"] and up["policy_pack_configs"] == ["/repo/policies/config.prod.json"]
    assert b.read()["netra:release"] == {"approvals": {}}


@pytest.mark.parametrize("argv, flag", [
    (["rollout", "--stack", "prod", "--service", "db"], "--service"),
    (["rollout", "--stack", "qa"], "--stack"),
    (["rollout"], "--stack"),
    (["rollout", "--stack", "prod", "--interval", "-1"], "--interval"),
    (["rollout", "--stack", "prod", "--smoke-requests", "0"], "--smoke-requests"),
    (["rollout", "--stack", "prod", "--verify-url", "backend"], "--verify-url"),
    (["rollback"], "--stack"),
    (["rollback", "--stack", "qa", "--dry-run"], "--stack"),
    (["status"], "--stack"),
    (["approve", "--stack", "prod"], "--service"),
])
def test_bad_input_is_one_line_exit_2(argv, flag):
    r = cli(*argv)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    # one error line naming the argument, last (a missing required --stack: argparse's usage comes first)
    errors = [line for line in lines if "error:" in line]
    assert errors == [lines[-1]] and flag in lines[-1] and "Traceback" not in r.stderr


# ---- the live gate adapter: binds the gate API's verdict to the revision and stage it judged --------

def test_live_gate_judges_what_cloud_run_serves_and_binds_the_verdict(prod_plan, monkeypatch, tmp_path):
    from infra.canary import api
    from infra.canary.verdict import Decision, Verdict

    from .test_gate_api import Response, Session

    monkeypatch.chdir(tmp_path)  # the verdict file
    release = make_release(prod_plan, ("backend",), "service")
    t = release.targets[0]

    def serving(candidate, percent):
        return Session(Response(200, {"trafficStatuses": [
            {"revision": t.stable, "percent": 100 - percent, "tag": "stable"},
            {"revision": candidate, "percent": percent, "tag": "canary"}]}))

    judged = []

    def judge(rev, settings, **kw):
        judged.append(rev)
        return Verdict(Decision.PROMOTE, "promote: fine", {"candidateRevision": rev.candidate})

    monkeypatch.setattr(api, "judge", judge)
    v = fx.make_gate(None, release, lambda l: None, session=serving(t.candidate, 10))(t, 10)
    assert (v.decision, v.revision, v.stage, v.by) == ("promote", t.candidate, 10, "gate") and len(v.evidence) == 64
    assert (tmp_path / "verdict-prod-backend-10.json").exists()
    with pytest.raises(rs.OperationFailed, match="not .* at 50 % as applied"):
        fx.make_gate(None, release, lambda l: None, session=serving(t.candidate, 10))(t, 50)
    with pytest.raises(rs.OperationFailed, match="serves netra-backend-prod-00000000"):
        fx.make_gate(None, release, lambda l: None, session=serving("netra-backend-prod-00000000", 10))(t, 10)
    monkeypatch.setattr(api, "judge", lambda rev, settings, **kw: Verdict(Decision.ERROR, "error: no credentials", {}))
    with pytest.raises(rs.OperationFailed, match="no credentials"):
        fx.make_gate(None, release, lambda l: None, session=serving(t.candidate, 10))(t, 10)


def test_a_release_reports_no_foreign_records_and_a_hand_written_approval_is_named(prod_plan):
    """Every ledger write renders over the previous render: that is the ledger's own history, never a
    'refused' line; an approval typed into the stack config by hand is named (and never used)."""
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"))
    lines: list[str] = []
    driver = world.driver(release)
    driver.log = lines.append
    assert driver.run().exit_code == 0
    assert not [line for line in lines if line.startswith("refused:")]
    forged = dict(rs.read_release_doc(world.backend.config))
    forged["approvals"] = {**forged.get("approvals", {}), "auth": {"revision": "netra-auth-prod-00000000", "stage": 50,
                                                                   "by": "gate", "evidence": "f" * 64, "at": "t"}}
    world.backend.write({rs.RELEASE_KEY: forged})
    assert view.foreign_records(world.backend.read(), world.ledger.read()) == [f"{rs.RELEASE_KEY}.approvals.auth"]
