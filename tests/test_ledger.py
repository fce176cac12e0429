"""The release ledger: compare-and-swap stores (memory, directory, GCS through the real google-cloud-storage
client against tests/gcsfake.py), read-modify-write that loses nothing under contention, the rollback
fence that stops a running rollout, and the stack config rendered from the ledger before every up."""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import threading
import time

import pytest

from infra.notify import Notifier
from infra.release import effects as fx
from infra.release import model as rel
from infra.release import revision as rv
from infra.release import state as rs
from infra.release import view
from infra.release.cli import rollback as rollback_cli
from infra.release.cli import status as status_cli
from infra.release.ledger import Conflict, DirStore, GcsStore, Ledger, MemoryStore

from .conftest import stack_config
from .gcsfake import FakeGcs
from .test_rollout import World, make_release

pytestmark = pytest.mark.usefixtures("reuse_plans")


# ---- stores: compare-and-swap ----------------------------------------------------------------------

def _cas_contract(store) -> None:
    assert store.load() == (None, 0)
    g1 = store.save({"n": 1}, 0)
    with pytest.raises(Conflict):
        store.save({"n": 99}, 0)  # "only if absent": it exists now
    with pytest.raises(Conflict):
        store.save({"n": 99}, g1 + 12345)  # a generation nobody read
    g2 = store.save({"n": 2}, g1)
    assert g2 > g1 and store.load() == ({"n": 2}, g2)
    with pytest.raises(Conflict):
        store.save({"n": 3}, g1)  # a stale read never overwrites


def test_memory_and_directory_stores_are_compare_and_swap(tmp_path):
    _cas_contract(MemoryStore())
    _cas_contract(DirStore(tmp_path / "prod"))
    assert not list((tmp_path / "prod").glob("*.tmp"))  # the atomic rename leaves no half-written file


def test_the_real_gcs_client_sends_if_generation_match_and_the_fake_honours_it():
    with FakeGcs() as gcs:
        store = GcsStore("netra-prod-release-ledger", "prod", client=gcs.client())
        _cas_contract(store)
        uploads = [q for method, path, q in gcs.requests if method == "POST"]
        assert uploads and all("ifGenerationMatch" in q for q in uploads)  # no write without a precondition
        assert [q["ifGenerationMatch"] for q in uploads][:2] == ["0", "0"]
        versions = gcs.objects[("netra-prod-release-ledger", "ledger/prod.json")]
        assert len(versions) == 2  # versioned: every generation written stays readable


def _increment(ledger: Ledger, times: int, who: str) -> None:
    def add(doc: dict) -> None:
        n = doc["release"].get("n", 0)
        time.sleep(0.001)  # between the read and the write: where another writer gets in
        doc["release"]["n"] = n + 1

    for _ in range(times):
        ledger.update(add, who, "n += 1")


