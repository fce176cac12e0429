"""Feature-flag ramps: the reference bucketing the services implement, and the flags document's shape.

A flag in `netra:platform.featureFlags` is a plain value (bool, number, string) or a ramp
`{percent, killSwitch}` (seed 000: an optimization on for 10 % -> 50 % -> 100 % of requests, and one
optimization switched off by flag in an emergency). The services read the document from the mounted
`<env>-feature-flags` secret file (version latest, re-read when it changes: no restart) and decide per
request with `enabled(doc, flag, key)`, the key being a stable id of the caller (the user id), so a
user stays in one arm while the ramp climbs: `bucket(flag, key)` is fixed, and the ramp only moves the
threshold, so a user in the 10 % arm is still in at 50 %.

Every request of a service with a ramping flag logs `flag_arm` = `"<flag>=on"` or `"<flag>=off"`
(`arm_label`); the log-based metrics carry it as a label, and the canary gate compares the two arms
like canary against stable (infra/canary/arms.py). One flag ramps at a time (the config check), so the
arms differ in exactly one thing.

This module is dependency-free so the application can vendor it as it is.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Optional

BUCKETS = 10_000  # 0.01 % resolution


def bucket(flag: str, key: str) -> int:
    """The caller's bucket for `flag`, 0..9999: SHA-256 of "flag:key", independent across flags."""
    digest = hashlib.sha256(f"{flag}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def is_ramp(value: Any) -> bool:
    return isinstance(value, Mapping) and "percent" in value


def enabled(doc: Mapping[str, Any], flag: str, key: str) -> bool:
    """Is `flag` on for this caller? Missing flag: off. killSwitch: off for everyone, at once."""
    value = doc.get(flag)
    if is_ramp(value):
        if value.get("killSwitch"):
            return False
        return bucket(flag, key) < round(float(value["percent"]) * BUCKETS / 100)
    return value is True


def ramping(doc: Mapping[str, Any]) -> Optional[str]:
    """The flag whose ramp is between 0 and 100 % (at most one), or None."""
    found = [k for k, v in doc.items() if is_ramp(v) and not v.get("killSwitch") and 0 < float(v["percent"]) < 100]
    return found[0] if found else None


def arm_label(doc: Mapping[str, Any], key: str) -> str:
    """The `flag_arm` log field of a request: "<flag>=on|off" for the ramping flag, "" when none ramps."""
    flag = ramping(doc)
    if flag is None:
        return ""
    return f"{flag}={'on' if enabled(doc, flag, key) else 'off'}"


def load(path: str) -> dict:
    """The flags document from the mounted secret file (the application re-reads it when its mtime changes)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
