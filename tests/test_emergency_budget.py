"""The emergency budget function on Cloud Billing's real Pub/Sub notification format.

A local HTTP server (127.0.0.1, free port; tests/budget_fakes.py) stands in for Secret Manager, Cloud
Storage (generations, `ifGenerationMatch`) and PagerDuty's Events API v2; the function talks to it over
HTTP exactly as it talks to the real APIs. Here: the rules, one notification at a time, in process.
tests/test_budget_guard_fuzz.py drives the same function through a real functions-framework server.
"""
from __future__ import annotations

import base64
import json

import pytest
import requests

from .budget_fakes import (ACCOUNT, BUDGET_ID, EMERGENCY, FLAGS, FLAGS_DOC, OFF, FakeGoogle, budget_data,
                           budget_message, load_function)

fn = load_function()
NOW = 1_800_000_000.0  # 2027-01-15: after every message below


@pytest.fixture
def google():
    srv = FakeGoogle()
    yield srv
    srv.shutdown()
    srv.server_close()


def settings(google, **over):
    return fn.Settings.from_env(google.env(**over))


def notify(google, msg, **over):
    """One delivery: the result, or the exception a retry would follow."""
    s = settings(google, **over)
    return fn.handle(s, fn.Clients(s, requests.Session()), fn.parse_message(msg, s, now=NOW), log=lambda line: None)


def test_parse_real_notification_format(google):
    s = settings(google)
    n = fn.parse_message(budget_message(12345.67, "2026-11-23T10:00:00.123Z", threshold=0.5, message_id="9001"), s, now=NOW)
    assert (n.cost, n.budget_amount, n.threshold_exceeded, n.currency, n.message_id) == (12345.67, 25000.0, 0.5, "USD", "9001")
    assert n.budget_id == BUDGET_ID and n.interval_start == "2026-11-01T08:00:00Z"
    assert n.published_at == pytest.approx(1795428000.123)
    # no threshold crossed yet: the key is absent, as Cloud Billing sends it
    assert fn.parse_message(budget_message(1.0, "2026-11-23T10:00:00Z"), s, now=NOW).threshold_exceeded is None


def test_steady_spend_changes_nothing(google):
    r1 = notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    r2 = notify(google, budget_message(10040.0, "2026-11-23T10:30:00Z"))  # 80 USD/h < 100
    assert r1["hourlyRate"] is None and not r1["triggered"]
    assert r2["hourlyRate"] == pytest.approx(80.0) and not r2["triggered"]
    assert google.secrets[EMERGENCY] == [OFF] and google.pages == []


def test_cost_spike_turns_on_emergency_limits_and_pages_once(google):
    notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    r = notify(google, budget_message(10090.0, "2026-11-23T10:30:00Z"))  # 180 USD/h > 100
    assert r["triggered"] and r["hourlyRate"] == pytest.approx(180.0)
    assert r["reasons"] == ["hourly cost 180.00 USD/h > 100"]
    latest = json.loads(google.secrets[EMERGENCY][-1])
    assert latest["enable_emergency_limits"] is True and latest["max_hourly_cost"] == 100
    assert latest["reasons"] == r["reasons"] and latest["since"].startswith("2026-11-23T10:30:00")
    assert r["emergencyVersion"].endswith(f"/secrets/{EMERGENCY}/versions/2")
    # the feature flags are never read nor written by the guard
    assert google.secrets[FLAGS] == [FLAGS_DOC] and not [w for _, w in google.log if w == FLAGS]
    (page,) = google.pages
    assert page["routing_key"] == "R0UTINGKEY0123456789" and page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical" and "180.00 USD/h" in page["payload"]["summary"]
    # the next notification of the spike: no second version; same dedup key, so one incident
    r2 = notify(google, budget_message(10190.0, "2026-11-23T11:00:00Z"))
    assert r2["triggered"] and r2["emergencyVersion"] is None and len(google.secrets[EMERGENCY]) == 2
    assert google.pages[1]["dedup_key"] == page["dedup_key"] == f"netra-emergency-budget-{BUDGET_ID}-2026-11-01T08:00:00Z"


