"""The steps of a release, one function each. A step gets the Driver (its effects and writes) and the
fresh `State`, does one thing, records it, and returns None (the loop goes on) or an `Outcome` (the
command ends). Which step runs when is the kind's table: revision.STEPS, flag.FLAG_STEPS.

    begin       journal the candidates, stage 0, no stale overrides
    retreat     rejected and a stage above 0 configured: configure 0 %
    backup      a Cloud SQL backup before the migration job
    migrate     the migration job, after the stage-0 `pulumi up` (which uploads this release's migration
                files and updates the job) and before the verification at 0 % and any traffic
    apply       the configured stage is not the live one: `pulumi up`, then live := stage
    rolled_back rejected and back at 0 % live: close the journal; exit 1 (4 when a failure caused it)
    finalize_up finalizing written: `pulumi up`, then released
    tag         released and --tag: `git tag -a`
    done        released: close the journal; exit 0
    check       live stage not yet approved: verification at 0 %, the gate above 0 -> approval, rejection, hold
    load_test   at 0 %, verified: the load test against the candidate
    finalize    live at 100 %: stableRevision := candidate, stage 0, finalizing (bake windows open)
    climb       approved at the live stage: configure the next stage
    refuse      a candidate rejected before: nothing done, exit 1
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Optional

from infra.canary.verdict import worth_summary
from infra.release import model as rel
from infra.release.bake import bake_records
from infra.release.state import (EXIT_FAILED, EXIT_HELD, EXIT_RELEASED, EXIT_ROLLED_BACK,
                                 STACK_PERCENT_KEY, OperationFailed, Outcome, State, decode, now)

if TYPE_CHECKING:
    from infra.release.driver import Driver


def journal_of(s: State) -> dict:
    return s.journal or {}


def is_stale(s: State) -> bool:
    j = s.journal
    return j is None or j.get("candidates") != s.release.candidates or j.get("scope") != s.release.scope


def step_begin(d: "Driver", s: State) -> None:
    old = s.journal
    if old is not None:
        d.log(f"the journal names other candidates ({old.get('candidates')}): that rollout is abandoned; "
              f"the new candidates start at 0 %")
    journal = {"services": s.release.keys, "candidates": s.release.candidates, "scope": s.release.scope,
               "stables": {t.key: t.stable for t in s.release.targets}, "live": -1, "migrated": False,
               "started": now()}
    # a new release of a baking service ends that bake: its canary gate is the safety net now
    ended = sorted(k for k in (s.doc.get("bake") or {}) if k in s.release.candidates)
    if ended:
        d.log(f"a new release ends the bake window of {', '.join(ended)} (the `previous` tag is dropped)")

    def begin(record: dict) -> None:
        record["rollout"] = journal
        record["bake"] = {k: b for k, b in (record.get("bake") or {}).items() if k not in s.release.candidates}

    values = {k: 0 for k in s.release.stage_keys()}
    # one source of stage truth: a stack-scope rollout leaves no per-service override on its services
    stale = [f"netra:services.{k}.canaryPercent" for k in s.release.keys
             if s.release.scope == "stack" and "canaryPercent" in ((decode(s.config.get("netra:services")) or {}).get(k) or {})]
    d.update("begin: journal the candidates at stage 0" + (f", remove stale overrides {', '.join(stale)}" if stale else ""),
             release=begin, values=values, remove=tuple(stale))
    d.notify("start", f"{', '.join(f'{k} {c}' for k, c in s.release.candidates.items())} along {list(s.release.ladder)}",
             services=s.release.keys, ladder=list(s.release.ladder))


def step_retreat(d: "Driver", s: State) -> None:
    d.write({k: 0 for k in s.release.stage_keys()}, what=f"rollback: stage 0 ({journal_of(s).get('rejected')})")


def step_backup(d: "Driver", s: State) -> Optional[Outcome]:
    """Seed 000 "Database Backup: full production database backup created" before the schema changes."""
    try:
        backup_id = d.effect("backup", d.backup, "(on-demand Cloud SQL backup, before the migration job)")
    except Exception as exc:  # noqa: BLE001 - any API error: nothing migrated, nothing moved
        d.notify("failure", f"the backup before the migration failed: {exc}; nothing migrated")
        return Outcome(EXIT_FAILED, f"the backup before the migration failed ({exc}): no migration ran, the candidate "
                                    f"serves no traffic (0 %); rerun to retry")
    d.record(lambda j: j.update(backup=str(backup_id)), f"backup {backup_id}")
    d.notify("backup", f"backup {backup_id} taken before the migrations", backup=str(backup_id))
    return None


def step_load_test(d: "Driver", s: State) -> Optional[Outcome]:
    """Seed 001 phase 1 at 0 %: the load test against the candidate's tagged URL, before any traffic."""
    t = next(t for t in s.release.targets if t.key == s.release.load_test_service)
    try:
        verdict = d.effect("load test", lambda: d.load_test(t), f"{t.key} {t.candidate} at 0 %")
    except Exception as exc:  # noqa: BLE001 - the job or its results could not be had: a failure, exit 4
        why = f"the load test failed to run ({type(exc).__name__}: {exc})"
        d.fail(s, why)
        d.notify("failure", why + "; rolling back", stage=0)
        return None
    digest = rel.evidence_digest(verdict)
    d.notify("verdict", f"{t.key} load test: {verdict.get('decision')} ({verdict.get('reason')})", service=t.key,
             stage=0, decision=verdict.get("decision"), revision=t.candidate, evidence=digest, by="loadtest")
    if verdict.get("decision") == "pass":
        d.record(lambda j: j.update(loadTest=f"pass:{digest}"), f"load test passed ({digest[:12]}…)")
        return None
    why = f"the load test rejected {t.key} at 0 %: {verdict.get('reason')}"
    def reject(record: dict) -> None:
        record["approvals"] = {**record.get("approvals", {}), t.key: {
            "revision": t.candidate, "stage": 0, "by": "verify", "evidence": digest, "at": now(), "rejected": True}}
        record["rollout"] = {**(record.get("rollout") or {}), "rejected": why}

    d.update(f"record the rejection of {t.candidate} by the load test", release=reject)
    return None


