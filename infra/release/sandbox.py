"""The offline release sandbox: every release command runs for real against local servers (docs/sandbox.md).

A sandbox is a directory:

    DIR/sandbox.json        which stack it is, and the traffic volume of the Monitoring emulator
    DIR/Pulumi.yaml         the project file, and DIR/Pulumi.<stack>.yaml: the sandbox's own stack config
                            (the release state lives here, as in the real stack; edited only by the commands)
    DIR/policies            a link to the repository's policy pack (what the plan would check)
    DIR/cloudrun.json       the local Cloud Run Admin API's state: each service's revisions and traffic
    DIR/metrics.json        per revision: the error rate and p95 latency the local Monitoring emulator and the
                            local revision server give it (`sandbox metrics`)
    DIR/.netra              the rollout lock, as in the repository
    DIR/verdict-*.json      the gate's verdicts (a sandbox command runs in DIR)

`python -m infra <command> --sandbox DIR ...` (rollout, rollback, approve, status, bake, drift) runs the real
command with three differences, set up here before any command module is imported:

- stack files are read from DIR (NETRA_STACK_ROOT), so the release state is the sandbox's;
- `pulumi up` is `SandboxBackend.up`: the offline plan of the sandbox's config, then its rendered traffic
  applied to the local Cloud Run state (new candidate revisions created first, as a real `up` does);
- Google APIs go to local servers on 127.0.0.1 started for the command: the Cloud Run Admin API
  (infra/release/cloudrun_local.py, reached through `google_session`), Cloud Monitoring (a
  gRPC MetricService serving each revision's series at its live traffic share and its `sandbox metrics`),
  and a revision server the 0 % verification calls (`--verify-url` per service).

Not simulated (said in every run's log): the Cloud SQL backup and the load-test job (no database, no
load generator); the migration job runs through the local Admin API and does nothing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Optional

from infra.localhttp import LocalHTTPServer
from infra.release.cloudrun_local import CloudRunState, LocalCloudRun, api_traffic, seed, service_key

ROOT_ENV = "NETRA_STACK_ROOT"  # infra/plan/stackfile.py and infra/canary/stack.py read stack files from here
SANDBOX_ENV = "NETRA_SANDBOX"
MANIFEST = "sandbox.json"
DEFAULT_RPS = 2000.0  # requests per second per service: enough that a 10 % canary meets --min-requests fast
DEFAULT_PROFILE = {"errorRate": 0.002, "latencyP95Ms": 120.0}
GOOGLE_APIS = ("https://run.googleapis.com",)
REPO_ROOT = Path(__file__).resolve().parents[2]
# the commands that take --sandbox (docs/sandbox.md); `sandbox` itself manages the directory
COMMANDS = ("rollout", "rollback", "approve", "status", "bake", "drift")


class SandboxError(Exception):
    """Not a sandbox, or a bad sandbox argument (exit 2)."""


@dataclass(frozen=True)
class Sandbox:
    dir: Path
    stack: str
    rps: float = DEFAULT_RPS

    # ---- files ---------------------------------------------------------------------------------------
    @property
    def cloud_run(self) -> CloudRunState:
        return CloudRunState(self.dir / "cloudrun.json")

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.json"

    @classmethod
    def open(cls, path: str | Path) -> "Sandbox":
        d = Path(path).resolve()
        try:
            doc = json.loads((d / MANIFEST).read_text())
        except (OSError, ValueError):
            raise SandboxError(f"--sandbox: {path} is not a sandbox (no {MANIFEST}); create one with "
                               f"`python -m infra sandbox init {path} --stack STACK`") from None
        return cls(d, doc["stack"], float(doc.get("rps", DEFAULT_RPS)))

    @classmethod
    def init(cls, path: str | Path, stack: str, rps: float = DEFAULT_RPS, force: bool = False) -> "Sandbox":
        """Copy the stack's files, link the policy pack, and create the local Cloud Run state from the
        stack's plan: each service with the revisions and traffic its release state renders."""
        from infra.canary.stack import known_stacks

        d = Path(path).resolve()
        stacks = known_stacks(REPO_ROOT)
        if stack not in stacks:
            raise SandboxError(f"--stack: unknown stack {stack!r}; allowed: {', '.join(stacks)}")
        if d.exists() and any(d.iterdir()) and not force:
            raise SandboxError(f"{path} exists and is not empty (pass --force to replace a sandbox)")
        if d.exists() and force:
            if not (d / MANIFEST).exists():
                raise SandboxError(f"--force: {path} is not a sandbox; refusing to delete it")
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "Pulumi.yaml", d / "Pulumi.yaml")
        shutil.copy(REPO_ROOT / f"Pulumi.{stack}.yaml", d / f"Pulumi.{stack}.yaml")
        (d / "policies").symlink_to(REPO_ROOT / "policies", target_is_directory=True)
        box = cls(d, stack, rps)
        (d / MANIFEST).write_text(json.dumps({"stack": stack, "rps": rps}, indent=2))
        seed(box.cloud_run, box.plan_outputs())
        box.metrics_path.write_text(json.dumps({}, indent=2))
        return box

    def plan_outputs(self) -> dict:
        """The offline plan of the sandbox's stack config (the program, no policy pack) -> its outputs."""
        from infra.config import ConfigError
        from infra.plan import StackFileError, plan_stack

        try:
            return plan_stack(self.stack, root=self.dir, policy=False)["outputs"]
        except (ConfigError, StackFileError) as exc:
            from infra.release.state import OperationFailed

            raise OperationFailed(f"the offline plan of the sandbox's stack refused it: {exc}") from None

    # ---- metrics -------------------------------------------------------------------------------------
    def metrics(self) -> dict:
        try:
            return json.loads(self.metrics_path.read_text())
        except (OSError, ValueError):
            return {}

    def set_metrics(self, service_name: str, revision: str, error_rate: float, latency_p95_ms: float) -> None:
        doc = self.metrics()
        doc.setdefault(service_name, {})[revision] = {"errorRate": error_rate, "latencyP95Ms": latency_p95_ms}
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
        os.replace(tmp, self.metrics_path)

    def profile(self, service_name: str, revision: str) -> dict:
        return {**DEFAULT_PROFILE, **(self.metrics().get(service_name) or {}).get(revision, {})}

    # ---- Cloud Run -----------------------------------------------------------------------------------
    def service(self, key_or_name: str) -> tuple[str, dict]:
        """(state key, service) for a service key (`backend`) or name (`netra-backend-prod`)."""
        services = self.cloud_run.read()["services"]
        for k, svc in services.items():
            name = k.rsplit("/", 1)[-1]
            if key_or_name == name or re.fullmatch(rf"netra-{re.escape(key_or_name)}-[a-z]+", name):
                return k, svc
        names = sorted(k.rsplit("/", 1)[-1] for k in services)
        raise SandboxError(f"--service: unknown service {key_or_name!r}; allowed: {', '.join(names)}")

    def shares(self, service_name: str) -> dict[str, int]:
        """Revision -> live percent (trafficStatuses)."""
        k, svc = self.service(service_name)
        out: dict[str, int] = {}
        for t in svc["trafficStatuses"]:
            if t.get("revision"):
                out[t["revision"]] = out.get(t["revision"], 0) + int(t.get("percent") or 0)
        return out

    def apply(self, outputs: dict) -> list[str]:
        """What `pulumi up` does to traffic: each service's rendered traffic, its candidate created first."""
        state, lines = self.cloud_run, []
        project, region = outputs["gcpProject"], outputs["region"]
        for key, svc in sorted((outputs.get("services") or {}).items()):
            k = service_key(project, region, svc["serviceName"])
            traffic = api_traffic(svc["traffic"])
            if k not in state.read()["services"]:
                state.add_service(project, region, svc["serviceName"], [t["revision"] for t in traffic], traffic)
            else:
                for t in traffic:
                    state.add_revision(k, t["revision"])
                state.set_traffic(k, traffic)
            lines.append(f"{svc['serviceName']}: " + ", ".join(f"{t['revision']} {t['percent']} %"
                                                             + (f" ({t['tag']})" if t.get("tag") else "") for t in traffic))
        return lines


