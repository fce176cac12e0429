"""The flag ramp: `rollout --flag` drives netra:platform.featureFlags.<flag>.percent along the ladder with the
revision rollout's own Driver and steps, judged by the gate on the flag's arms.

Like tests/test_rollout.py, the central test kills the ramp before and after EVERY effect (each config
write, `pulumi up`, gate call), restarts it with a fresh driver on the recorded config and checks that it
converges to the uninterrupted exit code without ever configuring a percent its approvals do not allow,
judging a percent that was not `up`'d, or climbing after a rejection."""
from __future__ import annotations

import io
import json

import pytest

from infra.release.cli import approve as approve_cli
from infra.release import driver as drv
from infra.release import flag as fl
from infra.release import lock as lk
from infra.release.view import current
from infra.release.cli import rollback as rollback_cli
from infra.release.cli import rollout as rollout_cli
from infra.release import state as rs
from infra.release.cli import status as status_cli
from infra.release import model as rel
from infra.config import load_stack_config
from infra.notify import Notifier

from .conftest import flat, stack_config
from .test_rollout import World, rollout_args

pytestmark = pytest.mark.usefixtures("reuse_plans")

FLAG = "semantic_cache"
PERCENT = fl.flag_key(FLAG, "percent")


def ramp_config(percent=0, kill=False, **flags) -> dict:
    cfg = stack_config("prod")
    cfg["netra:platform"]["featureFlags"][FLAG] = {"percent": percent, "killSwitch": kill}
    cfg["netra:platform"]["featureFlags"].update(flags)
    return cfg


def percent_of(config: dict) -> float:
    return fl._percent(fl.feature_flags(config).get(FLAG))


class FWorld(World):
    """test_rollout's World (every effect countable and killable) with the flag's percent as the stage."""

    def up(self, message):
        def do():
            if self.up_fails_at is not None and percent_of(self.backend.config) == self.up_fails_at \
                    and "rollback" not in message:
                raise rs.OperationFailed("pulumi up failed: error: boom")
            self.backend.up(message)
        return self.point(do)

    def check(self, kind):
        def call(t: rs.Target, stage) -> rel.Verdict:
            def do():
                if self.gate_raises_at == stage:
                    raise RuntimeError("monitoring API exploded")
                last = percent_of(self.backend.ups[-1][1]) if self.backend.ups else -1
                self.checks.append((t.key, t.candidate, stage, last))
                decision = self.decisions.get(stage, "promote")
                if decision == "rollback":
                    self.ups_at_rejection.setdefault(FLAG, len(self.backend.ups))
                return rel.Verdict(decision, t.candidate, stage, rel.evidence_digest([t.key, stage]),
                                   f"arms say {decision}", by="gate")
            return self.point(do)
        return call

    def driver(self, release, tag=False, notifier=None):
        self.release = release
        return drv.Driver(release, self, gate=self.check("gate"), verify=self.check("verify"), notifier=notifier,
                         log=lambda line: None)


@pytest.fixture
def release(prod_plan):
    return fl.plan_flag_release("prod", FLAG, None, ramp_config())


def allowed(release: fl.FlagRelease, doc: dict) -> float:
    """The highest percent the recorded approvals allow (the rule the ramp must keep, written out here)."""
    a = (doc.get("flagApprovals") or {}).get(FLAG)
    if a and a.get("revisions") == release.revisions:
        return 0 if a["rejected"] else rel.next_stage(release.ladder, a["stage"])
    return release.ladder[1]


