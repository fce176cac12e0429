"""An HTTP server on 127.0.0.1 served by a daemon thread: the sandbox's local stand-ins of Google APIs
(infra/release/cloudrun_local.py, infra/release/sandbox.py) and the tests' fakes share it."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class LocalHTTPServer:
    """`handler` on 127.0.0.1:`port` (0: a free one); `url`, `start()`, `close()`, or `with ... as s`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0, name: Optional[str] = None):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name=name)

    def start(self):
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
