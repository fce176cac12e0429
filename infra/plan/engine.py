"""Run the real Pulumi program under Pulumi's mocks and record what it registers.

`pulumi.runtime.set_mocks` is Pulumi's documented unit-test engine: the program runs unchanged and
every resource registration arrives here with its inputs exactly as the engine would see them
(camelCase wire names, secrets still wrapped). Computed outputs a real provider would fill in
(a service URL, an account email) come from `COMPUTED`, derived from the inputs.
"""
from __future__ import annotations

import asyncio
import atexit
import base64
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pulumi

from infra.compat import gcp_compute, pulumi_sdk as sdk
from infra.compat.pulumi_sdk import SECRET_SIG, SIG_KEY  # noqa: F401  (re-exported: tests and the exporters use them)

# This module is the offline plan: from here on the program's pulumi_gcp.compute is the partial import.
gcp_compute.use_partial_compute()

SECRET_TEXT = "[secret]"
UNKNOWN_TEXT = "[unknown]"
# What the engine sends for a value it cannot know yet (plugin.UnknownStringValue; pulumi_policy's
# UNKNOWN_STRING_VALUE): a preview's resource inputs carry it, and pulumi_policy's proxy raises on it.
UNKNOWN = sdk.rpc.UNKNOWN


def is_unknown(value: Any) -> bool:
    return value == UNKNOWN or isinstance(value, sdk.Unknown)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def unwrap(value: Any) -> Any:
    """Plain values with secrets unwrapped (what a mock provider computes outputs from)."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def normalize(value: Any) -> Any:
    """The wire carries every number as a double; show whole numbers as integers. Assets (a bucket
    object's source) show as the file they name, so the plan stays JSON."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, sdk.Unknown):  # a preview's unknown, as the engine marshals it (KeepUnknowns)
        return UNKNOWN
    if isinstance(value, pulumi.FileAsset):
        return {"fileAsset": value.path}
    if isinstance(value, pulumi.FileArchive):  # a function's source directory
        return {"fileArchive": value.path}
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def redact(value: Any) -> Any:
    """Secrets print as "[secret]", a preview's unknowns as "[unknown]"; everything else unchanged."""
    if is_secret(value):
        return SECRET_TEXT
    if value == UNKNOWN:
        return UNKNOWN_TEXT
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str
    inputs: dict  # wire form: secrets wrapped with Pulumi's secret signature
    custom: bool
    dependencies: tuple[str, ...] = ()  # URNs it depends on explicitly (depends_on and input references)
    protect: bool = False  # the engine refuses to replace or delete it (infra/components/guards.py)
    # per input property, the URNs its value came from (the engine sends them to AnalyzeStack: a policy
    # learns what an input refers to even while its value is unknown in a preview; a delete-before-replace
    # of one of them takes this resource along when the property forces a replacement)
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent,
                "inputs": redact(self.inputs),
                **({"protect": True} if self.protect else {}),
                **({"propertyDependencies": {k: list(v) for k, v in sorted(self.property_dependencies.items())}}
                   if self.property_dependencies else {})}


@dataclass
class ProgramRun:
    project: str
    stack: str
    resources: list[PlannedResource]
    outputs: dict  # wire form
    warnings: list[str] = field(default_factory=list)


def _account_outputs(name: str, inputs: dict) -> dict:
    return {"email": f"{inputs['accountId']}@{inputs.get('project', 'project')}.iam.gserviceaccount.com",
            "member": f"serviceAccount:{inputs['accountId']}@{inputs.get('project', 'project')}.iam.gserviceaccount.com"}


def _cloud_run_outputs(name: str, inputs: dict) -> dict:
    return {"uri": f"https://{inputs.get('name', name)}-uc.a.run.app"}


def _notification_channel_outputs(name: str, inputs: dict) -> dict:
    return {"name": f"projects/{inputs.get('project', 'project')}/notificationChannels/{name}"}