def step_migrate(d: "Driver", s: State) -> Optional[Outcome]:
    try:
        d.effect("migrate", d.migrate, "(the migration job, before any traffic moves)")
    except OperationFailed as exc:
        d.notify("failure", f"migration failed: {exc}; the candidate serves no traffic (0 %)")
        return Outcome(EXIT_FAILED, f"the migration job failed ({exc}): the candidate serves no traffic (0 %); "
                                    f"rerun to retry")
    d.record(lambda j: j.update(migrated=True), "migrated")
    return None


def step_apply(d: "Driver", s: State) -> Optional[Outcome]:
    stage, rejected = s.desired, journal_of(s).get("rejected")
    why = f"rollback to 0 % ({rejected})" if rejected else f"stage {stage} %"
    try:
        d.up(s.release.up_message(why), f"({why})")
    except OperationFailed as exc:
        if rejected:
            d.notify("failure", f"the rollback update failed: {exc}")
            return Outcome(EXIT_FAILED, f"{rejected}; the rollback update FAILED ({exc}): rerun `rollout` to retry, "
                                        f"or `python -m infra rollback --stack {s.release.stack} --direct`")
        if stage <= 0 or journal_of(s).get("live", -1) <= 0:
            d.notify("failure", f"pulumi up failed at stage {stage} %: {exc}")
            return Outcome(EXIT_FAILED, f"pulumi up failed at stage {stage} % ({exc}); {s.release.nothing_live}; "
                                        f"rerun to retry")
        d.fail(s, f"pulumi up failed at stage {stage} %: {exc}")
        d.notify("failure", f"pulumi up failed at stage {stage} %: {exc}; rolling back")
        return None
    key = s.release.journal_key

    def applied(record: dict) -> None:
        record[key] = {**(record.get(key) or {}), "live": stage}
        if not rejected:  # what an operator may approve at (`approve`): the stages a candidate really served
            s.release.mark_reached(record, stage)

    d.update(f"live at {stage} %", release=applied)
    if rejected:
        d.notify("rollback", f"rolled back to 0 %: {rejected}", stage=0)
    else:
        d.notify("stage_up", f"{stage} % live", stage=stage, **s.release.stage_fields())
    return None


def step_rolled_back(d: "Driver", s: State) -> Outcome:
    j = journal_of(s)
    d.close_journal(s)
    code = EXIT_FAILED if j.get("failed") else EXIT_ROLLED_BACK
    return Outcome(code, f"{j.get('rejected')}; rolled back: {s.release.rolled_back_state}")


def step_finalize_up(d: "Driver", s: State) -> Optional[Outcome]:
    try:
        d.up("netra rollout: finalize", "(finalize)")
    except OperationFailed as exc:
        d.notify("failure", f"pulumi up failed while finalizing: {exc}")
        return Outcome(EXIT_FAILED, f"pulumi up failed while finalizing ({exc}); the candidates serve 100 %; "
                                    f"rerun to finish")
    d.record(lambda j: j.update(released=True), "released")
    d.notify("finalize", "the candidates are the stable revisions", revisions=s.release.candidates)
    return None


def step_tag(d: "Driver", s: State) -> Optional[Outcome]:
    try:
        d.effect("git tag", d.tag)
    except OperationFailed as exc:
        d.notify("failure", f"released, but tagging failed: {exc}")
        return Outcome(EXIT_FAILED, f"released, but tagging the commit failed ({exc}); rerun to retry the tag")
    d.record(lambda j: j.update(tagged=True), "tagged")
    return None


