"""`python -m infra preflight`: what a real `up` needs that the config lacks. Offline from the stack file;
with credentials through Google's APIs, here a fake of the four endpoints on 127.0.0.1 (project get, Cloud
Run revision get, Service Usage list, testIamPermissions) driven by the real `requests` session code."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from infra import preflight as pf
from infra.bootstrap.roles import ROLE_PERMISSION

from .conftest import cli

KNOWN_REVISION = "netra-frontend-prod-5e0b7c21"


class FakeGoogle(BaseHTTPRequestHandler):
    enabled = {"serviceusage.googleapis.com", "run.googleapis.com"}
    held = set(ROLE_PERMISSION.values()) - {"run.services.setIamPolicy"}
    calls: list[str] = []

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        FakeGoogle.calls.append(self.path)
        if self.path == "/v1/projects/netra-production":
            return self._send(200, {"projectId": "netra-production", "projectNumber": "123456789012"})
        if self.path.startswith("/v2/projects/netra-production/locations/us-central1/services/"):
            return self._send(200 if self.path.endswith("/revisions/" + KNOWN_REVISION) else 404, {})
        if self.path.startswith("/v1/projects/netra-production/services?"):
            services = sorted(self.enabled)
            if "pageToken" not in self.path:  # two pages: the client must follow nextPageToken
                return self._send(200, {"services": [{"config": {"name": services[0]}}], "nextPageToken": "p2"})
            return self._send(200, {"services": [{"config": {"name": s}} for s in services[1:]]})
        return self._send(404, {})

    def do_POST(self):
        FakeGoogle.calls.append(self.path)
        if self.path == "/v1/projects/netra-production:testIamPermissions":
            asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["permissions"]
            return self._send(200, {"permissions": [p for p in asked if p in self.held]})
        return self._send(500, {"error": "unexpected"})


@pytest.fixture(scope="module")
def google():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGoogle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield pf.Cloud(requests.Session(), pf.Endpoints(*(f"http://127.0.0.1:{server.server_port}",) * 3))
    server.shutdown()


def _by(findings, check):
    return [f for f in findings if f.check == check]


def test_offline_prod_lists_placeholders_uninitialized_stack_and_what_it_cannot_check(reuse_plans):
    findings = pf.preflight("prod", None, pf.NO_CREDENTIALS)
    missing = {(f.check, f.what.split(" ")[0]) for f in findings if f.status == pf.MISSING}
    assert ("images", "netra:observability.grafana.image") in missing
    assert ("images", "netra:observability.prometheus.sidecarImage") in missing
    assert ("secrets", "netra:observability.pagerduty.serviceKey:") in missing
    assert ("stack", "Pulumi.prod.yaml") in missing
    unchecked = _by(findings, "stable revisions")
    assert len(unchecked) == 3 and all(f.status == pf.UNCHECKED and "config rm" in f.fix for f in unchecked)
    assert {f.check for f in findings if f.status == pf.UNCHECKED} == {"project", "stable revisions", "APIs", "permissions"}


def test_with_credentials_each_cloud_fact_is_read(google, reuse_plans):
    findings = pf.preflight("prod", google)
    project = _by(findings, "project")[0]
    assert project.status == pf.OK and "123456789012" in project.what
    revisions = {f.what.split(" ")[1]: f.status for f in _by(findings, "stable revisions")}
    assert revisions == {KNOWN_REVISION: pf.OK, "netra-backend-prod-a41c9e07": pf.MISSING,
                         "netra-auth-prod-17d2f3b8": pf.MISSING}
    apis = _by(findings, "APIs")[0]
    assert apis.status == pf.MISSING and "cloudresourcemanager.googleapis.com" in apis.what
    assert "serviceusage.googleapis.com" not in apis.what  # on the fake's second page
    perms = _by(findings, "permissions")[0]
    assert perms.status == pf.MISSING and perms.what.endswith("roles/run.admin")
    assert not [f for f in findings if f.status == pf.UNCHECKED]


def test_an_unknown_project_stops_the_cloud_checks(google, monkeypatch, reuse_plans):
    monkeypatch.setattr(pf.Cloud, "project", lambda self, p: None)
    findings = pf.preflight("prod", google)
    assert [f.status for f in _by(findings, "project")] == [pf.MISSING] and not _by(findings, "permissions")


def test_cli_exit_codes(reuse_plans):
    r = cli("preflight", "--stack", "staging", "--offline", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["counts"]["missing"] == 1  # staging: only the stack's secrets provider
    assert next(f for f in doc["findings"] if f["check"] == "images")["status"] == "ok"
    assert cli("preflight", "--stack", "nope", "--offline").returncode == 2


def test_an_api_error_is_exit_4(monkeypatch, reuse_plans):
    def broken(*a, **k):
        raise requests.ConnectionError("refused")

    session = requests.Session()
    monkeypatch.setattr(session, "request", broken)
    monkeypatch.setattr(pf, "default_cloud", lambda: (pf.Cloud(session, pf.Endpoints()), ""))
    r = cli("preflight", "--stack", "staging")
    assert r.returncode == 4 and "ConnectionError" in r.stderr
