"""`netra:release`: the release record rendered from the release ledger (infra/release/ledger.py) before each
`pulumi up`; the ledger is the source of truth, this is what the program reads.

    netra:release:
      ledger: {generation: "1700000000000042", digest: <sha256>}   # what it was rendered from
      approvals:                      # per service key: the one revision allowed a share above 0
        backend: {revision: netra-backend-prod-1a2b3c4d, stage: 10, by: gate, evidence: <sha256>, at: <iso>}
      rollout:                        # the journal of the rollout in progress (absent when none)
        services: [backend]
        candidates: {backend: netra-backend-prod-1a2b3c4d}
        scope: stack                  # stack: netra:canaryPercent carries the stage; service: per-service overrides
        live: 10                      # the last stage whose `pulumi up` succeeded (-1: none yet)
        stables: {backend: netra-backend-prod-a41c9e07}
        backup: "1700000000099"       # the on-demand Cloud SQL backup taken before the migration job
        migrated: true
        loadTest: pass:<sha256>       # the load test at 0 % (netra:verification.loadTest) passed
        rejected: "why"               # set before the rollback update: the candidates never climb again
        failed: false                 # true when a failure (not a verdict) caused the rollback
        finalizing: true              # set with stableRevision := candidate
        released: true                # the finalize update succeeded
        tagged: false
      bake:                           # per service key: the bake window after a release (finalize)
        backend: {revision: netra-backend-prod-1a2b3c4d, previous: netra-backend-prod-a41c9e07,
                  until: "2026-11-25T10:00:00+00:00", started: "2026-11-23T10:00:00+00:00"}
      flagRamp:                       # the journal of a feature-flag ramp in progress (infra/flag_ramp.py)
        flag: semantic_cache
        services: [backend]           # whose arms the gate judges
        revisions: {backend: netra-backend-prod-a41c9e07}   # serving while the evidence is gathered
        from: 0                       # the percent when the ramp began
        live: 10
      flagApprovals:                  # per flag: the stage its ramp was approved (or rejected) at
        semantic_cache: {stage: 10, by: gate, evidence: <sha256>, revisions: {backend: ...}, at: <iso>}

The program reads `approvals` (infra.release.decide_share), `flagApprovals` with `flagRamp` (no flag
percent above the stage after the approved one) and `bake` (the `previous` traffic tag at 0 % while
`revision` is the service's stableRevision); the rollout driver and `python -m infra bake` own them all.
"""
from __future__ import annotations

import datetime as dt

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, field_validator

from .base import Bool, ConfigModel, Float, Int, ResourceName, text

# <who> of `operator:<who>` in an approval record: a login or an email (`approve --by`, `rollback`)
LOGIN_CHARS = r"A-Za-z0-9._@\-"
OPERATOR_LOGIN = rf"[{LOGIN_CHARS}]{{1,64}}"

class ApprovalRecord(ConfigModel):
    revision: ResourceName = Field(description="the exact candidate revision approved")
    stage: Int = Field(ge=0, le=100, description="the stage (percent) it was approved at")
    by: text(73, rf"gate|verify|operator:{OPERATOR_LOGIN}", "gate, verify or operator:<who>") = Field(
                    description="gate (promote verdict), verify (0 % checks) or operator:<who>")
    evidence: text(64, r"[0-9a-f]{64}", "a SHA-256 in hex") = Field(description="SHA-256 of the verdict / verification / note")
    at: text(64) = Field("", description="when (ISO 8601, UTC)")
    rejected: Bool = Field(False, description="a rollback verdict: no share above 0, ever")


class RolloutJournal(ConfigModel):
    services: tuple[str, ...] = Field((), description="the service keys this rollout moves")
    candidates: dict[str, ResourceName] = Field(default_factory=dict, description="service key -> the candidate it moves")
    stables: dict[str, Optional[ResourceName]] = Field(default_factory=dict, description="service key -> stable revision at the start")
    scope: Literal["stack", "service"] = Field("stack", description="which key carries the stage")
    live: Int = Field(-1, ge=-1, le=100, description="the last stage whose pulumi up succeeded (-1: none yet)")
    migrated: Bool = Field(False, description="the migration job ran in this rollout")
    backup: Optional[str] = Field(None, description="id of the Cloud SQL backup taken before the migration job")
    load_test: Optional[str] = Field(None, description="the load test's decision and verdict digest, pass:<sha256>")
    rejected: Optional[str] = Field(None, description="why the candidates are being rolled back")
    failed: Bool = Field(False, description="the rollback was caused by a failure, not a verdict (exit 4)")
    finalizing: Bool = Field(False, description="stableRevision := candidate written, its pulumi up not done")
    released: Bool = Field(False, description="the finalize pulumi up succeeded")
    tagged: Bool = Field(False, description="the release's git tag was pushed")
    started: text(64) = Field("", description="when (ISO 8601, UTC)")


