"""The revision release kind: new candidate revisions of services climb the traffic ladder.

`Release` is what `rollout` releases (its stage lives in `netra:canaryPercent`, or per service in
`netra:services.<key>.canaryPercent` with --service); `STEPS` is its table (the first row whose
condition holds on the fresh state runs; the functions are in steps.py). `plan_release` builds it from
the stack's plan, `resume` from a journal in progress.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Optional

from infra.release import model as rel
from infra.release import steps as st
from infra.release.state import STACK_PERCENT_KEY, Step, Target, decode, read_release_doc


@dataclass(frozen=True)
class Release:
    stack: str
    targets: tuple[Target, ...]
    stages: tuple[int, ...]
    scope: str = "stack"  # stack: netra:canaryPercent carries the stage; service: per-service overrides
    has_migration: bool = False
    project: str = ""
    region: str = ""
    backup_before_migrate: bool = False  # a Cloud SQL backup precedes the migration job
    load_test_service: Optional[str] = None  # the key whose candidate the load test loads at 0 %
    bake_hours: float = 0.0  # netra:verification.bake.hours: the previous revision stays one step away

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.targets]

    @property
    def first_deploy(self) -> bool:
        return all(t.stable is None for t in self.targets)

    @property
    def ladder(self) -> tuple[int, ...]:
        return rel.FIRST_DEPLOY_LADDER if self.first_deploy else self.stages

    @property
    def candidates(self) -> dict[str, str]:
        return {t.key: t.candidate for t in self.targets}

    def stage_keys(self) -> list[str]:
        if self.scope == "stack":
            return [STACK_PERCENT_KEY]
        return [f"netra:services.{k}.canaryPercent" for k in self.keys]

    # What the shared steps and the Driver ask of the thing being released. A revision rollout moves
    # candidate revisions by traffic share; `infra.release.flag.FlagRelease` moves a feature flag's percent
    # with the same steps, the same Driver and the same journal discipline, under its own journal key.
    journal_key: ClassVar[str] = "rollout"  # netra:release.<journal_key>

    @property
    def steps(self) -> tuple[Step, ...]:
        return STEPS

    def desired(self, config: dict) -> int:
        return desired_stage(self, config)

    def approved(self, doc: dict, stage: int) -> bool:
        """Every candidate approved (not rejected) at `stage` or above."""
        for t in self.targets:
            a = (doc.get("approvals") or {}).get(t.key)
            if not a or a.get("revision") != t.candidate or a.get("rejected") or int(a.get("stage", -1)) < stage:
                return False
        return True

    def record_check(self, doc: dict, verdicts: dict[str, rel.Verdict], rejected: Optional[str]) -> None:
        """Into `doc`: the approvals of a check at one stage (every verdict), or the rejection of one key."""
        if rejected:
            doc["approvals"] = {**doc.get("approvals", {}), rejected: st.approval_record(verdicts[rejected], rejected=True)}
        else:
            doc["approvals"] = {**doc.get("approvals", {}), **{k: st.approval_record(v) for k, v in verdicts.items()}}

    def mark_reached(self, doc: dict, stage: int) -> None:
        """Into `doc["reached"]`: per service, the highest stage its candidate was live at (approve needs it)."""
        reached = dict(doc.get("reached") or {})
        for t in self.targets:
            before = reached.get(t.key) or {}
            top = int(before.get("stage", -1)) if before.get("revision") == t.candidate else -1
            reached[t.key] = {"revision": t.candidate, "stage": max(top, stage)}
        doc["reached"] = reached

    def forget_approvals(self, doc: dict) -> None:
        """A failure (not a verdict): the candidates lose their approvals and start again from verification."""
        doc["approvals"] = {k: a for k, a in doc["approvals"].items()
                            if not (k in self.candidates and a.get("revision") == self.candidates[k])}

    def closing_removals(self) -> tuple[str, ...]:
        return tuple(k for k in self.stage_keys() if self.scope == "service")

    def up_message(self, why: str) -> str:
        return f"netra rollout: {why}"

    def stage_fields(self) -> dict:
        return {"revisions": self.candidates}

    @property
    def nothing_live(self) -> str:
        return "the candidate has no traffic"

    @property
    def checked_stages(self) -> list[int]:
        return [s for s in self.ladder if s < self.ladder[-1]]

    @property
    def describe(self) -> str:
        return (f"{', '.join(f'{t.key} {t.candidate}' for t in self.targets)} along {list(self.ladder)}"
                + (" (first deploy)" if self.first_deploy else ""))

    @property
    def rolled_back_state(self) -> str:
        return "the stable revisions serve 100 %"


def desired_stage(release: Release, config: dict) -> int:
    if release.scope == "stack":
        return int(decode(config.get(STACK_PERCENT_KEY, 0)) or 0)
    services = decode(config.get("netra:services")) or {}
    values = {int((services.get(k) or {}).get("canaryPercent") or 0) for k in release.keys}
    return max(values) if values else 0


STEPS: tuple[Step, ...] = (
    Step("refuse", lambda s: st.is_stale(s) and bool(st.rejected_before(s)), st.step_refuse),
    Step("begin", st.is_stale, st.step_begin),
    Step("retreat", lambda s: st.is_rejected(s) and s.desired != 0, st.step_retreat),
    # after the stage-0 `pulumi up` (it uploads the release's migration files and updates the job), before
    # the verification at 0 % and any traffic
    Step("backup", lambda s: s.release.backup_before_migrate and s.release.has_migration
         and not st.journal_of(s).get("backup") and not st.journal_of(s).get("migrated") and s.live == 0 and not st.is_rejected(s),
         st.step_backup),
    Step("migrate", lambda s: s.release.has_migration and not st.journal_of(s).get("migrated") and s.live == 0
         and not st.is_rejected(s), st.step_migrate),
    Step("finalize-up", lambda s: st.journal_of(s).get("finalizing") and not st.journal_of(s).get("released"), st.step_finalize_up),
    Step("tag", lambda s: s.tag and bool(st.journal_of(s).get("released")) and not st.journal_of(s).get("tagged"), st.step_tag),
    Step("done", lambda s: bool(st.journal_of(s).get("released")), st.step_done),
    Step("apply", lambda s: s.desired != s.live, st.step_apply),
    Step("rolled-back", st.is_rejected, st.step_rolled_back),
    Step("check", lambda s: s.live < s.release.ladder[-1] and not s.approved_at(s.live), st.step_check),
    Step("load-test", lambda s: bool(s.release.load_test_service) and s.live == 0 and s.approved_at(0)
         and not st.journal_of(s).get("loadTest") and not st.is_rejected(s), st.step_load_test),
    Step("finalize", lambda s: s.live == s.release.ladder[-1], st.step_finalize),
    Step("climb", lambda s: s.approved_at(s.live), st.step_climb),
)


def resume(release: Release, config: dict, every: dict[str, Target]) -> Release:
    """What to roll out, given the recorded config. A journal whose candidates are still the plan's is
    resumed as it was (its services, scope and original stable revisions, whatever --service says now);
    otherwise the release's services whose candidate is not yet their stable revision."""
    journal = read_release_doc(config).get("rollout")
    if journal:
        cands = journal.get("candidates") or {}
        if cands and all(k in every and every[k].candidate == c for k, c in cands.items()):
            stables = journal.get("stables") or {}
            targets = tuple(replace(every[k], stable=stables.get(k, every[k].stable)) for k in sorted(cands))
            return replace(release, targets=targets, scope=journal.get("scope", release.scope))
    services = decode(config.get("netra:services")) or {}
    return replace(release, targets=tuple(
        t for t in release.targets if ((services.get(t.key) or {}).get("stableRevision") or None) != t.candidate))