def _uptime_check_outputs(name: str, inputs: dict) -> dict:
    check_id = f"{name}-uptime"
    return {"uptimeCheckId": check_id, "name": f"projects/{inputs.get('project', 'project')}/uptimeCheckConfigs/{check_id}"}


def _slo_outputs(name: str, inputs: dict) -> dict:
    return {"name": f"projects/{inputs.get('project', 'project')}/services/{inputs.get('service')}"
                    f"/serviceLevelObjectives/{inputs.get('sloId', name)}"}
def _sql_instance_outputs(name: str, inputs: dict) -> dict:
    project, region, instance = inputs.get("project", "project"), inputs.get("region", "region"), inputs.get("name", name)
    return {"privateIpAddress": "10.60.0.3", "connectionName": f"{project}:{region}:{instance}",
            "serviceAccountEmailAddress": f"p000000000000-mock@gcp-sa-cloud-sql.iam.gserviceaccount.com",
            "serverCaCerts": [{"cert": "-----BEGIN CERTIFICATE-----\noffline-plan-sql-ca\n-----END CERTIFICATE-----"}]}


def _redis_outputs(name: str, inputs: dict) -> dict:
    return {"host": "10.60.1.4", "port": 6378 if inputs.get("transitEncryptionMode") == "SERVER_AUTHENTICATION" else 6379,
            "authString": "offline-plan-redis-auth",
            "serverCaCerts": [{"cert": "-----BEGIN CERTIFICATE-----\noffline-plan\n-----END CERTIFICATE-----"}]}


def _budget_outputs(name: str, inputs: dict) -> dict:
    return {"name": f"billingAccounts/{inputs.get('billingAccount', '000000-000000-000000')}/budgets/offline-plan-{name}"}


def _backend_service_outputs(name: str, inputs: dict) -> dict:
    """generatedId: the numeric id the API assigns (IAP's audience names it); a stable stand-in per name."""
    return {"generatedId": int(hashlib.sha256(inputs.get("name", name).encode()).hexdigest()[:15], 16)}


def _global_address_outputs(name: str, inputs: dict) -> dict:
    return {} if inputs.get("address") else {"address": "203.0.113.10"}


def _digest(*parts: str, n: int = 16) -> str:
    """A stable stand-in for a value the provider generates: the same inputs give the same plan."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


def _address_outputs(name: str, inputs: dict) -> dict:
    """compute.Address: an INTERNAL address is allocated from its subnetwork (10.0.0.0/8 here), an
    EXTERNAL one from Google's pool (TEST-NET-3 offline); an address given as input is kept."""
    if inputs.get("address"):
        return {}
    h = int(_digest(inputs.get("project", ""), inputs.get("region", ""), inputs.get("name", name)), 16)
    internal = inputs.get("addressType", "EXTERNAL") == "INTERNAL"
    return {"address": f"10.{h % 256}.{(h >> 8) % 256}.{2 + (h >> 16) % 250}" if internal
            else f"203.0.113.{2 + h % 250}"}


def _instance_group_manager_outputs(name: str, inputs: dict) -> dict:
    """The managed instance group's URL (what backend services take as `group`): same name and zone."""
    project, zone = inputs.get("project", "project"), inputs.get("zone", "zone")
    group = f"https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}/instanceGroups/{inputs.get('name', name)}"
    return {"instanceGroup": group,
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}/instanceGroupManagers/"
                        f"{inputs.get('name', name)}"}


def _hmac_key_outputs(name: str, inputs: dict) -> dict:
    """storage.HmacKey: a service account's access id is GOOG1E + 55 upper-case alphanumerics (61), the
    secret 40 base64 characters."""
    seed = inputs.get("serviceAccountEmail", name)
    access = ("GOOG1E" + hashlib.sha256(("access/" + seed).encode()).hexdigest().upper() * 2)[:61]
    secret = base64.b64encode(hashlib.sha256(("secret/" + seed).encode()).digest()).decode()[:40]
    return {"accessId": access, "secret": secret, "state": inputs.get("state", "ACTIVE")}


