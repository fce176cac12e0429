"""Races: two rollouts (two machines, each with its own copy of the stack config), a rollback and a bake run
interleaved at every effect boundary by a seeded scheduler, over 1,000 schedules.

Every actor runs on its own thread, but only the one holding the baton runs: at each effect boundary
(every ledger read and compare-and-swap save, every stack config write, every gate interval, the
migration) it hands the baton back and the scheduler picks, with a seeded random choice, which waiting
actor goes next. A `pulumi up` is one atomic step right after the ledger read that checked it (the cloud
applies the config the actor rendered).

Invariants checked on every schedule:
- after the rollback's fence, no `pulumi up` gives the rejected candidate a share above 0 %;
- nothing is lost: every ledger write an actor made is in the ledger's history, the rejection stays, the
  fence counts every rollback;
- every actor ends with a documented exit code (rollout 0/1/3/4, rollback 0/4, bake 0/1/4).
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import threading

import pytest

from infra.notify import Notifier
from infra.release import bake, lock as lk, model as rel, view
from infra.release import state as rs
from infra.release.backends import MemoryBackend
from infra.release.cli import rollback as rollback_cli
from infra.release.driver import Driver
from infra.release.ledger import Ledger, MemoryStore

from .conftest import stack_config
from .test_rollout import make_release

pytestmark = pytest.mark.usefixtures("reuse_plans")
SCHEDULES = int(__import__('os').environ.get('RACE_SCHEDULES', '1000'))


class Scheduler:
    """One baton: an actor runs only while it holds it; at each boundary it waits to be picked again."""

    def __init__(self, seed: int, actors: list[str]):
        self.rng = random.Random(seed)
        self.cv = threading.Condition()
        self.alive = set(actors)
        self.waiting: set[str] = set()
        self.turn: str | None = None
        self.steps = 0

    def _pick(self) -> None:
        if self.turn is None and self.waiting and self.waiting == self.alive:
            self.turn = self.rng.choice(sorted(self.waiting))
            self.steps += 1
            self.cv.notify_all()

    def point(self, actor: str) -> None:
        with self.cv:
            self.waiting.add(actor)
            if self.turn == actor:
                self.turn = None
            self._pick()
            if not self.cv.wait_for(lambda: self.turn == actor, timeout=30):
                raise RuntimeError(f"{actor} starved (turn {self.turn}, waiting {self.waiting})")
            self.waiting.discard(actor)

    def done(self, actor: str) -> None:
        with self.cv:
            self.alive.discard(actor)
            self.waiting.discard(actor)
            if self.turn == actor:
                self.turn = None
            self._pick()


class Cloud:
    """What Cloud Run serves: each up applies the candidate share of the config it was given."""

    def __init__(self, release):
        self.release = release
        self.ups: list[tuple[str, int]] = []  # (actor, the candidate's share it applied)
        self.rejected_at: int | None = None  # len(ups) when the ledger first recorded the candidate rejected

    def share(self, config: dict) -> int:
        t = self.release.targets[0]
        doc = rs.read_release_doc(config)
        a = doc["approvals"].get(t.key)
        approval = rel.Approval(a["revision"], a["stage"], a["by"], a["evidence"], a.get("rejected", False)) if a else None
        stable = config["netra:services"][t.key].get("stableRevision") or None
        stage = int(config["netra:services"][t.key].get("canaryPercent") or 0)
        d = rel.decide_share(t.key, t.candidate, stable, stage, approval, self.release.stages)
        return 100 if stable == t.candidate else (0 if d.problem else d.percent)


class SchedStore:
    def __init__(self, store, sched: Scheduler, actor: str, cloud: Cloud):
        self.store, self.sched, self.actor, self.cloud = store, sched, actor, cloud
        self.saved: list[int] = []

    def load(self):
        self.sched.point(self.actor)
        return self.store.load()

    def save(self, doc, if_generation_match):
        self.sched.point(self.actor)
        generation = self.store.save(doc, if_generation_match)
        self.saved.append(doc["history"][-1]["seq"])
        t = self.cloud.release.targets[0]
        a = doc["release"].get("approvals", {}).get(t.key) or {}
        if a.get("revision") == t.candidate and a.get("rejected") and self.cloud.rejected_at is None:
            self.cloud.rejected_at = len(self.cloud.ups)
        return generation


class Machine(MemoryBackend):
    """One runner: its own copy of the stack config, the shared ledger, `up` applied to the shared cloud."""

    def __init__(self, config, ledger, sched, actor, cloud):
        super().__init__(config, ledger=ledger)
        self.sched, self.actor, self.cloud = sched, actor, cloud

    def write(self, values, remove=()):
        self.sched.point(self.actor)
        super().write(values, remove)

    def up(self, message):  # atomic with the ledger read that checked it just before
        super().up(message)
        self.cloud.ups.append((self.actor, self.cloud.share(self.config)))


class Verdict:
    def __init__(self, decision):
        self.decision, self.reason = decision, f"bake watch says {decision}"

    def as_dict(self):
        return {"decision": self.decision, "reason": self.reason}


def run_schedule(seed: int, release, base: dict) -> dict:
    actors = ["rollout-a", "rollout-b", "rollback", "bake"]
    sched = Scheduler(seed, actors)
    cloud = Cloud(release)
    shared = MemoryStore(view.adopt(base, "prod"))
    stores = {a: SchedStore(shared, sched, a, cloud) for a in actors}
    machines = {a: Machine(base, Ledger(stores[a], "prod", sleep=lambda s: None), sched, a, cloud) for a in actors}
    rng = random.Random(seed * 7919)
    decisions = {0: "promote", 10: rng.choice(["promote", "promote", "hold"]), 50: rng.choice(["promote", "rollback"])}
    trigger = rng.random() < 0.3
    codes: dict[str, int] = {}

    def gate(actor):
        def check(t, stage):
            for _ in range(2):  # gate intervals, the fence looked at between them
                sched.point(actor)
                drivers[actor].guard()
            return rel.Verdict(decisions.get(stage, "promote"), t.candidate, stage, rel.evidence_digest([stage]), "x",
                               by="verify" if stage == 0 else "gate")
        return check

    drivers = {a: Driver(release, machines[a], gate=gate(a), verify=gate(a), migrate=lambda a=a: sched.point(a),
                         log=lambda line: None, actor=a) for a in ("rollout-a", "rollout-b")}

    def rollout(actor):
        lease = lk.Lease(machines[actor].ledger, f"rollout prod ({actor})", holder=actor, heartbeat=False)
        try:
            lease.acquire()
        except lk.LockBusy:
            return 4
        drivers[actor].lease = lease
        try:
            return drivers[actor].run().exit_code
        finally:
            lease.release()

    def rollback(actor):
        args = argparse.Namespace(stack="prod", dry_run=False, direct=False, api_endpoint="https://run.googleapis.com")
        return rollback_cli.run_rollback(args, backend=machines[actor], out=io.StringIO(), log=lambda line: None)

    def bake_run(actor):
        m = machines[actor]
        lease = lk.Lease(m.ledger, "bake prod", holder=actor, heartbeat=False)
        try:
            lease.acquire()
        except lk.LockBusy:
            return 4
        try:
            fence = lk.FenceWatch(m.ledger)
            config = view.current(m)[0]
            watching = {k: b for k, b in (config["netra:release"].get("bake") or {}).items()}
            for _ in range(2):
                sched.point(actor)
                fence.check()
            verdicts = {k: Verdict("rollback" if trigger else "promote") for k in watching}
            return bake.act("prod", m, watching, verdicts, True, Notifier("prod", out=io.StringIO()),
                            lambda line: None, fence, lambda: 0.0)
        except rs.Superseded:
            return 1
        finally:
            lease.release()

    bodies = {"rollout-a": rollout, "rollout-b": rollout, "rollback": rollback, "bake": bake_run}
    errors: list[BaseException] = []

    def body(actor):
        try:
            sched.point(actor)
            codes[actor] = bodies[actor](actor)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            sched.done(actor)

    threads = [threading.Thread(target=body, args=(a,), daemon=True) for a in actors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, (seed, errors)
    return {"codes": codes, "cloud": cloud, "ledger": Ledger(shared, "prod").read(), "stores": stores,
            "steps": sched.steps}


def baking_base(prod_plan) -> dict:
    """prod with backend's candidate to roll out and auth inside a bake window (its previous one step away)."""
    cfg = stack_config("prod")
    auth = prod_plan["outputs"]["services"]["auth"]["candidateRevision"]
    old = cfg["netra:services"]["auth"]["stableRevision"]
    cfg["netra:services"]["auth"]["stableRevision"] = auth
    start = dt.datetime.now(dt.timezone.utc)
    cfg["netra:release"] = {"approvals": {}, "bake": {"auth": {
        "revision": auth, "previous": old, "started": start.isoformat(timespec="seconds"),
        "until": (start + dt.timedelta(hours=48)).isoformat(timespec="seconds")}}}
    return cfg