def test_threshold_trigger_and_new_month(google):
    r = notify(google, budget_message(25010.0, "2026-11-28T10:00:00Z", threshold=1.0))
    assert r["triggered"] and r["reasons"][0].startswith("budget threshold 100 % of 25000 USD exceeded")
    # 80 % does not trigger at the default 100 %
    google.reset()
    assert not notify(google, budget_message(20000.0, "2026-11-28T10:00:00Z", threshold=0.8))["triggered"]
    # a new budget period resets the rate: costAmount starts again from zero
    r = notify(google, budget_message(5.0, "2026-12-01T09:00:00Z", start="2026-12-01T08:00:00Z"))
    assert r["hourlyRate"] is None and not r["triggered"] and r["stale"] is None


def test_notifications_closer_than_the_rate_window_keep_the_older_point(google):
    notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    assert notify(google, budget_message(10010.0, "2026-11-23T10:05:00Z"))["hourlyRate"] is None
    assert notify(google, budget_message(10060.0, "2026-11-23T10:20:00Z"))["hourlyRate"] == pytest.approx(180.0)


def test_staging_without_pager_still_turns_limits_on(google):
    notify(google, budget_message(100.0, "2026-11-23T10:00:00Z"), PAGERDUTY_SECRET="")
    r = notify(google, budget_message(200.0, "2026-11-23T10:30:00Z"), PAGERDUTY_SECRET="")
    assert r["triggered"] and not r["paged"] and google.pages == []
    assert google.limits_on()


# ---- retry safety: the reproduction, and each effect failing once ------------------------------

@pytest.mark.parametrize("kind", ["access", "add", "page", "write", "read"])
def test_a_transient_error_then_the_redelivery_never_loses_the_spike(google, kind):
    """Secret Manager, PagerDuty or Cloud Storage fail once on the spike's notification: the delivery
    raises (HTTP 500: Pub/Sub redelivers), and the redelivery is judged exactly like the first."""
    notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    spike = budget_message(10100.0, "2026-11-23T10:30:00Z")  # 200 USD/h
    google.fail[kind] = 1
    with pytest.raises(RuntimeError, match="HTTP 503"):
        notify(google, spike)
    r = notify(google, spike)  # the redelivery: same message id
    assert r["triggered"] and r["hourlyRate"] == pytest.approx(200.0)
    assert google.limits_on() and len(google.secrets[EMERGENCY]) == 2 and len({p["dedup_key"] for p in google.pages}) == 1
    # and an acknowledgement lost after a success: the third delivery changes nothing new
    again = notify(google, spike)
    assert again["triggered"] and again["emergencyVersion"] is None and len(google.secrets[EMERGENCY]) == 2


def test_the_state_is_a_compare_and_swap(google):
    """Two deliveries read the same state; the second write loses and is retried (never overwrites)."""
    s = settings(google)
    clients = fn.Clients(s, requests.Session())
    notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    state, generation = clients.read_state()
    notify(google, budget_message(10010.0, "2026-11-23T10:30:00Z"))
    with pytest.raises(fn.Conflict, match="changed since generation"):
        clients.write_state(state, generation)


# ---- malformed, foreign and stale messages: acknowledged, no effect -------------------------------------

def b64(data) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


GOOD_ATTRS = {"billingAccountId": ACCOUNT, "budgetId": BUDGET_ID, "schemaVersion": "1.0"}
REFUSED = [
    ({"data": b64(budget_data(1.0)), "publishTime": "2026-11-23T10:00:00Z", "messageId": "1"}, "attributes: missing"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", attributes={**GOOD_ATTRS, "budgetId": "another-budget"}),
     "attributes.budgetId: expected"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", attributes={**GOOD_ATTRS, "billingAccountId": "0FFFFF-000000-000000"}),
     "attributes.billingAccountId"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", attributes={**GOOD_ATTRS, "schemaVersion": "2.0"}),
     "attributes.schemaVersion: expected '1.0'"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data=budget_data(1.0, currency="EUR")), "currencyCode: expected 'USD'"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data=budget_data(float("nan"))), "costAmount: must be finite"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data=budget_data(float("inf"))), "costAmount: must be finite"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data=budget_data(-50.0)), "costAmount: must be finite and >= 0"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data=budget_data("100")), "costAmount: expected a number, got str"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data=budget_data(True)), "costAmount: expected a number, got bool"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data=budget_data(1.0, threshold=float("nan"))), "alertThresholdExceeded"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data={**budget_data(1.0), "budgetAmount": 0}), "budgetAmount: must be finite and > 0"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", data={**budget_data(1.0), "costIntervalStart": "yesterday"}),
     "expected an RFC 3339 time"),
    (budget_message(1.0, "2026-11-23T10:00:00Z", start="2026-12-01T08:00:00Z"), "costIntervalStart 2026-12-01T08:00:00Z is after"),
    (budget_message(1.0, "2031-01-01T00:00:00Z"), "ahead of the clock"),
    ({**budget_message(1.0, "2026-11-23T10:00:00Z"), "data": "%%%not base64"}, "data: not base64 JSON"),
    ({**budget_message(1.0, "2026-11-23T10:00:00Z"), "data": b64([1, 2])}, "data: expected a JSON object"),
    ({**budget_message(1.0, "2026-11-23T10:00:00Z"), "data": 7}, "data: expected base64 text"),
    ({**budget_message(1.0, "2026-11-23T10:00:00Z"), "messageId": ""}, "messageId: expected a non-empty id"),
]