def _pem(label: str, *seed: str) -> str:
    """A PEM block of the provider's shape (label lines, 64-column base64, trailing newline)."""
    body = base64.b64encode(hashlib.sha512("/".join(seed).encode()).digest() * 3).decode()
    return f"-----BEGIN {label}-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) + f"\n-----END {label}-----\n"


def _tls_private_key_outputs(name: str, inputs: dict) -> dict:
    # hashicorp/tls: RSA keys as PKCS#1, ECDSA as SEC 1, ED25519 as PKCS#8
    label = {"RSA": "RSA PRIVATE KEY", "ECDSA": "EC PRIVATE KEY"}.get(inputs.get("algorithm", "RSA"), "PRIVATE KEY")
    return {"privateKeyPem": _pem(label, "key", name), "publicKeyPem": _pem("PUBLIC KEY", "pub", name)}


# type token -> computed outputs from plain inputs; components add entries for their resource types
COMPUTED: dict[str, Callable[[str, dict], dict]] = {
    "gcp:serviceaccount/account:Account": _account_outputs,
    "gcp:cloudrunv2/service:Service": _cloud_run_outputs,
    "gcp:monitoring/notificationChannel:NotificationChannel": _notification_channel_outputs,
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": _uptime_check_outputs,
    "gcp:monitoring/slo:Slo": _slo_outputs,
    "gcp:sql/databaseInstance:DatabaseInstance": _sql_instance_outputs,
    "gcp:redis/instance:Instance": _redis_outputs,
    "gcp:compute/globalAddress:GlobalAddress": _global_address_outputs,
    "gcp:billing/budget:Budget": _budget_outputs,
    "gcp:compute/backendService:BackendService": _backend_service_outputs,
    "random:index/randomPassword:RandomPassword": lambda name, inputs: {"result": "offline-plan-password"},
    "gcp:compute/address:Address": _address_outputs,
    "gcp:compute/instanceGroupManager:InstanceGroupManager": _instance_group_manager_outputs,
    "gcp:storage/hmacKey:HmacKey": _hmac_key_outputs,
    "tls:index/privateKey:PrivateKey": _tls_private_key_outputs,
    "tls:index/certRequest:CertRequest": lambda name, inputs: {"certRequestPem": _pem("CERTIFICATE REQUEST", "csr", name)},
    "tls:index/selfSignedCert:SelfSignedCert": lambda name, inputs: {"certPem": _pem("CERTIFICATE", "self", name)},
    "tls:index/locallySignedCert:LocallySignedCert": lambda name, inputs: {"certPem": _pem("CERTIFICATE", "signed", name)},
}


def _project_lookup(args: dict) -> dict:
    """organizations.getProject: offline there is no project, so a stable stand-in number per project id
    (12 digits, like the real ones); the plan shows it where a real `pulumi up` shows the actual number."""
    project = args.get("projectId") or "project"
    number = str(int(hashlib.sha256(project.encode()).hexdigest()[:12], 16) % 10**12).zfill(12)
    return {"projectId": project, "number": number, "name": project, "id": f"projects/{project}"}


# invoke token -> result from plain args (data sources the program reads)
CALLS: dict[str, Callable[[dict], dict]] = {
    "gcp:organizations/getProject:getProject": _project_lookup,
}


class _Mocks(pulumi.runtime.Mocks):
    """`preview=False`: every resource exists, with the outputs its provider computes (`COMPUTED`).
    `preview=True`: a first `pulumi preview` on a fresh stack. Every resource is a create, so the
    provider knows only its inputs: the id and every computed output are unknown (the SDK resolves an
    output the engine did not return as unknown during a preview), and so is every input derived from them."""

    def __init__(self, preview: bool = False):
        self.preview = preview

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if self.preview:
            return "", dict(args.inputs)
        plain = unwrap(args.inputs)
        computed = COMPUTED.get(args.typ, lambda n, i: {})(args.name, plain)
        return f"{args.name}-id", {**args.inputs, **computed}

    def call(self, args: pulumi.runtime.MockCallArgs):
        answer = CALLS.get(args.token)
        return answer(dict(args.args)) if answer else {}


