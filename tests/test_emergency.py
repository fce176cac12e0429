"""Emergency rollback (needs only service names and stable revisions; --direct through the Cloud Run Admin
API on a local HTTP server), `approve`, `status`, and the notification sinks (webhook on a local HTTP
server, the GitHub job summary)."""
from __future__ import annotations

import argparse
import io
import json
from http.server import BaseHTTPRequestHandler

import pytest

from infra.localhttp import LocalHTTPServer
from infra.release import emergency
from infra.release.cli import approve as approve_cli
from infra.release import backends as be
from infra.release import driver as drv
from infra.release.cli import rollback as rollback_cli
from infra.release import state as rs
from infra.release import revision as rv
from infra.release.cli import status as status_cli
from infra.notify import Notifier

from .conftest import stack_config

# approve and status plan the stack themselves: from the session's plan cache
pytestmark = pytest.mark.usefixtures("reuse_plans")


class Recorder(LocalHTTPServer):
    """A local HTTP server on 127.0.0.1 (free port) that records each request and answers from `reply`."""

    def __init__(self, reply):
        self.requests: list[tuple[str, str, dict | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                recorder.requests.append((self.command, self.path, body))
                code, doc = reply(self.command, self.path, body)
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _handle

            def log_message(self, *a):
                pass

        super().__init__(Handler)


def admin_api(command, path, body):
    if command == "PATCH":
        return 200, {"name": "projects/netra-production/locations/us-central1/operations/op-1", "done": False}
    return 200, {"name": "projects/netra-production/locations/us-central1/operations/op-1", "done": True, "response": {}}


def args(**kw):
    base = dict(stack="prod", dry_run=False, direct=False, api_endpoint=emergency.ADMIN_API)
    base.update(kw)
    return argparse.Namespace(**base)


class BrokenUp(be.MemoryBackend):
    def up(self, message):
        raise rs.OperationFailed("pulumi up failed: error: the program panicked")


def broken_config() -> dict:
    """Invalid in many unrelated ways, and an off-ladder stage: a rollback must still work."""
    cfg = stack_config("prod")
    cfg["netra:canaryPercent"] = 37
    cfg["netra:services"]["backend"]["canaryPercent"] = 50
    cfg["netra:services"]["auth"]["cpu"] = "banana"
    cfg.pop("netra:observability")
    cfg["netra:release"] = {"approvals": {}, "rollout": {"candidates": {"backend": "netra-backend-prod-1"}, "live": 50}}
    return cfg


def test_rollback_needs_only_names_and_stable_revisions():
    backend = be.MemoryBackend(broken_config())
    out = io.StringIO()
    assert rollback_cli.run_rollback(args(), backend=backend, out=out, log=lambda l: None) == 0
    [(message, snap)] = backend.ups
    assert snap["netra:canaryPercent"] == 0 and "canaryPercent" not in snap["netra:services"]["backend"]
    assert snap["netra:release"]["rollout"]["rejected"].startswith("rollback by operator:")
    # the candidate is rejected (it never climbs again without a new explicit release) and the fence moved
    assert snap["netra:release"]["approvals"]["backend"]["revision"] == "netra-backend-prod-1"
    assert snap["netra:release"]["approvals"]["backend"]["rejected"]
    fence = backend.ledger.read().fence
    assert fence["seq"] == 1 and fence["by"].startswith("operator:") and fence["rejected"] == {"backend": "netra-backend-prod-1"}
    text = out.getvalue()
    for key, rev in [("auth", "netra-auth-prod-17d2f3b8"), ("backend", "netra-backend-prod-a41c9e07")]:
        assert f"done: {key}: netra-{key}-prod serves {rev} 100 % (pulumi up)" in text
    assert "not done" not in text


def test_a_killed_rollout_finishes_the_rollback_after_an_emergency_rollback(prod_plan):
    cfg = stack_config("prod")
    backend = be.MemoryBackend(cfg)
    services = prod_plan["outputs"]["services"]
    release = rv.Release("prod", (rs.Target("backend", "netra-backend-prod", services["backend"]["candidateRevision"],
                                            services["backend"]["stableRevision"]),), (0, 10, 50, 100), "stack", False)
    check = drv.dry_run_gate({50: "hold"})
    assert drv.Driver(release, backend, gate=check, verify=check, log=lambda l: None).run().exit_code == 3
    assert rollback_cli.run_rollback(args(), backend=backend, out=io.StringIO(), log=lambda l: None) == 0
    outcome = drv.Driver(release, backend, gate=drv.dry_run_gate(), verify=check, log=lambda l: None).run()
    assert outcome.exit_code == 1 and "emergency rollback" in outcome.reason
    assert all(rv.desired_stage(release, snap) == 0 for _, snap in backend.ups[-2:])


def test_a_broken_pulumi_up_is_reported_and_points_to_direct():
    out = io.StringIO()
    assert rollback_cli.run_rollback(args(), backend=BrokenUp(broken_config()), out=out, log=lambda l: None) == 4
    assert "not done: pulumi up FAILED (pulumi up failed: error: the program panicked): traffic NOT changed; retry with --direct" in out.getvalue()


def test_direct_rollback_patches_traffic_through_the_admin_api_then_reconciles_config():
    backend = BrokenUp(broken_config())
    out = io.StringIO()
    with Recorder(admin_api) as api:
        code = rollback_cli.run_rollback(args(direct=True, api_endpoint=api.url), backend=backend, out=out,
                                      sleep=lambda s: None, log=lambda l: None)
    assert code == 0, out.getvalue()
    patches = [r for r in api.requests if r[0] == "PATCH"]
    assert [p[1] for p in patches] == [
        f"/v2/projects/netra-production/locations/us-central1/services/netra-{k}-prod?updateMask=traffic"
        for k in ("auth", "backend", "frontend")]
    assert patches[1][2] == {"traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
                                          "revision": "netra-backend-prod-a41c9e07", "percent": 100, "tag": "stable"}]}
    assert any(r[0] == "GET" and r[1].endswith("/operations/op-1") for r in api.requests)  # waited for the operation
    assert backend.ups == [] and backend.config["netra:canaryPercent"] == 0  # config reconciled, no pulumi up
    assert "canaryPercent" not in backend.config["netra:services"]["backend"]