class BakeRecord(ConfigModel):
    revision: ResourceName = Field(description="the released revision under watch (the stableRevision it was released as)")
    previous: ResourceName = Field(description="the stable revision before the release: tagged `previous` at 0 %")
    until: text(64) = Field(description="when the bake window ends (ISO 8601, UTC)")
    started: text(64) = Field("", description="when the release was finalized (ISO 8601, UTC)")

    @field_validator("until", "started")
    @classmethod
    def _iso(cls, v: str, info) -> str:
        # `bake` closes a window whose end has passed: an unreadable end must not close it silently
        if v or info.field_name == "until":
            try:
                dt.datetime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"must be an ISO 8601 time like 2026-11-25T10:00:00+00:00, got {v!r}") from None
        return v


FlagName = text(63, r"[a-z][a-z0-9_]*", "a flag name (lowercase letters, digits, _)")
Percent = Annotated[Float, Field(ge=0, le=100)]


class FlagApprovalRecord(ConfigModel):
    stage: Percent = Field(description="the percent the flag's arms were judged at")
    by: text(73, rf"gate|operator:{OPERATOR_LOGIN}", "gate or operator:<who>") = Field(
        description="gate (promote or rollback verdict on the arms) or operator:<who>")
    evidence: text(64, r"[0-9a-f]{64}", "a SHA-256 in hex") = Field(description="SHA-256 of the verdicts / note")
    revisions: dict[str, Optional[ResourceName]] = Field(
        default_factory=dict, description="service key -> the revision serving when judged: the record binds to them")
    at: text(64) = Field("", description="when (ISO 8601, UTC)")
    rejected: Bool = Field(False, description="a rollback verdict: no percent above 0 on these revisions")


class FlagRampJournal(ConfigModel):
    flag: FlagName = Field(description="the flag ramping")
    services: tuple[str, ...] = Field((), description="the service keys whose arms the gate judges")
    revisions: dict[str, Optional[ResourceName]] = Field(default_factory=dict, description="service key -> revision serving")
    from_: Percent = Field(0, alias="from", description="the percent when the ramp began")
    live: Annotated[Float, Field(ge=-1, le=100)] = Field(
        -1, description="the last percent whose pulumi up succeeded (-1: none yet)")
    rejected: Optional[str] = Field(None, description="why the flag is being rolled back to 0 %")
    failed: Bool = Field(False, description="the rollback was caused by a failure, not a verdict (exit 4)")
    started: text(64) = Field("", description="when (ISO 8601, UTC)")


class LedgerStamp(ConfigModel):
    generation: text(24, r"[0-9]{1,20}", "a ledger generation (digits)") = Field(
        description="the ledger generation this release record was rendered from")
    digest: text(64, r"[0-9a-f]{64}", "a SHA-256 in hex") = Field(
        description="SHA-256 of the release record and the stable revisions (infra/release/view.py)")


class ReleaseConfig(ConfigModel):
    ledger: Optional[LedgerStamp] = Field(None, description="written by the release commands: the ledger generation "
                                                              "and digest this record was rendered from")
    approvals: dict[str, ApprovalRecord] = Field(default_factory=dict)
    rollout: Optional[RolloutJournal] = None
    flag_ramp: Optional[FlagRampJournal] = None
    flag_approvals: dict[FlagName, FlagApprovalRecord] = Field(default_factory=dict)
    bake: dict[str, BakeRecord] = Field(default_factory=dict, description="service key -> its bake window")
    reached: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="service key (or flag:<name>) -> the highest stage its candidate was live at "
                                          "(`approve` needs the stage reached)")
