"""A local HTTP + WebSocket server for the load-test scenarios (127.0.0.1, a free port, threads).

Plain HTTP answers every GET/POST with 200 JSON (or 500 on every `http_error_every`-th request);
`GET <ws_path>` with `Upgrade: websocket` completes the RFC 6455 handshake and answers each text
message `{"id": ...}` with an event echoing the id after `ws_delay_ms`. Counts every request so tests
can check the load stayed bounded.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class LoadServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ws_path="/ws", ws_delay_ms=0.0, http_error_every=0, http_delay_ms=0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ws_path, self.ws_delay_ms, self.http_delay_ms = ws_path, ws_delay_ms, http_delay_ms
        self.http_error_every = http_error_every
        self.lock = threading.Lock()
        self.http_requests = self.ws_connections = self.ws_events = 0
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, *args):  # quiet
        pass

    def _http(self):
        srv: LoadServer = self.server
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        with srv.lock:
            srv.http_requests += 1
            fail = srv.http_error_every and srv.http_requests % srv.http_error_every == 0
        if srv.http_delay_ms:
            time.sleep(srv.http_delay_ms / 1000)
        body = json.dumps({"ok": not fail}).encode()
        self.send_response(500 if fail else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self._http()

    def do_GET(self):
        if self.path == self.server.ws_path and self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        self._http()

    # ---- RFC 6455, server side -----------------------------------------------------------------
    def _websocket(self):
        srv: LoadServer = self.server
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        with srv.lock:
            srv.ws_connections += 1
        self.close_connection = True
        while True:
            frame = self._read_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x8:  # close: echo and stop
                self._send(0x8, payload[:2])
                return
            if opcode == 0x9:  # ping -> pong
                self._send(0xA, payload)
                continue
            if opcode != 0x1:
                continue
            msg = json.loads(payload)
            if srv.ws_delay_ms:
                time.sleep(srv.ws_delay_ms / 1000)
            with srv.lock:
                srv.ws_events += 1
            self._send(0x1, json.dumps({"type": "event", "id": msg.get("id")}).encode())

    def _read_exact(self, n: int) -> bytes | None:
        data = self.rfile.read(n)
        return data if len(data) == n else None

    def _read_frame(self):
        head = self._read_exact(2)
        if head is None:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read_exact(8))[0]
        mask = self._read_exact(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = self._read_exact(length) if length else b""
        if mask is None or data is None:
            return None
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode, n]) if n < 126 else bytes([0x80 | opcode, 126]) + struct.pack("!H", n)
        try:
            self.wfile.write(head + payload)
            self.wfile.flush()
        except OSError:
            pass