@pytest.mark.parametrize("message, says", REFUSED)
def test_messages_not_of_the_configured_budget_are_refused_by_name(google, message, says):
    with pytest.raises(fn.Malformed) as e:
        fn.parse_message(message, settings(google), now=NOW)
    assert says in str(e.value)


@pytest.mark.parametrize("data", [None, "text", [], {}, {"message": None}, {"message": "x"}, {"message": []},
                                  {"message": {"data": b64(budget_data(1.0))}}])
def test_event_shapes_are_acknowledged_and_logged(google, monkeypatch, data):
    """The entry point's own shapes (what returned HTTP 500 before): logged as ERROR, returned normally."""
    for k, v in google.env().items():
        monkeypatch.setenv(k, v)
    lines = []
    assert fn.on_event(data, "2026-11-23T10:00:00Z", "e-1", session_factory=requests.Session, log=lines.append) is None
    (line,) = lines
    assert json.loads(line)["severity"] == "ERROR" and "budget notification refused" in json.loads(line)["message"]
    assert google.log == []  # nothing was even read


def test_stale_messages_are_ignored_and_hide_no_later_spike(google):
    notify(google, budget_message(10000.0, "2026-12-01T20:00:00Z", start="2026-12-01T08:00:00Z"))
    # a late notification of November (its cost is higher: November's whole month): ignored
    late = notify(google, budget_message(24000.0, "2026-11-30T23:00:00Z"))
    assert late["stale"].startswith("of an earlier budget period") and not late["triggered"]
    # an older notification of this period, delivered after a newer one: ignored
    old = notify(google, budget_message(9000.0, "2026-12-01T19:00:00Z", start="2026-12-01T08:00:00Z"))
    assert old["stale"].startswith("published before the last notification processed")
    # the basis is still 20:00 / 10000: a spike to 10100 by 20:30 (200 USD/h) triggers
    r = notify(google, budget_message(10100.0, "2026-12-01T20:30:00Z", start="2026-12-01T08:00:00Z"))
    assert r["triggered"] and r["hourlyRate"] == pytest.approx(200.0) and google.limits_on()


def test_a_corrupt_state_object_is_no_basis_and_is_replaced(google):
    google.objects[("netra-production-budget-guard", "state/budget.json")] = (b'{"point": {"cost": NaN}}', 7)
    r = notify(google, budget_message(10000.0, "2026-11-23T10:00:00Z"))
    assert r["hourlyRate"] is None and fn.state_ok(google.state())


@pytest.mark.parametrize("env, says", [
    ({"BUDGET_NAME": ""}, "BUDGET_NAME is empty"),
    ({"BUDGET_NAME": "budgets/x"}, "BUDGET_NAME must be billingAccounts/<account>/budgets/<id>"),
    ({"MAX_HOURLY_COST_USD": "nan"}, "MAX_HOURLY_COST_USD must be finite and > 0"),
    ({"TRIGGER_THRESHOLD_PERCENT": "-1"}, "TRIGGER_THRESHOLD_PERCENT must be finite and > 0"),
    ({"EMERGENCY_SECRET": ""}, "EMERGENCY_SECRET is empty"),
])
def test_a_misconfigured_function_names_the_variable(google, env, says):
    """A deploy bug is raised (retried until fixed), never an acknowledged, unjudged notification."""
    with pytest.raises(ValueError, match="budget guard misconfigured") as e:
        fn.Settings.from_env(google.env(**env))
    assert says in str(e.value)
