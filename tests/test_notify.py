"""The notifier's per-event deadline against a slow webhook (a local server on 127.0.0.1 that trickles its
response headers a byte at a time, so no socket read ever times out)."""
from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.notify import Notifier

TRICKLE_S = 2.5  # how long the slow endpoint takes to answer (bounded: it always finishes)
BYTE_EVERY_S = 0.1


class Trickle(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts += 1
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            end = time.monotonic() + TRICKLE_S
            while time.monotonic() < end:
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(BYTE_EVERY_S)
            self.wfile.write(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:  # the client gave up
            pass


@pytest.fixture
def slow_hook():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    srv.daemon_threads, srv.posts = True, 0
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


def test_a_slow_webhook_holds_no_event_past_the_deadline(slow_hook, tmp_path, capsys):
    srv, url = slow_hook
    summary = tmp_path / "summary.md"
    n = Notifier("prod", out=io.StringIO(), webhook=url, summary_path=str(summary), deadline_s=0.5)
    for event in ("stage_up", "rollback"):
        start = time.monotonic()
        n.emit(event, "x")
        assert time.monotonic() - start < 1.5  # 0.5 s deadline plus scheduling slack, far below TRICKLE_S
    err = capsys.readouterr().err
    assert err.count("could not notify the webhook: no answer within the 0.5 s deadline") == 1 and url not in err
    assert len(summary.read_text().splitlines()) == 2  # the local sink still got every event
    assert srv.posts >= 1


def test_the_socket_timeout_alone_would_not_bound_it(slow_hook, capsys):
    """The control: without the deadline the same endpoint holds the event for its whole trickle."""
    _, url = slow_hook
    n = Notifier("prod", out=io.StringIO(), webhook=url, deadline_s=30)
    start = time.monotonic()
    n.emit("hold", "held")
    assert time.monotonic() - start >= TRICKLE_S - 0.2
    assert capsys.readouterr().err == ""


def test_a_refused_connection_is_reported_once_and_fast(capsys):
    """A bound port nobody listens on refuses: a failure like any other, within the deadline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
        n = Notifier("prod", out=io.StringIO(), webhook=url, deadline_s=0.5)
        start = time.monotonic()
        n.emit("failure", "failed")
        assert time.monotonic() - start < 1.5
    assert "could not notify the webhook" in capsys.readouterr().err
