"""The budget guard fuzzed through a real functions-framework server (127.0.0.1, free port).

Pub/Sub (through Eventarc) redelivers every event answered with anything but 2xx, so the HTTP status is
the contract: a message that is not a notification of the configured budget must be acknowledged (2xx)
and touch nothing; a notification must be judged the same whatever transient errors, redeliveries,
duplicates and stale messages come in between.

`make test` runs BUDGET_FUZZ_EXAMPLES (default 200) examples of each property, derandomized; `make fuzz`
runs many more with fresh randomness.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from .budget_fakes import ACCOUNT, BUDGET_ID, FakeGoogle, budget_data, budget_message, cloud_event_headers

HERE = Path(__file__).resolve().parent
EXAMPLES = int(os.environ.get("BUDGET_FUZZ_EXAMPLES", 200))
LONG = os.environ.get("FUZZ_PROFILE") == "fuzz"
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
MAX_ATTEMPTS = 12  # Pub/Sub would go on redelivering; every injected failure is finite, so this bounds a run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    """(fake Google APIs, the function's URL): functions-framework started as it runs in Cloud Functions."""
    google = FakeGoogle()
    port = _free_port()
    log = (tmp_path_factory.mktemp("budget-guard") / "functions-framework.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "functions-framework"), "--target", "on_budget_notification",
         "--source", str(HERE / "budget_guard_entry.py"), "--signature-type", "cloudevent",
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **google.env()}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"functions-framework did not start (exit {proc.poll()})")
            time.sleep(0.2)
    http = requests.Session()
    try:
        yield google, url, http
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        google.shutdown()
        google.server_close()


def post(guard, data, msg=None) -> int:
    _, url, http = guard
    body = json.dumps({"message": data, "subscription": "projects/netra-production/subscriptions/eventarc"}) \
        if msg is None else json.dumps(data)
    return http.post(url, data=body, headers=cloud_event_headers(msg if msg is not None else data), timeout=30).status_code