def check_invariants(world: FWorld, release: fl.FlagRelease, code: int, expected: int) -> None:
    assert code == expected
    ups = world.backend.ups
    for message, snap in ups:  # never a percent the approvals do not allow
        assert percent_of(snap) <= allowed(release, rs.read_release_doc(snap)), (message, rs.read_release_doc(snap))
        assert snap["netra:platform"]["featureFlags"][FLAG]["killSwitch"] is False
    for key, arm, stage, last_up in world.checks:  # never judges a percent that was not up'd
        assert arm == f"{FLAG}=on" and last_up == stage, (key, stage, last_up)
    for n in world.ups_at_rejection.values():  # after a rejection, every up is at 0 %
        assert all(percent_of(snap) == 0 for _, snap in ups[n:])
    final = current(world)[0]  # the stack as the ledger says it is (the config render may trail a kill)
    doc = rs.read_release_doc(final)
    if expected in (0, 1, 4):
        assert "flagRamp" not in doc, doc.get("flagRamp")
    if expected == 0:
        assert percent_of(ups[-1][1]) == 100 == percent_of(final)
    if expected in (1, 4):
        assert percent_of(ups[-1][1]) == 0 == percent_of(final)
    if expected == 1:
        assert doc["flagApprovals"][FLAG]["rejected"] is True
    if expected == 3:
        assert doc["flagRamp"]["live"] == 10 and percent_of(final) == 10
    # the revisions never move: a flag ramp changes only the flags secret
    assert all(snap["netra:services"] == ups[0][1]["netra:services"] for _, snap in ups)


SCENARIOS = {
    "ramped": (dict(), 0),
    "rolled-back-at-50": (dict(decisions={50: "rollback"}), 1),
    "held-at-10": (dict(decisions={10: "hold"}), 3),
    "gate-error-at-10": (dict(gate_raises_at=10), 4),
    "up-fails-at-50": (dict(up_fails_at=50), 4),
}


def test_the_ramp_climbs_0_10_50_100_judging_every_reader(release):
    world = FWorld(ramp_config())
    driver = world.driver(release)
    outcome = driver.run()
    assert (outcome.exit_code, outcome.reason) == (0, f"ramped: {FLAG} is on for 100 % of requests")
    steps = [name for kind, name in driver.trace if kind == "step"]
    assert steps == ["begin", "apply", "climb", "apply", "check", "climb", "apply", "check", "climb", "apply", "done"]
    assert [m for m, _ in world.backend.ups] == [f"netra rollout: flag {FLAG} stage {p} %" for p in (0, 10, 50, 100)]
    assert release.keys == ["auth", "backend", "frontend"]  # the services that read the feature-flags secret
    assert [(k, s) for k, _, s, _ in world.checks] == [(k, s) for s in (10, 50) for k in release.keys]
    for _, snap in world.backend.ups:  # the program accepts every config the ramp applies
        load_stack_config(flat(snap), "prod")
    doc = rs.read_release_doc(world.backend.config)
    assert doc["flagApprovals"][FLAG]["stage"] == 50 and doc["flagApprovals"][FLAG]["by"] == "gate"
    assert doc["approvals"] == {}  # the revisions' approvals are untouched
    # and again: nothing to ramp
    again = world.driver(release).run()
    assert again.exit_code == 0 and "nothing to ramp" in again.reason and len(world.backend.ups) == 4


def test_a_rollback_verdict_sets_0_and_the_flag_never_climbs_again_by_itself(release):
    world = FWorld(ramp_config(), decisions={50: "rollback"})
    outcome = world.driver(release).run()
    assert outcome.exit_code == 1
    assert outcome.reason.startswith(f"the gate rejected auth at 50 %: arms say rollback; rolled back: {FLAG} is off")
    assert [percent_of(s) for _, s in world.backend.ups] == [0, 10, 50, 0]
    assert world.backend.ups[-1][0] == f"netra rollout: flag {FLAG} rollback to 0 % (the gate rejected auth at 50 %: arms say rollback)"
    ups = len(world.backend.ups)
    world.decisions = {}
    again = world.driver(release).run()
    assert again.exit_code == 1 and "was rejected (rolled back) at 50 %" in again.reason and len(world.backend.ups) == ups
    # new code (a new stable revision of a reader) is a new flag implementation: the rejection no longer binds
    cfg = world.backend.config
    cfg["netra:services"]["backend"]["stableRevision"] = "netra-backend-prod-0badc0de"
    newer = fl.plan_flag_release("prod", FLAG, None, cfg)
    assert world.driver(newer).run().exit_code == 0


