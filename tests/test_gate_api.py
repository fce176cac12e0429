"""The gate's library surface (infra.canary.api): the stack's rollback triggers, the revisions Cloud Run
actually serves (traffic tags through the Admin API, faked at the HTTP session), errors that end as exit 4
(never 1, which means rollback) with a verdict file, and the ordered Decision type."""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from infra.canary import api
from infra.canary.cli import run
from infra.canary.verdict import Decision, combine

ROOT = Path(__file__).resolve().parents[1]


class Response:
    def __init__(self, status: int, doc: dict):
        self.status_code, self._doc, self.text = status, doc, json.dumps(doc)

    def json(self):
        return self._doc


class Session:
    def __init__(self, response):
        self.response, self.urls = response, []

    def get(self, url, timeout=None):
        self.urls.append(url)
        return self.response


def gate_args(tmp_path, **kw) -> argparse.Namespace:
    base = dict(stack="prod", service="backend", json=True, interval="60", max_duration="600", lag="0",
                monitoring_endpoint=None, min_soak="600", min_requests="500", alpha="0.01", error_tolerance="1.1",
                latency_tolerance="1.25", verdict_file=str(tmp_path / "v.json"), project=None,
                stable_revision=None, candidate_revision=None, revisions_from="deployed")
    base.update(kw)
    return argparse.Namespace(**base)


def test_rollback_triggers_come_from_the_stack_config(tmp_path):
    s = api.gate_settings(gate_args(tmp_path))
    assert (s.judge.max_error_rate, s.judge.max_p95_ms) == (0.01, 2000.0)
    assert (s.judge.max_token_failure, s.judge.max_websocket_failure) == (0.10, 0.05)


def test_deployed_revisions_come_from_the_traffic_tags():
    doc = {"traffic": [{"revision": "ignored", "tag": "stable", "percent": 100}],
           "trafficStatuses": [
               {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "netra-backend-prod-aaaa1111",
                "percent": 90, "tag": "stable"},
               {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "netra-backend-prod-bbbb2222",
                "percent": 10, "tag": "canary"}]}
    session = Session(Response(200, doc))
    rev = api.deployed_revisions("prod", "backend", session=session)
    assert (rev.stable, rev.candidate, rev.canary_percent) == ("netra-backend-prod-aaaa1111", "netra-backend-prod-bbbb2222", 10)
    assert session.urls == [f"{api.CLOUD_RUN_API}projects/{rev.project}/locations/{rev.region}/services/netra-backend-prod"]
    assert api.nothing_to_judge(rev) is None


def test_a_service_without_a_canary_tag_has_nothing_to_judge():
    doc = {"traffic": [{"revision": "netra-backend-prod-aaaa1111", "tag": "stable", "percent": 100}]}
    rev = api.deployed_revisions("prod", "backend", session=Session(Response(200, doc)))
    assert "no stable revision" in api.nothing_to_judge(rev)


@pytest.mark.parametrize("response, expect", [
    (Response(403, {"error": "denied"}), "HTTP 403"),
    (Response(200, {"traffic": []}), "`stable` traffic tag"),
])
def test_unreadable_deployed_state_is_exit_4_with_a_verdict_file(tmp_path, capsys, response, expect):
    rc = run(gate_args(tmp_path), session=Session(response))
    _, err = capsys.readouterr()
    assert rc == 4
    assert len(err.strip().splitlines()) == 1 and expect in err and "Traceback" not in err
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["decision"] == "error" and doc["exit_code"] == 4


def test_missing_credentials_end_as_exit_4_not_rollback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    args = gate_args(tmp_path, stack=None, service="netra-backend-prod", project="netra-production",
                     stable_revision="netra-backend-prod-aaaa1111", candidate_revision="netra-backend-prod-bbbb2222")
    rc = run(args, sleep=lambda s: None)
    out, err = capsys.readouterr()
    assert rc == 4, err
    assert json.loads(out)["decision"] == "error" and "credentials" in json.loads(out)["reason"].lower()
    assert "Traceback" not in err


def test_an_unexpected_exception_in_the_gate_is_an_error_verdict():
    class Broken:
        def list_time_series(self, **kw):
            raise ZeroDivisionError("boom")

    rev = api.Revisions("backend", "netra-backend-prod", "c", "s", 10, "p", "r")
    s = api.GateSettings(api_options(), api_judge_config())
    v = api.judge(rev, s, client=Broken(), clock=lambda: 0.0, sleep=lambda x: None)
    assert v.decision == Decision.ERROR and v.exit_code == 4 and "ZeroDivisionError: boom" in v.reason


def api_options():
    from infra.canary.gate import GateOptions

    return GateOptions(interval_s=60, max_duration_s=120, lag_s=0)


def api_judge_config():
    from infra.canary.judge import JudgeConfig

    return JudgeConfig()


def test_decisions_are_ordered_by_severity():
    assert combine([Decision.PROMOTE, Decision.PROMOTE]) == Decision.PROMOTE
    assert combine([Decision.PROMOTE, Decision.HOLD]) == Decision.HOLD
    assert combine([Decision.HOLD, Decision.ERROR, Decision.ROLLBACK]) == Decision.ROLLBACK
    assert [d.exit_code for d in (Decision.PROMOTE, Decision.ROLLBACK, Decision.HOLD, Decision.ERROR)] == [0, 1, 3, 4]


def test_rollout_uses_the_gate_api_not_its_command_line():
    for path in (ROOT / "infra" / "release").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "infra.canary.cli" not in imported, path
