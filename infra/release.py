"""Revision names and traffic tables: pure functions, no Pulumi.

Cloud Run keeps every revision and the service template describes only the newest one. We name the
candidate revision after a hash of its template, so the name changes exactly when the template does,
and we route traffic to revisions by name only (never LATEST), so a template edit can never receive
traffic by accident. A stage change therefore touches nothing but the traffic block.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Optional

STABLE_TAG = "stable"
CANARY_TAG = "canary"


def template_hash(spec: Any) -> str:
    """8 hex characters of a SHA-256 over the canonical JSON of a revision template spec."""
    data = asdict(spec) if is_dataclass(spec) else spec
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def candidate_revision(service_name: str, spec: Any) -> str:
    """`<service name>-<8 hex>`: Cloud Run refuses revision names not prefixed by the service name."""
    return f"{service_name}-{template_hash(spec)}"


@dataclass(frozen=True)
class TrafficTarget:
    revision: str
    percent: int
    tag: str


@dataclass(frozen=True)
class TrafficPlan:
    targets: tuple[TrafficTarget, ...]
    warnings: tuple[str, ...] = ()

    @property
    def candidate_percent(self) -> int:
        return sum(t.percent for t in self.targets if t.tag == CANARY_TAG)


def traffic_plan(service_name: str, candidate: str, stable: Optional[str], canary_percent: int) -> TrafficPlan:
    """The traffic block for one service at one stage.

    - no stable revision yet (first deploy): the candidate takes 100 %, with a warning;
    - stable == candidate (finalized): that revision takes 100 % under the `stable` tag;
    - otherwise stable keeps 100 - p %, the candidate p %; p = 0 is the rollback.
    """
    if not 0 <= canary_percent <= 100:
        raise ValueError(f"canary_percent must be within 0..100, got {canary_percent}")
    if stable is None:
        return TrafficPlan(
            (TrafficTarget(candidate, 100, CANARY_TAG),),
            (f"{service_name}: no stableRevision, first deploy: candidate {candidate} takes 100 % of traffic"
             + (f" (canaryPercent {canary_percent} applies once a stable revision exists)" if canary_percent != 100 else ""),),
        )
    if stable == candidate:
        return TrafficPlan((TrafficTarget(stable, 100, STABLE_TAG),))
    return TrafficPlan((
        TrafficTarget(stable, 100 - canary_percent, STABLE_TAG),
        TrafficTarget(candidate, canary_percent, CANARY_TAG),
    ))