def test_hold_keeps_the_percent_and_an_operator_approval_lets_it_climb(release, tmp_path, capsys):
    world = FWorld(ramp_config(), decisions={10: "hold"})
    outcome = world.driver(release).run()
    assert outcome.exit_code == 3 and outcome.reason.startswith("held at 10 %")
    assert percent_of(world.backend.config) == 10 and rs.read_release_doc(world.backend.config)["flagRamp"]["live"] == 10
    assert approve_cli.run_approve(rollout_args(flag=FLAG, stage="10", note="dashboards fine", by="alice", service=None,
                                       revision=None), backend=world) == 0
    world.decisions = {}
    assert world.driver(release).run().exit_code == 0
    assert [(k, s) for k, _, s, _ in world.checks if s == 10] == [(k, 10) for k in release.keys]  # not judged again
    assert "approved flag semantic_cache at 10 % by operator:alice" in capsys.readouterr().out


def test_a_gate_error_rolls_back_to_0_and_exits_4(release):
    world = FWorld(ramp_config(), gate_raises_at=10)
    outcome = world.driver(release).run()
    assert outcome.exit_code == 4 and "the gate failed at 10 % (RuntimeError: monitoring API exploded)" in outcome.reason
    assert percent_of(world.backend.config) == 0 and FLAG not in rs.read_release_doc(world.backend.config).get("flagApprovals", {})


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_interruption_point_converges(release, scenario):
    kwargs, expected = SCENARIOS[scenario]
    base = ramp_config()
    clean = FWorld(base, **kwargs)
    check_invariants(clean, release, clean.driver(release).run().exit_code, expected)
    effects = clean.count
    assert effects >= 6
    for n in range(1, effects + 1):
        for after in (False, True):
            world = FWorld(base, **kwargs)
            world.kill_at, world.after = n, after
            with pytest.raises(rs.Killed):
                world.driver(release).run()
            world.kill_at = None
            outcome = world.driver(release).run()  # a fresh driver on what the config recorded
            check_invariants(world, release, outcome.exit_code, expected)


def test_a_ramp_starts_from_the_current_percent_but_no_higher_than_the_first_stage(release):
    world = FWorld(ramp_config(percent=50))
    driver = world.driver(release)
    assert driver.run().exit_code == 0
    assert [percent_of(s) for _, s in world.backend.ups] == [10, 50, 100]  # 10 % of users keep it on throughout
    assert rs.read_release_doc(world.backend.config).get("flagRamp") is None


# ---- the command: refusals, the shared lock, the revision rollout refusing while a flag ramps ----------

def run(args, world, tmp_path, out=None):
    return rollout_cli.run_rollout(args, backend=world, gate=world.check("gate"), log=lambda line: None,
                          notifier=Notifier("prod", out=out or io.StringIO()), lease_s=600)


@pytest.mark.parametrize("change,key", [
    (lambda c: c["netra:platform"]["featureFlags"].__setitem__(FLAG, True), f"netra:platform.featureFlags.{FLAG} is true, not a ramp"),
    (lambda c: c["netra:platform"]["featureFlags"][FLAG].__setitem__("killSwitch", True), f"netra:platform.featureFlags.{FLAG}.killSwitch is true"),
    (lambda c: c["netra:platform"]["featureFlags"].__setitem__("prompt_caching", {"percent": 10, "killSwitch": False}),
     "netra:platform.featureFlags.prompt_caching.percent is 10: flag prompt_caching is ramping"),
    (lambda c: c.__setitem__("netra:release", {"rollout": {"candidates": {"backend": "netra-backend-prod-1a2b3c4d"}, "live": 10}}),
     "netra:release.rollout: a revision rollout is in progress (backend netra-backend-prod-1a2b3c4d)"),
    (lambda c: c.__setitem__("netra:release", {"flagRamp": {"flag": "prompt_caching", "live": 10}}),
     "netra:release.flagRamp: flag prompt_caching is ramping"),
    (lambda c: c["netra:platform"]["featureFlags"].pop(FLAG), f"netra:platform.featureFlags.{FLAG}: no such flag"),
])
def test_refusals_exit_2_naming_the_key_and_change_nothing(tmp_path, capsys, change, key):
    cfg = ramp_config()
    change(cfg)
    world = FWorld(cfg)
    before = world.unchanged()
    assert run(rollout_args(flag=FLAG), world, tmp_path) == 2
    assert world.unchanged() == before and world.backend.config == cfg
    err = capsys.readouterr().err
    assert err.startswith(f"infra rollout: error: {key}") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kw,message", [
    (dict(flag="Semantic-Cache"), "--flag must be a netra:platform.featureFlags key"),
    (dict(flag=FLAG, service="grafana"), "--service grafana: not a service that reads the feature-flags secret"),
    (dict(flag=FLAG, tag="v1"), "--tag belongs to a revision rollout, not to --flag"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, kw, message):
    world = FWorld(ramp_config())
    assert run(rollout_args(**kw), world, tmp_path) == 2 and world.count == 0
    assert message in capsys.readouterr().err


