"""Stand-ins for the budget guard's tests: Secret Manager, Cloud Storage (with generations and
`ifGenerationMatch`) and PagerDuty Events v2 on one local HTTP server (127.0.0.1, free port), with
failure injection; Cloud Billing's notification format; the function module loaded from its source."""
from __future__ import annotations

import base64
import importlib.util
import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "functions" / "emergency_budget" / "main.py"
PROJECT = "netra-production"
FLAGS = "prod-feature-flags"
EMERGENCY = "prod-emergency-limits"
PD = "prod-pagerduty-key"
ACCOUNT = "01A2B3-C4D5E6-F7A8B9"
BUDGET_ID = "a1b2c3d4-0000-4000-8000-000000000001"
BUCKET, STATE = "netra-production-budget-guard", "state/budget.json"
FLAGS_DOC = json.dumps({"semantic_cache": {"percent": 10, "killSwitch": False}, "cost_dashboard": True})
OFF = '{"enable_emergency_limits":false}'


def load_function():
    spec = importlib.util.spec_from_file_location("emergency_budget_main", SOURCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# what each request is, for failure injection and the access log
def kind_of(method: str, path: str) -> str:
    if ":addVersion" in path:
        return "add"
    if path.endswith(":access"):
        return "access"
    if path.startswith("/gcs/upload/"):
        return "write"
    if path.startswith("/gcs/"):
        return "read"
    if path.startswith("/pagerduty/"):
        return "page"
    return "other"


class FakeGoogle(ThreadingHTTPServer):
    """Secret Manager + Cloud Storage JSON API + PagerDuty Events v2, in memory."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.reset()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.secrets: dict[str, list[str]] = {FLAGS: [FLAGS_DOC], EMERGENCY: [OFF], PD: ["R0UTINGKEY0123456789"]}
            self.objects: dict[tuple[str, str], tuple[bytes, int]] = {}
            self.pages: list[dict] = []
            self.log: list[tuple[str, str]] = []  # (kind, secret or object)
            self.fail: Counter = Counter()  # kind -> how many of the next such requests answer 503
            self.generation = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def env(self, **over) -> dict[str, str]:
        return {"PROJECT": PROJECT, "EMERGENCY_SECRET": EMERGENCY, "PAGERDUTY_SECRET": PD,
                "STATE_URI": f"gs://{BUCKET}/{STATE}", "MAX_HOURLY_COST_USD": "100",
                "BUDGET_NAME": f"billingAccounts/{ACCOUNT}/budgets/{BUDGET_ID}", "BUDGET_CURRENCY": "USD",
                "TRIGGER_HOURLY_COST_USD": "", "TRIGGER_THRESHOLD_PERCENT": "100", "ENVIRONMENT": "prod",
                "SECRETMANAGER_API": self.url + "/sm", "STORAGE_API": self.url + "/gcs",
                "PAGERDUTY_EVENTS_URL": self.url + "/pagerduty/v2/enqueue", **over}

    def state(self) -> dict | None:
        found = self.objects.get((BUCKET, STATE))
        return json.loads(found[0]) if found else None

    def limits_on(self) -> bool:
        return json.loads(self.secrets[EMERGENCY][-1]).get("enable_emergency_limits") is True

    def effects(self) -> tuple:
        """Everything the guard changed, to compare runs."""
        return (tuple(self.secrets[EMERGENCY]), tuple(self.secrets[FLAGS]),
                tuple(sorted({p["dedup_key"] for p in self.pages})), json.dumps(self.state(), sort_keys=True))


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _reply(self, code, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _injected(self, kind: str, what: str) -> bool:
        srv = self.server
        with srv.lock:
            srv.log.append((kind, what))
            if srv.fail[kind] > 0:
                srv.fail[kind] -= 1
                return True
        return False

    def do_GET(self):
        srv, u = self.server, urlparse(self.path)
        kind = kind_of("GET", u.path)
        if u.path.startswith(f"/sm/projects/{PROJECT}/secrets/") and kind == "access":
            name = u.path.split("/")[5]
            if self._injected(kind, name):
                return self._reply(503, {"error": "UNAVAILABLE"})
            versions = srv.secrets.get(name)
            if not versions:
                return self._reply(404, {"error": "NOT_FOUND"})
            return self._reply(200, {"name": f"{name}/versions/{len(versions)}",
                                     "payload": {"data": base64.b64encode(versions[-1].encode()).decode()}})
        if u.path.startswith("/gcs/storage/v1/b/"):
            bucket, name = u.path.removeprefix("/gcs/storage/v1/b/").split("/o/", 1)
            if self._injected(kind, unquote(name)):
                return self._reply(503, {"error": "backendError"})
            found = srv.objects.get((bucket, unquote(name)))
            if found is None:
                return self._reply(404, {"error": "not found"})
            return self._reply(200, found[0], headers=[("x-goog-generation", str(found[1]))])
        self._reply(404, {"error": self.path})

    def do_POST(self):
        srv, u = self.server, urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = kind_of("POST", u.path)
        if kind == "add":
            name = u.path.split("/")[5].removesuffix(":addVersion")
            if self._injected(kind, name):
                return self._reply(503, {"error": "UNAVAILABLE"})
            with srv.lock:
                srv.secrets[name].append(base64.b64decode(json.loads(body)["payload"]["data"]).decode())
                n = len(srv.secrets[name])
            return self._reply(200, {"name": f"projects/1/secrets/{name}/versions/{n}"})
        if kind == "write":
            bucket, q = u.path.split("/")[6], parse_qs(u.query)
            name = q["name"][0]
            if self._injected(kind, name):
                return self._reply(503, {"error": "backendError"})
            with srv.lock:
                current = srv.objects.get((bucket, name), (None, 0))[1]
                if "ifGenerationMatch" in q and int(q["ifGenerationMatch"][0]) != current:
                    return self._reply(412, {"error": "conditionNotMet"})
                srv.generation += 1
                srv.objects[(bucket, name)] = (body, srv.generation)
            return self._reply(200, {"generation": str(srv.generation)})
        if kind == "page":
            if self._injected(kind, "enqueue"):
                return self._reply(503, {"status": "unavailable"})
            with srv.lock:
                srv.pages.append(json.loads(body))
            return self._reply(202, {"status": "success", "dedup_key": json.loads(body)["dedup_key"]})
        self._reply(404, {"error": self.path})


def budget_data(cost, start="2026-11-01T08:00:00Z", threshold=None, currency="USD", **extra) -> dict:
    data = {"budgetDisplayName": "Netra prod monthly", "costAmount": cost, "costIntervalStart": start,
            "budgetAmount": 25000.0, "budgetAmountType": "SPECIFIED_AMOUNT", "currencyCode": currency, **extra}
    if threshold is not None:
        data["alertThresholdExceeded"] = threshold
    return data


def budget_message(cost, publish_time, threshold=None, start="2026-11-01T08:00:00Z", message_id=None, data=None,
                   attributes=None) -> dict:
    """A Pub/Sub message exactly as Cloud Billing publishes it (docs: "Programmatic budget notifications")."""
    data = budget_data(cost, start, threshold) if data is None else data
    return {"data": base64.b64encode(json.dumps(data).encode()).decode(),
            "attributes": {"billingAccountId": ACCOUNT, "budgetId": BUDGET_ID, "schemaVersion": "1.0"}
            if attributes is None else attributes,
            "messageId": message_id or f"m-{publish_time}-{cost}", "publishTime": publish_time}


def cloud_event_headers(msg: dict, event_id: str | None = None) -> dict[str, str]:
    """Eventarc's binary-mode CloudEvent headers for a Pub/Sub message."""
    return {"ce-id": event_id or str(msg.get("messageId", "1")) if isinstance(msg, dict) else "1",
            "ce-specversion": "1.0",
            "ce-source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/netra-budget-prod",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-time": (msg.get("publishTime") if isinstance(msg, dict) and isinstance(msg.get("publishTime"), str)
                        else "2026-11-23T10:00:00Z"),
            "Content-Type": "application/json"}