@pytest.mark.parametrize("kind", ["memory", "directory", "gcs"])
def test_no_update_is_lost_under_contention(kind, tmp_path):
    """Threads incrementing one counter: every update is a read-modify-write of a fresh read, retried on a
    conflict, so the count is exact and the history has every write in order."""
    gcs = FakeGcs().__enter__() if kind == "gcs" else None
    try:
        def store():
            if kind == "memory":
                return shared
            if kind == "directory":
                return DirStore(tmp_path / "prod")
            return GcsStore("b", "prod", client=gcs.client())

        shared = MemoryStore()
        times, threads = (10, 4) if kind != "gcs" else (6, 3)
        ledgers = [Ledger(store(), "prod") for _ in range(threads)]  # the real randomized backoff
        workers = [threading.Thread(target=_increment, args=(ledgers[i], times, f"t{i}")) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        snap = ledgers[0].read()
        assert snap.release["n"] == times * threads
        assert [h["seq"] for h in snap.doc["history"]] == list(range(1, times * threads + 1))
        assert sum(lg.conflicts for lg in ledgers) > 0  # the contention was real
    finally:
        if gcs is not None:
            gcs.__exit__(None, None, None)


def _process_increments(directory: str, times: int) -> None:
    _increment(Ledger(DirStore(directory), "prod", sleep=lambda s: None), times, "process")


def test_directory_store_across_processes(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process_increments, args=(str(tmp_path / "prod"), 20)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert Ledger(DirStore(tmp_path / "prod"), "prod").read().release["n"] == 60


# ---- a rollback always wins ------------------------------------------------------------------------

def rollback_args():
    return argparse.Namespace(stack="prod", dry_run=False, direct=False, api_endpoint="https://run.googleapis.com")


def test_a_rollback_during_the_gate_stops_the_rollout_within_one_interval(prod_plan):
    """The gate looks at the ledger between intervals (effects.between_intervals); an operator rolls back
    during interval 3 of the gate at 10 %: the rollout stops at the end of that interval, exit 1, event
    superseded naming who and when; no up after the fence; the candidate never gets traffic again."""
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"))
    world.release = release
    notes = io.StringIO()
    seen = []

    def gate(t, stage):
        progress = fx.between_intervals(lambda line: None, lambda: driver.guard())
        for interval in range(1, 11):
            seen.append(interval)
            if interval == 3:
                out = io.StringIO()
                assert rollback_cli.run_rollback(rollback_args(), backend=world, out=out) == 0
                ups_at_fence.append(len(world.backend.ups))
            progress(f"interval {interval}")
        return rel.Verdict("promote", t.candidate, stage, rel.evidence_digest(["gate", stage]), "fine", by="gate")

    ups_at_fence: list[int] = []
    driver = world.driver(release, notifier=Notifier("prod", out=notes))
    driver.gate = gate
    outcome = driver.run()
    assert outcome.exit_code == rs.EXIT_ROLLED_BACK and outcome.reason.startswith("superseded: operator:")
    assert seen == [1, 2, 3]  # stopped at the end of the interval the rollback happened in
    events = [json.loads(line) for line in notes.getvalue().splitlines()]
    assert events[-1]["event"] == "superseded" and events[-1]["by"].startswith("operator:")
    assert len(world.backend.ups) == ups_at_fence[0]  # the rollback's up was the last
    final = view.current(world)[0]
    assert rv.desired_stage(release, final) == 0
    cand = release.targets[0].candidate
    assert final["netra:release"]["approvals"]["backend"] == {**final["netra:release"]["approvals"]["backend"],
                                                             "revision": cand, "rejected": True}
    # no actor gives it traffic again: a new rollout of the same candidate refuses (exit 1)
    again = world.driver(release)
    assert again.run().exit_code == rs.EXIT_ROLLED_BACK
    assert all(rv.desired_stage(release, snap) == 0 for _, snap in world.backend.ups[ups_at_fence[0] - 1:])


def test_a_stale_stack_config_is_rendered_again_before_an_up(prod_plan):
    """Another machine's copy of Pulumi.<stack>.yaml (an older release record, a hand-written approval)
    never reaches `pulumi up`: the driver renders the config from the ledger and checks it first."""
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"), decisions={10: "hold"})
    assert world.driver(release).run().exit_code == rs.EXIT_HELD
    snap = world.ledger.read()
    view.check_rendered(world.backend, snap)
    forged = json.loads(json.dumps(world.backend.config["netra:release"]))
    forged["approvals"]["backend"] = {**forged["approvals"]["backend"], "stage": 50, "by": "operator:mallory"}
    world.backend.config["netra:release"] = forged
    with pytest.raises(rs.OperationFailed, match="disagrees with the ledger"):
        view.check_rendered(world.backend, snap)
    ups_before = len(world.backend.ups)
    world.decisions = {}
    lines: list[str] = []
    driver = world.driver(release)
    driver.log = lines.append
    assert driver.run().exit_code == rs.EXIT_RELEASED
    assert any(line.startswith("refused: netra:release.approvals.backend in the stack config is not what the release "
                               "ledger holds") for line in lines), lines
    assert len(world.backend.ups) > ups_before
    for _, snap in world.backend.ups[ups_before:]:  # every up carried the ledger's record, never mallory's
        assert "mallory" not in json.dumps(snap["netra:release"])
    view.check_rendered(world.backend, world.ledger.read())


def test_status_shows_the_lease_and_the_fence(prod_plan, capsys):
    from infra.release import lock as lk

    world = World(stack_config("prod"))
    world.release = make_release(prod_plan, ("backend",), "service")
    lk.Lease(world.ledger, "rollout prod", holder="alice", heartbeat=False).acquire()
    assert rollback_cli.run_rollback(rollback_args(), backend=world, out=io.StringIO()) == 0
    capsys.readouterr()
    assert status_cli.run_status(argparse.Namespace(stack="prod", json=False), backend=world) == 0
    out = capsys.readouterr().out
    assert "lease: live: alice on " in out and "rollout prod since" in out
    assert "rollback fence: 1, by operator:" in out
    assert status_cli.run_status(argparse.Namespace(stack="prod", json=True), backend=world) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ledger"]["lease"]["holder"] == "alice" and doc["ledger"]["lease"]["live"] is True
    assert doc["ledger"]["fence"]["seq"] == 1


def test_a_hand_written_approval_is_never_adopted_as_evidence(prod_plan):
    """The first use of the ledger adopts the stack config's release record, but an approval only if that
    record was rendered from a ledger (its stamp matches): one written by hand in Pulumi.<stack>.yaml is
    dropped, a rejection is kept."""
    cand = prod_plan["outputs"]["services"]["backend"]["candidateRevision"]
    cfg = stack_config("prod")
    cfg["netra:release"] = {"approvals": {
        "backend": {"revision": cand, "stage": 50, "by": "operator:mallory", "evidence": "0" * 64},
        "auth": {"revision": "netra-auth-prod-00000000", "stage": 10, "by": "gate", "evidence": "1" * 64,
                 "rejected": True}}}
    doc = view.adopt(cfg, "prod")
    assert "backend" not in doc["release"]["approvals"] and doc["release"]["approvals"]["auth"]["rejected"]
    # a record rendered from a ledger (stamped) is adopted as it is
    world = World(stack_config("prod"))
    release = make_release(prod_plan, ("backend",), "service")
    world.decisions = {10: "hold"}
    assert world.driver(release).run().exit_code == rs.EXIT_HELD
    adopted = view.adopt(world.backend.config, "prod")
    assert adopted["release"]["approvals"] == world.ledger.read().release["approvals"] != {}


def test_status_without_google_credentials_is_one_error_line_not_a_traceback(monkeypatch, tmp_path):
    """The cloud ledger with no credentials on the machine: exit 4 naming the ledger and the way out."""
    from .conftest import cli

    monkeypatch.delenv("NETRA_LEDGER", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    r = cli("status", "--stack", "prod")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "cannot open the release ledger gs://" in r.stderr and "NETRA_LEDGER" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