_THREAD_LOOPS: list[asyncio.AbstractEventLoop] = []


def _ensure_thread_loop() -> None:
    """Registrations arrive on pooled worker threads that need an event loop. Make it here and close
    it at exit: left to the garbage collector at interpreter shutdown it fails noisily."""
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        if not _THREAD_LOOPS:
            atexit.register(lambda: [lp.close() for lp in _THREAD_LOOPS if not lp.is_running()])
        _THREAD_LOOPS.append(loop)


class DuplicateUrnError(Exception):
    """Two registrations with one URN: the engine refuses the program, naming the URN."""

    def __init__(self, urns: list[str]):
        self.urns = list(urns)
        super().__init__("; ".join(f"Duplicate resource URN '{u}'; try giving it a unique name" for u in self.urns))


class _RecordingMonitor(sdk.MockMonitor):
    """The mock monitor, also keeping each registration's parent and the stack's outputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks, on_resource: Callable[[PlannedResource], None] | None = None):
        super().__init__(mocks)
        self.recorded: list[PlannedResource] = []
        self.urns: set[str] = set()
        self.duplicates: list[str] = []
        self.lock = threading.Lock()
        self.stack_urn = ""
        self.on_resource = on_resource

    def RegisterResource(self, request):
        _ensure_thread_loop()
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type != "pulumi:pulumi:Stack":
            with self.lock:
                if urn in self.urns:
                    # the engine refuses a second registration of a URN (mocks would overwrite the first)
                    self.duplicates.append(urn)
                    raise DuplicateUrnError([urn])
                self.urns.add(urn)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
        else:
            resource = PlannedResource(
                urn=response.urn, type=request.type, name=request.name, parent=request.parent,
                inputs=normalize(sdk.deserialize_properties(request.object)), custom=bool(request.custom),
                dependencies=tuple(request.dependencies), protect=bool(request.protect),
                property_dependencies={k: tuple(v.urns) for k, v in request.propertyDependencies.items() if v.urns})
            self.recorded.append(resource)
            if self.on_resource is not None:
                self.on_resource(resource)
        return response


class _WarningLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_program(program: Callable[[], None], project: str, stack: str,
                config: dict[str, str], secret_keys: tuple[str, ...] = (),
                on_resource: Callable[[PlannedResource], None] | None = None, preview: bool = False) -> ProgramRun:
    """Run `program` (which registers resources and exports outputs) offline; return the record.
    `on_resource` sees each resource as it registers (the policy pack analyzes it meanwhile).
    `preview`: as a first `pulumi preview` of a fresh stack sees it (computed outputs unknown)."""
    mocks = _Mocks(preview)
    monitor = _RecordingMonitor(mocks, on_resource)
    handler = _WarningLog()
    logger = logging.getLogger(f"netra.plan.{stack}")
    logger.propagate = False
    logger.handlers = [handler]
    sdk.reset_root_resource()  # a fresh root Stack per run, so plans can run repeatedly in one process
    pulumi.runtime.set_all_config(dict(config), list(secret_keys))
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, logger=logger, monitor=monitor)

    try:
        pulumi.runtime.test(program)()
    except Exception:
        if monitor.duplicates:  # the registration failed there; say why, not how the SDK reported it
            raise DuplicateUrnError(monitor.duplicates) from None
        raise
    if monitor.duplicates:
        raise DuplicateUrnError(monitor.duplicates)
    # Serialize as the engine would receive them, so secret outputs keep their secret wrapping.
    struct = sdk.serialized_outputs(sdk.get_root_resource().outputs)
    return ProgramRun(project=project, stack=stack, resources=monitor.recorded,
                      outputs=normalize(sdk.deserialize_properties(struct)), warnings=sorted(handler.messages))
