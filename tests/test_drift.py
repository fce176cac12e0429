"""`python -m infra drift` against the local Cloud Run Admin API (infra/release/cloudrun_local.py) on
127.0.0.1: clean, an out-of-band `update-traffic`, a missing service, a 0 %-tag-only difference, an
API error; and the local server itself (validation, operations, a second process sharing the state)."""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import pytest
import requests

from infra.notify import Notifier
from infra.release.cli import drift as drift_cli
from infra.release.cloudrun_local import CloudRunState, LocalCloudRun, TrafficError, seed, service_key

from .conftest import ROOT, plan_of

REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


@pytest.fixture(scope="module")
def outputs():
    return plan_of("prod")["outputs"]


@pytest.fixture
def cloud_run(tmp_path, outputs):
    state = CloudRunState(tmp_path / "cloudrun.json")
    seed(state, outputs)
    with LocalCloudRun(state.path) as api:
        yield api, state


def drift(api, outputs, *, as_json=False):
    out, events = io.StringIO(), io.StringIO()
    args = argparse.Namespace(stack="prod", json=as_json, api_endpoint=api.url)
    notifier = Notifier("prod", out=events)
    code = drift_cli.run_drift(args, outputs=outputs, notifier=notifier, out=out)
    return code, out.getvalue(), [json.loads(line) for line in events.getvalue().splitlines()], notifier


def backend_key(outputs):
    return service_key(outputs["gcpProject"], outputs["region"], outputs["services"]["backend"]["serviceName"])


def test_clean_when_cloud_run_serves_what_the_release_state_renders(cloud_run, outputs):
    api, _ = cloud_run
    code, text, events, _ = drift(api, outputs)
    assert code == 0 and events == [], text
    assert "ok    backend (netra-backend-prod): netra-backend-prod-a41c9e07 100 % (stable)" in text
    assert sum(1 for m, p in api.requests if m == "GET") == len(outputs["services"])


def test_an_out_of_band_update_traffic_is_drift_with_the_diff_and_an_event(cloud_run, outputs):
    api, state = cloud_run
    svc = outputs["services"]["backend"]
    stable, candidate = svc["stableRevision"], svc["candidateRevision"]
    # gcloud run services update-traffic --to-revisions candidate=30 (out of band)
    state.set_traffic(backend_key(outputs), [{"type": REVISION, "revision": stable, "percent": 70, "tag": "stable"},
                                             {"type": REVISION, "revision": candidate, "percent": 30, "tag": "canary"}])
    code, text, events, _ = drift(api, outputs)
    assert code == 1
    assert f"DRIFT backend (netra-backend-prod):" in text
    assert f"  - {candidate}: serves 30 %, the release state says 0 %" in text
    assert f"  - {stable}: serves 70 %, the release state says 100 %" in text
    assert "ok    auth" in text and "ok    frontend" in text
    [event] = events
    assert event["event"] == "drift" and event["services"] == ["backend"] and "serves 30 %" in event["diff"]
    code, text, events, _ = drift(api, outputs, as_json=True)
    doc = json.loads(text)
    assert code == 1 and doc["drift"] is True
    assert [s["service"] for s in doc["services"] if s["drift"]] == ["backend"]


def test_a_missing_service_is_drift_and_a_dropped_zero_percent_tag_is_only_a_note(cloud_run, outputs):
    api, state = cloud_run
    svc = outputs["services"]["backend"]
    # what `rollback --direct` leaves: the stable revision alone, the 0 % canary tag gone
    state.set_traffic(backend_key(outputs), [{"type": REVISION, "revision": svc["stableRevision"], "percent": 100,
                                              "tag": "stable"}])
    code, text, events, _ = drift(api, outputs)
    assert code == 0 and events == [], text
    assert f"note: tag canary: on no revision, the release state says {svc['candidateRevision']}" in text
    with state.locked() as doc:
        del doc["services"][backend_key(outputs)]
    code, text, _, _ = drift(api, outputs)
    assert code == 1 and "netra-backend-prod does not exist in Cloud Run" in text


def test_an_unreadable_live_state_is_exit_4_never_clean(outputs, capsys):
    class Broken:
        def get(self, url, timeout):
            return type("R", (), {"status_code": 503, "text": "backend unavailable"})()

    args = argparse.Namespace(stack="prod", json=False, api_endpoint="http://127.0.0.1:9")
    assert drift_cli.run_drift(args, outputs=outputs, session=Broken(), out=io.StringIO()) == 4
    assert "HTTP 503: backend unavailable" in capsys.readouterr().err
    # nothing listening at all
    assert drift_cli.run_drift(args, outputs=outputs, out=io.StringIO()) == 4
    assert "ConnectionError" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    args = argparse.Namespace(stack=None, json=False, api_endpoint="http://x")
    assert drift_cli.run_drift(args) == 2
    args = argparse.Namespace(stack="prod", json=False, api_endpoint="ftp://x")
    assert drift_cli.run_drift(args) == 2 and "--api-endpoint must be an http(s) URL" in capsys.readouterr().err