def test_the_command_ramps_with_notifications_and_service_narrows_the_evidence(tmp_path, capsys):
    world = FWorld(ramp_config())
    out = io.StringIO()
    assert run(rollout_args(flag=FLAG, service="backend"), world, tmp_path, out) == 0
    assert {k for k, *_ in world.checks} == {"backend"}
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["start", "stage_up", "stage_up", "verdict", "stage_up", "verdict", "stage_up",
                                            "released"]
    assert all(e.get("flag") == FLAG for e in events if e["event"] in ("start", "stage_up", "released"))
    assert "ramped: semantic_cache is on for 100 % of requests (exit 0)" in capsys.readouterr().err


def test_the_ramp_shares_the_rollout_lease(tmp_path, capsys):
    world = FWorld(ramp_config())
    lk.Lease(world.ledger, "rollout prod", holder="alice", heartbeat=False).acquire()
    before = world.unchanged()
    assert run(rollout_args(flag=FLAG), world, tmp_path) == 4
    assert world.unchanged() == before and "another rollout prod of this stack holds the lease: alice" in capsys.readouterr().err


def test_a_revision_rollout_refuses_while_a_flag_ramps(tmp_path, capsys, prod_plan):
    world = FWorld(ramp_config(), decisions={10: "hold"})
    assert run(rollout_args(flag=FLAG), world, tmp_path) == 3  # held: the flag ramp's journal stays open
    before = world.unchanged()
    capsys.readouterr()
    code = rollout_cli.run_rollout(rollout_args(service="backend"), backend=world, gate=world.check("gate"),
                          verify=world.check("verify"), migrate=lambda: None, log=lambda line: None,
                          notifier=Notifier("prod", out=io.StringIO()), lease_s=600)
    assert code == 2 and world.unchanged() == before
    assert capsys.readouterr().err.startswith("infra rollout: error: netra:release.flagRamp: flag semantic_cache is "
                                              "ramping (live 10 %)")


def test_journal_and_approvals_are_in_the_release_model(release):
    from infra.config.release import ReleaseConfig

    seen = []

    class Recording(FWorld):
        def write(self, values, remove=()):
            if rs.RELEASE_KEY in values:  # as the stack config will hold it: plain JSON
                seen.append(json.loads(json.dumps(values[rs.RELEASE_KEY])))
            return super().write(values, remove)

    for kwargs in ({}, {"decisions": {50: "rollback"}}, {"decisions": {10: "hold"}}):
        seen.clear()
        Recording(ramp_config(), **kwargs).driver(release).run()
        assert any(d.get("flagRamp") for d in seen)
        assert any(d.get("flagApprovals") for d in seen) == (kwargs != {"decisions": {10: "hold"}})
        for d in seen:
            ReleaseConfig.model_validate(d)


# ---- the real gate on arms, from inside the ramp: google-cloud-monitoring over gRPC to the emulator ------