class SandboxBackend:
    """The release backend of a sandbox: config in DIR/Pulumi.<stack>.yaml, `up` = plan + apply traffic."""

    def __init__(self, box: Sandbox, log=print):
        self.box = box
        self.log = log
        self.path = box.dir / f"Pulumi.{box.stack}.yaml"

    def _doc(self) -> dict:
        import yaml

        return yaml.safe_load(self.path.read_text()) or {}

    def read(self) -> dict:
        from infra.release.state import decode

        return {k: decode(v) for k, v in dict(self._doc().get("config") or {}).items()}

    def write(self, values: dict, remove: tuple[str, ...] = ()) -> None:
        import yaml

        from infra.release.backends import MemoryBackend

        doc = self._doc()
        memory = MemoryBackend(dict(doc.get("config") or {}))
        memory.write(values, remove)
        doc["config"] = memory.config
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        os.replace(tmp, self.path)

    def up(self, message: str) -> None:
        self.log(f"sandbox pulumi up ({message}): offline plan of {self.path.name}, traffic applied to the local Cloud Run")
        for line in self.box.apply(self.box.plan_outputs()):
            self.log(f"  {line}")


# ---- the local servers of one command ---------------------------------------------------------------

class SandboxMetricService:
    """Cloud Monitoring ListTimeSeries for every service of the sandbox: each revision's synthetic series
    at its live traffic share (read from the local Cloud Run state per call) and its `sandbox metrics`."""

    def __init__(self, box: Sandbox):
        self.box = box

    def list_time_series(self, request, context):
        from infra.canary.emulator import FakeMetricService, Profile, _match

        name = _match(r'resource\.labels?\.service_name\s*=\s*"([^"]+)"', request.filter) or ""
        try:
            shares = self.box.shares(name)
        except SandboxError:
            shares = {}
        revisions = {rev: Profile(rps=self.box.rps * pct / 100.0, error_rate=float(p["errorRate"]),
                                  latency_median_ms=float(p["latencyP95Ms"]) / 3.0, latency_p95_ms=float(p["latencyP95Ms"]))
                     for rev, pct in shares.items() if pct > 0
                     for p in (self.box.profile(name, rev),)}
        return FakeMetricService(name, revisions, page_size=100).list_time_series(request, context)


