"""Emergency budget guard (seed 000, "Severity 3: cost spike"): Cloud Functions gen2 on the budget's Pub/Sub topic.

Cloud Billing publishes a notification for the project's budget to the topic several times a day:
`message.data` is base64 JSON with `budgetDisplayName`, `costAmount` (spend so far in the budget
period), `costIntervalStart`, `budgetAmount`, `budgetAmountType`, `currencyCode` and, once a threshold
rule is crossed, `alertThresholdExceeded` (0.5, 0.8, 1.0, ...); the attributes carry
`billingAccountId`, `budgetId` and `schemaVersion` "1.0".

The budget is monthly, so the hourly cost is the spend rate between two notifications of the same
period (the basis point is kept in a small state object). When that rate crosses the trigger, or a
threshold at or above the trigger share is exceeded, the guard:

1. adds a version of the emergency-limits secret (`<env>-emergency-limits`, a secret of its own that
   only this function writes and Pulumi only seeds, so no flags change made through Pulumi can turn
   the limits off) with `enable_emergency_limits: true` and `max_hourly_cost`, unless the latest
   version already has them; the services read it mounted beside the feature flags;
2. pages: PagerDuty Events API v2 `trigger`, the routing key read from Secret Manager, one incident per
   budget period (dedup_key), so repeated notifications do not page again.

Delivery semantics (Pub/Sub through Eventarc, retry policy on: any non-2xx answer is a redelivery):
- a message that is not a notification of the configured budget (bad shape, other budget, billing
  account, schema or currency, a non-finite or negative cost) is logged as an ERROR and acknowledged:
  it will never become valid, and a redelivery storm would only hide the real notifications;
- a message older than the last one processed, or of an earlier budget period, is logged and acknowledged;
- any failure of Secret Manager, Cloud Storage or PagerDuty raises: the message is redelivered. The
  state is written last (a compare-and-swap on the object's generation), after every effect, and it
  records the basis point each message was judged against: a redelivery is judged exactly as the
  first delivery was, so a transient error never loses a spike.

Settings (environment, set by the stack): PROJECT, EMERGENCY_SECRET, PAGERDUTY_SECRET (empty: no pager),
STATE_URI (gs://bucket/object), BUDGET_NAME (billingAccounts/<account>/budgets/<id>), BUDGET_CURRENCY,
MAX_HOURLY_COST_USD, TRIGGER_HOURLY_COST_USD, TRIGGER_THRESHOLD_PERCENT (empty: thresholds alone never
trigger), ENVIRONMENT. API endpoints (SECRETMANAGER_API, STORAGE_API, PAGERDUTY_EVENTS_URL) default to
Google's and PagerDuty's.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote

import functions_framework

MIN_RATE_WINDOW_S = 600  # two notifications closer than this say nothing reliable about an hourly rate
SCHEMA_VERSION = "1.0"
BUDGET_NAME = re.compile(r"billingAccounts/([0-9A-Fa-f]{6}-[0-9A-Fa-f]{6}-[0-9A-Fa-f]{6})/budgets/([A-Za-z0-9_-]{1,128})")
EMERGENCY_KEYS = ("enable_emergency_limits", "max_hourly_cost")
MAX_COST = 1e15  # far above any real spend; a larger figure is garbage, not a bill
# Pub/Sub stamps publishTime itself; one far ahead of our clock would make every real notification after
# it look stale, so it is refused (with room for clock skew)
MAX_FUTURE_S = 3600


class Malformed(ValueError):
    """Not a notification of the configured budget: acknowledged and logged, never retried."""


@dataclass(frozen=True)
class Settings:
    project: str
    emergency_secret: str
    pagerduty_secret: str
    state_uri: str
    billing_account: str
    budget_id: str
    currency: str
    max_hourly_cost: float
    trigger_hourly_cost: float
    trigger_threshold_percent: Optional[float]
    environment: str
    secretmanager_api: str = "https://secretmanager.googleapis.com/v1"
    storage_api: str = "https://storage.googleapis.com"
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        """The stack's settings; ValueError naming the variable when one is missing or wrong (a deploy bug:
        the message is retried until the function is fixed, never acknowledged unjudged)."""
        e = os.environ if env is None else env

        def need(key: str) -> str:
            if not e.get(key):
                raise ValueError(f"budget guard misconfigured: environment variable {key} is empty")
            return e[key]

        def amount(key: str, default: Optional[str] = None) -> float:
            raw = e.get(key) or default
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"budget guard misconfigured: {key} must be a number, got {raw!r}") from None
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"budget guard misconfigured: {key} must be finite and > 0, got {raw!r}")
            return value

        m = BUDGET_NAME.fullmatch(need("BUDGET_NAME"))
        if not m:
            raise ValueError(f"budget guard misconfigured: BUDGET_NAME must be billingAccounts/<account>/budgets/<id>, "
                             f"got {e['BUDGET_NAME']!r}")
        limit = amount("MAX_HOURLY_COST_USD")
        return cls(
            project=need("PROJECT"), emergency_secret=need("EMERGENCY_SECRET"),
            pagerduty_secret=e.get("PAGERDUTY_SECRET", ""), state_uri=need("STATE_URI"),
            billing_account=m.group(1).upper(), budget_id=m.group(2), currency=need("BUDGET_CURRENCY"),
            max_hourly_cost=limit, trigger_hourly_cost=amount("TRIGGER_HOURLY_COST_USD", str(limit)),
            trigger_threshold_percent=amount("TRIGGER_THRESHOLD_PERCENT") if e.get("TRIGGER_THRESHOLD_PERCENT") else None,
            environment=e.get("ENVIRONMENT", ""),
            secretmanager_api=e.get("SECRETMANAGER_API", cls.secretmanager_api),
            storage_api=e.get("STORAGE_API", cls.storage_api),
            pagerduty_url=e.get("PAGERDUTY_EVENTS_URL", cls.pagerduty_url),
        )


@dataclass(frozen=True)
class Notification:
    budget: str
    budget_id: str
    message_id: str
    cost: float
    budget_amount: float
    currency: str
    interval_start: str
    threshold_exceeded: Optional[float]
    published_at: float  # epoch seconds

    @property
    def period(self) -> float:
        return _epoch(self.interval_start)


def _epoch(ts: Any) -> float:
    """RFC 3339 time -> epoch seconds; Malformed unless it is a time with its offset (Z or +hh:mm)."""
    if not isinstance(ts, str) or not ts:
        raise Malformed(f"expected an RFC 3339 time, got {ts!r}")
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        raise Malformed(f"expected an RFC 3339 time, got {ts[:64]!r}") from None
    if t.tzinfo is None:
        raise Malformed(f"expected an RFC 3339 time with an offset, got {ts[:64]!r}")
    return t.timestamp()


def _amount(data: dict, key: str, positive: bool = False) -> float:
    """A money figure: a JSON number (not a string, not a bool), finite, >= 0 (> 0 when `positive`)."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Malformed(f"{key}: expected a number, got {type(value).__name__} {str(value)[:40]!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > MAX_COST:
        raise Malformed(f"{key}: must be finite and {'>' if positive else '>='} 0 (at most {MAX_COST:g}), got {value!r}")
    return value


def parse_message(message: Any, s: Settings, published_at: Any = None, message_id: Any = None,
                  now: Optional[float] = None) -> Notification:
    """A Pub/Sub message (`data` base64 JSON, `attributes`, `messageId`, `publishTime`) of the configured
    budget -> Notification; Malformed naming what is wrong otherwise."""
    if not isinstance(message, dict):
        raise Malformed(f"message: expected an object, got {type(message).__name__}")
    attrs = message.get("attributes")
    if not isinstance(attrs, dict):
        raise Malformed("attributes: missing (billingAccountId, budgetId, schemaVersion)")
    for key, want in (("schemaVersion", SCHEMA_VERSION), ("billingAccountId", s.billing_account), ("budgetId", s.budget_id)):
        got = attrs.get(key)
        if not isinstance(got, str) or (got.upper() if key == "billingAccountId" else got) != want:
            raise Malformed(f"attributes.{key}: expected {want!r} (the configured budget), got {str(got)[:80]!r}")
    raw = message.get("data")
    if not isinstance(raw, str):
        raise Malformed(f"data: expected base64 text, got {type(raw).__name__}")
    try:
        data = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"data: not base64 JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise Malformed(f"data: expected a JSON object, got {type(data).__name__}")
    currency = data.get("currencyCode")
    if currency != s.currency:
        raise Malformed(f"currencyCode: expected {s.currency!r} (the budget's currency), got {str(currency)[:16]!r}")
    threshold = _amount(data, "alertThresholdExceeded") if data.get("alertThresholdExceeded") is not None else None
    interval = data.get("costIntervalStart")
    _epoch(interval)
    msg_id = message_id if message_id is not None else message.get("messageId") or message.get("message_id")
    if not isinstance(msg_id, str) or not msg_id or len(msg_id) > 256:
        raise Malformed(f"messageId: expected a non-empty id, got {str(msg_id)[:40]!r}")
    n = Notification(
        budget=str(data.get("budgetDisplayName", ""))[:200], budget_id=s.budget_id, message_id=msg_id,
        cost=_amount(data, "costAmount"), budget_amount=_amount(data, "budgetAmount", positive=True),
        currency=currency, interval_start=interval, threshold_exceeded=threshold,
        published_at=_epoch(published_at or message.get("publishTime") or message.get("publish_time")),
    )
    now = time.time() if now is None else now
    if n.published_at > now + MAX_FUTURE_S:
        raise Malformed(f"publishTime {n.published_at:.0f} is more than {MAX_FUTURE_S} s ahead of the clock ({now:.0f})")
    if n.period > n.published_at:
        raise Malformed(f"costIntervalStart {interval} is after the publish time")
    return n


def _point_ok(p: Any) -> bool:
    try:
        return (isinstance(p, dict) and math.isfinite(float(p["cost"])) and math.isfinite(float(p["publishedAt"]))
                and math.isfinite(_epoch(p["intervalStart"])))
    except (KeyError, TypeError, ValueError):
        return False


def state_ok(state: Any) -> bool:
    """The shape next_state writes; anything else (a hand edit, a truncated object) is no basis at all."""
    if not isinstance(state, dict) or not _point_ok(state.get("point")) or not _point_ok(state.get("newest")):
        return False
    last = state.get("last")
    return isinstance(last, dict) and isinstance(last.get("messageId"), str) and (
        last.get("basis") is None or _point_ok(last["basis"]))


def point(n: Notification) -> dict:
    return {"intervalStart": n.interval_start, "cost": n.cost, "publishedAt": n.published_at}


def basis_for(state: Optional[dict], n: Notification) -> tuple[Optional[dict], Optional[str]]:
    """(the point this notification's rate is measured from, why it is stale or None).

    A redelivery of the last message processed is judged against the basis it was judged against the
    first time; a message older than the last processed, or of an earlier period, is stale."""
    if not state:
        return None, None
    last = state.get("last") or {}
    if last.get("messageId") == n.message_id:
        return last.get("basis"), None
    newest = state.get("newest") or {}
    if newest and n.period < _epoch(newest["intervalStart"]):
        return None, f"of an earlier budget period ({n.interval_start} < {newest['intervalStart']})"
    if newest and n.period == _epoch(newest["intervalStart"]) and n.published_at < float(newest["publishedAt"]):
        return None, f"published before the last notification processed ({n.published_at:.0f} < {newest['publishedAt']:.0f})"
    kept = state.get("point")
    if not kept or _epoch(kept["intervalStart"]) != n.period:
        return None, None  # first notification of the period: costAmount starts again from 0
    return kept, None


def hourly_rate(basis: Optional[dict], n: Notification) -> Optional[float]:
    """Spend per hour since the basis point of the same budget period, or None."""
    if not basis or _epoch(basis["intervalStart"]) != n.period:
        return None
    elapsed = n.published_at - float(basis["publishedAt"])
    if elapsed < MIN_RATE_WINDOW_S:
        return None
    return (n.cost - float(basis["cost"])) / (elapsed / 3600.0)


def next_state(state: Optional[dict], n: Notification, basis: Optional[dict], rate: Optional[float]) -> dict:
    """The state after this notification: the basis point moves on once a rate was measured from it (or
    on a new period); while notifications come faster than the rate window the older point is kept, so
    the rate stays measurable."""
    kept = basis if basis is not None and rate is None else point(n)
    newest = (state or {}).get("newest")
    if not newest or (n.period, n.published_at) >= (_epoch(newest["intervalStart"]), float(newest["publishedAt"])):
        newest = point(n)
    return {"point": kept, "newest": newest, "last": {"messageId": n.message_id, "basis": basis}}


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


class Conflict(RuntimeError):
    """The state object changed since it was read (another delivery wrote it): retried."""


class Clients:
    """Secret Manager, Cloud Storage and PagerDuty over HTTP (an authorized requests session)."""

    TIMEOUT_S = 20  # the function's own timeout is 60 s; a hung call is a retry, not a lost message

    def __init__(self, s: Settings, http):
        self.s, self.http = s, http

    def _check(self, r, what: str):
        if r.status_code >= 300:
            raise RuntimeError(f"{what}: HTTP {r.status_code}: {r.text[:200]}")
        return r

    def access_secret(self, secret: str) -> Optional[str]:
        """The latest version's payload, or None when the secret has no enabled version."""
        r = self.http.get(f"{self.s.secretmanager_api}/projects/{self.s.project}/secrets/{secret}/versions/latest:access",
                          timeout=self.TIMEOUT_S)
        if r.status_code == 404:
            return None
        return base64.b64decode(self._check(r, f"access {secret}").json()["payload"]["data"]).decode()

    def add_secret_version(self, secret: str, payload: str) -> str:
        r = self._check(self.http.post(f"{self.s.secretmanager_api}/projects/{self.s.project}/secrets/{secret}:addVersion",
                                       json={"payload": {"data": base64.b64encode(payload.encode()).decode()}},
                                       timeout=self.TIMEOUT_S),
                        f"addVersion {secret}")
        return r.json()["name"]

    def _object(self) -> tuple[str, str]:
        bucket, name = self.s.state_uri[len("gs://"):].split("/", 1)
        return bucket, name

    def read_state(self) -> tuple[Optional[dict], int]:
        """(state, generation); generation 0 when the object does not exist yet."""
        bucket, name = self._object()
        r = self.http.get(f"{self.s.storage_api}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", params={"alt": "media"},
                          timeout=self.TIMEOUT_S)
        if r.status_code == 404:
            return None, 0
        self._check(r, f"read {self.s.state_uri}")
        try:
            state = json.loads(r.text)
        except ValueError:
            state = None
        # an unreadable state is no basis (retrying would not mend it); this notification overwrites it
        return (state if state_ok(state) else None), int(r.headers.get("x-goog-generation") or 0)

    def write_state(self, state: dict, generation: int) -> None:
        """Compare-and-swap: only if the object is still at `generation` (0: does not exist yet)."""
        bucket, name = self._object()
        r = self.http.post(f"{self.s.storage_api}/upload/storage/v1/b/{bucket}/o",
                           params={"uploadType": "media", "name": name, "ifGenerationMatch": str(generation)},
                           data=json.dumps(state, sort_keys=True).encode(),
                           headers={"Content-Type": "application/json"}, timeout=self.TIMEOUT_S)
        if r.status_code == 412:
            raise Conflict(f"{self.s.state_uri} changed since generation {generation}: another delivery wrote it")
        self._check(r, f"write {self.s.state_uri}")

    def page(self, routing_key: str, event: dict) -> None:
        self._check(self.http.post(self.s.pagerduty_url, json={**event, "routing_key": routing_key}, timeout=self.TIMEOUT_S),
                    "PagerDuty enqueue")


def emergency_payload(current: Optional[str], limit: float, why: list[str], at: str) -> Optional[str]:
    """The emergency-limits document turned on, or None when the latest version already has these limits.
    An unreadable latest version is replaced (the limits must go on, whatever was there)."""
    try:
        doc = json.loads(current) if current and current.strip() else {}
    except ValueError:
        doc = {}
    if isinstance(doc, dict) and doc.get("enable_emergency_limits") is True and doc.get("max_hourly_cost") == limit:
        return None
    return json.dumps({"enable_emergency_limits": True, "max_hourly_cost": limit, "since": at, "reasons": why},
                      sort_keys=True, separators=(",", ":"))


def handle(s: Settings, clients: Clients, n: Notification, log=print) -> dict:
    """One notification: judge it against its basis, turn the limits on and page on a trigger, then record
    the state (last, so any failure before it is a redelivery judged the same way)."""
    state, generation = clients.read_state()
    basis, stale = basis_for(state, n)
    result = {"budget": n.budget, "messageId": n.message_id, "cost": n.cost, "hourlyRate": None, "triggered": False,
              "reasons": [], "emergencyVersion": None, "paged": False, "stale": stale}
    if stale:
        log(json.dumps({"severity": "WARNING", "message": f"budget notification ignored: {stale}", **result}))
        return result
    rate = result["hourlyRate"] = hourly_rate(basis, n)
    why = result["reasons"] = decide(s, n, rate)
    result["triggered"] = bool(why)
    if why:
        at = dt.datetime.fromtimestamp(n.published_at, dt.timezone.utc).isoformat()
        payload = emergency_payload(clients.access_secret(s.emergency_secret), s.max_hourly_cost, why, at)
        if payload is not None:
            result["emergencyVersion"] = clients.add_secret_version(s.emergency_secret, payload)
        if s.pagerduty_secret:
            key = clients.access_secret(s.pagerduty_secret)
            if not key or not key.strip():
                raise RuntimeError(f"secret {s.pagerduty_secret} has no routing key")
            clients.page(key.strip(), {
                "event_action": "trigger",
                "dedup_key": f"netra-emergency-budget-{n.budget_id}-{n.interval_start}",
                "payload": {
                    "summary": f"Netra {s.environment}: cost spike, emergency budget limits on "
                               f"(max_hourly_cost {s.max_hourly_cost:g}): {'; '.join(why)}"[:1024],
                    "source": f"budget {n.budget or n.budget_id}", "severity": "critical", "component": "emergency-budget",
                    "custom_details": {**result, "costIntervalStart": n.interval_start, "budgetAmount": n.budget_amount},
                },
            })
            result["paged"] = True
    clients.write_state(next_state(state, n, basis, rate), generation)
    log(json.dumps({"severity": "ALERT" if why else "INFO",
                    "message": "cost spike: emergency budget limits on" if why else "budget notification: no emergency",
                    **result}))
    return result


def _session():
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(creds)


def on_event(data: Any, event_time: Any, event_id: Any, session_factory=None, log=print) -> Optional[dict]:
    """A messagePublished event's data -> the result, or None when the message was acknowledged unjudged."""
    s = Settings.from_env()
    try:
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise Malformed(f"event data: expected {{\"message\": {{...}}}}, got {str(data)[:80]!r}")
        n = parse_message(message, s, message.get("publishTime") or event_time,
                          message.get("messageId") or message.get("message_id") or event_id)
    except Malformed as exc:  # not retried: a malformed message will not become valid
        log(json.dumps({"severity": "ERROR", "message": f"budget notification refused: {exc}", "eventId": str(event_id)[:256]}))
        return None
    return handle(s, Clients(s, (session_factory or _session)()), n, log=log)


@functions_framework.cloud_event
def on_budget_notification(cloud_event) -> None:
    """CloudEvent google.cloud.pubsub.topic.v1.messagePublished: data = {"message": {...}, "subscription"}."""
    on_event(cloud_event.data, cloud_event["time"] if "time" in cloud_event else None,
             cloud_event["id"] if "id" in cloud_event else None)