class EmulatedWorld(FWorld):
    """Each `pulumi up` "deploys" the percent: the emulator's arms then split 50 rps by it."""

    def __init__(self, config, fake, on_error_rate):
        super().__init__(config)
        self.fake, self.on_error_rate = fake, on_error_rate

    def up(self, message):
        super().up(message)
        from infra.canary.emulator import Profile

        p = percent_of(self.backend.config) / 100
        self.fake.revisions = {f"{FLAG}=off": Profile(rps=50.0 * (1 - p)),
                               f"{FLAG}=on": Profile(rps=50.0 * p, error_rate=self.on_error_rate)}


@pytest.mark.parametrize("on_error_rate,expected,judged", [(0.002, 0, [10, 50]), (0.02, 1, [10])])
def test_the_ramp_runs_the_real_gate_on_arms_against_the_monitoring_emulator(prod_plan, tmp_path, monkeypatch,
                                                                             on_error_rate, expected, judged):
    from infra.canary.api import GateSettings
    from infra.canary.emulator import FakeMetricService, serve
    from infra.canary.gate import GateOptions
    from infra.canary.judge import JudgeConfig
    from infra.canary.monitoring import default_retry, make_client

    monkeypatch.chdir(tmp_path)  # verdict files
    release = fl.plan_flag_release("prod", FLAG, "backend", ramp_config())
    fake = FakeMetricService("netra-backend-prod", {}, seed=5)
    server, endpoint = serve(fake)
    client = make_client(endpoint)
    try:
        world = EmulatedWorld(ramp_config(), fake, on_error_rate)
        now = [1_700_000_000.0]
        settings = GateSettings(GateOptions(interval_s=60.0, max_duration_s=3600.0, lag_s=0.0), JudgeConfig(), None)
        def read_flags():  # what the services read: the flags secret as the last `pulumi up` left it
            return fl.feature_flags(world.backend.ups[-1][1])

        gate = fl.make_flag_gate(settings, release, lambda line: None, client=client, read_flags=read_flags,
                                 clock=lambda: now[0],
                                 sleep=lambda s: now.__setitem__(0, now[0] + s), retry=default_retry(timeout_s=0.3))
        outcome = drv.Driver(release, world, gate=gate, verify=gate, log=lambda line: None).run()
    finally:
        client.transport.close()
        server.stop(0)
    assert outcome.exit_code == expected, outcome.reason
    verdicts = {s: json.loads((tmp_path / f"verdict-prod-flag-{FLAG}-backend-{s}.json").read_text()) for s in judged}
    assert all(v["candidateRevision"] == f"{FLAG}=on" and v["stableRevision"] == f"{FLAG}=off" for v in verdicts.values())
    assert [v["canaryPercent"] for v in verdicts.values()] == judged
    # the arms' log-based metrics were queried, never Cloud Run's per-revision ones
    filters = [r.filter for r in fake.calls]
    assert filters and all("flag_arm" in f and "run.googleapis.com" not in f for f in filters)
    final = rs.read_release_doc(world.backend.config)["flagApprovals"][FLAG]
    last = judged[-1]  # the record is bound to the very verdict file of its stage
    assert final["evidence"] == rel.evidence_digest({"flag": FLAG, "stage": last, "verdicts": {
        "backend": rel.evidence_digest(verdicts[last])}})
    if expected == 0:
        assert [v["decision"] for v in verdicts.values()] == ["promote", "promote"] and percent_of(world.backend.config) == 100
        assert final["stage"] == 50 and not final["rejected"]
    else:  # 10x the errors in the 10 % arm: rolled back at 10 %, back to 0 %
        assert verdicts[10]["decision"] == "rollback" and "errors" in verdicts[10]["reason"]
        assert percent_of(world.backend.config) == 0 and final["rejected"] and final["stage"] == 10


