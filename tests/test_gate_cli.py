"""`python -m infra gate` as a user runs it: bad input (in process) is one line naming the argument, exit 2,
no traceback; a short real-time run against the emulator ends with the documented exit code."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.canary.emulator import FakeMetricService, Profile, serve

from .conftest import cli

ROOT = Path(__file__).resolve().parents[1]


def gate(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "infra", "gate", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--stack", "prod", "--service", "payments"], "--service"),
        (["--stack", "nope", "--service", "backend"], "--stack"),
        (["--stack", "prod", "--service", "backend", "--interval", "0"], "--interval"),
        (["--stack", "prod", "--service", "backend", "--interval", "soon"], "--interval"),
        (["--stack", "prod", "--service", "backend", "--max-duration", "10"], "--max-duration"),
        (["--stack", "prod", "--service", "backend", "--monitoring-endpoint", "localhost"], "--monitoring-endpoint"),
        (["--stack", "prod", "--service", "backend", "--monitoring-endpoint", "grpc://h:1"], "--monitoring-endpoint"),
        (["--stack", "prod", "--service", "backend", "--monitoring-endpoint", "h:70000"], "--monitoring-endpoint"),
        (["--stack", "prod"], "--service"),
        (["--service", "backend"], "--stack"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, flag, reuse_plans):
    r = cli("gate", *argv)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    if flag == "--service" and "payments" in argv:
        assert "allowed: auth, backend, frontend" in lines[0]


def test_real_time_run_against_the_emulator(tmp_path):
    stable, canary = "netra-backend-prod-a41c9e07", "netra-backend-prod-c0e5def9"
    fake = FakeMetricService("netra-backend-prod", {stable: Profile(rps=4500.0), canary: Profile(rps=500.0, error_rate=0.05)})
    server, endpoint = serve(fake)
    try:
        r = gate("--service", "netra-backend-prod", "--project", "netra-production", "--stable-revision", stable,
                 "--candidate-revision", canary, "--monitoring-endpoint", endpoint, "--interval", "1", "--lag", "0", "--warmup", "0",
                 "--max-duration", "4", "--json", "--verdict-file", str(tmp_path / "v.json"))
    finally:
        server.stop(0)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["decision"] == "rollback"
    assert "Traceback" not in r.stderr