def test_the_local_server_validates_traffic_and_completes_operations(cloud_run, outputs):
    api, state = cloud_run
    svc = outputs["services"]["backend"]
    url = f"{api.url}/v2/{backend_key(outputs)}"
    with requests.Session() as s:
        bad = s.patch(url, params={"updateMask": "traffic"}, json={"traffic": [
            {"type": REVISION, "revision": svc["stableRevision"], "percent": 90}]})
        assert bad.status_code == 400 and "sum to 100, got 90" in bad.json()["error"]["message"]
        bad = s.patch(url, params={"updateMask": "traffic"}, json={"traffic": [
            {"type": REVISION, "revision": "netra-backend-prod-00000000", "percent": 100}]})
        assert bad.status_code == 400 and "not a revision of this service" in bad.json()["error"]["message"]
        op = s.patch(url, params={"updateMask": "traffic"}, json={"traffic": [
            {"type": REVISION, "revision": svc["candidateRevision"], "percent": 100, "tag": "canary"}]}).json()
        assert op["done"] is False
        # asked for, not yet serving: trafficStatuses moves when the operation completes
        doc = s.get(url).json()
        assert doc["traffic"][0]["revision"] == svc["candidateRevision"]
        assert doc["trafficStatuses"][0]["revision"] == svc["stableRevision"]
        done = s.get(f"{api.url}/v2/{op['name']}").json()
        assert done["done"] is True and done["response"]["trafficStatuses"][0]["revision"] == svc["candidateRevision"]
        assert s.get(f"{api.url}/v2/projects/p/locations/r/services/nope").status_code == 404
        listed = s.get(f"{api.url}/v2/projects/{outputs['gcpProject']}/locations/{outputs['region']}/services").json()
        assert len(listed["services"]) == len(outputs["services"])
    with pytest.raises(TrafficError, match="used twice"):
        state.set_traffic(backend_key(outputs), [{"revision": svc["stableRevision"], "percent": 50, "tag": "a"},
                                                 {"revision": svc["candidateRevision"], "percent": 50, "tag": "a"}])


def test_the_server_runs_as_its_own_process_on_a_shared_state(tmp_path, outputs):
    state = CloudRunState(tmp_path / "cloudrun.json")
    seed(state, outputs)
    proc = subprocess.Popen([sys.executable, "-m", "infra.release.cloudrun_local", "--state", str(state.path)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        svc = outputs["services"]["auth"]
        key = service_key(outputs["gcpProject"], outputs["region"], svc["serviceName"])
        state.set_traffic(key, [{"revision": svc["candidateRevision"], "percent": 100, "tag": "stable"}])
        live = requests.get(f"{url}/v2/{key}", timeout=10).json()["trafficStatuses"]
        assert live[0]["revision"] == svc["candidateRevision"] and live[0]["uri"].startswith("https://stable---")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rollback_direct_through_the_local_server_leaves_no_drift(cloud_run, outputs):
    """`rollback --direct` PATCHes each service through the local Admin API and waits for the operation;
    the stack's release state (stage 0) then matches what serves: only 0 % canary tags differ."""
    from infra.release import backends as be
    from infra.release.cli import rollback as rollback_cli
    from infra.release.emergency import ADMIN_API

    from .conftest import stack_config

    api, state = cloud_run
    svc = outputs["services"]["backend"]
    state.set_traffic(backend_key(outputs), [{"revision": svc["stableRevision"], "percent": 50, "tag": "stable"},
                                             {"revision": svc["candidateRevision"], "percent": 50, "tag": "canary"}])
    assert drift(api, outputs)[0] == 1
    args = argparse.Namespace(stack="prod", dry_run=False, direct=True, api_endpoint=api.url)
    out = io.StringIO()
    assert rollback_cli.run_rollback(args, backend=be.MemoryBackend(stack_config("prod")), out=out,
                                     sleep=lambda s: None, log=lambda l: None) == 0, out.getvalue()
    assert [m for m, p in api.requests if "/operations/" in p] == ["GET"] * len(outputs["services"])
    code, text, _, _ = drift(api, outputs)
    assert code == 0 and "note: tag canary" in text and ADMIN_API not in text


def test_the_expected_traffic_is_what_the_release_ledger_says(tmp_path, monkeypatch, outputs):
    """`drift` renders the stack config with the ledger's keys overlaid: a stable revision the ledger holds
    (and the stack file does not) is what Cloud Run must serve."""
    from infra.release.backends import LEDGER_ENV
    from infra.release.cli.drift import ledger_outputs
    from infra.release.ledger import DirStore, Ledger

    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "ledger"))
    ledger = Ledger(DirStore(tmp_path / "ledger" / "prod"), "prod")
    auth = outputs["services"]["auth"]
    ledger.update(lambda doc: doc["config"].update({"netra:services.auth.stableRevision": auth["candidateRevision"]}),
                  by="test", what="auth finalized by another runner")
    expected = ledger_outputs("prod")["services"]["auth"]
    assert expected["stableRevision"] == auth["candidateRevision"]
    assert {t["revision"]: t["percent"] for t in expected["traffic"]}[auth["candidateRevision"]] == 100
