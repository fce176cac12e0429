"""Revision names and traffic tables: pure functions, no Pulumi.

Cloud Run keeps every revision and the service template describes only the newest one. We name the
candidate revision after a hash of its template, so the name changes exactly when the template does,
and we route traffic to revisions by name only (never LATEST), so a template edit can never receive
traffic by accident. A stage change therefore touches nothing but the traffic block.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, is_dataclass, replace
from typing import Any, Optional, Sequence

STABLE_TAG = "stable"
CANARY_TAG = "canary"
PREVIOUS_TAG = "previous"  # the stable revision before the last release, at 0 % during its bake window


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


def traffic_plan(service_name: str, candidate: str, stable: Optional[str], canary_percent: int,
                 previous: Optional[str] = None) -> TrafficPlan:
    """The traffic block for one service at one stage.

    - no stable revision yet (first deploy): the candidate takes 100 %, with a warning;
    - stable == candidate (finalized): that revision takes 100 % under the `stable` tag;
    - otherwise stable keeps 100 - p %, the candidate p %; p = 0 is the rollback;
    - during a bake window, `previous` (the stable revision before the release) is kept at 0 % under
      the `previous` tag: Cloud Run keeps serving it the moment `rollback` gives it 100 % again.
    """
    plan = _traffic_plan(service_name, candidate, stable, canary_percent)
    if previous is None or stable is None or previous in (stable, candidate):
        return plan
    return replace(plan, targets=plan.targets + (TrafficTarget(previous, 0, PREVIOUS_TAG),))


def _traffic_plan(service_name: str, candidate: str, stable: Optional[str], canary_percent: int) -> TrafficPlan:
    if not 0 <= canary_percent <= 100:
        raise ValueError(f"canary_percent must be within 0..100, got {canary_percent}")
    if stable is None:
        # Cloud Run sends a new service's requests to its only revision, so the stage shows in the tag:
        # `canary` (its own URL, verified by the rollout) until it was approved for 100 %, then `stable`.
        if canary_percent == 100:
            return TrafficPlan((TrafficTarget(candidate, 100, STABLE_TAG),),
                               (f"{service_name}: no stableRevision, first deploy at 100 %: {candidate} becomes stable",))
        return TrafficPlan(
            (TrafficTarget(candidate, 100, CANARY_TAG),),
            (f"{service_name}: no stableRevision, first deploy: candidate {candidate} is the service's only revision "
             f"(stage {canary_percent} %, tag canary); the rollout verifies it before it takes the stable tag at 100 %",),
        )
    if stable == candidate:
        return TrafficPlan((TrafficTarget(stable, 100, STABLE_TAG),))
    return TrafficPlan((
        TrafficTarget(stable, 100 - canary_percent, STABLE_TAG),
        TrafficTarget(candidate, canary_percent, CANARY_TAG),
    ))


# ---------------------------------------------------------------------------------------------------
# approvals: which share a candidate may have

FIRST_DEPLOY_LADDER = (0, 100)


@dataclass(frozen=True)
class Approval:
    """`revision` passed the checks of `stage` %: verdict of the gate, verification at 0 %, or an operator."""

    revision: str
    stage: int
    by: str  # gate | verify | operator:<who>
    evidence: str  # SHA-256 of the evidence document (verdict JSON, verification report, operator note)
    rejected: bool = False


@dataclass(frozen=True)
class Verdict:
    """What a check (gate or verification) answers, naming what it judged: decision, revision, stage and
    the digest of its evidence. The rollout only records an approval whose revision and stage it asked for."""

    decision: str  # promote | rollback | hold
    revision: str
    stage: int
    evidence: str
    reason: str = ""
    by: str = "gate"
    worth: Optional[dict] = None  # the gate's `value` (infra.canary.report.worth): effects, intervals, saving


def evidence_digest(document: Any) -> str:
    """SHA-256 over the canonical JSON of an evidence document."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ladder_for(stable: Optional[str], stages: Sequence[int]) -> tuple[int, ...]:
    """The stages a candidate climbs: the configured ladder, or 0 -> 100 on a first deploy (nothing to
    compare with, so verification at 0 % is the only check)."""
    return FIRST_DEPLOY_LADDER if stable is None else tuple(stages)


def next_stage(ladder: Sequence[int], stage: int) -> int:
    higher = [s for s in ladder if s > stage]
    return higher[0] if higher else ladder[-1]


