"""Which input properties reached the pack as Pulumi secrets.

The engine sends resource inputs to an analyzer with secrets kept (`MarshalProperties(...,
KeepSecrets: true)`): a secret arrives wrapped as `{"4dabf18193072939515e22adb298388d":
"1b47061264138c4ac30d75fd1eb44270", "value": ...}`. pulumi_policy 1.21's `Analyze` unwraps them
before a policy sees `args.props` (it only keeps them for `Remediate`), so a policy cannot tell a
secret from plaintext through the public API.

This module wraps `pulumi_policy.policy.deserialize_properties` (the function `Analyze` calls on the
request's properties immediately before it builds `ResourceValidationArgs`) so that it also records,
per thread, the paths that were secrets. `secret_paths(args)` returns them only when `args.props` holds
exactly what that call produced (the policy runs right after it, on the same thread); otherwise `None` ("unknown"), and callers fall
back to what the public API shows (`args.opts.additional_secret_outputs`). The wrapper changes no
value any policy sees. Tested over the analyzer protocol in tests/test_policy_protocol.py.

One of the project's SDK workarounds: registered and pinned to the pulumi_policy version it was written
for in infra/compat/__init__.py (tests/test_compat.py fails, naming it, when that pin moves). It lives
here, not in infra/compat/, because the pack runs as its own program from policies/.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

import pulumi_policy.policy as _policy
from google.protobuf import json_format as _json_format

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

_local = threading.local()


def _secret_paths(value: Any, path: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            found.add(path)
            found |= _secret_paths(value.get("value"), path)
            return found
        for k, v in value.items():
            found |= _secret_paths(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found |= _secret_paths(v, f"{path}[{i}]")
    return found


def _install() -> bool:
    original = getattr(_policy, "deserialize_properties", None)
    if original is None or getattr(original, "_netra_recording", False):
        return original is not None

    def recording(props, proxy_secrets=False):
        result = original(props, proxy_secrets)
        _local.last = (result, frozenset(_secret_paths(props)))
        return result

    recording._netra_recording = True  # type: ignore[attr-defined]
    _policy.deserialize_properties = recording
    return True


INSTALLED = _install()


class _ConvertOncePerRequest:
    """Stands in for `json_format` inside pulumi_policy.policy. Its `Analyze` converts the request's
    properties with `MessageToDict` once per policy (41 times per resource here), the largest part of
    the pack's time. Repeated conversions of the same message object on the same thread return the
    first result: `deserialize_properties` only reads it and builds fresh values for every policy, so
    each policy still gets its own copy. Any other call goes to the real module unchanged."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_json_format, name)

    def MessageToDict(self, message, *args, **kwargs):  # noqa: N802 (protobuf's name)
        if args or kwargs:
            return _json_format.MessageToDict(message, *args, **kwargs)
        last = getattr(_local, "converted", None)
        if last is None or last[0] is not message:
            # keeping `message` referenced means its id cannot be reused by another message meanwhile
            last = _local.converted = (message, _json_format.MessageToDict(message))
        return last[1]


def _install_conversion_cache() -> bool:
    if getattr(_policy, "json_format", None) is not _json_format:
        return isinstance(getattr(_policy, "json_format", None), _ConvertOncePerRequest)
    _policy.json_format = _ConvertOncePerRequest()
    return True


CONVERSION_CACHED = _install_conversion_cache()


def secret_paths(args: Any) -> Optional[frozenset[str]]:
    """Input paths (e.g. "secretData", "template.containers[0].envs[2].value") that arrived as
    secrets for the resource `args` describes; None when that cannot be known."""
    last = getattr(_local, "last", None)
    if not INSTALLED or last is None:
        return None
    result, paths = last
    try:
        # args.props is pulumi_policy's unknown-checking proxy over a copy of what the recorded call
        # returned; serializing it back unwraps the proxies.
        same = _policy.serialize_properties(args.props) == result
    except Exception:  # not the proxy pulumi_policy builds
        return None
    return paths if same else None
