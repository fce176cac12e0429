"""Run the policy pack offline exactly as the Pulumi CLI does, over the Analyzer gRPC protocol.

What `pulumi preview --policy-pack policies --policy-pack-config policies/config.<stack>.json` does,
step by step, and what this module does the same way:

1. Start the pack: the CLI's `pulumi-analyzer-policy-python` shim runs `python -u -m pulumi.policy
   <engine address> .` in the pack directory (which runs `policies/__main__.py` with that directory on
   sys.path) with PULUMI_PROJECT, PULUMI_STACK, PULUMI_DRY_RUN (and PULUMI_CONFIG) in the environment.
   The pack (pulumi_policy.PolicyPack) prints its port on stdout and serves `pulumirpc.Analyzer` on
   127.0.0.1. We run the same module with the project's interpreter; there is no engine, so the engine
   address is a placeholder the pack never dials.
2. `ConfigureStack` (project, stack), `GetAnalyzerInfo`, then the policy-pack config file is parsed and
   reconciled with the pack's policies as the CLI does (pkg/resource/analyzer/config.go:
   schema defaults, then `initialConfig`, then the file; `"all"` sets every policy's enforcement
   level; properties validated against each policy's config schema) and sent with `Configure`.
3. `Analyze` for each custom resource: type, name, URN, inputs as a Struct with secrets still wrapped
   in Pulumi's secret signature (the engine marshals with KeepSecrets), internal `__` keys dropped,
   options (parent, additionalSecretOutputs when known).
4. `AnalyzeStack` with every resource (parent links, dependencies and property dependencies included).
5. `Cancel` (pulumi_policy leaves it unimplemented, which the engine tolerates), then stop the process.

Enforcement levels and violation semantics are pulumi_policy's: a diagnostic comes back with the level
the pack resolved; this module only maps it to `{"policy", "level", "urn", "message"}`.
"""
from __future__ import annotations

import json
import queue
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

LEVELS = ("advisory", "mandatory", "remediate", "disabled")
START_TIMEOUT_S = 30.0
RPC_TIMEOUT_S = 30.0


class PolicyPackError(Exception):
    """The pack could not be started, configured or asked (exit 2 material: a usage problem)."""


# ---------------------------------------------------------------- the policy-pack config file

@dataclass
class PolicyConfig:
    enforcement_level: str = ""  # "" = not set
    properties: Optional[dict] = None


