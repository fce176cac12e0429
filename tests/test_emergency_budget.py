"""The emergency budget function on Cloud Billing's real Pub/Sub notification format.

A local HTTP server (127.0.0.1, free port) stands in for Secret Manager (versions/latest:access,
:addVersion), Cloud Storage (the rate state object) and PagerDuty's Events API v2; the function talks
to it over HTTP exactly as it talks to the real APIs. The last test goes through functions-framework's
own CloudEvent entry point.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "functions" / "emergency_budget" / "main.py"
spec = importlib.util.spec_from_file_location("emergency_budget_main", SOURCE)
fn = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fn  # dataclasses look their module up
spec.loader.exec_module(fn)

FLAGS = "prod-feature-flags"
PD = "prod-pagerduty-key"


class FakeGoogle(ThreadingHTTPServer):
    """Secret Manager + Cloud Storage JSON API + PagerDuty Events v2, in memory."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secrets = {FLAGS: [json.dumps({"semantic_cache": {"percent": 10, "killSwitch": False}, "cost_dashboard": True})],
                        PD: ["R0UTINGKEY0123456789"]}
        self.objects: dict[tuple[str, str], bytes] = {}
        self.pages: list[dict] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _reply(self, code, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        srv, u = self.server, urlparse(self.path)
        if u.path.startswith("/sm/projects/netra-production/secrets/") and u.path.endswith("/versions/latest:access"):
            name = u.path.split("/")[5]
            versions = srv.secrets.get(name)
            if not versions:
                return self._reply(404, {"error": "NOT_FOUND"})
            return self._reply(200, {"name": f"{name}/versions/{len(versions)}",
                                     "payload": {"data": base64.b64encode(versions[-1].encode()).decode()}})
        if u.path.startswith("/gcs/storage/v1/b/"):
            bucket, name = u.path.removeprefix("/gcs/storage/v1/b/").split("/o/", 1)
            data = srv.objects.get((bucket, unquote(name)))
            return self._reply(200, data) if data is not None else self._reply(404, {"error": "not found"})
        self._reply(404, {"error": self.path})

    def do_POST(self):
        srv, u = self.server, urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if u.path.endswith(":addVersion"):
            name = u.path.split("/")[5].removesuffix(":addVersion")
            srv.secrets[name].append(base64.b64decode(json.loads(body)["payload"]["data"]).decode())
            return self._reply(200, {"name": f"projects/1/secrets/{name}/versions/{len(srv.secrets[name])}"})
        if u.path.startswith("/gcs/upload/storage/v1/b/"):
            bucket = u.path.split("/")[6]
            srv.objects[(bucket, parse_qs(u.query)["name"][0])] = body
            return self._reply(200, {})
        if u.path == "/pagerduty/v2/enqueue":
            srv.pages.append(json.loads(body))
            return self._reply(202, {"status": "success", "dedup_key": json.loads(body)["dedup_key"]})
        self._reply(404, {"error": self.path})


@pytest.fixture
def google():
    srv = FakeGoogle()
    yield srv
    srv.shutdown()
    srv.server_close()


def settings(url, **over):
    env = {"PROJECT": "netra-production", "FLAGS_SECRET": FLAGS, "PAGERDUTY_SECRET": PD,
           "STATE_URI": "gs://netra-production-budget-guard/state/budget.json", "MAX_HOURLY_COST_USD": "100",
           "TRIGGER_HOURLY_COST_USD": "", "TRIGGER_THRESHOLD_PERCENT": "100", "ENVIRONMENT": "prod",
           "SECRETMANAGER_API": url + "/sm", "STORAGE_API": url + "/gcs", "PAGERDUTY_EVENTS_URL": url + "/pagerduty/v2/enqueue",
           **over}
    return fn.Settings.from_env(env), env


def budget_message(cost, publish_time, threshold=None, start="2026-11-01T08:00:00Z"):
    """A Pub/Sub message exactly as Cloud Billing publishes it (docs: "Programmatic budget notifications")."""
    data = {"budgetDisplayName": "Netra prod monthly", "costAmount": cost, "costIntervalStart": start,
            "budgetAmount": 25000.0, "budgetAmountType": "SPECIFIED_AMOUNT", "currencyCode": "USD"}
    if threshold is not None:
        data["alertThresholdExceeded"] = threshold
    return {"data": base64.b64encode(json.dumps(data).encode()).decode(),
            "attributes": {"billingAccountId": "01A2B3-C4D5E6-F7A8B9", "budgetId": "a1b2c3d4-0000-4000-8000-000000000001",
                           "schemaVersion": "1.0"},
            "messageId": "9001", "publishTime": publish_time}


def notify(google, msg, **over):
    s, _ = settings(google.url, **over)
    return fn.handle(s, fn.Clients(s, requests.Session()), fn.parse_message(msg), log=lambda line: None)


def test_parse_real_notification_format():
    n = fn.parse_message(budget_message(12345.67, "2026-11-23T10:00:00.123Z", threshold=0.5))
    assert (n.cost, n.budget_amount, n.threshold_exceeded, n.currency) == (12345.67, 25000.0, 0.5, "USD")
    assert n.budget_id.startswith("a1b2c3d4") and n.interval_start == "2026-11-01T08:00:00Z"
    assert n.published_at == pytest.approx(1795428000.123)
    # no threshold crossed yet: the key is absent, as Cloud Billing sends it
    assert fn.parse_message(budget_message(1.0, "2026-11-23T10:00:00Z")).threshold_exceeded is None
    with pytest.raises(ValueError, match="not a budget notification"):
        fn.parse_message({"data": base64.b64encode(b'{"foo": 1}').decode(), "publishTime": "2026-11-23T10:00:00Z"})


def test_steady_spend_changes_nothing(google):
    before = list(google.secrets[FLAGS])
    r1 = notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    r2 = notify(google, budget_message(10040.0, "2026-11-23T10:30:00Z"))  # 80 USD/h < 100
    assert r1["hourlyRate"] is None and not r1["triggered"]
    assert r2["hourlyRate"] == pytest.approx(80.0) and not r2["triggered"]
    assert google.secrets[FLAGS] == before and google.pages == []


def test_cost_spike_turns_on_emergency_limits_and_pages_once(google):
    notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    r = notify(google, budget_message(10090.0, "2026-11-23T10:30:00Z"))  # 180 USD/h > 100
    assert r["triggered"] and r["hourlyRate"] == pytest.approx(180.0)
    assert r["reasons"] == ["hourly cost 180.00 USD/h > 100"]
    latest = json.loads(google.secrets[FLAGS][-1])
    assert latest["enable_emergency_limits"] is True and latest["max_hourly_cost"] == 100
    assert latest["semantic_cache"] == {"percent": 10, "killSwitch": False}  # other flags kept
    assert r["flagsVersion"].endswith("/versions/2")
    (page,) = google.pages
    assert page["routing_key"] == "R0UTINGKEY0123456789" and page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical" and "180.00 USD/h" in page["payload"]["summary"]
    # the next notification of the spike: no second flags version; same dedup key, so one incident
    r2 = notify(google, budget_message(10190.0, "2026-11-23T11:00:00Z"))
    assert r2["triggered"] and r2["flagsVersion"] is None and len(google.secrets[FLAGS]) == 2
    assert google.pages[1]["dedup_key"] == page["dedup_key"]


def test_threshold_trigger_and_new_month(google):
    r = notify(google, budget_message(25010.0, "2026-11-28T10:00:00Z", threshold=1.0))
    assert r["triggered"] and r["reasons"][0].startswith("budget threshold 100 % of 25000 USD exceeded")
    # 80 % does not trigger at the default 100 %
    google.secrets[FLAGS] = google.secrets[FLAGS][:1]
    assert not notify(google, budget_message(20000.0, "2026-11-28T10:00:00Z", threshold=0.8))["triggered"]
    # a new budget period resets the rate: costAmount starts again from zero
    r = notify(google, budget_message(5.0, "2026-12-01T09:00:00Z", start="2026-12-01T08:00:00Z"))
    assert r["hourlyRate"] is None and not r["triggered"]


def test_notifications_closer_than_the_rate_window_keep_the_older_point(google):
    notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    assert notify(google, budget_message(10010.0, "2026-11-23T10:05:00Z"))["hourlyRate"] is None
    assert notify(google, budget_message(10060.0, "2026-11-23T10:20:00Z"))["hourlyRate"] == pytest.approx(180.0)


def test_staging_without_pager_still_turns_limits_on(google):
    notify(google, budget_message(100.0, "2026-11-23T10:00:00Z"), PAGERDUTY_SECRET="")
    r = notify(google, budget_message(200.0, "2026-11-23T10:30:00Z"), PAGERDUTY_SECRET="")
    assert r["triggered"] and not r["paged"] and google.pages == []
    assert json.loads(google.secrets[FLAGS][-1])["enable_emergency_limits"] is True


def test_functions_framework_entry_point(google, monkeypatch):
    """The deployed path: functions-framework receives the Pub/Sub CloudEvent (binary content mode)."""
    from functions_framework import create_app

    _, env = settings(google.url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = create_app(target="on_budget_notification", source=str(SOURCE), signature_type="cloudevent")
    module = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(SOURCE)
              and hasattr(m, "_session")]
    for m in module:
        monkeypatch.setattr(m, "_session", requests.Session)
    client = app.test_client()
    for cost, t in ((10000.0, "2026-11-23T10:00:00Z"), (10100.0, "2026-11-23T10:30:00Z")):
        msg = budget_message(cost, t)
        r = client.post("/", json={"message": msg, "subscription": "projects/netra-production/subscriptions/eventarc-x"},
                        headers={"ce-id": msg["messageId"], "ce-specversion": "1.0",
                                 "ce-source": "//pubsub.googleapis.com/projects/netra-production/topics/netra-budget-prod",
                                 "ce-type": "google.cloud.pubsub.topic.v1.messagePublished", "ce-time": t})
        assert r.status_code == 200, r.data
    assert json.loads(google.secrets[FLAGS][-1])["max_hourly_cost"] == 100 and len(google.pages) == 1