class RevisionServer(LocalHTTPServer):
    """What the 0 % verification reaches: GET /<service name>/canary/<path> answers as the revision under
    the `canary` tag behaves (`sandbox metrics`): every k-th request a 500 at its error rate, one in 20
    at its p95 latency, the rest at a third of it."""

    def __init__(self, box: Sandbox):
        self.box = box
        self.counts: dict[str, int] = {}
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parts = urllib.parse.urlsplit(self.path).path.split("/", 3)
                code = 404
                if len(parts) >= 3 and parts[2] == "canary":
                    try:
                        _, svc = box.service(parts[1])
                        revision = next(t["revision"] for t in svc["trafficStatuses"] if t.get("tag") == "canary")
                    except (SandboxError, StopIteration):
                        revision = None
                    if revision:
                        p = box.profile(parts[1], revision)
                        with lock:
                            n = server.counts[revision] = server.counts.get(revision, 0) + 1
                        rate = float(p["errorRate"])
                        code = 500 if int(n * rate) > int((n - 1) * rate) else 200
                        time.sleep(min(float(p["latencyP95Ms"]) / (1 if n % 20 == 0 else 3), 5000.0) / 1000.0)
                body = b"sandbox revision"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        super().__init__(Handler, name="sandbox-revisions")
        self.start()


