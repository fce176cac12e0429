"""Emergency budget guard (seed 000, "Severity 3: cost spike"): Cloud Functions gen2 on the budget's Pub/Sub topic.

Cloud Billing publishes a notification for the project's budget to the topic several times a day:
`message.data` is base64 JSON with `budgetDisplayName`, `costAmount` (spend so far in the budget
period), `costIntervalStart`, `budgetAmount`, `budgetAmountType`, `currencyCode` and, once a threshold
rule is crossed, `alertThresholdExceeded` (0.5, 0.8, 1.0, ...); the attributes carry
`billingAccountId`, `budgetId` and `schemaVersion` "1.0".

The budget is monthly, so the hourly cost is the spend rate between two notifications of the same
period (the previous one is kept in a small state object). When that rate crosses the trigger, or a
threshold at or above the trigger share is exceeded, the guard:

1. adds a version of the feature-flags secret with `enable_emergency_limits: true` and
   `max_hourly_cost` (the seed's emergency budget enforcement; the services read the secret from a
   mounted volume, so they pick it up without a restart), unless the latest version already has them;
2. pages: PagerDuty Events API v2 `trigger`, the routing key read from Secret Manager, one incident per
   budget period (dedup_key), so repeated notifications do not page again.

Settings (environment, set by the stack): PROJECT, FLAGS_SECRET, PAGERDUTY_SECRET (empty: no pager),
STATE_URI (gs://bucket/object), MAX_HOURLY_COST_USD, TRIGGER_HOURLY_COST_USD,
TRIGGER_THRESHOLD_PERCENT (empty: thresholds alone never trigger), ENVIRONMENT. API endpoints
(SECRETMANAGER_API, STORAGE_API, PAGERDUTY_EVENTS_URL) default to Google's and PagerDuty's.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

import functions_framework

MIN_RATE_WINDOW_S = 600  # two notifications closer than this say nothing reliable about an hourly rate


@dataclass(frozen=True)
class Settings:
    project: str
    flags_secret: str
    pagerduty_secret: str
    state_uri: str
    max_hourly_cost: float
    trigger_hourly_cost: float
    trigger_threshold_percent: Optional[float]
    environment: str
    secretmanager_api: str = "https://secretmanager.googleapis.com/v1"
    storage_api: str = "https://storage.googleapis.com"
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        e = os.environ if env is None else env
        threshold = e.get("TRIGGER_THRESHOLD_PERCENT", "")
        limit = float(e["MAX_HOURLY_COST_USD"])
        return cls(
            project=e["PROJECT"], flags_secret=e["FLAGS_SECRET"], pagerduty_secret=e.get("PAGERDUTY_SECRET", ""),
            state_uri=e["STATE_URI"], max_hourly_cost=limit,
            trigger_hourly_cost=float(e.get("TRIGGER_HOURLY_COST_USD") or limit),
            trigger_threshold_percent=float(threshold) if threshold else None,
            environment=e.get("ENVIRONMENT", ""),
            secretmanager_api=e.get("SECRETMANAGER_API", cls.secretmanager_api),
            storage_api=e.get("STORAGE_API", cls.storage_api),
            pagerduty_url=e.get("PAGERDUTY_EVENTS_URL", cls.pagerduty_url),
        )


@dataclass(frozen=True)
class Notification:
    budget: str
    budget_id: str
    cost: float
    budget_amount: float
    currency: str
    interval_start: str
    threshold_exceeded: Optional[float]
    published_at: float  # epoch seconds


def _epoch(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def parse_message(message: dict, published_at: Optional[str] = None) -> Notification:
    """A Pub/Sub message (`data` base64 JSON, `attributes`, `publishTime`) -> Notification; ValueError on garbage."""
    try:
        data = json.loads(base64.b64decode(message["data"]))
        attrs = message.get("attributes") or {}
        return Notification(
            budget=str(data.get("budgetDisplayName", "")), budget_id=str(attrs.get("budgetId", "")),
            cost=float(data["costAmount"]), budget_amount=float(data["budgetAmount"]),
            currency=str(data.get("currencyCode", "USD")), interval_start=str(data["costIntervalStart"]),
            threshold_exceeded=float(data["alertThresholdExceeded"]) if "alertThresholdExceeded" in data else None,
            published_at=_epoch(published_at or message.get("publishTime") or message.get("publish_time")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a budget notification: {type(exc).__name__}: {exc}") from None


def hourly_rate(previous: Optional[dict], n: Notification) -> Optional[float]:
    """Spend per hour since the previous notification of the same budget period, or None."""
    if not previous or previous.get("intervalStart") != n.interval_start:
        return None  # first notification, or a new month (costAmount starts again from 0)
    elapsed = n.published_at - float(previous["publishedAt"])
    if elapsed < MIN_RATE_WINDOW_S:
        return None
    return (n.cost - float(previous["cost"])) / (elapsed / 3600.0)


def decide(s: Settings, n: Notification, rate: Optional[float]) -> list[str]:
    """Why the emergency limits go on (empty: they do not)."""
    why = []
    if rate is not None and rate > s.trigger_hourly_cost:
        why.append(f"hourly cost {rate:.2f} {n.currency}/h > {s.trigger_hourly_cost:g}")
    if (s.trigger_threshold_percent is not None and n.threshold_exceeded is not None
            and 100 * n.threshold_exceeded >= s.trigger_threshold_percent):
        why.append(f"budget threshold {100 * n.threshold_exceeded:g} % of {n.budget_amount:g} {n.currency} exceeded "
                   f"(cost {n.cost:.2f})")
    return why


class Clients:
    """Secret Manager, Cloud Storage and PagerDuty over HTTP (an authorized requests session)."""

    def __init__(self, s: Settings, http):
        self.s, self.http = s, http

    def _check(self, r, what: str):
        if r.status_code >= 300:
            raise RuntimeError(f"{what}: HTTP {r.status_code}: {r.text[:200]}")
        return r

    def access_secret(self, secret: str) -> str:
        r = self._check(self.http.get(f"{self.s.secretmanager_api}/projects/{self.s.project}/secrets/{secret}/versions/latest:access"),
                        f"access {secret}")
        return base64.b64decode(r.json()["payload"]["data"]).decode()

    def add_secret_version(self, secret: str, payload: str) -> str:
        r = self._check(self.http.post(f"{self.s.secretmanager_api}/projects/{self.s.project}/secrets/{secret}:addVersion",
                                       json={"payload": {"data": base64.b64encode(payload.encode()).decode()}}),
                        f"addVersion {secret}")
        return r.json()["name"]

    def _object(self, uri: str) -> tuple[str, str]:
        bucket, name = uri[len("gs://"):].split("/", 1)
        return bucket, name

    def read_state(self) -> Optional[dict]:
        bucket, name = self._object(self.s.state_uri)
        r = self.http.get(f"{self.s.storage_api}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", params={"alt": "media"})
        if r.status_code == 404:
            return None
        return json.loads(self._check(r, f"read {self.s.state_uri}").text)

    def write_state(self, state: dict) -> None:
        bucket, name = self._object(self.s.state_uri)
        self._check(self.http.post(f"{self.s.storage_api}/upload/storage/v1/b/{bucket}/o",
                                   params={"uploadType": "media", "name": name}, data=json.dumps(state).encode(),
                                   headers={"Content-Type": "application/json"}), f"write {self.s.state_uri}")

    def page(self, routing_key: str, event: dict) -> None:
        self._check(self.http.post(self.s.pagerduty_url, json={**event, "routing_key": routing_key}), "PagerDuty enqueue")


def emergency_payload(current: str, limit: float) -> Optional[str]:
    """The flags document with the emergency limits on, or None when the latest version already has them."""
    flags = json.loads(current) if current.strip() else {}
    if flags.get("enable_emergency_limits") is True and flags.get("max_hourly_cost") == limit:
        return None
    flags.update({"enable_emergency_limits": True, "max_hourly_cost": limit})
    return json.dumps(flags, sort_keys=True, separators=(",", ":"))


def handle(s: Settings, clients: Clients, n: Notification, log=print) -> dict:
    """One notification: update the rate state, and on a trigger turn the limits on and page."""
    previous = clients.read_state()
    rate = hourly_rate(previous, n)
    # keep the older point while notifications come faster than the rate window, so the rate stays measurable
    if previous is None or previous.get("intervalStart") != n.interval_start or rate is not None:
        clients.write_state({"intervalStart": n.interval_start, "cost": n.cost, "publishedAt": n.published_at})
    why = decide(s, n, rate)
    result = {"budget": n.budget, "cost": n.cost, "hourlyRate": rate, "triggered": bool(why), "reasons": why,
              "flagsVersion": None, "paged": False}
    if not why:
        log(json.dumps({"severity": "INFO", "message": "budget notification: no emergency", **result}))
        return result
    payload = emergency_payload(clients.access_secret(s.flags_secret), s.max_hourly_cost)
    if payload is not None:
        result["flagsVersion"] = clients.add_secret_version(s.flags_secret, payload)
    if s.pagerduty_secret:
        clients.page(clients.access_secret(s.pagerduty_secret).strip(), {
            "event_action": "trigger",
            "dedup_key": f"netra-emergency-budget-{n.budget_id or n.budget}-{n.interval_start}",
            "payload": {
                "summary": f"Netra {s.environment}: cost spike, emergency budget limits on "
                           f"(max_hourly_cost {s.max_hourly_cost:g}): {'; '.join(why)}"[:1024],
                "source": f"budget {n.budget}", "severity": "critical", "component": "emergency-budget",
                "custom_details": {**result, "costIntervalStart": n.interval_start, "budgetAmount": n.budget_amount},
            },
        })
        result["paged"] = True
    log(json.dumps({"severity": "ALERT", "message": "cost spike: emergency budget limits on", **result}))
    return result


def _session():
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(creds)


@functions_framework.cloud_event
def on_budget_notification(cloud_event) -> None:
    """CloudEvent google.cloud.pubsub.topic.v1.messagePublished: data = {"message": {...}, "subscription"}."""
    message = cloud_event.data["message"]
    try:
        n = parse_message(message, message.get("publishTime") or cloud_event["time"])
    except ValueError as exc:  # not retried: a malformed message will not become valid
        print(json.dumps({"severity": "ERROR", "message": str(exc)}))
        return
    s = Settings.from_env()
    handle(s, Clients(s, _session()), n)