def test_dry_run_shows_the_flag_ladder_and_its_branches(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(rollout_cli, "stack_raw_config", lambda stack: ramp_config())
    world = FWorld(ramp_config())
    assert run(rollout_args(flag=FLAG, dry_run=True), world, tmp_path) == 0
    assert world.count == 0  # the dry run works on a copy of the stack file, never on the stack
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"rollout prod (dry run): flag {FLAG} ({PERCENT}) along [0, 10, 50, 100], judged on "
                                   f"the arms of auth, backend, frontend")
    assert f"=> exit 0: ramped: {FLAG} is on for 100 % of requests" in out
    assert (f"if the gate at 50 % answers rollback: exit 1 (the gate rejected auth at 50 %: dry run: assumed rollback; "
            f"rolled back: {FLAG} is off for everyone (0 %)); updates: flag {FLAG} stage 0 %, flag {FLAG} stage 10 %, "
            f"flag {FLAG} stage 50 %, flag {FLAG} rollback to 0 %") in out
    assert "if the gate at 10 % answers hold: exit 3" in out and "at 0 %" not in out.split("=> exit 0")[1]


def test_status_shows_the_flag_ramp_in_progress(monkeypatch, capsys, tmp_path):
    import argparse

    world = FWorld(ramp_config(), decisions={10: "hold"})
    assert run(rollout_args(flag=FLAG), world, tmp_path) == 3
    capsys.readouterr()
    assert status_cli.run_status(argparse.Namespace(stack="prod", json=False), backend=world) == 0
    out = capsys.readouterr().out
    assert (f"  flag ramp in progress: {FLAG} live 10 % (from 0 %, judged on auth, backend, frontend; not rejected)\n"
            f"            next: python -m infra rollout --stack prod --flag {FLAG}") in out
    assert status_cli.run_status(argparse.Namespace(stack="prod", json=True), backend=world) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["flagRamp"]["flag"] == FLAG and doc["flagRamp"]["live"] == 10


# ---- the program refuses a percent that skips an approved stage (the pack cannot see the payload) --------

def _problems(cfg: dict) -> list:
    from infra import wiring

    return wiring.flag_problems(load_stack_config(flat(cfg), "prod"))


def test_the_program_accepts_every_percent_the_ramp_applies(release):
    for kwargs in ({}, {"decisions": {50: "rollback"}}, {"decisions": {10: "hold"}}, {"up_fails_at": 50}):
        world = FWorld(ramp_config(), **kwargs)
        world.driver(release).run()
        assert all(_problems(snap) == [] for _, snap in world.backend.ups), kwargs


def approved_config(stage, rejected=False, percent=50, revisions=None, journal=False) -> dict:
    cfg = ramp_config(percent=percent)
    services = cfg["netra:services"]
    revisions = revisions or {k: services[k]["stableRevision"] for k in ("auth", "backend", "frontend")}
    cfg["netra:release"] = {"flagApprovals": {FLAG: {"stage": stage, "by": "gate", "evidence": "e" * 64,
                                                     "revisions": revisions, "rejected": rejected}}}
    if journal:
        cfg["netra:release"]["flagRamp"] = {"flag": FLAG, "services": ["backend"], "live": 10}
    return cfg


def test_the_program_refuses_a_percent_that_skips_an_approved_stage():
    assert _problems(approved_config(10, percent=50)) == []
    [(key, message)] = _problems(approved_config(10, percent=100))
    assert key == PERCENT and message.startswith(
        f"percent 100 skips a stage: {FLAG} is approved at 10 % (by gate), so the highest percent it may get is 50; "
        f"set 50 (or lower), or run `python -m infra rollout --stack <stack> --flag {FLAG}`")
    # rejected on the code serving now: nothing above 0 until approved again (or new code)
    [(_, message)] = _problems(approved_config(10, rejected=True, percent=10))
    assert f"{FLAG} was rolled back (rejected at 10 % by gate)" in message and "set 0" in message
    assert _problems(approved_config(10, rejected=True, percent=0)) == []
    other = {"auth": "netra-auth-prod-17d2f3b8", "backend": "netra-backend-prod-0badc0de", "frontend": "netra-frontend-prod-5e0b7c21"}
    assert _problems(approved_config(10, rejected=True, percent=10, revisions=other)) == []  # another implementation
    # during a ramp without an approval yet: the first stage above 0 at most
    cfg = approved_config(10, percent=50, journal=True)
    cfg["netra:release"].pop("flagApprovals")
    [(_, message)] = _problems(cfg)
    assert "is ramping (netra:release.flagRamp) with no approval yet, so the highest percent it may get is 10" in message
    # the readers' code changed under a live ramp (e.g. a bake rollback): the live percent stays acceptable
    # until the ramp judges it again, a climb is not
    cfg = approved_config(10, percent=50, journal=True)
    cfg["netra:release"]["flagRamp"]["live"] = 50
    cfg["netra:services"]["backend"]["stableRevision"] = "netra-backend-prod-0badc0de"
    assert _problems(cfg) == []
    cfg["netra:platform"]["featureFlags"][FLAG]["percent"] = 100
    [(_, message)] = _problems(cfg)
    assert "with no approval yet, so the highest percent it may get is 50" in message
    # a hand-set flag without any record is the documented manual ramp; the kill switch always wins
    assert _problems(ramp_config(percent=50)) == []
    killed = approved_config(10, rejected=True, percent=50)
    killed["netra:platform"]["featureFlags"][FLAG]["killSwitch"] = True
    assert _problems(killed) == []