class GoogleSession:
    """A requests session whose Google API URLs (https://run.googleapis.com/...) go to the local Cloud Run
    server: the real code builds the real URLs; only the host changes."""

    def __init__(self, cloud_run_url: str):
        import requests

        self._session = requests.Session()
        self._base = cloud_run_url

    def _url(self, url: str) -> str:
        for api in GOOGLE_APIS:
            if url.startswith(api):
                return self._base + url[len(api):]
        return url

    def request(self, method, url, **kw):
        return self._session.request(method, self._url(url), **kw)

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)

    def patch(self, url, **kw):
        return self.request("PATCH", url, **kw)


@dataclass
class Running:
    box: Sandbox
    cloud_run_url: str
    monitoring: str  # HOST:PORT
    revisions_url: str


_running: Optional[Running] = None


def running() -> Optional[Running]:
    """The sandbox this process serves, or None (the real cloud)."""
    return _running


def google_session():
    """An authorized session for Google APIs, or the sandbox's local one."""
    return GoogleSession(_running.cloud_run_url) if _running is not None else None


def start(box: Sandbox) -> Running:
    """Start the command's local servers (daemon threads: they end with the process)."""
    global _running
    from infra.canary import emulator

    api = LocalCloudRun(box.cloud_run.path).start()
    grpc_server, monitoring = emulator.serve(SandboxMetricService(box))
    revisions = RevisionServer(box)
    _running = Running(box, api.url, monitoring, revisions.url)
    _running._keep = (api, grpc_server, revisions)  # type: ignore[attr-defined]
    return _running


def sandbox_argument(argv: list[str]) -> Optional[str]:
    for i, a in enumerate(argv):
        if a == "--sandbox" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--sandbox="):
            return a.split("=", 1)[1]
    return None


def prepare(argv: list[str]) -> list[str]:
    """Called by `python -m infra` before any command module is imported: for `<command> --sandbox DIR`,
    point stack files at DIR, start the local servers and add the flags that send the real code to them
    (`--monitoring-endpoint`, `--api-endpoint`, `--verify-url` per service) unless given. Returns argv."""
    path = sandbox_argument(argv)
    if path is None or not argv or argv[0] not in COMMANDS:
        return argv
    box = Sandbox.open(path)
    os.environ[ROOT_ENV] = str(box.dir)
    os.environ[SANDBOX_ENV] = str(box.dir)
    os.chdir(box.dir)  # verdict files and other outputs of the command land in the sandbox, not the checkout
    if "--stack" not in argv and not any(a.startswith("--stack=") for a in argv):
        argv = [*argv, "--stack", box.stack]
    run = start(box)
    extra: list[str] = []
    command = argv[0]
    if command in ("rollout", "bake") and "--monitoring-endpoint" not in argv:
        extra += ["--monitoring-endpoint", run.monitoring]
    if command in ("rollback", "drift") and "--api-endpoint" not in argv:
        extra += ["--api-endpoint", run.cloud_run_url]
    if command == "rollout" and "--flag" not in argv:
        for k, svc in sorted(box.cloud_run.read()["services"].items()):
            name = k.rsplit("/", 1)[-1]
            key = re.sub(rf"^netra-|-[a-z]+$", "", name)
            if not any(a.startswith(f"{key}=") for a in argv):
                extra += ["--verify-url", f"{key}={run.revisions_url}/{name}/canary"]
    return [*argv, *extra]


def sandbox_effects(log) -> dict[str, Any]:
    """What the sandbox cannot do, said once per run: the backup and the load test."""
    log("sandbox: no Cloud SQL backup is taken and no load test runs (no database, no load generator)")
    return {"backup": lambda: "not taken: sandbox", "load_test": lambda t: {"decision": "pass", "reason": "not run: sandbox"}}


def add_argument(parser) -> None:
    parser.add_argument("--sandbox", metavar="DIR", help="run against the offline release sandbox DIR (docs/sandbox.md); "
                                                         "--stack defaults to the sandbox's stack")


def check_stack(args) -> Optional[str]:
    """A usage problem when --stack names another stack than the sandbox's."""
    if getattr(args, "sandbox", None) and running() is not None and args.stack != running().box.stack:
        return f"--stack {args.stack}: the sandbox {running().box.dir} is of stack {running().box.stack}"
    return None


def log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
