"""A fake of the Cloud Storage JSON API on 127.0.0.1, for the real google-cloud-storage client.

Covers what the release ledger uses, with GCS's semantics:
- media download `GET /download/storage/v1/b/B/o/NAME?alt=media[&generation=G]`: the bytes, with
  `X-Goog-Generation`, `X-Goog-Metageneration` and `X-Goog-Hash` (crc32c and md5, which the client checks);
  404 when the object (or that generation) does not exist;
- object metadata `GET /storage/v1/b/B/o/NAME`; bucket metadata `GET /storage/v1/b/B` (versioned);
- multipart upload `POST /upload/storage/v1/b/B/o?uploadType=multipart` with `ifGenerationMatch`
  (0: only if no live object) and `ifGenerationNotMatch`: 412 conditionNotMet when the precondition fails;
  the crc32c/md5 the client sends in the metadata are verified (400 on a mismatch);
- object versioning: every generation is kept and readable by `generation=`; generations increase.
Not covered: resumable uploads, listing, ACLs/IAM, retention policies, metageneration preconditions,
XML API. Every request is logged in `requests` (method, path, query) for tests to assert on.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

import google_crc32c

from infra.localhttp import LocalHTTPServer


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class FakeGcs(LocalHTTPServer):
    def __init__(self, latency_s: float = 0.0):
        self.objects: dict[tuple[str, str], list[tuple[int, bytes]]] = {}  # (bucket, name) -> [(generation, data)]
        self.requests: list[tuple[str, str, dict]] = []
        self.latency_s = latency_s  # per request: a round trip to the real service, for measurements
        self._next = 1_700_000_000_000_000
        self._mutex = threading.Lock()
        super().__init__(self._handler())

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="netra-test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def live(self, bucket: str, name: str):
        versions = self.objects.get((bucket, name))
        return versions[-1] if versions else None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: bytes = b"", content_type="application/json", headers=None):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, code: int, reason: str, message: str):
                self._reply(code, json.dumps({"error": {"code": code, "message": message,
                                                        "errors": [{"reason": reason, "message": message}]}}).encode())

            def _resource(self, bucket, name, generation, data):
                return {"kind": "storage#object", "bucket": bucket, "name": name, "generation": str(generation),
                        "metageneration": "1", "size": str(len(data)), "contentType": "application/json",
                        "md5Hash": _md5(data), "crc32c": _crc32c(data), "id": f"{bucket}/{name}/{generation}"}

            def _parse(self):
                u = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(u.query).items()}
                fake.requests.append((self.command, u.path, query))
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                return u.path, query

            def do_GET(self):
                path, query = self._parse()
                parts = path.split("/")
                media = path.startswith("/download/storage/v1/b/")
                if path.startswith("/storage/v1/b/") and len(parts) == 5:  # bucket metadata: versioned
                    return self._reply(200, json.dumps({"kind": "storage#bucket", "name": parts[4],
                                                        "versioning": {"enabled": True}}).encode())
                if not (media or path.startswith("/storage/v1/b/")) or "o" not in parts:
                    return self._error(404, "notFound", f"no such API: {path}")
                i = parts.index("o")
                bucket, name = parts[i - 1], unquote("/".join(parts[i + 1:]))
                with fake._mutex:
                    versions = fake.objects.get((bucket, name)) or []
                    if "generation" in query:
                        found = next(((g, d) for g, d in versions if g == int(query["generation"])), None)
                    else:
                        found = versions[-1] if versions else None
                if found is None:
                    return self._error(404, "notFound", f"No such object: {bucket}/{name}")
                generation, data = found
                if media:
                    return self._reply(200, data, headers={
                        "X-Goog-Generation": str(generation), "X-Goog-Metageneration": "1",
                        "X-Goog-Hash": f"crc32c={_crc32c(data)},md5={_md5(data)}", "ETag": f'"{generation}"'})
                return self._reply(200, json.dumps(self._resource(bucket, name, generation, data)).encode())

            def do_POST(self):
                path, query = self._parse()
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if not path.startswith("/upload/storage/v1/b/") or query.get("uploadType") != "multipart":
                    return self._error(400, "invalid", f"only multipart uploads are faked, got {path} {query}")
                bucket = path.split("/")[5]
                raw = b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                msg = BytesParser(policy=HTTP).parsebytes(raw)
                parts = list(msg.iter_parts())
                if len(parts) != 2:
                    return self._error(400, "invalid", "multipart upload needs metadata and media parts")
                meta = json.loads(parts[0].get_payload(decode=True))
                data = parts[1].get_payload(decode=True)
                name = meta.get("name") or query.get("name")
                if meta.get("crc32c") and meta["crc32c"] != _crc32c(data):
                    return self._error(400, "invalid", "Provided CRC32C does not match the object's")
                if meta.get("md5Hash") and meta["md5Hash"] != _md5(data):
                    return self._error(400, "invalid", "Provided MD5 hash does not match the object's")
                with fake._mutex:
                    versions = fake.objects.setdefault((bucket, name), [])
                    current = versions[-1][0] if versions else 0
                    if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != current:
                        return self._error(412, "conditionNotMet", "At least one of the pre-conditions you "
                                                                   "specified did not hold.")
                    if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == current:
                        return self._error(412, "conditionNotMet", "At least one of the pre-conditions you "
                                                                   "specified did not hold.")
                    fake._next += 1
                    versions.append((fake._next, data))
                    resource = self._resource(bucket, name, fake._next, data)
                self._reply(200, json.dumps(resource).encode())

        return Handler
