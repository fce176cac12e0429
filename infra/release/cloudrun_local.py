"""A local Cloud Run Admin API v2 (the subset the release commands call), on 127.0.0.1, backed by a JSON file.

What the real code calls, and what this server answers the way Cloud Run does:

    GET   /v2/projects/P/locations/R/services/NAME                      the Service (traffic, trafficStatuses)
    GET   /v2/projects/P/locations/R/services                           {"services": [...]}
    PATCH /v2/projects/P/locations/R/services/NAME?updateMask=traffic   a long-running Operation (not done)
    GET   /v2/projects/P/locations/R/operations/ID                      the Operation, done, with the Service
    POST  /v2/projects/P/locations/R/jobs/NAME:run                      an Execution that succeeds at once

A PATCH is validated as Cloud Run validates traffic (percents 0..100 summing to 100, revisions of this
service that exist, type REVISION or LATEST, tags unique); a refusal is HTTP 400 with the reason, an
unknown service 404. `trafficStatuses` (what serves) follows `traffic` once the operation is read done.
A job run (the migration job) is recorded in the state's `executions` and succeeds: the sandbox has no
database to migrate. Not covered: templates, IAM, revision creation (revisions are listed in the state
file), auth.

The state file (`{"services": {"projects/P/locations/R/services/NAME": {...}}}`) is read and written
under an exclusive lock per request, so several processes (a sandbox command, a test, `sandbox traffic`)
share one Cloud Run state. Used by the offline sandbox (infra/release/sandbox.py), the drift check and
the tests of `rollback --direct`.

    python -m infra.release.cloudrun_local --state DIR/cloudrun.json [--port N]   (serves until Ctrl-C)
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import parse_qs, urlsplit

from infra.localhttp import LocalHTTPServer

REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
SERVICE_PATH = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/services/[^/?]+)$")
SERVICES_PATH = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+)/services$")
JOB_RUN_PATH = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/:]+):run$")
OPERATION_PATH = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/operations/[^/]+)$")


class TrafficError(ValueError):
    """A traffic block Cloud Run would refuse (HTTP 400)."""


def service_key(project: str, region: str, name: str) -> str:
    return f"projects/{project}/locations/{region}/services/{name}"


def check_traffic(traffic: Any, revisions: list[str]) -> list[dict]:
    """The traffic block normalised, or TrafficError naming what Cloud Run would refuse."""
    if not isinstance(traffic, list) or not traffic:
        raise TrafficError("traffic must be a non-empty list of traffic targets")
    out, tags = [], set()
    for i, t in enumerate(traffic):
        if not isinstance(t, dict):
            raise TrafficError(f"traffic[{i}] must be an object")
        kind = t.get("type", REVISION)
        if kind not in (REVISION, LATEST):
            raise TrafficError(f"traffic[{i}].type must be {REVISION} or {LATEST}, got {kind!r}")
        percent = t.get("percent", 0)
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            raise TrafficError(f"traffic[{i}].percent must be a whole number 0..100, got {percent!r}")
        entry = {"type": kind, "percent": percent}
        if kind == REVISION:
            revision = t.get("revision")
            if revision not in revisions:
                raise TrafficError(f"traffic[{i}].revision {revision!r} is not a revision of this service "
                                   f"(known: {', '.join(revisions) or 'none'})")
            entry["revision"] = revision
        if t.get("tag"):
            if t["tag"] in tags:
                raise TrafficError(f"traffic[{i}].tag {t['tag']!r} is used twice")
            tags.add(t["tag"])
            entry["tag"] = t["tag"]
        out.append(entry)
    total = sum(e["percent"] for e in out)
    if total != 100:
        raise TrafficError(f"traffic percents must sum to 100, got {total}")
    return out


class CloudRunState:
    """The JSON state file under an exclusive lock (fcntl) for each read-modify-write."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict]:
        """The state to read and change; written back (atomically) when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(self.path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = json.loads(self.path.read_text()) if self.path.exists() else {}
                doc.setdefault("services", {})
                doc.setdefault("operations", {})
                before = json.dumps(doc, sort_keys=True)
                yield doc
                if json.dumps(doc, sort_keys=True) != before:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict:
        with self.locked() as doc:
            return json.loads(json.dumps(doc))

    def add_service(self, project: str, region: str, name: str, revisions: list[str], traffic: list[dict]) -> dict:
        """Create (or replace) a service with its revisions and live traffic."""
        key = service_key(project, region, name)
        with self.locked() as doc:
            checked = check_traffic(traffic, revisions)
            doc["services"][key] = {"name": key, "uri": f"https://{name}-local.a.run.app", "revisions": list(revisions),
                                    "traffic": checked, "trafficStatuses": checked, "generation": 1}
            return doc["services"][key]

    def add_revision(self, key: str, revision: str) -> None:
        """A new revision exists (what `pulumi up` of a new template does before traffic moves)."""
        with self.locked() as doc:
            svc = doc["services"][key]
            if revision not in svc["revisions"]:
                svc["revisions"].append(revision)

    def set_traffic(self, key: str, traffic: list[dict], serving: bool = True) -> dict:
        """Set a service's traffic; `serving` also makes it what serves (no operation to wait for)."""
        with self.locked() as doc:
            svc = doc["services"].get(key)
            if svc is None:
                raise KeyError(key)
            checked = check_traffic(traffic, svc["revisions"])
            svc["traffic"] = checked
            svc["generation"] += 1
            if serving:
                svc["trafficStatuses"] = checked
            return json.loads(json.dumps(svc))