def test_plan_exits_2_naming_the_flag_percent():
    from .conftest import cli

    cfg = approved_config(10, percent=100)
    r = cli("plan", "--stack", "prod", "--set", f"{fl.flag_key(FLAG)}={json.dumps(cfg['netra:platform']['featureFlags'][FLAG])}",
            "--set", f"netra:release={json.dumps(cfg['netra:release'])}")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{PERCENT}: percent 100 skips a stage" in r.stderr and "Traceback" not in r.stderr


def test_the_kill_switch_during_a_ramp_stops_it_as_a_rollback(release, tmp_path, capsys):
    world = FWorld(ramp_config(), decisions={10: "hold"})
    assert run(rollout_args(flag=FLAG, service="backend"), world, tmp_path) == 3
    world.backend.config["netra:platform"]["featureFlags"][FLAG]["killSwitch"] = True  # the emergency off
    capsys.readouterr()
    assert run(rollout_args(flag=FLAG), world, tmp_path) == 1  # resumes on the journal's services
    assert f"{PERCENT.replace('percent', 'killSwitch')} was turned on during the ramp" in capsys.readouterr().err
    assert world.backend.ups[-1][0].startswith(f"netra rollout: flag {FLAG} rollback to 0 %")
    assert percent_of(world.backend.config) == 0 and "flagRamp" not in rs.read_release_doc(world.backend.config)
    assert {k for k, *_ in world.checks} == {"backend"}
    assert run(rollout_args(flag=FLAG), world, tmp_path) == 2  # and now the kill switch refuses a new ramp


def test_the_deploy_workflow_can_ramp_a_flag():
    from .test_workflows import load, steps

    wf = load("deploy.yml")
    assert "flag" in wf["on"]["workflow_dispatch"]["inputs"] and wf["env"]["FLAG"] == "${{ inputs.flag }}"
    runs = "\n".join(s.get("run", "") for s in steps(wf["jobs"]["release"]))
    assert '${FLAG:+--flag "$FLAG"}' in runs  # same job, same per-stack concurrency group as a release


class _Secret:
    def __init__(self, code, doc):
        import base64

        self.status_code, self.calls = code, []
        self.body = {"name": "projects/1/secrets/prod-feature-flags/versions/7",
                     "payload": {"data": base64.b64encode(json.dumps(doc).encode()).decode()}}

    def get(self, url, timeout=None):
        self.calls.append(url)
        return self

    def json(self):
        return self.body