def allowed_flag_percent(stages: Sequence[int], approved_stage: Optional[float], rejected: bool,
                         ramp_live: Optional[float]) -> float:
    """The highest percent a ramp flag may be configured at. `approved_stage`: the stage of the flag's
    record in netra:release.flagApprovals made on the revisions serving now (None: no such record);
    `ramp_live`: `rollout --flag` has this flag's journal open, at this live percent (None: no ramp).

    - rejected (a rollback verdict on these revisions): 0, until an operator approves or the code changes;
    - approved at a stage: up to the next stage (asking for more skips a stage);
    - no record during a ramp: up to the first stage above 0 (what starting the ramp authorizes), or the
      live percent if higher (the readers' code changed under the ramp, e.g. a bake rollback: the flag
      keeps its percent until the ramp judges it again; it never climbs without evidence);
    - no record, no ramp: a flag set by hand, unconstrained (the documented manual ramp)."""
    if approved_stage is None:
        if ramp_live is None:
            return 100
        return max(stages[1] if len(stages) > 1 else stages[-1], ramp_live)
    return 0 if rejected else next_stage(stages, approved_stage)


def allowed_share(candidate: str, stable: Optional[str], approval: Optional[Approval], stages: Sequence[int]) -> int:
    """The highest share `candidate` may get: the stage above the one it was approved at, else 0."""
    if approval is None or approval.revision != candidate or approval.rejected:
        return 0
    return next_stage(ladder_for(stable, stages), approval.stage)


@dataclass(frozen=True)
class ShareDecision:
    percent: int  # the candidate's stage after the approval rule
    warnings: tuple[str, ...] = ()
    problem: Optional[str] = None  # a skipped stage: refused, the message says how to proceed


def decide_share(service: str, candidate: str, stable: Optional[str], requested: int,
                 approval: Optional[Approval], stages: Sequence[int]) -> ShareDecision:
    """The stage a candidate really gets for the configured `requested` one.

    - finalized (stable == candidate) or 0 asked: as asked;
    - no approval for this exact revision (a new template, or a rejected candidate): 0 %, with a warning
      (a template edit while a canary is live never inherits the live share);
    - approved: up to the stage above the approved one; asking for more is a skipped stage and refused.
    """
    if stable == candidate or requested == 0:
        return ShareDecision(requested)
    allowed = allowed_share(candidate, stable, approval, stages)
    how = (f"run `python -m infra rollout --stack <stack> --service {service}`, or approve it explicitly with "
           f"`python -m infra approve --stack <stack> --service {service} --revision {candidate} --stage <stage> --note <why>`")
    if allowed == 0:
        if approval is not None and approval.revision == candidate and approval.rejected:
            why = f"{candidate} was rolled back (rejected at {approval.stage} %)"
        elif approval is not None:
            why = f"the approval names {approval.revision} (at {approval.stage} %), not the candidate {candidate}"
        else:
            why = f"{candidate} has no approval"
        return ShareDecision(0, (f"{service}: canaryPercent {requested} asked, but {why}: the candidate is deployed "
                                 f"at 0 % instead; to give it traffic, {how}",))
    if requested > allowed:
        return ShareDecision(requested, problem=(
            f"canaryPercent {requested} skips a stage: {candidate} is approved at {approval.stage} % (by {approval.by}), "
            f"so the highest stage it may get is {allowed} %; set {allowed} (or lower), or {how}"))
    return ShareDecision(requested)


ANNOTATION_PREFIX = "netra.dev/"


def approval_annotations(approval: Optional[Approval], stable: Optional[str], stages: Sequence[int]) -> dict[str, str]:
    """Service annotations the policy pack reads beside the traffic block (`cloudrun-traffic-approved`).
    They do not change between stages, so a stage change stays a traffic-only diff."""
    out = {
        ANNOTATION_PREFIX + "first-deploy": "true" if stable is None else "false",
        ANNOTATION_PREFIX + "stages": ",".join(str(s) for s in stages),
    }
    if approval is not None:
        out.update({
            ANNOTATION_PREFIX + "approved-revision": approval.revision,
            ANNOTATION_PREFIX + "approved-stage": str(approval.stage),
            ANNOTATION_PREFIX + "approved-by": approval.by,
            ANNOTATION_PREFIX + "approval-evidence": approval.evidence,
            ANNOTATION_PREFIX + "approval-rejected": "true" if approval.rejected else "false",
        })
    return out


def override_warnings(stack_percent: int, overrides: dict[str, Optional[int]], rollout_keys: Sequence[str] = ()) -> list[str]:
    """One source of stage truth: a per-service canaryPercent that no `rollout --service` is using shadows
    netra:canaryPercent, so the manual ladder would not move that service. Say so, and how to fix it."""
    out = []
    for key in sorted(overrides):
        value = overrides[key]
        if value is None or key in rollout_keys:
            continue
        out.append(f"{key}: netra:services.{key}.canaryPercent {value} overrides netra:canaryPercent {stack_percent}, so "
                   f"`pulumi config set netra:canaryPercent ...` does not move {key}; remove it with `pulumi config rm "
                   f"--path netra:services.{key}.canaryPercent` (overrides belong to a running `rollout --service`)")
    return out