def test_direct_rollback_says_what_it_did_not_do():
    cfg = broken_config()
    cfg["netra:services"]["frontend"].pop("stableRevision")

    def refuse_auth(command, path, body):
        if command == "PATCH" and "netra-auth-prod" in path:
            return 403, {"error": {"message": "permission denied"}}
        return admin_api(command, path, body)

    out = io.StringIO()
    with Recorder(refuse_auth) as api:
        code = rollback_cli.run_rollback(args(direct=True, api_endpoint=api.url), backend=be.MemoryBackend(cfg), out=out,
                                      sleep=lambda s: None, log=lambda l: None)
    text = out.getvalue()
    assert code == 4
    assert "not done: auth: traffic NOT changed: PATCH projects/netra-production/locations/us-central1/services/netra-auth-prod returned HTTP 403" in text
    assert "not done: frontend: NOT rolled back: no stableRevision" in text
    assert "done: backend: netra-backend-prod traffic set to netra-backend-prod-a41c9e07 100 %" in text


def test_rollback_dry_run_from_the_stack_file_changes_nothing(capsys):
    assert rollback_cli.run_rollback(args(dry_run=True), log=lambda l: None) == 0
    text = capsys.readouterr().out
    assert "would set netra-backend-prod traffic: netra-backend-prod-a41c9e07 100 %" in text
    assert "would run pulumi up" in text


# ---- approve and status ----------------------------------------------------------------------------

def test_operator_approval_is_bound_to_the_exact_revision(prod_plan, capsys):
    cand = prod_plan["outputs"]["services"]["backend"]["candidateRevision"]
    backend = be.MemoryBackend(stack_config("prod"))
    a = argparse.Namespace(stack="prod", service="backend", revision=cand, stage="0", note="checked by hand", by="ana")
    # an operator approves what was seen at a stage: never a stage the candidate did not serve
    assert approve_cli.run_approve(a, backend=backend) == 2
    assert f"{cand} never served 0 % (it has not been live at any stage)" in capsys.readouterr().err
    backend.ledger.update(lambda doc: doc["release"].update(reached={"backend": {"revision": cand, "stage": 0}}),
                          "rollout", "live at 0 %")
    assert approve_cli.run_approve(a, backend=backend) == 0
    assert approve_cli.run_approve(argparse.Namespace(**{**vars(a), "stage": "10"}), backend=backend) == 2
    record = backend.config["netra:release"]["approvals"]["backend"]
    assert record["revision"] == cand and record["stage"] == 0 and record["by"] == "operator:ana"
    assert len(record["evidence"]) == 64 and "checked by hand" not in json.dumps(record)
    assert "it may now get 10 %" in capsys.readouterr().out
    wrong = argparse.Namespace(**{**vars(a), "revision": "netra-backend-prod-00000000"})
    assert approve_cli.run_approve(wrong, backend=backend) == 2
    assert approve_cli.run_approve(argparse.Namespace(**{**vars(a), "stage": "100"}), backend=backend) == 2
    assert approve_cli.run_approve(argparse.Namespace(**{**vars(a), "by": "Ana Lopez"}), backend=backend) == 2
    # what approve records, the program accepts (netra:release is validated like any config)
    from infra.config import load_stack_config

    from .conftest import flat
    load_stack_config(flat(backend.config), "prod")