def test_the_gate_first_checks_the_percent_the_services_read(release, tmp_path, monkeypatch):
    assert release.flags_secret == "prod-feature-flags"
    session = _Secret(200, {FLAG: {"percent": 10, "killSwitch": False}, "prompt_caching": True})
    assert fl.deployed_flags("netra-production", release.flags_secret, session)[FLAG]["percent"] == 10
    assert session.calls == ["https://secretmanager.googleapis.com/v1/projects/netra-production/secrets/"
                             "prod-feature-flags/versions/latest:access"]
    with pytest.raises(rs.OperationFailed, match="HTTP 403"):
        fl.deployed_flags("netra-production", release.flags_secret, _Secret(403, {}))
    # the services still read 0 % although the ramp applied 10 %: no verdict, a rollback and exit 4
    monkeypatch.chdir(tmp_path)
    world = FWorld(ramp_config())
    gate = fl.make_flag_gate(None, release, lambda line: None, read_flags=lambda: {FLAG: {"percent": 0, "killSwitch": False}})
    outcome = drv.Driver(release, world, gate=gate, verify=gate, log=lambda line: None).run()
    assert outcome.exit_code == 4 and percent_of(world.backend.config) == 0
    assert (f"the services read {FLAG} at 0 % from secret prod-feature-flags (version latest), not 10 % as applied"
            in outcome.reason)
    garbled = _Secret(200, {})
    garbled.body["payload"]["data"] = "c2VjcmV0LXZhbHVl"  # base64 of a non-JSON payload
    with pytest.raises(rs.OperationFailed) as e:
        fl.deployed_flags("netra-production", release.flags_secret, garbled)
    assert "not a JSON flags document" in str(e.value) and "secret-value" not in str(e.value)  # never the payload


def test_an_emergency_rollback_takes_the_ramping_flag_back_to_0(release):
    import argparse

    from infra.release import emergency

    world = FWorld(ramp_config(), decisions={10: "hold"})
    assert world.driver(release).run().exit_code == 3
    out = io.StringIO()
    assert rollback_cli.run_rollback(argparse.Namespace(stack="prod", dry_run=False, direct=False,
                                                     api_endpoint=emergency.ADMIN_API),
                                  backend=world, out=out, log=lambda line: None) == 0
    message, snap = world.backend.ups[-1]
    assert percent_of(snap) == 0 and snap["netra:canaryPercent"] == 0
    assert rs.read_release_doc(snap)["flagRamp"]["rejected"].startswith("rollback by operator:")
    assert world.ledger.read().fence["rejected"] == {f"flag:{FLAG}": "on"}
    outcome = world.driver(release).run()  # the ramp's next run closes its journal: rolled back
    assert outcome.exit_code == 1 and outcome.reason.startswith("rollback by operator:")
    assert "flagRamp" not in rs.read_release_doc(world.backend.config) and percent_of(world.backend.config) == 0


@pytest.mark.parametrize("kw,message", [
    (dict(stage="100"), "--stage must be one of [10, 50] (the stage the flag was checked at), got '100'"),
    (dict(stage="0"), "--stage must be one of [10, 50]"),
    (dict(service="backend"), "--flag approves a flag ramp: leave out --service and --revision"),
    (dict(note=None), "--note is required"),
    (dict(flag="nope"), "no such flag"),
])
def test_approve_flag_usage_errors_exit_2_and_record_nothing(capsys, kw, message):
    world = FWorld(ramp_config())
    base = dict(stack="prod", flag=FLAG, stage="10", note="why", by="alice", service=None, revision=None)
    assert approve_cli.run_approve(argparse_ns(**{**base, **kw}), backend=world) == 2
    assert world.count == 0 and message in capsys.readouterr().err


def argparse_ns(**kw):
    import argparse

    return argparse.Namespace(**kw)


def test_values_set_with_config_set_path_read_as_the_program_reads_them(release):
    # `pulumi config set --path …percent 10` / `…killSwitch false` may store strings; the program accepts them
    cfg = ramp_config()
    cfg["netra:platform"]["featureFlags"][FLAG] = {"percent": "10", "killSwitch": "false"}
    assert fl.refusals(cfg, FLAG) == [] and release.desired(cfg) == 10
    cfg["netra:platform"]["featureFlags"][FLAG]["killSwitch"] = "true"
    [problem] = fl.refusals(cfg, FLAG)
    assert problem.startswith(f"{fl.flag_key(FLAG, 'killSwitch')} is true")
    cfg["netra:platform"]["featureFlags"][FLAG] = {"percent": "ten", "killSwitch": False}
    assert fl.refusals(cfg, FLAG) == [f'{PERCENT} must be a number from 0 to 100, got "ten"']