def plan_release(stack: str, service: Optional[str]) -> tuple[Release, dict, Any, dict[str, Target]]:
    """The release (targets with a new candidate), plan outputs, the typed config and every service as a
    target (raises StackError)."""
    from infra.canary.stack import StackError, plan_outputs, service_info
    from infra.config import ConfigError, load_stack_config
    from infra.plan.stackfile import StackFileError, read_stack

    outputs = plan_outputs(stack)
    try:
        cfg = load_stack_config(read_stack(stack).config, stack)
    except (ConfigError, StackFileError) as exc:
        raise StackError(f"--stack {stack}: {exc}") from None
    services = outputs.get("services") or {}
    if service is not None:
        keys = [service_info(outputs, service).key]
    else:
        keys = [k for k in sorted(services) if services[k].get("candidateRevision") != services[k].get("stableRevision")]
    every = {k: Target(k, s["serviceName"], s["candidateRevision"], s.get("stableRevision") or None,
                       s.get("url") or "", cfg.services[k].health_check_path if k in cfg.services else "/health")
             for k, s in services.items()}
    targets = [every[k] for k in keys]
    if targets and len({t.stable is None for t in targets}) > 1:
        firsts = ", ".join(t.key for t in targets if t.stable is None)
        raise StackError(f"--service: {firsts} deploy for the first time (ladder 0 -> 100) while the others climb "
                         f"{list(cfg.stages)}; roll them out one at a time with --service")
    lt = outputs.get("loadTestJob") or {}
    lt_key = next((k for k, s in services.items() if s.get("serviceName") == lt.get("service")), None)
    release = Release(stack, tuple(targets), tuple(cfg.stages), "service" if service else "stack",
                      bool(outputs.get("migrationJob")), outputs.get("gcpProject", ""), outputs.get("region", ""),
                      backup_before_migrate=bool(outputs.get("migrationJob")),
                      load_test_service=lt_key if lt_key in keys else None, bake_hours=cfg.verification.bake.hours)
    return release, outputs, cfg, every