def test_status_rows(prod_plan):
    outputs = prod_plan["outputs"]
    cand = outputs["services"]["backend"]["candidateRevision"]
    doc = {"approvals": {"backend": {"revision": cand, "stage": 10, "by": "gate", "evidence": "e" * 64, "at": "t"}},
           "rollout": {"candidates": {"backend": cand}, "live": 10, "scope": "service"}}
    rows = {r["service"]: r for r in status_cli.service_status(outputs, doc, (0, 10, 50, 100))}
    b = rows["backend"]
    assert (b["stable"], b["candidate"], b["live"]) == ("netra-backend-prod-a41c9e07", cand, 10)
    assert b["lastVerdict"].startswith(f"approved {cand} at 10 % by gate") and b["next"].startswith("climb to 50 %")
    assert rows["auth"]["next"].startswith("verify at 0 %") and rows["auth"]["lastVerdict"] is None


def test_status_after_a_rollback_shows_the_stage_it_applied_not_the_rejected_rollouts(prod_plan):
    """The rollback's own `pulumi up` set 0 %; the rejected journal still says 10 %: status must not tell
    the on-call engineer that the candidate still gets 10 %."""
    outputs = prod_plan["outputs"]
    cand = outputs["services"]["backend"]["candidateRevision"]
    doc = {"rollout": {"candidates": {"backend": cand}, "live": 10, "scope": "service",
                       "rejected": "rollback by operator:ana: 5xx"}}
    row = {r["service"]: r for r in status_cli.service_status(outputs, doc, (0, 10, 50, 100), "prod",
                                                              configured={"backend": 0})}["backend"]
    assert (row["live"], row["rolledBackFrom"]) == (0, 10)
    assert row["next"] == "close the rejected rollout (the rollback already set 0 %): python -m infra rollout --stack prod"
    # a gate's rejection the rollout has not applied yet: the journal's stage is still what serves
    row = status_cli.service_status(outputs, doc, (0, 10, 50, 100), "prod", configured={"backend": 10})[1]
    assert (row["live"], row["rolledBackFrom"]) == (10, None) and row["next"].startswith("finish the rollback")


def test_status_commands_in_a_sandbox_name_the_sandbox_not_the_stack(prod_plan):
    doc = {"rollout": {"candidates": {"backend": prod_plan["outputs"]["services"]["backend"]["candidateRevision"]},
                       "live": 10, "scope": "service", "rejected": "the gate at 10 %"}}
    rows = status_cli.service_status(prod_plan["outputs"], doc, (0, 10, 50, 100), "prod", where="--sandbox /tmp/box")
    assert all("--sandbox /tmp/box" in r["next"] and "--stack" not in r["next"] for r in rows if "python -m" in r["next"])
    assert any("python -m" in r["next"] for r in rows)


def test_status_command_prints_every_service(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NETRA_LEDGER", str(tmp_path))  # an offline ledger directory
    assert status_cli.run_status(argparse.Namespace(stack="prod", json=True)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["service"] for r in doc["services"]] == ["auth", "backend", "frontend"]
    assert all(r["next"] and r["candidate"] and "live" in r for r in doc["services"])


# ---- notification sinks ----------------------------------------------------------------------------

def test_webhook_and_job_summary(tmp_path):
    summary = tmp_path / "summary.md"
    out = io.StringIO()
    with Recorder(lambda c, p, b: (200, {"ok": True})) as hook:
        n = Notifier("prod", out=out, webhook=hook.url + "/hook", summary_path=str(summary))
        n.emit("stage_up", "10 % live", stage=10)
        n.emit("rollback", "rolled back to 0 %", stage=0)
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["stage_up", "rollback"]
    assert [r[0] for r in hook.requests] == ["POST", "POST"] and hook.requests[0][1] == "/hook"
    assert hook.requests[0][2]["text"].startswith("[prod]") and "10 % live" in hook.requests[0][2]["text"]
    lines = summary.read_text().splitlines()
    assert len(lines) == 2 and "rollback" in lines[1]


def test_a_broken_webhook_never_fails_the_rollout(capsys):
    with Recorder(lambda c, p, b: (500, {"error": "down"})) as hook:
        n = Notifier("prod", out=io.StringIO(), webhook=hook.url)
        n.emit("hold", "held")
        n.emit("failure", "failed")
    err = capsys.readouterr().err
    assert err.count("could not notify the webhook") == 1 and hook.url not in err
    with pytest.raises(ValueError):
        n.emit("nonsense", "x")


def test_notifier_reads_the_environment():
    n = Notifier.from_env("prod", env={"NETRA_ROLLOUT_WEBHOOK": "https://hooks.example/x", "GITHUB_STEP_SUMMARY": "/tmp/s"})
    assert n.webhook == "https://hooks.example/x" and n.summary_path == "/tmp/s"
