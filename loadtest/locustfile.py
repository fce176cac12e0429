"""Locust scenarios of the release load test: HTTP requests and WebSocket message -> event round trips.

Run by the load-test Cloud Run job (`python -m loadtest.run`) against the candidate revision's tagged
URL, and by the tests against a local server. Everything comes from the environment (the job's env is
built from `netra:loadTest` in the stack config):

    LOADTEST_HTTP_SCENARIOS   JSON list of {"name", "method", "path", "weight", "body"?}   (default GET /health)
    LOADTEST_WS_PATH          WebSocket path (default /ws); LOADTEST_WS_USER_PERCENT share of users on it (50)
    LOADTEST_WS_MESSAGE       JSON object sent per round trip; the run adds "id" and expects an event echoing it
    LOADTEST_WS_TIMEOUT_S     seconds to wait for the event before it counts as a failure (5)
    LOADTEST_WAIT_MIN_S/_MAX_S think time between a user's tasks (1 / 3)
    LOADTEST_MAX_REQUESTS     stop after this many requests in all (0 = only the duration bounds the run)
    LOADTEST_SUMMARY_FILE     where the summary JSON (loadtest.summary) is written when the run stops

WebSocket latency is the round trip from sending a message to receiving the event that answers it, on
the client's clock: an upper bound of the one-way delivery time that needs no clock sync.
"""
from __future__ import annotations

import json
import os
import random
import time
import sys
from pathlib import Path

import gevent
import websocket  # websocket-client; sockets are gevent-patched by Locust, so blocking calls cooperate
from locust import HttpUser, User, between, events, task
from locust.exception import StopUser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtest.summary import WS_CONNECT, WS_EVENT, Summary  # noqa: E402

HTTP_SCENARIOS = json.loads(os.environ.get("LOADTEST_HTTP_SCENARIOS") or '[{"name": "health", "method": "GET", "path": "/health"}]')
WS_PATH = os.environ.get("LOADTEST_WS_PATH", "/ws")
WS_USER_PERCENT = int(os.environ.get("LOADTEST_WS_USER_PERCENT", "50"))
WS_MESSAGE = json.loads(os.environ.get("LOADTEST_WS_MESSAGE") or '{"type": "ping"}')
WS_TIMEOUT_S = float(os.environ.get("LOADTEST_WS_TIMEOUT_S", "5"))
WAIT = between(float(os.environ.get("LOADTEST_WAIT_MIN_S", "1")), float(os.environ.get("LOADTEST_WAIT_MAX_S", "3")))
MAX_REQUESTS = int(os.environ.get("LOADTEST_MAX_REQUESTS", "0"))
SUMMARY_FILE = os.environ.get("LOADTEST_SUMMARY_FILE", "")

SUMMARY = Summary()


@events.test_start.add_listener
def _started(environment, **_):
    SUMMARY.started_at = time.time()


@events.request.add_listener
def _count(request_type, name, response_time, response_length, exception=None, **_):
    SUMMARY.record(request_type, response_time, exception)
    if MAX_REQUESTS and SUMMARY.total_requests == MAX_REQUESTS:
        SUMMARY.stopped_by = "max-requests"
        runner = _ENV.runner if _ENV else None
        if runner is not None:
            gevent.spawn(runner.quit)


_ENV = None


def _stop_if_spent() -> None:
    """Start no request once MAX_REQUESTS have completed: the quit spawned at the cap may be scheduled
    late on a loaded machine, and users must not keep issuing requests until it runs."""
    if MAX_REQUESTS and SUMMARY.total_requests >= MAX_REQUESTS:
        raise StopUser()


@events.init.add_listener
def _init(environment, **_):
    global _ENV
    _ENV = environment


@events.test_stop.add_listener
def _write_summary(environment, **_):
    SUMMARY.ended_at = time.time()
    if SUMMARY_FILE:
        Path(SUMMARY_FILE).write_text(json.dumps(SUMMARY.as_dict(), indent=1))


class HttpScenarioUser(HttpUser):
    """Requests the configured endpoints, weighted; a non-2xx/3xx answer is a failure."""

    weight = max(0, 100 - WS_USER_PERCENT)
    wait_time = WAIT

    @task
    def request(self):
        _stop_if_spent()
        s = random.choices(HTTP_SCENARIOS, weights=[int(x.get("weight", 1)) for x in HTTP_SCENARIOS])[0]
        body = s.get("body")
        self.client.request(s.get("method", "GET"), s["path"], name=s.get("name", s["path"]),
                            json=body if body is not None else None)


def ws_url(host: str, path: str) -> str:
    scheme, rest = host.split("://", 1)
    return ("wss://" if scheme == "https" else "ws://") + rest.rstrip("/") + path


class WebSocketUser(User):
    """Holds one WebSocket connection (as a browser does) and times message -> event round trips."""

    weight = max(0, WS_USER_PERCENT)
    wait_time = WAIT

    def on_start(self):
        self.ws = None
        self.next_id = 0
        self.connect()

    def on_stop(self):
        if self.ws is not None:
            self.ws.close()

    def fire(self, request_type, name, started, exception=None, length=0):
        self.environment.events.request.fire(
            request_type=request_type, name=name, response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length, exception=exception, context={})

    def connect(self):
        started = time.perf_counter()
        try:
            self.ws = websocket.create_connection(ws_url(self.host, WS_PATH), timeout=WS_TIMEOUT_S)
        except Exception as exc:  # refused, handshake rejected, timeout: a failed connection
            self.ws = None
            self.fire(WS_CONNECT, WS_PATH, started, exc)
            return
        self.fire(WS_CONNECT, WS_PATH, started)

    @task
    def round_trip(self):
        _stop_if_spent()
        if self.ws is None:
            self.connect()
            if self.ws is None:
                return
        self.next_id += 1
        msg_id = f"{id(self):x}-{self.next_id}"
        started = time.perf_counter()
        try:
            self.ws.send(json.dumps({**WS_MESSAGE, "id": msg_id}))
            deadline = started + WS_TIMEOUT_S
            while True:
                self.ws.settimeout(max(0.001, deadline - time.perf_counter()))
                raw = self.ws.recv()
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("id") == msg_id:
                    break
        except Exception as exc:  # timeout or a dropped connection: the event was not delivered
            self.fire(WS_EVENT, "event", started, exc)
            try:
                self.ws.close()
            finally:
                self.ws = None
            return
        self.fire(WS_EVENT, "event", started, length=len(raw))


if WS_USER_PERCENT <= 0:
    del WebSocketUser  # Locust runs every User class it finds; an unused one must not exist
if WS_USER_PERCENT >= 100:
    del HttpScenarioUser