def deliver(guard, msg) -> int:
    """Pub/Sub's loop: redeliver until acknowledged; how many attempts it took."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if 200 <= post(guard, msg) < 300:
            return attempt
    raise AssertionError(f"message {msg.get('messageId')} still refused after {MAX_ATTEMPTS} attempts")


# ---- malformed and foreign events: acknowledged at once, nothing read or written ----------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=12),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                    max_leaves=10)
BAD_AMOUNTS = [float("nan"), float("inf"), float("-inf"), -0.01, -5, "12", None, True, [], {}, 1e300]
GOOD_ATTRS = {"billingAccountId": ACCOUNT, "budgetId": BUDGET_ID, "schemaVersion": "1.0"}
T = "2026-11-23T10:00:00Z"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _with(key, value):
    return {**budget_data(1000.0), key: value}


def _without(key):
    return {k: v for k, v in budget_data(1000.0).items() if k != key}


MALFORMED = st.one_of(
    # the event data itself is not {"message": {...}}
    JSON.map(lambda d: ("event", d)),
    # attributes of another budget, account or schema, or none
    st.dictionaries(st.sampled_from(["billingAccountId", "budgetId", "schemaVersion", "x"]), JSON | st.text(max_size=40),
                    max_size=4).filter(lambda a: any(a.get(k) != v for k, v in GOOD_ATTRS.items()))
    .map(lambda a: ("message", budget_message(1000.0, T, attributes=a))),
    # data that is not base64 JSON of an object
    st.binary(max_size=64).filter(lambda b: not b.strip().startswith(b"{"))
    .map(lambda b: ("message", {**budget_message(1000.0, T), "data": _b64(b)})),
    JSON.filter(lambda d: not isinstance(d, str)).map(lambda d: ("message", {**budget_message(1000.0, T), "data": d})),
    # one figure impossible: non-finite, negative, not a number, absent
    st.tuples(st.sampled_from(["costAmount", "budgetAmount"]), st.sampled_from(BAD_AMOUNTS))
    .map(lambda kv: ("message", budget_message(0, T, data=_with(*kv)))),
    st.sampled_from(["costAmount", "budgetAmount", "costIntervalStart", "currencyCode"])
    .map(lambda k: ("message", budget_message(0, T, data=_without(k)))),
    st.text(max_size=8).filter(lambda c: c != "USD").map(lambda c: ("message", budget_message(0, T, data=_with("currencyCode", c)))),
    (JSON | st.text(max_size=30)).map(lambda v: ("message", budget_message(0, T, data=_with("costIntervalStart", v)))),
    st.sampled_from([float("nan"), -1.0, "1.0", float("inf")])
    .map(lambda v: ("message", budget_message(0, T, data=_with("alertThresholdExceeded", v)))),
    # publish times from the future (would make every real notification after it look stale)
    st.integers(2, 400).map(lambda days: ("message", budget_message(
        1000.0, (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")))),
)


@FUZZ
@given(case=MALFORMED)
def test_malformed_events_are_acknowledged_and_touch_nothing(guard, case):
    google = guard[0]
    google.reset()
    kind, data = case
    status = post(guard, data, msg={}) if kind == "event" else post(guard, data)
    assert status == 200, (status, case)
    assert google.log == [], google.log  # refused before any API call


# ---- notifications: judged the same through transient errors, redeliveries, duplicates, stale messages --

STEPS = st.lists(st.tuples(st.integers(60, 7200),  # seconds since the previous notification
                           st.integers(0, 40000),  # cost increase in cents
                           st.sampled_from([None, None, None, 0.5, 0.8, 1.0])),  # threshold crossed
                 min_size=2, max_size=6)
FAULTS = st.lists(st.dictionaries(st.sampled_from(["read", "access", "add", "page", "write"]), st.integers(1, 2),
                                  max_size=3), min_size=6, max_size=6)
START = dt.datetime(2026, 11, 10, tzinfo=dt.timezone.utc)
PERIOD = "2026-11-01T08:00:00Z"


def notifications(steps) -> list[dict]:
    t, cost, out = START, 5000.0, []
    for i, (gap, cents, threshold) in enumerate(steps):
        t += dt.timedelta(seconds=gap)
        cost = round(cost + cents / 100, 2)
        out.append(budget_message(cost, t.strftime("%Y-%m-%dT%H:%M:%SZ"), threshold=threshold, start=PERIOD,
                                  message_id=f"n{i}"))
    return out


def expected_trigger(steps) -> bool:
    """Independent oracle for spaced notifications (every gap >= the 10-minute rate window): a trigger is
    a rate above 100 USD/h between two consecutive notifications, or a threshold of 100 %."""
    return any((cents / 100) / (gap / 3600) > 100 for gap, cents, _ in steps[1:]) or any(th == 1.0 for _, _, th in steps)


@FUZZ
@given(steps=STEPS, faults=FAULTS, duplicates=st.lists(st.booleans(), min_size=6, max_size=6),
       stale_at=st.integers(1, 6))
def test_faults_redeliveries_and_stale_messages_change_no_outcome(guard, steps, faults, duplicates, stale_at):
    google = guard[0]
    msgs = notifications(steps)

    # the reference: each notification delivered once, nothing failing
    google.reset()
    for m in msgs:
        assert deliver(guard, m) == 1
    reference = google.effects()
    if all(gap >= 600 for gap, _, _ in steps[1:]):
        assert google.limits_on() == expected_trigger(steps), (steps, google.secrets)
        assert bool(google.pages) == expected_trigger(steps)

    # the same notifications through injected failures (each retried by redelivery), duplicate
    # deliveries (an acknowledgement lost) and stale messages (last month's, and an older one of this month)
    google.reset()
    for i, m in enumerate(msgs):
        google.fail.update(faults[i])
        attempts = deliver(guard, m)
        assert attempts <= 1 + sum(faults[i].values())
        google.fail.clear()
        if duplicates[i]:
            assert deliver(guard, m) == 1
        if i + 1 == min(stale_at, len(msgs) - 1):
            assert deliver(guard, budget_message(24000.0, "2026-10-31T23:00:00Z", start="2026-10-01T07:00:00Z",
                                                  threshold=1.0, message_id=f"late-{i}")) == 1
            assert deliver(guard, {**msgs[0], "messageId": f"old-{i}"}) == 1
    assert google.effects() == reference