def api_traffic(traffic) -> list[dict]:
    """The plan's rendered traffic ({revision, percent, tag}) as Admin API traffic targets."""
    return [{"type": REVISION, "revision": t["revision"], "percent": int(t["percent"]),
             **({"tag": t["tag"]} if t.get("tag") else {})} for t in traffic]


def seed(state: CloudRunState, outputs: dict) -> list[str]:
    """Every service of the plan outputs, created with the revisions and traffic the release state
    renders (what a completed `pulumi up` leaves). Returns the service resource names."""
    project, region = outputs["gcpProject"], outputs["region"]
    names = []
    for key, svc in sorted((outputs.get("services") or {}).items()):
        traffic = api_traffic(svc["traffic"])
        revisions = list(dict.fromkeys(t["revision"] for t in traffic))
        names.append(state.add_service(project, region, svc["serviceName"], revisions, traffic)["name"])
    return names


def public_view(svc: dict) -> dict:
    """The Service as the API returns it (the state's bookkeeping left out, tag URLs added)."""
    view = {k: v for k, v in svc.items() if k != "revisions"}
    view["trafficStatuses"] = [{**t, **({"uri": f"https://{t['tag']}---{svc['uri'].removeprefix('https://')}"}
                                        if t.get("tag") else {})} for t in svc["trafficStatuses"]]
    return view


class LocalCloudRun(LocalHTTPServer):
    """The server: `with LocalCloudRun(state_path) as api: ... api.url` (http://127.0.0.1:PORT)."""

    def __init__(self, state_path: Path, port: int = 0):
        self.state = CloudRunState(state_path)
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, doc: dict) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, code: int, status: str, message: str) -> None:
                self._send(code, {"error": {"code": code, "status": status, "message": message}})

            def do_GET(self):  # noqa: N802
                server_self.requests.append(("GET", self.path))
                path = urlsplit(self.path).path
                if m := SERVICE_PATH.match(path):
                    svc = server_self.state.read()["services"].get(m.group(1))
                    return self._send(200, public_view(svc)) if svc else self._error(
                        404, "NOT_FOUND", f"Resource '{m.group(1)}' was not found")
                if m := SERVICES_PATH.match(path):
                    services = server_self.state.read()["services"]
                    return self._send(200, {"services": [public_view(s) for k, s in sorted(services.items())
                                                         if k.startswith(m.group(1) + "/")]})
                if m := OPERATION_PATH.match(path):
                    return self._operation(m.group(1))
                return self._error(404, "NOT_FOUND", f"no such method: GET {path}")

            def _operation(self, name: str) -> None:
                with server_self.state.locked() as doc:
                    op = doc["operations"].get(name)
                    if op is None:
                        return self._error(404, "NOT_FOUND", f"Operation '{name}' was not found")
                    svc = doc["services"][op["service"]]
                    if op["generation"] == svc["generation"]:
                        svc["trafficStatuses"] = svc["traffic"]  # the rollout of that traffic completed
                    op["done"] = True
                    result = {"name": name, "done": True, "response": public_view(svc)}
                self._send(200, result)

            def do_POST(self):  # noqa: N802
                server_self.requests.append(("POST", self.path))
                m = JOB_RUN_PATH.match(urlsplit(self.path).path)
                if not m:
                    return self._error(404, "NOT_FOUND", f"no such method: POST {self.path}")
                with server_self.state.locked() as doc:
                    executions = doc.setdefault("executions", [])
                    name = f"{m.group(1)}/executions/run-{len(executions) + 1}"
                    executions.append(name)
                op = f"{m.group(1).rsplit('/jobs/', 1)[0]}/operations/job-{os.getpid()}-{next(server_self._ids)}"
                self._send(200, {"name": op, "done": True, "response": {"name": name, "succeededCount": 1}})

            def do_PATCH(self):  # noqa: N802
                server_self.requests.append(("PATCH", self.path))
                parts = urlsplit(self.path)
                m = SERVICE_PATH.match(parts.path)
                if not m:
                    return self._error(404, "NOT_FOUND", f"no such method: PATCH {parts.path}")
                mask = parse_qs(parts.query).get("updateMask", [""])[0]
                if mask != "traffic":
                    return self._error(400, "INVALID_ARGUMENT", f"updateMask must be 'traffic' here, got {mask!r}")
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                except ValueError as exc:
                    return self._error(400, "INVALID_ARGUMENT", f"body is not JSON: {exc}")
                key = m.group(1)
                try:
                    svc = server_self.state.set_traffic(key, (body or {}).get("traffic"), serving=False)
                except KeyError:
                    return self._error(404, "NOT_FOUND", f"Resource '{key}' was not found")
                except TrafficError as exc:
                    return self._error(400, "INVALID_ARGUMENT", str(exc))
                name = f"{key.rsplit('/services/', 1)[0]}/operations/op-{os.getpid()}-{next(server_self._ids)}"
                with server_self.state.locked() as doc:
                    doc["operations"][name] = {"service": key, "generation": svc["generation"], "done": False}
                self._send(200, {"name": name, "done": False})

            def log_message(self, *a):
                pass

        super().__init__(Handler, port, name="local-cloud-run")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.release.cloudrun_local",
                                description="Serve a local Cloud Run Admin API v2 on 127.0.0.1 from a JSON state file.")
    p.add_argument("--state", required=True, help="the state file (a sandbox's DIR/cloudrun.json)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    args = p.parse_args(argv)
    if not Path(args.state).exists():
        print(f"error: --state: {args.state} does not exist (create it with `python -m infra sandbox init`)", file=sys.stderr)
        return 2
    with LocalCloudRun(Path(args.state), args.port) as api:
        print(api.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
