"""Verification at 0 %: health and smoke requests through the candidate's tagged URL, judged against the
seed's absolute triggers, against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from infra.localhttp import LocalHTTPServer
from infra.verify import VerifySettings, p95, tagged_url, verify_candidate

REV = "netra-backend-prod-1a2b3c4d"


class App(LocalHTTPServer):
    """A candidate revision: answers `status(path, n)` for the n-th request."""

    def __init__(self, status):
        self.paths: list[str] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                app.paths.append(self.path)
                code = status(self.path, len(app.paths))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        super().__init__(Handler)
        self.start()


def run(status, settings=VerifySettings(smoke_requests=10), **kw):
    app = App(status)
    try:
        return verify_candidate("backend", REV, 0, app.url, "/health", settings, **kw), app.paths
    finally:
        app.close()


def test_a_healthy_candidate_is_approved_with_its_evidence():
    v, paths = run(lambda path, n: 200, VerifySettings(smoke_requests=6, smoke_paths=("/", "/api/ping")))
    assert (v.decision, v.revision, v.stage, v.by) == ("promote", REV, 0, "verify") and len(v.evidence) == 64
    assert paths == ["/health", "/", "/api/ping", "/", "/api/ping", "/", "/api/ping"]


def test_failing_health_or_too_many_errors_roll_back():
    v, _ = run(lambda path, n: 503 if n == 1 else 200)
    assert v.decision == "rollback" and "health /health answered 503" in v.reason
    v, _ = run(lambda path, n: 500 if n % 3 == 0 else 200)  # 3 of 10 smoke requests fail: > 1 %
    assert v.decision == "rollback" and "3/10 smoke requests failed" in v.reason


def test_slow_candidate_breaks_the_p95_trigger():
    ticks = iter(range(0, 10**6, 3))  # every request takes 3 s of the injected clock
    v, _ = run(lambda path, n: 200, VerifySettings(smoke_requests=5, p95_latency_ms=2000), clock=lambda: next(ticks))
    assert v.decision == "rollback" and "p95 3000 ms > 2000 ms" in v.reason


def test_no_answer_counts_as_a_failure():
    v = verify_candidate("backend", REV, 0, "http://127.0.0.1:9", "/health", VerifySettings(smoke_requests=2, timeout_s=1))
    assert v.decision == "rollback" and "answered nothing" in v.reason


def test_tagged_url_and_p95():
    assert tagged_url("https://netra-backend-prod-uc.a.run.app") == "https://canary---netra-backend-prod-uc.a.run.app"
    assert p95(list(range(1, 101))) == 95 and p95([]) == 0.0