def test_two_rollouts_a_rollback_and_a_bake_in_1000_schedules(prod_plan, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the bake writes its verdict file in the working directory
    release = make_release(prod_plan, ("backend",), "service", has_migration=True)
    base = baking_base(prod_plan)
    candidate = release.targets[0].candidate
    outcomes: dict[tuple, int] = {}
    for seed in range(SCHEDULES):
        r = run_schedule(seed, release, base)
        codes, cloud, snap = r["codes"], r["cloud"], r["ledger"]
        # every actor ends with a documented exit code
        assert codes["rollout-a"] in (0, 1, 3, 4) and codes["rollout-b"] in (0, 1, 3, 4), (seed, codes)
        assert codes["rollback"] in (0, 4) and codes["bake"] in (0, 1, 4), (seed, codes)
        # once the ledger rejected the candidate (the rollback's fence, or a gate verdict), no up gives it traffic
        fence = snap.fence
        assert fence["seq"] >= 1, seed  # the rollback always wrote its fence
        rejected = fence.get("rejected") or {}
        if cloud.rejected_at is not None:
            after = [(a, share) for a, share in cloud.ups[cloud.rejected_at:] if share > 0]
            assert not after, (seed, cloud.ups, cloud.rejected_at)
        # nothing lost: every write of every actor is in the history, in order, once
        history = [h["seq"] for h in snap.doc["history"]]
        assert history == list(range(1, len(history) + 1)), seed
        written = sorted(s for st in r["stores"].values() for s in st.saved)
        assert written == history, seed
        # the rejection stays: once rejected, the candidate is rejected at the end (no explicit release here)
        if cloud.rejected_at is not None:
            assert snap.release["approvals"]["backend"]["rejected"] is True, seed
        # the fence counts every rollback: the operator's, and the bake's when its trigger rolled auth back
        assert fence["seq"] == 1 + trigger_fired(snap), (seed, fence, codes)
        outcomes[tuple(sorted(codes.items()))] = outcomes.get(tuple(sorted(codes.items())), 0) + 1
    # the schedules really interleave: many different endings
    assert len(outcomes) >= 6, outcomes


def trigger_fired(snap) -> bool:
    return any(h["what"].startswith("bake rollback") for h in snap.doc["history"])