def parse_pack_config(text: str, source: str = "policy pack config") -> dict[str, PolicyConfig]:
    """`--policy-pack-config` file semantics: `{"name": "level" | {"enforcementLevel": ..., **props}}`."""
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise PolicyPackError(f"{source}: not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PolicyPackError(f"{source}: must be a JSON object of policy name -> level or object")
    out: dict[str, PolicyConfig] = {}
    for name, value in doc.items():
        if isinstance(value, str):
            if value not in LEVELS:
                raise PolicyPackError(f"{source}: parsing enforcement level for {name!r}: {value!r} is not a valid "
                                      f"enforcement level ({', '.join(LEVELS)})")
            cfg = PolicyConfig(value, None)
        elif isinstance(value, dict):
            props = dict(value)
            level = props.pop("enforcementLevel", "")
            if level and level not in LEVELS:
                raise PolicyPackError(f"{source}: parsing enforcement level for {name!r}: {level!r} is not a valid "
                                      f"enforcement level ({', '.join(LEVELS)})")
            cfg = PolicyConfig(level, props or None)
        else:
            raise PolicyPackError(f"{source}: parsing {name!r}: {value!r} is not a valid value; must be a string or object")
        if cfg.enforcement_level or cfg.properties:
            out[name] = cfg
    return out


def load_pack_config(path: Path) -> dict[str, PolicyConfig]:
    try:
        return parse_pack_config(path.read_text(), path.name)
    except OSError as e:
        raise PolicyPackError(f"cannot read {path}: {e}") from None


@dataclass
class PolicyInfo:
    name: str
    description: str
    enforcement_level: str
    schema: Optional[dict]  # {"properties": {...}, "required": [...]} or None
    remediation: str = ""
    kind: str = ""  # "resource" | "stack"


def _apply(result: dict[str, PolicyConfig], given: Mapping[str, PolicyConfig]) -> None:
    all_cfg = given.get("all")
    if all_cfg is not None and all_cfg.enforcement_level:
        for k, v in result.items():
            result[k] = PolicyConfig(all_cfg.enforcement_level, v.properties)
    for name, cfg in given.items():
        level, props = "", None
        if name in result:
            level, props = result[name].enforcement_level, result[name].properties
        if cfg.enforcement_level:
            level = cfg.enforcement_level
        if cfg.properties:
            props = {**(props or {}), **cfg.properties}
        result[name] = PolicyConfig(level, props)


def reconcile(policies: list[PolicyInfo], initial: Mapping[str, PolicyConfig],
              given: Mapping[str, PolicyConfig]) -> dict[str, PolicyConfig]:
    """The CLI's ReconcilePolicyPackConfig: defaults from schemas, then initial config, then the file;
    then each policy's properties validated against its schema. Raises PolicyPackError listing problems."""
    result: dict[str, PolicyConfig] = {}
    for p in policies:
        defaults = {k: v["default"] for k, v in ((p.schema or {}).get("properties") or {}).items() if "default" in v}
        result[p.name] = PolicyConfig(p.enforcement_level, defaults or None)
    _apply(result, initial)
    _apply(result, given)
    problems = []
    for p in policies:
        if p.schema is None:
            continue
        props = (result.get(p.name) or PolicyConfig()).properties or {}
        problems += [f"{p.name}: {msg}" for msg in validate_schema(p.schema, props)]
    if problems:
        raise PolicyPackError("invalid policy pack config:\n  " + "\n  ".join(problems))
    return result


def validate_schema(schema: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """JSON-schema validation of one policy's config (the keywords pulumi_policy schemas use here:
    type, enum, items, minimum, maximum, properties, required). Unknown keywords are refused loudly."""
    full = {"type": "object", "properties": schema.get("properties") or {}, "required": schema.get("required") or []}
    return _validate(full, dict(config), "")


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}
_KNOWN = {"type", "enum", "items", "minimum", "maximum", "properties", "required", "default", "description",
          "additionalProperties"}


def _validate(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    where = path or "(root)"
    unknown = set(schema) - _KNOWN
    if unknown:
        return [f"{where}: schema keyword(s) {sorted(unknown)} not supported by the offline validator"]
    t = schema.get("type")
    if t in ("integer", "number"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
            t == "number" or float(value).is_integer())
        if not ok:
            return [f"{where}: invalid type. Expected: {t}, given: {type(value).__name__}"]
    elif t and not isinstance(value, _TYPES[t]):
        return [f"{where}: invalid type. Expected: {t}, given: {type(value).__name__}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: must be one of {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append(f"{where}: must be greater than or equal to {schema['minimum']}")
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        errors.append(f"{where}: must be less than or equal to {schema['maximum']}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += _validate(schema["items"], v, f"{path}.{i}" if path else str(i))
    if isinstance(value, dict):
        for k in schema.get("required") or []:
            if k not in value:
                errors.append(f"{where}: {k} is required")
        for k, sub in (schema.get("properties") or {}).items():
            if k in value:
                errors += _validate(sub, value[k], f"{path}.{k}" if path else k)
    return errors


# ---------------------------------------------------------------- wire form

def _strip_internal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_internal(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_strip_internal(v) for v in value]
    return value


def to_struct(inputs: Mapping[str, Any]):
    """Inputs (wire form, secrets wrapped in Pulumi's signature object) as the Struct the engine sends:
    MarshalProperties(KeepSecrets, KeepUnknowns, SkipInternalKeys). A secret stays
    `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": ...}`."""
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(_strip_internal(dict(inputs)))
    return s


# ---------------------------------------------------------------- the pack process

@dataclass
class Violation:
    policy: str
    level: str
    urn: str
    message: str

    def to_json(self) -> dict:
        return {"policy": self.policy, "level": self.level, "urn": self.urn, "message": self.message}


@dataclass
class PackSession:
    """A running policy pack and a client for it. Use as a context manager."""

    pack_dir: Path
    project: str
    stack: str
    python: str = sys.executable
    config_json: Optional[str] = None  # PULUMI_CONFIG, as the CLI passes the stack's config
    process: Optional[subprocess.Popen] = field(default=None, init=False)
    port: int = field(default=0, init=False)
    info: Any = field(default=None, init=False)
    policies: list[PolicyInfo] = field(default_factory=list, init=False)

    def start(self) -> "PackSession":
        """Spawn the pack (returns at once); `connect()` waits for its port."""
        if not (self.pack_dir / "PulumiPolicy.yaml").exists():
            raise PolicyPackError(f"no PulumiPolicy.yaml in {self.pack_dir}")
        env = {**os.environ, "PULUMI_PROJECT": self.project, "PULUMI_STACK": self.stack, "PULUMI_DRY_RUN": "true",
               "PYTHONUNBUFFERED": "1"}
        env.pop("PULUMI_CONFIG", None)
        if self.config_json:
            env["PULUMI_CONFIG"] = self.config_json
        self.process = subprocess.Popen(
            [self.python, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
            cwd=self.pack_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return self

    def connect(self) -> "PackSession":
        import grpc
        from pulumi.runtime.proto import analyzer_pb2_grpc

        assert self.process is not None, "start() first"
        line = _read_line(self.process, START_TIMEOUT_S)
        if not line.strip().isdigit():
            err = self._stderr()
            self.close()
            raise PolicyPackError(f"policy pack {self.pack_dir} did not start (printed {line!r}):\n{err}")
        self.port = int(line.strip())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}",
                                             options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
        return self

    def __enter__(self) -> "PackSession":
        if self.process is None:
            self.start()
        if not self.port:
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request):
        import grpc

        try:
            return getattr(self.stub, method)(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as e:
            raise PolicyPackError(f"policy pack {method} failed: {e.code().name}: {e.details()}\n{self._stderr()}") from None

    # -- the protocol, in the engine's order
    def configure_stack(self) -> None:
        from pulumi.runtime.proto import analyzer_pb2

        self._call("ConfigureStack", analyzer_pb2.AnalyzerStackConfigureRequest(stack=self.stack, project=self.project))

    def analyzer_info(self) -> list[PolicyInfo]:
        from google.protobuf import empty_pb2, json_format
        from pulumi.runtime.proto import analyzer_pb2

        info = self._call("GetAnalyzerInfo", empty_pb2.Empty())
        self.info = info
        self.policies = []
        for p in info.policies:
            schema = None
            if p.HasField("configSchema"):
                schema = {"properties": json_format.MessageToDict(p.configSchema.properties),
                          "required": list(p.configSchema.required)}
            self.policies.append(PolicyInfo(
                name=p.name, description=p.description,
                enforcement_level=analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel).lower(),
                schema=schema, remediation=p.remediation_steps,
                kind={analyzer_pb2.POLICY_TYPE_RESOURCE: "resource",
                      analyzer_pb2.POLICY_TYPE_STACK: "stack"}.get(p.policy_type, "")))
        return self.policies

    def initial_config(self) -> dict[str, PolicyConfig]:
        from google.protobuf import json_format
        from pulumi.runtime.proto import analyzer_pb2

        out = {}
        for k, v in (self.info.initialConfig if self.info is not None else {}).items():
            out[k] = PolicyConfig(analyzer_pb2.EnforcementLevel.Name(v.enforcementLevel).lower(),
                                  json_format.MessageToDict(v.properties) or None)
        return out

    def configure(self, given: Mapping[str, PolicyConfig]) -> dict[str, PolicyConfig]:
        """Reconcile `given` (the parsed config file) with the pack's policies and send it."""
        from pulumi.runtime.proto import analyzer_pb2

        if not self.policies:
            self.analyzer_info()
        if not given:  # the engine skips Configure when no config was given
            return {}
        resolved = reconcile(self.policies, self.initial_config(), given)
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, cfg in resolved.items():
            pc = request.policyConfig[name]
            pc.enforcementLevel = analyzer_pb2.EnforcementLevel.Value((cfg.enforcement_level or "advisory").upper())
            if cfg.properties:
                pc.properties.update(cfg.properties)
        self._call("Configure", request)
        return resolved

    def analyze(self, resource) -> list[Violation]:
        from pulumi.runtime.proto import analyzer_pb2

        request = analyzer_pb2.AnalyzeRequest(
            urn=resource.urn, type=resource.type, name=resource.name, properties=to_struct(resource.inputs),
            options=_options(resource))
        return self._violations(self._call("Analyze", request), resource.urn)

    def analyze_stack(self, resources: Iterable) -> list[Violation]:
        from pulumi.runtime.proto import analyzer_pb2

        request = analyzer_pb2.AnalyzeStackRequest(resources=[
            analyzer_pb2.AnalyzerResource(
                urn=r.urn, type=r.type, name=r.name, properties=to_struct(r.inputs), options=_options(r),
                parent=r.parent or "", dependencies=list(getattr(r, "dependencies", ()) or ()),
                propertyDependencies={k: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(v))
                                      for k, v in (getattr(r, "property_dependencies", None) or {}).items()})
            for r in resources])
        return self._violations(self._call("AnalyzeStack", request), "")

    def _violations(self, response, default_urn: str) -> list[Violation]:
        from pulumi.runtime.proto import analyzer_pb2

        out = []
        for d in response.diagnostics:
            level = analyzer_pb2.EnforcementLevel.Name(d.enforcementLevel).lower()
            # pulumi_policy's message is "<description>\n<detail>"; the detail says what is wrong.
            detail = d.message.split("\n", 1)[1] if "\n" in d.message else d.message
            out.append(Violation(policy=d.policyName, level=level, urn=d.urn or default_urn, message=detail))
        return out

    def close(self) -> None:
        if getattr(self, "stub", None) is not None:
            import grpc
            from google.protobuf import empty_pb2

            try:
                self.stub.Cancel(empty_pb2.Empty(), timeout=2)
            except grpc.RpcError:
                pass  # pulumi_policy does not implement Cancel; the engine then just stops the plugin
            self.channel.close()
            self.stub = None
        if self.process is not None and self.process.poll() is None:
            # pulumi_policy stops its gRPC server on KeyboardInterrupt
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            for stream in (self.process.stdout, self.process.stderr):
                if stream:
                    stream.close()

    def _stderr(self) -> str:
        if self.process is None or self.process.stderr is None:
            return ""
        if self.process.poll() is None:
            return ""
        try:
            return self.process.stderr.read().decode(errors="replace")[-4000:]
        except (OSError, ValueError):
            return ""


def _options(resource):
    from pulumi.runtime.proto import analyzer_pb2

    return analyzer_pb2.AnalyzerResourceOptions(
        parent=getattr(resource, "parent", "") or "",
        additionalSecretOutputs=list(getattr(resource, "additional_secret_outputs", ()) or ()),
        protect=bool(getattr(resource, "protect", False)))


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The pack's first stdout line (its port), or "" if it exits or takes longer than `timeout`."""
    result: list[str] = []

    def read():
        result.append(process.stdout.readline().decode(errors="replace"))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else ""


# ---------------------------------------------------------------- the whole check

_DONE = object()


class PolicyCheck:
    """One pack run over one plan. Like the engine during a preview, each resource is analyzed as soon
    as the program registers it (`submit`), so the pack (its own process, the other core) works while
    the program is still running; `finish` adds AnalyzeStack and returns every violation."""

    def __init__(self, session: PackSession, config_file: Optional[Path]):
        self.session = session
        self.config_file = config_file
        self.queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self.violations: list[Violation] = []
        self.error: Optional[BaseException] = None
        self.worker = threading.Thread(target=self._work, name="policy-pack", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        try:
            given = load_pack_config(self.config_file) if self.config_file and self.config_file.exists() else {}
            self.session.__enter__()
            self.session.configure_stack()
            self.session.analyzer_info()
            self.session.configure(given)
            while (resource := self.queue.get()) is not _DONE:
                if getattr(resource, "custom", True):
                    self.violations += self.session.analyze(resource)
        except BaseException as e:  # reported by finish(); the queue is drained so submit never blocks
            self.error = e
            while self.queue.get() is not _DONE:
                pass

    def submit(self, resource) -> None:
        self.queue.put(resource)

    def finish(self, resources: Iterable) -> list[Violation]:
        """Wait for every submitted resource, run AnalyzeStack over `resources`, stop the pack."""
        self.queue.put(_DONE)
        self.worker.join()
        try:
            if self.error is not None:
                raise self.error
            return self.violations + self.session.analyze_stack(resources)
        finally:
            self.session.close()

    def close(self) -> None:
        """Abandon the check (e.g. the config was refused before the program ran)."""
        self.queue.put(_DONE)
        self.worker.join()
        self.session.close()


def check_resources(resources: list, project: str, stack: str, pack_dir: Path,
                    config_file: Optional[Path]) -> list[Violation]:
    """Every violation the pack reports for `resources` (PlannedResource-like), as `pulumi preview` would."""
    check = PolicyCheck(PackSession(pack_dir, project, stack).start(), config_file)
    for r in resources:
        check.submit(r)
    return check.finish(resources)
