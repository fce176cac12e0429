"""The offline release sandbox end to end, through the public command line (`python -m infra ... --sandbox
DIR`, each command a process of its own, as users and CI run them): a full release 0 -> 10 -> 50 -> 100, a
regression caught by the gate, an operator rollback during a rollout, and an out-of-band traffic change
found by `drift`. Everything but `pulumi up` is the real code; the servers are on 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the gate's timing flags make a stage take seconds (--interval 1 s, no ingestion lag, 3 s soak)
FAST = ["--interval", "1", "--lag", "0", "--min-soak", "3", "--max-duration", "60", "--min-requests", "100",
        "--history", "0", "--warmup", "0", "--smoke-requests", "5"]


def infra(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NETRA_ROLLOUT_WEBHOOK": ""})


def live(box: Path, name: str) -> dict[str, int]:
    svc = next(s for k, s in json.loads((box / "cloudrun.json").read_text())["services"].items() if k.endswith("/" + name))
    return {t["revision"]: t["percent"] for t in svc["trafficStatuses"]}


def tagged(box: Path, name: str = "netra-backend-prod") -> tuple[str, str]:
    """(stable, candidate) as the local Cloud Run serves them (tags), without planning the stack."""
    svc = next(s for k, s in json.loads((box / "cloudrun.json").read_text())["services"].items() if k.endswith("/" + name))
    tags = {t.get("tag"): t["revision"] for t in svc["trafficStatuses"]}
    return tags["stable"], tags["canary"]


def status(box: Path) -> dict:
    r = infra("status", "--sandbox", str(box), "--json")
    assert r.returncode == 0, r.stderr
    return {row["service"]: row for row in json.loads(r.stdout)["services"]}


@pytest.fixture
def box(tmp_path) -> Path:
    d = tmp_path / "sandbox"
    r = infra("sandbox", "init", str(d), "--stack", "prod")
    assert r.returncode == 0, r.stderr
    assert "netra-backend-prod: netra-backend-prod-a41c9e07 100 % (stable)" in r.stdout
    return d


def test_a_full_release_climbs_every_stage_then_drift_and_bake_see_what_happens_after(box):
    before = status(box)["backend"]
    stable, candidate = before["stable"], before["candidate"]
    assert live(box, "netra-backend-prod") == {stable: 100, candidate: 0}
    t0 = time.monotonic()
    r = infra("rollout", "--sandbox", str(box), "--service", "backend", *FAST)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [e["stage"] for e in events if e["event"] == "stage_up"] == [0, 10, 50, 100]
    assert [(e["stage"], e["decision"]) for e in events if e["event"] == "verdict"] == [
        (0, "promote"), (10, "promote"), (50, "promote")]
    assert events[-1]["event"] == "released"
    # Cloud Run serves the candidate as the new stable; the old one is kept at 0 % for the bake window
    assert live(box, "netra-backend-prod") == {candidate: 100, stable: 0}
    after = status(box)["backend"]
    assert after["stable"] == after["candidate"] == candidate and after["bake"]["previous"] == stable
    print(f"sandbox full release: {took:.0f} s")
    assert infra("drift", "--sandbox", str(box)).returncode == 0
    # the released revision starts failing during its bake window: `bake` rolls back to the previous one
    r = infra("sandbox", "metrics", str(box), "--service", "backend", "--revision", candidate, "--error-rate", "0.2",
              "--latency-p95-ms", "120")
    assert r.returncode == 0, r.stderr
    r = infra("bake", "--sandbox", str(box), "--interval", "1", "--lag", "0", "--max-duration", "10", "--history", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"done: backend: {stable} serves 100 % again; {candidate} rejected" in r.stdout
    assert live(box, "netra-backend-prod")[stable] == 100
    assert infra("drift", "--sandbox", str(box)).returncode == 0
    # gcloud run services update-traffic, out of band: drift exits 1 with the diff and a `drift` event
    r = infra("sandbox", "traffic", str(box), "--service", "backend", "--set", f"{candidate}=30", "--set", f"{stable}=70")
    assert r.returncode == 0, r.stderr
    r = infra("drift", "--sandbox", str(box))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"  - {candidate}: serves 30 %, the release state says 0 %" in r.stdout
    assert any(json.loads(line)["event"] == "drift" for line in r.stdout.splitlines() if line.startswith("{"))


def test_a_regressing_candidate_is_rolled_back_by_the_gate(box):
    _, candidate = tagged(box)
    r = infra("sandbox", "metrics", str(box), "--service", "backend", "--revision", candidate, "--error-rate", "0.2",
              "--latency-p95-ms", "120")
    assert r.returncode == 0, r.stderr
    # the 0 % verification's smoke requests already see the 5xx rate (the revision server answers as it)
    r = infra("rollout", "--sandbox", str(box), "--service", "backend", *FAST)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "smoke requests failed" in r.stderr
    assert live(box, "netra-backend-prod")[candidate] == 0


def test_an_operator_rollback_during_the_gate_leaves_the_candidate_at_0(box):
    name = "netra-backend-prod"
    _, candidate = tagged(box)
    slow = [*FAST]
    slow[slow.index("--min-soak") + 1] = "600"  # the gate at 10 % would judge for minutes
    slow[slow.index("--max-duration") + 1] = "25"
    rollout = subprocess.Popen([sys.executable, "-m", "infra", "rollout", "--sandbox", str(box), "--service", "backend",
                                *slow], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while live(box, name).get(candidate) != 10:
            assert rollout.poll() is None and time.monotonic() < deadline, "the rollout never reached 10 %"
            time.sleep(0.5)
        r = infra("rollback", "--sandbox", str(box))
        rolled_back = time.monotonic()
        assert r.returncode == 0, r.stdout + r.stderr
        assert live(box, name)[candidate] == 0
        out, err = rollout.communicate(timeout=300)
        print(f"the rollout stopped {time.monotonic() - rolled_back:.1f} s after the rollback (exit {rollout.returncode})")
    finally:
        if rollout.poll() is None:
            rollout.kill()
    # the rollback's fence stops the rollout at its next ledger read (exit 1, superseded); it never gives the
    # candidate traffic again
    assert rollout.returncode == 1, err[-3000:]
    assert live(box, name)[candidate] == 0
    assert status(box)["backend"]["stable"] != candidate


def test_sandbox_usage_errors_exit_2(tmp_path, box):
    r = infra("status", "--sandbox", str(tmp_path / "nope"))
    assert r.returncode == 2 and "is not a sandbox" in r.stderr and "Traceback" not in r.stderr
    r = infra("sandbox", "metrics", str(box), "--service", "backend", "--revision", "netra-backend-prod-00000000",
              "--error-rate", "0.1", "--latency-p95-ms", "100")
    assert r.returncode == 2 and "is not a revision of netra-backend-prod" in r.stderr
    _, candidate = tagged(box)
    r = infra("sandbox", "metrics", str(box), "--service", "backend", "--revision", candidate, "--error-rate", "2",
              "--latency-p95-ms", "100")
    assert r.returncode == 2 and "--error-rate must be a share between 0 and 1" in r.stderr
    r = infra("sandbox", "traffic", str(box), "--service", "backend", "--set", f"{candidate}=50")
    assert r.returncode == 2 and "sum to 100, got 50" in r.stderr
    r = infra("sandbox", "init", str(box), "--stack", "prod")
    assert r.returncode == 2 and "not empty" in r.stderr
    r = infra("sandbox", "traffic", str(box), "--service", "nope", "--set", f"{candidate}=100")
    assert r.returncode == 2 and "unknown service 'nope'" in r.stderr


def test_a_direct_rollback_patches_the_local_cloud_run(box):
    """`rollback --direct --sandbox`: the real Admin API path (PATCH, wait for the operation) on the local server."""
    stable, candidate = tagged(box)
    assert infra("sandbox", "traffic", str(box), "--service", "backend", "--set", f"{candidate}=50",
                 "--set", f"{stable}=50").returncode == 0
    r = infra("rollback", "--sandbox", str(box), "--direct")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"done: backend: netra-backend-prod traffic set to {stable} 100 % (Cloud Run Admin API)" in r.stdout
    assert live(box, "netra-backend-prod") == {stable: 100}