def step_done(d: "Driver", s: State) -> Outcome:
    d.close_journal(s)
    d.notify("released", f"released: {', '.join(s.release.candidates.values())}", revisions=s.release.candidates)
    bakes = {k: b for k, b in (s.doc.get("bake") or {}).items() if b.get("revision") == s.release.candidates.get(k)}
    bake = (f"; baking until {min(b['until'] for b in bakes.values())}: `rollback` returns "
            f"{', '.join(sorted(bakes))} to the previous revision in one step, `python -m infra bake` watches"
            if bakes else "")
    return Outcome(EXIT_RELEASED, "released: the candidates are the new stable revisions"
                   + (" (tagged)" if d.tag_requested else "") + bake)


def step_check(d: "Driver", s: State) -> Optional[Outcome]:
    stage = s.live
    check = d.verify if stage == 0 else d.gate
    verdicts: dict[str, rel.Verdict] = {}
    try:
        for t in s.release.targets:
            v = d.effect("verify" if stage == 0 else "gate", lambda t=t: check(t, stage), f"{t.key} {t.candidate} at {stage} %")
            if not isinstance(v, rel.Verdict) or (v.revision, v.stage) != (t.candidate, stage):
                raise OperationFailed(f"the verdict for {t.key} names {getattr(v, 'revision', '?')} at "
                                      f"{getattr(v, 'stage', '?')} %, not {t.candidate} at {stage} %")
            verdicts[t.key] = v
            worth = {"value": v.worth} if v.worth else {}  # what the release is worth (effects, saving at 100 %)
            said = f"; worth: {worth_summary(v.worth)}" if v.worth and worth_summary(v.worth) else ""
            d.notify("verdict", f"{t.key} at {stage} %: {v.decision} ({v.reason}){said}", service=t.key,
                     stage=stage, decision=v.decision, revision=v.revision, evidence=v.evidence, by=v.by, **worth)
            if v.decision == "rollback":
                break
    except Exception as exc:  # any error inside the gate: roll back, exit 4
        why = f"the {'verification' if stage == 0 else 'gate'} failed at {stage} % ({type(exc).__name__}: {exc})"
        d.fail(s, why)
        d.notify("failure", why + "; rolling back", stage=stage)
        return None
    rejected = [k for k, v in verdicts.items() if v.decision == "rollback"]
    if rejected:
        v = verdicts[rejected[0]]
        why = f"{'verification' if stage == 0 else 'the gate'} rejected {rejected[0]} at {stage} %: {v.reason}"
        key = s.release.journal_key

        def reject(record: dict) -> None:
            s.release.record_check(record, verdicts, rejected[0])
            record[key] = {**(record.get(key) or {}), "rejected": why}

        d.update(f"record the rejection of {v.revision}", release=reject)
        return None
    if any(v.decision != "promote" for v in verdicts.values()):
        held = ", ".join(f"{k}: {v.reason}" for k, v in verdicts.items() if v.decision != "promote")
        d.notify("hold", f"held at {stage} %: {held}", stage=stage)
        return Outcome(EXIT_HELD, f"held at {stage} % ({held}); traffic stays; rerun to judge again, or roll back")
    d.update(f"record the approvals at {stage} %", release=lambda record: s.release.record_check(record, verdicts, None))
    return None


def approval_record(v: rel.Verdict, rejected: bool = False) -> dict:
    return {"revision": v.revision, "stage": v.stage, "by": v.by, "evidence": v.evidence, "at": now(),
            "rejected": rejected}


def step_finalize(d: "Driver", s: State) -> None:
    values: dict[str, Any] = {f"netra:services.{t.key}.stableRevision": t.candidate for t in s.release.targets}
    remove: tuple[str, ...] = ()
    if s.release.scope == "stack":
        values[STACK_PERCENT_KEY] = 0
    else:
        remove = tuple(s.release.stage_keys())
    bakes = bake_records(s.release, dt.datetime.now(dt.timezone.utc))

    def finalizing(record: dict) -> None:
        record["rollout"] = {**(record.get("rollout") or {}), "finalizing": True}
        record["bake"] = {**(record.get("bake") or {}), **bakes}

    d.update("finalize: stableRevision := candidate, stage 0"
             + (f", bake until {next(iter(bakes.values()))['until']}" if bakes else ""),
             release=finalizing, values=values, remove=remove)


def step_climb(d: "Driver", s: State) -> None:
    nxt = rel.next_stage(s.release.ladder, s.live)
    d.write({k: nxt for k in s.release.stage_keys()}, what=f"stage {nxt} %")


def is_rejected(s: State) -> bool:
    return bool(journal_of(s).get("rejected"))


def rejected_before(s: State) -> list[str]:
    """Candidates a finished rollout rejected (a rollback verdict): they never climb again by themselves."""
    return [t.key for t in s.release.targets
            if (a := s.approval(t.key)) and a.get("revision") == t.candidate and a.get("rejected")]


def step_refuse(d: "Driver", s: State) -> Outcome:
    keys = rejected_before(s)
    return Outcome(EXIT_ROLLED_BACK, f"{', '.join(f'{k} {s.release.candidates[k]}' for k in keys)} was rejected "
                                     f"(rolled back) before: nothing done; build a new candidate, or approve it "
                                     f"explicitly with `python -m infra approve`")


