"""`python -m infra rollout | approve | status`: drive a release through the traffic ladder, crash-safe.

The rollout is a reconcile loop over a table of steps (`STEPS`). Each turn it reads the stack config (the
only state: `netra:canaryPercent` or the per-service overrides, and the journal + approvals under
`netra:release`), runs the first step whose `when` holds, and records what that step achieved right
after it achieved it. A rollout killed anywhere and started again therefore re-derives where it was:

    begin     no journal (or one for other candidates): journal the candidates, stage 0, no stale overrides
    retreat   rejected and a stage above 0 configured: configure 0 %
    migrate   fresh release with a migration job: run it before any `pulumi up`
    apply     the configured stage is not the live one: `pulumi up` (with the policy pack), then live := stage
    rolled    rejected and back at 0 % live: close the journal; exit 1 (4 when a failure caused it)
    finalize+ finalizing written: `pulumi up`, then released
    tag       released and --tag: `git tag -a`
    done      released: close the journal; exit 0
    check     live stage not yet approved: verification at 0 %, the gate above 0 -> approval, rejection or hold
    finalize  live at 100 %: stableRevision := candidate, stage 0, finalizing
    climb     approved at the live stage: configure the next stage

New steps (a load test, a backup before migrate, a bake window) are rows of `STEPS` with their own
`when` over the recorded state and their own journal field. Exit codes: 0 released, 1 rolled back,
2 usage, 3 held, 4 failed.

`rollout --flag NAME` ramps a feature flag on the same Driver and most of the same steps: what is
released is a `Release` here and an `infra.flag_ramp.FlagRelease` there (journal key, stage key,
approvals, messages are theirs); see infra/flag_ramp.py.
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from infra import release as rel

EXIT_RELEASED, EXIT_ROLLED_BACK, EXIT_USAGE, EXIT_HELD, EXIT_FAILED = 0, 1, 2, 3, 4
RELEASE_KEY = "netra:release"
STACK_PERCENT_KEY = "netra:canaryPercent"


class OperationFailed(Exception):
    """An effect failed in a way the rollout handles (a failed `pulumi up`, migration, tag)."""


class LockBusy(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# what is released


@dataclass(frozen=True)
class Target:
    key: str
    service_name: str
    candidate: str
    stable: Optional[str]
    url: str = ""
    health_path: str = "/health"


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
    # candidate revisions by traffic share; `infra.flag_ramp.FlagRelease` moves a feature flag's percent
    # with the same steps, the same Driver and the same journal discipline, under its own journal key.
    journal_key: ClassVar[str] = "rollout"  # netra:release.<journal_key>

    @property
    def steps(self) -> tuple["Step", ...]:
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
            doc["approvals"] = {**doc.get("approvals", {}), rejected: _approval(verdicts[rejected], rejected=True)}
        else:
            doc["approvals"] = {**doc.get("approvals", {}), **{k: _approval(v) for k, v in verdicts.items()}}

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


# ---------------------------------------------------------------------------------------------------
# the recorded state


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_release_doc(config: dict) -> dict:
    doc = _decode(config.get(RELEASE_KEY)) or {}
    if not isinstance(doc, dict):
        doc = {}
    doc.setdefault("approvals", {})
    return doc


@dataclass(frozen=True)
class State:
    """Everything a step may look at, read from the stack config."""

    release: Release
    config: dict  # top-level key -> decoded value
    doc: dict  # netra:release
    desired: int  # the stage the config asks for
    tag: bool = False  # --tag given

    @property
    def journal(self) -> Optional[dict]:
        return self.doc.get(self.release.journal_key)

    @property
    def live(self) -> int:
        return int(self.journal.get("live", -1)) if self.journal else -1

    def approval(self, key: str) -> Optional[dict]:
        return (self.doc.get("approvals") or {}).get(key)

    def approved_at(self, stage: int) -> bool:
        return self.release.approved(self.doc, stage)


def desired_stage(release: Release, config: dict) -> int:
    if release.scope == "stack":
        return int(_decode(config.get(STACK_PERCENT_KEY, 0)) or 0)
    services = _decode(config.get("netra:services")) or {}
    values = {int((services.get(k) or {}).get("canaryPercent") or 0) for k in release.keys}
    return max(values) if values else 0


def read_state(release: Release, backend, tag: bool = False) -> State:
    config = backend.read()
    return State(release, config, read_release_doc(config), release.desired(config), tag)


# ---------------------------------------------------------------------------------------------------
# backends: where config lives and how `pulumi up` runs


class AutomationBackend:
    """A Pulumi stack through the Automation API (LocalWorkspace on the project root). `up` runs with the
    policy pack, so a skipped stage is refused by the pack as well as by the program."""

    def __init__(self, stack, policy_pack: str, policy_config: str, log=print):
        self.stack = stack
        self.policy_pack = policy_pack
        self.policy_config = policy_config
        self.log = log

    def read(self) -> dict:
        return {k: _decode(v.value) for k, v in self.stack.get_all_config().items()}

    def write(self, values: dict, remove: tuple[str, ...] = ()) -> None:
        from pulumi import automation as auto

        if values:
            encoded = {k: auto.ConfigValue(value=v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
                       for k, v in values.items()}
            self.stack.set_all_config(encoded, path=True)
        if remove:
            self.stack.remove_all_config(list(remove), path=True)

    def up(self, message: str) -> None:
        from pulumi.automation import errors as auto_errors

        try:
            result = self.stack.up(message=message, on_output=lambda line: self.log(line.rstrip("\n")),
                                   policy_packs=[self.policy_pack], policy_pack_configs=[self.policy_config])
        except auto_errors.CommandError as exc:
            text = str(exc).strip()
            raise OperationFailed(f"pulumi up failed: {text.splitlines()[-1] if text else exc}") from None
        status = getattr(getattr(result, "summary", None), "result", "succeeded")
        if status != "succeeded":
            raise OperationFailed(f"pulumi up ended with {status!r}")


class MemoryBackend:
    """Config in memory (a copy of Pulumi.<stack>.yaml's `config:`); `up` records what it would apply.
    The dry run walks the real path on it; tests inject failures and kills."""

    def __init__(self, config: dict, log=None):
        import copy

        self.config = copy.deepcopy(config)
        self.ups: list[tuple[str, dict]] = []  # (message, config snapshot)
        self.log = log

    def read(self) -> dict:
        import copy

        return copy.deepcopy(self.config)

    def write(self, values: dict, remove: tuple[str, ...] = ()) -> None:
        from infra.plan.stackfile import set_path

        for k, v in values.items():
            set_path(self.config, k, v)
        for k in remove:
            _remove_path(self.config, k)

    def up(self, message: str) -> None:
        import copy

        self.ups.append((message, copy.deepcopy(self.config)))


def _remove_path(config: dict, path: str) -> None:
    key, _, rest = path.partition(".")
    node = config.get(key)
    if not rest:
        config.pop(key, None)
        return
    parts = rest.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict):
            return
        node = node.get(part)
    if isinstance(node, dict):
        node.pop(parts[-1], None)


# ---------------------------------------------------------------------------------------------------
# the lock: one rollout per stack at a time


class StackLock:
    """An exclusive `flock` on `<dir>/rollout-<stack>.lock`, released when the process ends (also when it
    is killed). Pulumi's own update lock guards each `up`; this one guards the whole rollout, gates and
    config writes included. Across machines, run rollouts of a stack from one place (deploy.yml has a
    per-stack concurrency group)."""

    def __init__(self, stack: str, directory: Path):
        self.path = Path(directory) / f"rollout-{stack}.lock"
        self.fd: Optional[int] = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockBusy(f"another rollout of this stack is running ({holder}); nothing was done") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename} since {_now()}".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------------------------------------------
# the steps


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    reason: str


@dataclass(frozen=True)
class Step:
    name: str
    when: Callable[[State], bool]
    run: Callable[["Driver", State], Optional[Outcome]]


def _journal(s: State) -> dict:
    return s.journal or {}


def _stale(s: State) -> bool:
    j = s.journal
    return j is None or j.get("candidates") != s.release.candidates or j.get("scope") != s.release.scope


def step_begin(d: "Driver", s: State) -> None:
    old = s.journal
    if old is not None:
        d.log(f"the journal names other candidates ({old.get('candidates')}): that rollout is abandoned; "
              f"the new candidates start at 0 %")
    doc = dict(s.doc)
    doc["rollout"] = {"services": s.release.keys, "candidates": s.release.candidates, "scope": s.release.scope,
                      "stables": {t.key: t.stable for t in s.release.targets}, "live": -1, "migrated": False,
                      "started": _now()}
    # a new release of a baking service ends that bake: its canary gate is the safety net now
    ended = sorted(k for k in (doc.get("bake") or {}) if k in s.release.candidates)
    if ended:
        doc["bake"] = {k: b for k, b in doc["bake"].items() if k not in ended}
        d.log(f"a new release ends the bake window of {', '.join(ended)} (the `previous` tag is dropped)")
    values = {k: 0 for k in s.release.stage_keys()}
    values[RELEASE_KEY] = doc
    # one source of stage truth: a stack-scope rollout leaves no per-service override on its services
    stale = [f"netra:services.{k}.canaryPercent" for k in s.release.keys
             if s.release.scope == "stack" and "canaryPercent" in ((_decode(s.config.get("netra:services")) or {}).get(k) or {})]
    d.write(values, remove=tuple(stale), what="begin: journal the candidates at stage 0"
            + (f", remove stale overrides {', '.join(stale)}" if stale else ""))
    d.notify("start", f"{', '.join(f'{k} {c}' for k, c in s.release.candidates.items())} along {list(s.release.ladder)}",
             services=s.release.keys, ladder=list(s.release.ladder))


def step_retreat(d: "Driver", s: State) -> None:
    d.write({k: 0 for k in s.release.stage_keys()}, what=f"rollback: stage 0 ({_journal(s).get('rejected')})")


def step_backup(d: "Driver", s: State) -> Optional[Outcome]:
    """Seed 000 "Database Backup: full production database backup created" before the schema changes."""
    try:
        backup_id = d.effect("backup", d.backup, "(on-demand Cloud SQL backup, before the migration job)")
    except Exception as exc:  # noqa: BLE001 - any API error: nothing migrated, nothing moved
        d.notify("failure", f"the backup before the migration failed: {exc}; nothing migrated")
        return Outcome(EXIT_FAILED, f"the backup before the migration failed ({exc}): no migration ran, no traffic "
                                    f"was moved; rerun to retry")
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
    doc = dict(s.doc)
    doc["approvals"] = {**doc.get("approvals", {}), t.key: {
        "revision": t.candidate, "stage": 0, "by": "verify", "evidence": digest, "at": _now(), "rejected": True}}
    doc["rollout"] = {**_journal(s), "rejected": why}
    d.write({RELEASE_KEY: doc}, what=f"record the rejection of {t.candidate} by the load test")
    return None


def step_migrate(d: "Driver", s: State) -> Optional[Outcome]:
    try:
        d.effect("migrate", d.migrate, "(the migration job, before any traffic moves)")
    except OperationFailed as exc:
        d.notify("failure", f"migration failed: {exc}; no traffic was moved")
        return Outcome(EXIT_FAILED, f"the migration job failed ({exc}): no traffic was moved; rerun to retry")
    d.record(lambda j: j.update(migrated=True), "migrated")
    return None


def step_apply(d: "Driver", s: State) -> Optional[Outcome]:
    stage, rejected = s.desired, _journal(s).get("rejected")
    why = f"rollback to 0 % ({rejected})" if rejected else f"stage {stage} %"
    try:
        d.effect("pulumi up", lambda: d.backend.up(s.release.up_message(why)), f"({why})")
    except OperationFailed as exc:
        if rejected:
            d.notify("failure", f"the rollback update failed: {exc}")
            return Outcome(EXIT_FAILED, f"{rejected}; the rollback update FAILED ({exc}): rerun `rollout` to retry, "
                                        f"or `python -m infra rollback --stack {s.release.stack} --direct`")
        if stage <= 0 or _journal(s).get("live", -1) <= 0:
            d.notify("failure", f"pulumi up failed at stage {stage} %: {exc}")
            return Outcome(EXIT_FAILED, f"pulumi up failed at stage {stage} % ({exc}); {s.release.nothing_live}; "
                                        f"rerun to retry")
        d.fail(s, f"pulumi up failed at stage {stage} %: {exc}")
        d.notify("failure", f"pulumi up failed at stage {stage} %: {exc}; rolling back")
        return None
    d.record(lambda j: j.update(live=stage), f"live at {stage} %")
    if rejected:
        d.notify("rollback", f"rolled back to 0 %: {rejected}", stage=0)
    else:
        d.notify("stage_up", f"{stage} % live", stage=stage, **s.release.stage_fields())
    return None


def step_rolled_back(d: "Driver", s: State) -> Outcome:
    j = _journal(s)
    d.close_journal(s)
    code = EXIT_FAILED if j.get("failed") else EXIT_ROLLED_BACK
    return Outcome(code, f"{j.get('rejected')}; rolled back: {s.release.rolled_back_state}")


def step_finalize_up(d: "Driver", s: State) -> Optional[Outcome]:
    try:
        d.effect("pulumi up", lambda: d.backend.up("netra rollout: finalize"), "(finalize)")
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
            d.notify("verdict", f"{t.key} at {stage} %: {v.decision} ({v.reason})", service=t.key, stage=stage,
                     decision=v.decision, revision=v.revision, evidence=v.evidence, by=v.by)
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
        doc = dict(s.doc)
        s.release.record_check(doc, verdicts, rejected[0])
        doc[s.release.journal_key] = {**_journal(s), "rejected": why}
        d.write({RELEASE_KEY: doc}, what=f"record the rejection of {v.revision}")
        return None
    if any(v.decision != "promote" for v in verdicts.values()):
        held = ", ".join(f"{k}: {v.reason}" for k, v in verdicts.items() if v.decision != "promote")
        d.notify("hold", f"held at {stage} %: {held}", stage=stage)
        return Outcome(EXIT_HELD, f"held at {stage} % ({held}); traffic stays; rerun to judge again, or roll back")
    doc = dict(s.doc)
    s.release.record_check(doc, verdicts, None)
    d.write({RELEASE_KEY: doc}, what=f"record the approvals at {stage} %")
    return None


def _approval(v: rel.Verdict, rejected: bool = False) -> dict:
    return {"revision": v.revision, "stage": v.stage, "by": v.by, "evidence": v.evidence, "at": _now(),
            "rejected": rejected}


def step_finalize(d: "Driver", s: State) -> None:
    values: dict[str, Any] = {f"netra:services.{t.key}.stableRevision": t.candidate for t in s.release.targets}
    remove: tuple[str, ...] = ()
    if s.release.scope == "stack":
        values[STACK_PERCENT_KEY] = 0
    else:
        remove = tuple(s.release.stage_keys())
    doc = dict(s.doc)
    doc["rollout"] = {**_journal(s), "finalizing": True}
    bakes = bake_records(s.release, dt.datetime.now(dt.timezone.utc))
    doc["bake"] = {**(doc.get("bake") or {}), **bakes}
    values[RELEASE_KEY] = doc
    d.write(values, remove=remove, what="finalize: stableRevision := candidate, stage 0"
            + (f", bake until {next(iter(bakes.values()))['until']}" if bakes else ""))


def bake_records(release: Release, now: dt.datetime) -> dict[str, dict]:
    """The bake window each released service opens at finalize (seed 000: 48-hour validation): its
    previous stable revision stays tagged `previous` at 0 %. None on a first deploy (nothing before)."""
    if release.bake_hours <= 0:
        return {}
    until = (now + dt.timedelta(hours=release.bake_hours)).isoformat(timespec="seconds")
    return {t.key: {"revision": t.candidate, "previous": t.stable, "until": until,
                    "started": now.isoformat(timespec="seconds")}
            for t in release.targets if t.stable is not None and t.stable != t.candidate}


def step_climb(d: "Driver", s: State) -> None:
    nxt = rel.next_stage(s.release.ladder, s.live)
    d.write({k: nxt for k in s.release.stage_keys()}, what=f"stage {nxt} %")


def _rejected(s: State) -> bool:
    return bool(_journal(s).get("rejected"))


def _rejected_before(s: State) -> list[str]:
    """Candidates a finished rollout rejected (a rollback verdict): they never climb again by themselves."""
    return [t.key for t in s.release.targets
            if (a := s.approval(t.key)) and a.get("revision") == t.candidate and a.get("rejected")]


def step_refuse(d: "Driver", s: State) -> Outcome:
    keys = _rejected_before(s)
    return Outcome(EXIT_ROLLED_BACK, f"{', '.join(f'{k} {s.release.candidates[k]}' for k in keys)} was rejected "
                                     f"(rolled back) before: nothing done; build a new candidate, or approve it "
                                     f"explicitly with `python -m infra approve`")


STEPS: tuple[Step, ...] = (
    Step("refuse", lambda s: _stale(s) and bool(_rejected_before(s)), step_refuse),
    Step("begin", _stale, step_begin),
    Step("retreat", lambda s: _rejected(s) and s.desired != 0, step_retreat),
    Step("backup", lambda s: s.release.backup_before_migrate and s.release.has_migration
         and not _journal(s).get("backup") and not _journal(s).get("migrated") and s.live < 0 and not _rejected(s),
         step_backup),
    Step("migrate", lambda s: s.release.has_migration and not _journal(s).get("migrated") and s.live < 0
         and not _rejected(s), step_migrate),
    Step("finalize-up", lambda s: _journal(s).get("finalizing") and not _journal(s).get("released"), step_finalize_up),
    Step("tag", lambda s: s.tag and bool(_journal(s).get("released")) and not _journal(s).get("tagged"), step_tag),
    Step("done", lambda s: bool(_journal(s).get("released")), step_done),
    Step("apply", lambda s: s.desired != s.live, step_apply),
    Step("rolled-back", _rejected, step_rolled_back),
    Step("check", lambda s: s.live < s.release.ladder[-1] and not s.approved_at(s.live), step_check),
    Step("load-test", lambda s: bool(s.release.load_test_service) and s.live == 0 and s.approved_at(0)
         and not _journal(s).get("loadTest") and not _rejected(s), step_load_test),
    Step("finalize", lambda s: s.live == s.release.ladder[-1], step_finalize),
    Step("climb", lambda s: s.approved_at(s.live), step_climb),
)


class Killed(BaseException):
    """Tests: the process dies here (not an Exception, so no handler of the rollout sees it)."""


@dataclass
class Driver:
    release: Release
    backend: Any
    gate: Callable[[Target, int], rel.Verdict]
    verify: Callable[[Target, int], rel.Verdict]
    migrate: Callable[[], None] = lambda: None
    tag: Optional[Callable[[], None]] = None
    backup: Callable[[], str] = lambda: "dry-run"  # the Cloud SQL backup before the migration job -> its id
    load_test: Callable[[Target], dict] = lambda t: {"decision": "pass", "reason": "no load test"}
    notifier: Any = None
    log: Callable[[str], None] = print
    steps: Optional[tuple[Step, ...]] = None  # default: the release's table (STEPS for revisions)
    trace: list = field(default_factory=list)  # (step, what) in order: dry-run output, tests
    max_turns: int = 200

    @property
    def tag_requested(self) -> bool:
        return self.tag is not None

    # effects -------------------------------------------------------------------------------------
    def effect(self, kind: str, fn: Callable[[], Any], what: str = "") -> Any:
        self.trace.append(("effect", kind))
        self.log(f"{kind} {what}".rstrip())
        return fn()

    def write(self, values: dict, remove: tuple[str, ...] = (), what: str = "") -> None:
        for k, v in values.items():
            self.log(f"set config {k} = {json.dumps(v) if not isinstance(v, (str, int)) else v}"
                     if k != RELEASE_KEY else f"set config {RELEASE_KEY} ({what})")
        for k in remove:
            self.log(f"remove config {k}")
        self.trace.append(("write", what))
        self.backend.write(values, remove)

    def record(self, change: Callable[[dict], None], what: str) -> None:
        """Update the journal after an effect succeeded (read it fresh: the effect may have taken long)."""
        doc = read_release_doc(self.backend.read())
        key = self.release.journal_key
        journal = dict(doc.get(key) or {})
        change(journal)
        doc[key] = journal
        self.write({RELEASE_KEY: doc}, what=what)

    def fail(self, s: State, why: str) -> None:
        """A failure (not a verdict) rolls back too: the journal says why, and the candidates lose their
        approvals (so they start again from verification, and no stage key can give them traffic)."""
        doc = read_release_doc(self.backend.read())
        key = s.release.journal_key
        doc[key] = {**(doc.get(key) or {}), "rejected": why, "failed": True}
        s.release.forget_approvals(doc)
        self.write({RELEASE_KEY: doc}, what=f"record the failure: {why}")

    def close_journal(self, s: State) -> None:
        doc = read_release_doc(self.backend.read())
        doc.pop(s.release.journal_key, None)
        self.write({RELEASE_KEY: doc}, remove=s.release.closing_removals(), what="close the journal")

    def notify(self, event: str, message: str, **fields) -> None:
        if self.notifier is not None:
            self.notifier.emit(event, message, **fields)

    # the loop ------------------------------------------------------------------------------------
    def run(self) -> Outcome:
        if not self.release.targets:
            return Outcome(EXIT_RELEASED, "nothing to roll out: every service's candidate is already its stable revision")
        steps = self.steps if self.steps is not None else self.release.steps
        for _ in range(self.max_turns):
            state = read_state(self.release, self.backend, self.tag_requested)
            step = next((st for st in steps if st.when(state)), None)
            if step is None:
                raise RuntimeError(f"no step fits the recorded state (live {state.live}, desired {state.desired})")
            self.trace.append(("step", step.name))
            self.log(f"-- {step.name}")
            outcome = step.run(self, state)
            if outcome is not None:
                return outcome
        raise RuntimeError(f"the rollout did not converge in {self.max_turns} steps")


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
    services = _decode(config.get("netra:services")) or {}
    return replace(release, targets=tuple(
        t for t in release.targets if ((services.get(t.key) or {}).get("stableRevision") or None) != t.candidate))


# ---------------------------------------------------------------------------------------------------
# real effects


def select_stack(stack_name: str):
    from pulumi import automation as auto

    from infra.canary.stack import PROJECT_ROOT

    return auto.select_stack(stack_name=stack_name, work_dir=str(PROJECT_ROOT))


def run_migration_job(job: dict, project: str, session=None, timeout_s: float = 1800.0, poll_s: float = 5.0,
                      sleep=time.sleep, log=print, overrides: dict | None = None) -> None:
    """Execute the Cloud Run job and wait for it (Cloud Run Admin API v2, jobs.run + operations.get)."""
    name = job["name"]
    if not name.startswith("projects/"):
        name = f"projects/{project}/locations/{job.get('region')}/jobs/{name}"
    if session is None:
        session = authorized_session()
    base = "https://run.googleapis.com/v2/"
    # overrides: per-execution env/args (RunJobRequest.overrides), e.g. the restore drill's DB_HOST
    r = session.post(base + name + ":run", json={"overrides": overrides} if overrides else {})
    if r.status_code >= 300:
        raise OperationFailed(f"migration job {name}: run returned HTTP {r.status_code}: {r.text[:200]}")
    op = r.json()
    log(f"migration job {name}: started ({op.get('name', '?')})")
    wait_run_operation(session, base, op, f"migration job {name}", timeout_s=timeout_s, poll_s=poll_s, sleep=sleep)
    log(f"migration job {name}: succeeded")


def wait_run_operation(session, base: str, op: dict, what: str, *, timeout_s: float, poll_s: float,
                       sleep=time.sleep) -> dict:
    """Poll a Cloud Run Admin API v2 long-running operation (`base` + its name) until done; raise
    OperationFailed naming `what` on timeout, a failed poll or an operation error."""
    waited = 0.0
    while not op.get("done"):
        if waited >= timeout_s:
            raise OperationFailed(f"{what}: not done after {timeout_s:.0f} s")
        sleep(poll_s)
        waited += poll_s
        r = session.get(base + op["name"], timeout=30)
        if r.status_code >= 300:
            raise OperationFailed(f"{what}: operation poll returned HTTP {r.status_code}")
        op = r.json()
    if op.get("error"):
        raise OperationFailed(f"{what} failed: {op['error'].get('message', op['error'])}")
    return op


def authorized_session():
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(creds)


def git_tag(name: str, message: str, cwd) -> None:
    r = subprocess.run(["git", "tag", "-a", name, "-m", message], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationFailed(f"git tag {name}: {r.stderr.strip()}")


def make_gate(settings, release: Release, log, session=None) -> Callable[[Target, int], rel.Verdict]:
    """The live gate (infra.canary.api) for one service at one stage; writes verdict-STACK-KEY-STAGE.json.

    It judges what Cloud Run serves (traffic tags), and first checks that this is what the rollout
    applied: the candidate under the `canary` tag at the stage's share. A mismatch, an unreadable
    deployed state or a gate ERROR raises, which the rollout turns into a rollback attempt and exit 4."""

    def gate(t: Target, stage: int) -> rel.Verdict:
        from infra.canary import api

        deployed = api.deployed_revisions(release.stack, t.key, session=session)
        if (deployed.candidate, deployed.canary_percent) != (t.candidate, stage):
            raise OperationFailed(f"{t.key}: Cloud Run serves {deployed.candidate} at {deployed.canary_percent} % under "
                                  f"the canary tag, not {t.candidate} at {stage} % as applied")
        verdict = api.judge(deployed, settings, stack=release.stack, progress=log)
        return rollout_verdict(verdict, f"verdict-{release.stack}-{t.key}-{stage}.json", deployed.candidate,
                               deployed.canary_percent, f"the gate for {t.key}")

    return gate


def rollout_verdict(verdict, path: str, candidate: str, stage: int, what: str) -> rel.Verdict:
    """The gate's verdict (infra.canary.api) written to `path` and bound to what was judged; ERROR raises
    OperationFailed (the rollout rolls back and exits 4, never mistaking an error for a verdict)."""
    from infra.canary import api

    doc = verdict.as_dict()
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    if verdict.decision == api.Decision.ERROR:
        raise OperationFailed(f"{what} failed: {verdict.reason}")
    label = "promote" if verdict.decision == api.Decision.PROMOTE else (
        "rollback" if verdict.decision == api.Decision.ROLLBACK else "hold")
    return rel.Verdict(label, candidate, stage, rel.evidence_digest(doc), verdict.reason, by="gate")


def make_verify(settings, urls: dict[str, str]) -> Callable[[Target, int], rel.Verdict]:
    from infra.verify import tagged_url, verify_candidate

    def verify(t: Target, stage: int) -> rel.Verdict:
        base = urls.get(t.key) or tagged_url(t.url)
        return verify_candidate(t.key, t.candidate, stage, base, t.health_path, settings)

    return verify


# ---------------------------------------------------------------------------------------------------
# command line


def _err(cmd: str, message: str) -> int:
    print(f"infra {cmd}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def register(subparsers) -> None:
    from infra.canary.api import add_gate_arguments

    p = subparsers.add_parser(
        "rollout", help="drive a release through the traffic ladder, crash-safe (Pulumi Automation API)",
        description="Reconcile the stack towards releasing its candidates: migrate, then per stage pulumi up "
                    "(with the policy pack), verify at 0 %%, gate above 0, record the approval, climb; finalize "
                    "at 100 %%. Restart it after any interruption: it resumes from the journal in netra:release. "
                    "Exit 0 released, 1 rolled back, 2 usage, 3 held, 4 failed.")
    add_gate_arguments(p)
    p.add_argument("--service", help="roll out only this service key (default: every service with a new candidate); "
                                     "with --flag: judge only this service's arms")
    p.add_argument("--flag", metavar="NAME", help="ramp the feature flag NAME (netra:platform.featureFlags.NAME.percent) "
                                                  "along the ladder instead, judged by the gate on its arms")
    p.add_argument("--dry-run", action="store_true",
                   help="walk the real path on a copy of the config (every check promotes) and show the hold and "
                        "rollback branches; change nothing")
    p.add_argument("--tag", metavar="NAME", help="after finalizing, `git tag -a NAME` the current commit")
    p.add_argument("--smoke-requests", default="20", metavar="N", help="smoke requests of the 0 %% verification")
    p.add_argument("--smoke-path", action="append", default=[], metavar="PATH",
                   help="path of a smoke request (repeatable; default: the service's healthCheckPath)")
    p.add_argument("--verify-url", action="append", default=[], metavar="KEY=URL",
                   help="where to reach a candidate for verification (default: its canary tagged URL)")
    p.set_defaults(func=run_rollout)

    a = subparsers.add_parser(
        "approve", help="record an operator approval of one candidate revision at one stage (netra:release)",
        description="Approve REVISION of SERVICE at STAGE %%, so it may get the next stage. Recorded in stack config "
                    "with who, when and the SHA-256 of the note. Exit 0 recorded, 2 usage, 4 failed.")
    a.add_argument("--stack", help="stack name")
    a.add_argument("--flag", metavar="NAME", help="approve the ramp of this feature flag at --stage instead (no "
                                                  "--service / --revision)")
    a.add_argument("--service", help="service key")
    a.add_argument("--revision", help="the exact candidate revision (see `status`)")
    a.add_argument("--stage", help="the stage it was checked at")
    a.add_argument("--note", help="why (a ticket, a dashboard link, what you checked)")
    a.add_argument("--by", default=None, help="who approves (default: the login name)")
    a.set_defaults(func=run_approve)

    st = subparsers.add_parser("status", help="per service: stable and candidate revision, live stage, last verdict, "
                                              "next step", description="Read-only. Exit 0, 2 usage.")
    st.add_argument("--stack", help="stack name")
    st.add_argument("--json", action="store_true", help="one JSON object on stdout")
    st.set_defaults(func=run_status)

    from infra import emergency

    emergency.register(subparsers)


def _stack_raw_config(stack: str) -> dict:
    import yaml

    from infra.canary.stack import PROJECT_ROOT

    doc = yaml.safe_load((PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    return dict(doc.get("config") or {})


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


def _int_arg(value, flag: str, lo: int, hi: int) -> int:
    from infra.canary.api import UsageError

    try:
        x = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} must be a whole number between {lo} and {hi}, got {value!r}") from None
    if not lo <= x <= hi:
        raise UsageError(f"{flag} must be a whole number between {lo} and {hi}, got {value!r}")
    return x


def _verify_urls(items: list[str]) -> dict[str, str]:
    from infra.canary.api import UsageError

    out = {}
    for item in items:
        key, sep, url = item.partition("=")
        if not sep or not key or not url.startswith(("http://", "https://")):
            raise UsageError(f"--verify-url must be KEY=http(s)://..., got {item!r}")
        out[key] = url
    return out


def dry_run_gate(decisions: dict[int, str] | None = None):
    """A scripted check for the dry run: promote, or the decision given for a stage."""

    def check(t: Target, stage: int) -> rel.Verdict:
        decision = (decisions or {}).get(stage, "promote")
        return rel.Verdict(decision, t.candidate, stage, rel.evidence_digest({"dry-run": stage}),
                           f"dry run: assumed {decision}", by="verify" if stage == 0 else "gate")

    return check


def simulate(release: Release, config: dict, decisions: dict[int, str] | None = None, tag: bool = False,
             log=lambda line: None) -> tuple[Outcome, list, MemoryBackend]:
    backend = MemoryBackend(config)
    check = dry_run_gate(decisions)
    driver = Driver(release, backend, gate=check, verify=check, tag=(lambda: None) if tag else None, log=log)
    outcome = driver.run()
    return outcome, driver.trace, backend


def print_dry_run(release: Release, config: dict, tag: bool) -> int:
    print(f"rollout {release.stack} (dry run): {release.describe}")
    outcome, _, backend = simulate(release, config, tag=tag, log=lambda line: print("  " + line))
    print(f"=> exit {outcome.exit_code}: {outcome.reason}")
    for stage in release.checked_stages:
        what = "verification" if stage == 0 else "gate"
        for decision in ("hold", "rollback"):
            out, trace, b = simulate(release, config, {stage: decision}, tag=tag)
            ups = [m.removeprefix("netra rollout: ") for m, _ in b.ups]
            print(f"if the {what} at {stage} % answers {decision}: exit {out.exit_code} ({out.reason}); "
                  f"updates: {', '.join(ups)}")
    return EXIT_RELEASED


def run_rollout(args, *, backend=None, gate=None, verify=None, migrate=None, tagger=None, notifier=None,
                log=None, lock_dir: Optional[Path] = None, backup=None, load_test=None) -> int:
    """`rollout`. The keyword hooks let tests inject a backend, checks and effects."""
    from infra.canary.api import UsageError, gate_settings, quiet_google_warnings
    from infra.canary.stack import PROJECT_ROOT, StackError
    from infra.notify import Notifier
    from infra.verify import VerifySettings

    quiet_google_warnings()
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if not args.stack:
        return _err("rollout", "--stack is required (a stack name such as prod or staging)")
    if getattr(args, "flag", None):
        from infra.flag_ramp import run_flag_ramp

        return run_flag_ramp(args, backend=backend, gate=gate, notifier=notifier, log=log, lock_dir=lock_dir)
    try:
        settings = gate_settings(args)
        smoke = _int_arg(args.smoke_requests, "--smoke-requests", 1, 1000)
        urls = _verify_urls(args.verify_url)
        release, outputs, cfg, every = plan_release(args.stack, args.service)
    except (UsageError, StackError, ValueError) as exc:
        return _err("rollout", str(exc))
    if args.dry_run:
        if not release.targets:
            print("nothing to roll out: every service's candidate is already its stable revision")
            return EXIT_RELEASED
        return print_dry_run(release, _stack_raw_config(args.stack), bool(args.tag))
    if backend is None:
        backend = open_backend("rollout", args.stack, log)
        if backend is None:
            return EXIT_FAILED
    release = resume(release, backend.read(), every)
    if not release.targets:
        print("nothing to roll out: every service's candidate is already its stable revision")
        return EXIT_RELEASED
    job = outputs.get("migrationJob")
    # tests inject the checks and effects: then no real cloud call is made by default either
    injected = any(x is not None for x in (migrate, gate, verify))
    if injected:
        backup = backup or (lambda: "not taken: effects injected")
        load_test = load_test or (lambda t: {"decision": "pass", "reason": "not run: effects injected"})
    if migrate is None:
        migrate = (lambda: run_migration_job(job, release.project, log=log)) if job else (lambda: None)
    if backup is None:
        def backup():
            from infra.backup import take_backup

            return take_backup(authorized_session(), release.project, outputs["platform"]["database"]["instance"],
                               f"netra rollout {args.stack}: before migrations for "
                               f"{', '.join(release.candidates.values())}", log=log)
    if load_test is None and release.load_test_service:
        from infra.loadtest_step import LoadTestStep
        from loadtest.verdict import Criteria

        step = LoadTestStep(args.stack, release.project, release.region, outputs["loadTestJob"],
                            Criteria.from_dict(cfg.verification.load_test.criteria.model_dump(by_alias=True)), log=log)

        def load_test(t):
            return step.run(t.service_name, t.candidate)
    if tagger is None and args.tag:
        def tagger():
            git_tag(args.tag, f"netra {args.stack}: released {', '.join(release.candidates.values())}", PROJECT_ROOT)
    thresholds = cfg.observability.thresholds
    verify = verify or make_verify(VerifySettings(smoke, tuple(args.smoke_path), thresholds.error_rate_percent,
                                                  thresholds.p95_latency_ms), urls)
    gate = gate or make_gate(settings, release, log)
    notifier = notifier or Notifier.from_env(args.stack)
    driver = Driver(release, backend, gate=gate, verify=verify, migrate=migrate, tag=tagger, notifier=notifier, log=log,
                    backup=backup, **({"load_test": load_test} if load_test else {}))
    from infra.flag_ramp import revision_refusal

    try:
        with StackLock(args.stack, lock_dir or PROJECT_ROOT / ".netra"):
            refusal = revision_refusal(backend.read())
            if refusal:
                return _err("rollout", refusal)
            outcome = driver.run()
    except LockBusy as exc:
        print(f"infra rollout: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"rollout {args.stack}: {outcome.reason} (exit {outcome.exit_code})", file=sys.stderr)
    return outcome.exit_code


def open_backend(cmd: str, stack: str, log=print):
    """The stack through the Automation API with the policy pack, or None after one error line on stderr."""
    from infra.canary.stack import PROJECT_ROOT
    from infra.plan import POLICY_DIR, policy_config_file

    try:
        return AutomationBackend(select_stack(stack), str(PROJECT_ROOT / POLICY_DIR), str(policy_config_file(stack)),
                                 log=log)
    except Exception as exc:  # no Pulumi CLI, no such stack, no backend login...
        text = str(exc).strip()
        print(f"infra {cmd}: error: cannot open stack {stack!r} with the Automation API (needs the Pulumi CLI and a "
              f"logged-in backend): {text.splitlines()[-1] if text else type(exc).__name__}", file=sys.stderr)
        return None


# ---------------------------------------------------------------------------------------------------
# approve and status


def operator_login(by: Optional[str]) -> tuple[str, Optional[str]]:
    """(who, problem): `--by` or the login name, and why it cannot be the <who> of `operator:<who>` in an
    approval record (netra:release), or None."""
    from infra.config.release import OPERATOR_LOGIN

    who = by or getpass.getuser()
    if re.fullmatch(OPERATOR_LOGIN, who):
        return who, None
    return who, f"--by must be 1-64 letters, digits, '.', '_', '@' or '-' (a login or an email), got {who!r}"


def run_approve(args, *, backend=None) -> int:
    from infra.canary.stack import StackError, plan_outputs, service_info

    if getattr(args, "flag", None):
        from infra.flag_ramp import run_approve_flag

        return run_approve_flag(args, backend=backend)
    for flag in ("stack", "service", "revision", "stage", "note"):
        if not getattr(args, flag):
            return _err("approve", f"--{flag} is required")
    try:
        outputs = plan_outputs(args.stack)
        info = service_info(outputs, args.service)
        stage = int(args.stage)
    except StackError as exc:
        return _err("approve", str(exc))
    except ValueError:
        return _err("approve", f"--stage must be a stage of netra:stages {outputs.get('stages')}, got {args.stage!r}")
    ladder = rel.ladder_for(info.stable, outputs.get("stages") or [0, 10, 50, 100])
    if stage not in ladder or stage == ladder[-1]:
        return _err("approve", f"--stage must be one of {list(ladder[:-1])} (the stage it was checked at), got {stage}")
    if args.revision != info.candidate:
        return _err("approve", f"--revision {args.revision} is not {info.key}'s candidate {info.candidate}: "
                               f"an approval is bound to the exact revision")
    who, problem = operator_login(args.by)
    if problem:
        return _err("approve", problem)
    note = {"service": info.key, "revision": info.candidate, "stage": stage, "by": who, "note": args.note}
    record = {"revision": info.candidate, "stage": stage, "by": f"operator:{who}",
              "evidence": rel.evidence_digest(note), "at": _now(), "rejected": False}
    if backend is None:
        backend = open_backend("approve", args.stack)
        if backend is None:
            return EXIT_FAILED
    doc = read_release_doc(backend.read())
    doc["approvals"] = {**doc.get("approvals", {}), info.key: record}
    backend.write({RELEASE_KEY: doc})
    print(f"approved {info.candidate} at {stage} % by operator:{who} (evidence {record['evidence'][:12]}…): "
          f"it may now get {rel.next_stage(ladder, stage)} %")
    return EXIT_RELEASED


def service_status(outputs: dict, doc: dict, stages) -> list[dict]:
    """Per service: stable, candidate, live stage, last verdict, next step (pure; `status` prints it)."""
    journal = doc.get("rollout") or {}
    rows = []
    for key in sorted(outputs.get("services") or {}):
        s = outputs["services"][key]
        cand, stable = s["candidateRevision"], s.get("stableRevision") or None
        a = (doc.get("approvals") or {}).get(key)
        live = s.get("canaryPercent", 0)
        in_rollout = key in (journal.get("candidates") or {})
        if in_rollout and journal.get("live", -1) >= 0:
            live = journal["live"]
        verdict = None
        if a:
            verdict = (f"{'rejected' if a.get('rejected') else 'approved'} {a.get('revision')} at {a.get('stage')} % "
                       f"by {a.get('by')}" + (f" ({a.get('at')})" if a.get("at") else ""))
        ladder = rel.ladder_for(stable, stages)
        if stable == cand:
            nxt = "nothing: the candidate is the stable revision"
        elif journal.get("rejected") and in_rollout:
            nxt = "finish the rollback: python -m infra rollout (or rollback)"
        elif a and a.get("revision") == cand and a.get("rejected"):
            nxt = "rejected: change the template (new candidate) or approve explicitly"
        elif journal.get("finalizing") and in_rollout:
            nxt = "finish finalizing: python -m infra rollout"
        elif a and a.get("revision") == cand:
            nxt = f"climb to {rel.next_stage(ladder, int(a.get('stage', 0)))} %: python -m infra rollout"
        elif live == 0 or not in_rollout:
            nxt = "verify at 0 %: python -m infra rollout" + (" --service " + key)
        else:
            nxt = f"judge the live {live} %: python -m infra rollout"
        bake = (doc.get("bake") or {}).get(key)
        bake = {"previous": bake.get("previous"), "until": bake.get("until")} if bake and bake.get("revision") == stable else None
        rows.append({"service": key, "stable": stable, "candidate": cand, "live": live, "lastVerdict": verdict,
                     "inRollout": in_rollout, "next": nxt, "bake": bake})
    return rows


def run_status(args) -> int:
    from infra.canary.stack import StackError, plan_outputs

    if not args.stack:
        return _err("status", "--stack is required (a stack name such as prod or staging)")
    try:
        outputs = plan_outputs(args.stack)
    except StackError as exc:
        return _err("status", str(exc))
    doc = read_release_doc(_stack_raw_config(args.stack))
    rows = service_status(outputs, doc, outputs.get("stages") or [0, 10, 50, 100])
    from infra.flag_ramp import FLAG_APPROVALS_KEY, FLAG_RAMP_KEY, flag_status

    if args.json:
        print(json.dumps({"stack": args.stack, "rollout": doc.get("rollout"), "services": rows,
                          FLAG_RAMP_KEY: doc.get(FLAG_RAMP_KEY), FLAG_APPROVALS_KEY: doc.get(FLAG_APPROVALS_KEY) or {}},
                         indent=2))
        return EXIT_RELEASED
    j = doc.get("rollout")
    print(f"stack {args.stack}: " + (f"rollout in progress (live {j.get('live')} %, "
                                     f"{'rejected: ' + j['rejected'] if j.get('rejected') else 'not rejected'})"
                                     if j else "no rollout in progress"))
    for line in flag_status(doc, args.stack):
        print(line)
    for r in rows:
        print(f"  {r['service']:<9} stable {r['stable'] or '(none: first deploy)'}  candidate {r['candidate']}  "
              f"live {r['live']} %")
        print(f"            last verdict: {r['lastVerdict'] or 'none'}")
        if r["bake"]:
            print(f"            baking until {r['bake']['until']}: `rollback` returns to {r['bake']['previous']}")
        print(f"            next: {r['next']}")
    return EXIT_RELEASED
