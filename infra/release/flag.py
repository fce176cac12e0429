"""The flag ramp release kind (`python -m infra rollout --stack S --flag NAME`): a feature flag along the ladder.

A release kind (like revision.py): the same Driver, State and steps as the revision rollout, over a
different thing being released: `FlagRelease`. Its stage key is `netra:platform.featureFlags.<flag>.percent` (a
change is a new version of the `<env>-feature-flags` secret, which the services read from a mounted file,
so nothing restarts); its "candidate" and "stable" are the flag's two arms (`<flag>=on` / `<flag>=off`,
infra/flag_gate.py) in each service that reads the flags secret; its journal is
`netra:release.flagRamp`; its approvals are `netra:release.flagApprovals.<flag>`, bound to the flag, the
stage, the evidence digest and the revisions that served the evidence (the services' stable revisions):

    finished  no journal and the flag at 100 %: nothing to ramp, exit 0
    refuse    no journal and a rejection of this flag on these revisions: exit 1 until an operator approves
              (`approve --flag`) or the code changes (new stable revisions)
    begin     no journal: journal the ramp, forget older approvals, percent := the start stage
    stop      the kill switch turned on during the ramp: rejected (then retreat, apply, rolled -> exit 1)
    retreat   rejected and a percent above 0 configured: percent := 0
    apply     the configured percent is not the live one: `pulumi up`, then live := percent
    rolled    rejected and live at 0 %: close the journal; exit 1 (4 when a failure caused it)
    done      live at 100 %: close the journal; exit 0
    check     live stage not approved: the gate on arms per service -> approval, rejection or hold (exit 3)
    climb     approved at the live stage: percent := the next stage

Stage 0 needs no evidence (the flag is off for everyone, as before the ramp); the first stage above 0
is what the operator asked for by starting the ramp; every higher stage needs the gate's promote at the
stage below. A flag ramp and a revision rollout never run at once (each refuses while the other's
journal is open, under the same stack lock): the gate could not tell a flag's effect from a revision's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from infra import flags
from infra.release import model as rel
from infra.release import steps as st
from infra.release.effects import authorized_session, between_intervals, rollout_verdict
from infra.release.state import (EXIT_RELEASED, EXIT_ROLLED_BACK, RELEASE_KEY, OperationFailed, Outcome, State, Step,
                                 Target, decode, now, read_release_doc)

if TYPE_CHECKING:
    from infra.release.driver import Driver
from infra.flag_gate import FLAG, arms

FLAG_RAMP_KEY = "flagRamp"  # netra:release.flagRamp: the journal of the flag ramp in progress
FLAG_APPROVALS_KEY = "flagApprovals"  # netra:release.flagApprovals.<flag>


def flag_key(flag: str, leaf: str = "") -> str:
    return f"netra:platform.featureFlags.{flag}" + (f".{leaf}" if leaf else "")


def feature_flags(config: dict) -> dict:
    """netra:platform.featureFlags of a raw (decoded) stack config."""
    platform = decode(config.get("netra:platform")) or {}
    return (platform.get("featureFlags") or {}) if isinstance(platform, dict) else {}


def killed(value: Any) -> bool:
    """A ramp's kill switch is on (raw config: `pulumi config set --path` may have stored "true")."""
    return flags.is_ramp(value) and value.get("killSwitch") in (True, "true")


def _percent(value: Any) -> float:
    p = float(value.get("percent", 0)) if flags.is_ramp(value) else 0.0
    return int(p) if p.is_integer() else p


@dataclass(frozen=True)
class FlagRelease:
    """A flag ramp as the rollout Driver sees it (the `state.Kind` interface, like revision.Release)."""

    stack: str
    flag: str
    targets: tuple[Target, ...]  # the services whose arms carry evidence; candidate/stable = on/off arm
    stages: tuple[int, ...]
    revisions: dict[str, Optional[str]] = field(default_factory=dict)  # reader key -> its stable revision
    project: str = ""
    flags_secret: str = ""  # the Secret Manager secret id the services read the flags from, <env>-feature-flags

    journal_key: ClassVar[str] = FLAG_RAMP_KEY
    first_deploy: ClassVar[bool] = False

    @property
    def steps(self) -> tuple[Step, ...]:
        return FLAG_STEPS

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.targets]

    @property
    def ladder(self) -> tuple[int, ...]:
        return self.stages

    @property
    def candidates(self) -> dict[str, str]:
        return {t.key: t.candidate for t in self.targets}

    @property
    def checked_stages(self) -> list[int]:
        return [s for s in self.ladder if 0 < s < self.ladder[-1]]

    @property
    def describe(self) -> str:
        return (f"flag {self.flag} ({flag_key(self.flag, 'percent')}) along {list(self.ladder)}, judged on the arms "
                f"of {', '.join(self.keys)}")

    def stage_keys(self) -> list[str]:
        return [flag_key(self.flag, "percent")]

    def desired(self, config: dict) -> float:
        return _percent(feature_flags(config).get(self.flag))

    def approval(self, doc: dict) -> Optional[dict]:
        """This flag's approval record if it was made on the revisions serving now (else None)."""
        a = (doc.get(FLAG_APPROVALS_KEY) or {}).get(self.flag)
        return a if a and (a.get("revisions") or {}) == self.revisions else None

    def approved(self, doc: dict, stage: float) -> bool:
        if stage <= 0:
            return True  # off for everyone: nothing to judge, the state before the ramp
        a = self.approval(doc)
        return bool(a) and not a.get("rejected") and float(a.get("stage", -1)) >= stage

    def rejected_before(self, doc: dict) -> Optional[dict]:
        a = self.approval(doc)
        return a if a and a.get("rejected") else None

    def record_check(self, doc: dict, verdicts: dict[str, rel.Verdict], rejected: Optional[str]) -> None:
        chosen = {rejected: verdicts[rejected]} if rejected else verdicts
        stage = next(iter(chosen.values())).stage
        bys = {v.by for v in chosen.values()}
        evidence = rel.evidence_digest({"flag": self.flag, "stage": stage,
                                        "verdicts": {k: v.evidence for k, v in sorted(chosen.items())}})
        record = {"stage": stage, "by": bys.pop() if len(bys) == 1 else "gate", "evidence": evidence,
                  "at": now(), "rejected": bool(rejected), "revisions": dict(self.revisions)}
        doc[FLAG_APPROVALS_KEY] = {**(doc.get(FLAG_APPROVALS_KEY) or {}), self.flag: record}

    def mark_reached(self, doc: dict, stage: float) -> None:
        """Into `doc["reached"]["flag:<flag>"]`: the highest percent the flag was live at on these revisions."""
        reached = dict(doc.get("reached") or {})
        before = reached.get(f"flag:{self.flag}") or {}
        top = float(before.get("stage", -1)) if before.get("revisions") == self.revisions else -1
        reached[f"flag:{self.flag}"] = {"revisions": dict(self.revisions), "stage": max(top, stage)}
        doc["reached"] = reached

    def forget_approvals(self, doc: dict) -> None:
        doc[FLAG_APPROVALS_KEY] = {k: a for k, a in (doc.get(FLAG_APPROVALS_KEY) or {}).items() if k != self.flag}

    def closing_removals(self) -> tuple[str, ...]:
        return ()

    def up_message(self, why: str) -> str:
        return f"netra rollout: flag {self.flag} {why}"

    def stage_fields(self) -> dict:
        return {"flag": self.flag}

    @property
    def nothing_live(self) -> str:
        return f"{self.flag} was on for nobody before this update"

    @property
    def rolled_back_state(self) -> str:
        return f"{self.flag} is off for everyone (0 %)"

    def start_stage(self, current: float) -> int:
        """Where a new ramp starts: the highest stage at or below the current percent, at most the first
        stage above 0 (what starting a ramp authorizes without evidence)."""
        below = [s for s in self.ladder if s <= current]
        return min(below[-1] if below else 0, self.ladder[1] if len(self.ladder) > 1 else 0)


# ---------------------------------------------------------------------------------------------------
# the steps that differ from the revision rollout's (the others are rollout's own functions)


def step_finished(d: "Driver", s: State) -> Outcome:
    return Outcome(EXIT_RELEASED, f"nothing to ramp: {s.release.flag} is on for {s.desired} % of requests")


def step_refuse(d: "Driver", s: State) -> Outcome:
    a = s.release.rejected_before(s.doc)
    return Outcome(EXIT_ROLLED_BACK, (
        f"{s.release.flag} was rejected (rolled back) at {a.get('stage')} % on these revisions ({a.get('at')}): nothing "
        f"done; approve it explicitly (`python -m infra approve --stack {s.release.stack} --flag {s.release.flag} "
        f"--stage N --note WHY`) or ship new code (new stable revisions) first"))


def step_begin(d: "Driver", s: State) -> None:
    r: FlagRelease = s.release
    start = r.start_stage(float(s.desired))
    def begin(record: dict) -> None:
        r.forget_approvals(record)  # evidence of an earlier ramp is not evidence for this one
        record[FLAG_RAMP_KEY] = {"flag": r.flag, "services": r.keys, "revisions": dict(r.revisions), "from": s.desired,
                                 "live": -1, "started": now()}

    d.update(f"begin: journal the ramp of {r.flag} from {s.desired} %, start at {start} %", release=begin,
             values={r.stage_keys()[0]: start})
    d.notify("start", f"flag {r.flag} along {list(r.ladder)} (from {s.desired} %), judged on {', '.join(r.keys)}",
             flag=r.flag, services=r.keys, ladder=list(r.ladder))


def step_done(d: "Driver", s: State) -> Outcome:
    d.close_journal(s)
    d.notify("released", f"flag {s.release.flag} is on for {s.live} % of requests", flag=s.release.flag)
    return Outcome(EXIT_RELEASED, f"ramped: {s.release.flag} is on for {s.live} % of requests")


def _rejected(s: State) -> bool:
    return bool(st.journal_of(s).get("rejected"))


def _kill_switch(s: State) -> bool:
    return killed(feature_flags(s.config).get(s.release.flag))


def step_stop(d: "Driver", s: State) -> None:
    """The operator turned the kill switch on during the ramp (the seed's emergency off): the ramp ends as
    a rollback to 0 %, so its journal closes and nothing climbs when the kill switch goes off again."""
    why = f"{flag_key(s.release.flag, 'killSwitch')} was turned on during the ramp"
    d.update(f"record the stop: {why}",
             release=lambda record: record.update({FLAG_RAMP_KEY: {**(record.get(FLAG_RAMP_KEY) or {}), "rejected": why}}))


FLAG_STEPS: tuple[Step, ...] = (
    Step("finished", lambda s: s.journal is None and s.desired >= s.release.ladder[-1], step_finished),
    Step("refuse", lambda s: s.journal is None and bool(s.release.rejected_before(s.doc)), step_refuse),
    Step("begin", lambda s: s.journal is None, step_begin),
    Step("stop", lambda s: _kill_switch(s) and not _rejected(s), step_stop),
    Step("retreat", lambda s: _rejected(s) and s.desired != 0, st.step_retreat),
    Step("apply", lambda s: s.desired != s.live, st.step_apply),
    Step("rolled-back", _rejected, st.step_rolled_back),
    Step("done", lambda s: s.live >= s.release.ladder[-1], step_done),
    Step("check", lambda s: not s.approved_at(s.live), st.step_check),
    Step("climb", lambda s: s.approved_at(s.live), st.step_climb),
)


# ---------------------------------------------------------------------------------------------------
# refusals (exit 2): what makes a ramp of this flag unsafe or meaningless now


def refusals(config: dict, flag: str) -> list[str]:
    """One line per problem, each naming its key; [] when the ramp may run (or resume)."""
    doc = read_release_doc(config)
    out = []
    if doc.get("rollout"):
        out.append(f"{RELEASE_KEY}.rollout: a revision rollout is in progress "
                   f"({', '.join(f'{k} {c}' for k, c in (doc['rollout'].get('candidates') or {}).items())}); finish it "
                   f"(python -m infra rollout) or roll it back before ramping a flag")
    journal = doc.get(FLAG_RAMP_KEY) or {}
    if journal and journal.get("flag") != flag:
        out.append(f"{RELEASE_KEY}.{FLAG_RAMP_KEY}: flag {journal.get('flag')} is ramping; finish it first "
                   f"(python -m infra rollout --flag {journal.get('flag')})")
    ff = feature_flags(config)
    value = ff.get(flag)
    shape = shape_problem(ff, flag)
    if shape:
        out.append(shape)
    elif killed(value) and journal.get("flag") != flag:  # during its ramp: the ramp stops (step_stop)
        out.append(f"{flag_key(flag, 'killSwitch')} is true: {flag} is off for everyone; a ramp would judge nothing. "
                   f"Turn the kill switch off (and set the percent to 0) to ramp it again")
    others = [k for k, v in ff.items() if k != flag and flags.is_ramp(v) and not killed(v)
              and not shape_problem(ff, k) and 0 < float(v["percent"]) < 100]
    out += [f"{flag_key(k, 'percent')} is {ff[k]['percent']}: flag {k} is ramping; one flag ramps at a time "
            f"(set it to 0 or 100 first)" for k in others]
    return out


def shape_problem(ff: dict, flag: str) -> Optional[str]:
    """Why `flag` of netra:platform.featureFlags cannot be ramped (missing, not a ramp object), or None."""
    if flag not in ff:
        return f"{flag_key(flag)}: no such flag (flags: {', '.join(sorted(ff)) or 'none'})"
    if not flags.is_ramp(ff[flag]):
        return (f"{flag_key(flag)} is {json.dumps(ff[flag])}, not a ramp; make it one first: "
                f"{{\"percent\": 0, \"killSwitch\": false}}")
    try:
        ok = 0 <= float(ff[flag]["percent"]) <= 100
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return f"{flag_key(flag, 'percent')} must be a number from 0 to 100, got {json.dumps(ff[flag]['percent'])}"
    return None


def revision_refusal(config: dict) -> Optional[str]:
    """Why a revision rollout must not start now (a flag ramp is in progress), or None."""
    journal = read_release_doc(config).get(FLAG_RAMP_KEY)
    if not journal:
        return None
    return (f"{RELEASE_KEY}.{FLAG_RAMP_KEY}: flag {journal.get('flag')} is ramping (live {journal.get('live')} %); "
            f"finish it first (python -m infra rollout --stack <stack> --flag {journal.get('flag')}): the gate could "
            f"not tell a new revision's effect from the flag's")


# ---------------------------------------------------------------------------------------------------
# the release from the stack, the live gate, the command


def plan_flag_release(stack: str, flag: str, service: Optional[str], config: dict) -> FlagRelease:
    """The flag ramp for the stack (raises StackError / UsageError for a bad --stack, --flag or --service)."""
    from infra.canary.api import UsageError, _typed_stack
    from infra.canary.stack import plan_outputs
    from infra.config.platform import secret_id
    from infra.wiring import FLAGS_SECRET, flag_readers

    if not FLAG.match(flag):
        raise UsageError(f"--flag must be a netra:platform.featureFlags key (lowercase letters, digits, _), got {flag!r}")
    cfg = _typed_stack(stack)
    outputs = plan_outputs(stack)
    readers = flag_readers(cfg)
    if service is not None and service not in readers:
        raise UsageError(f"--service {service}: not a service that reads the {FLAGS_SECRET} secret (those: "
                         f"{', '.join(readers) or 'none'})")
    journal = read_release_doc(config).get(FLAG_RAMP_KEY) or {}
    resumed = journal.get("services") if journal.get("flag") == flag else None
    # a ramp in progress resumes on the services it began with, whatever --service says now
    keys = list(resumed) if resumed and set(resumed) <= set(readers) else [service] if service else readers
    if not keys:
        raise UsageError(f"--flag {flag}: no service reads the {FLAGS_SECRET} secret (netra:services.<name>.secrets), "
                         f"so no request log carries the flag's arms")
    services = outputs.get("services") or {}
    off, on = arms(flag)
    raw = decode(config.get("netra:services")) or {}
    targets = tuple(Target(k, services[k]["serviceName"], on, off) for k in keys)
    # bound to the code every reader serves (not only the judged ones): the program checks the same binding
    revisions = {k: (raw.get(k) or {}).get("stableRevision") or None for k in readers}
    return FlagRelease(stack, flag, targets, tuple(cfg.stages), revisions, outputs.get("gcpProject", ""),
                       secret_id(cfg.environment, FLAGS_SECRET))


SECRET_MANAGER = "https://secretmanager.googleapis.com/v1/"


def deployed_flags(project: str, secret: str, session=None) -> dict:
    """The flags document the services read now: the latest version of `secret` (Secret Manager v1
    `versions.access`). The payload is never logged or put in an error (it is a Pulumi secret)."""
    import base64

    session = session or authorized_session()
    r = session.get(f"{SECRET_MANAGER}projects/{project}/secrets/{secret}/versions/latest:access", timeout=30)
    if r.status_code >= 300:
        raise OperationFailed(f"cannot read the latest version of secret {secret}: HTTP {r.status_code}")
    try:
        return json.loads(base64.b64decode(r.json()["payload"]["data"]))
    except (KeyError, TypeError, ValueError):
        raise OperationFailed(f"the latest version of secret {secret} is not a JSON flags document") from None


def make_flag_gate(settings, release: FlagRelease, log, client=None, read_flags=None, between=None, **judge_kwargs):
    """The gate on arms (infra.flag_gate.judge_flag_ramp) for one service at one stage; writes
    verdict-STACK-flag-FLAG-KEY-STAGE.json. It first checks that the services really read the percent the
    ramp applied (the flags secret's latest version; `read_flags` -> that document); a mismatch, an
    unreadable secret or a gate ERROR raises: the ramp rolls back and exits 4.
    `client` / `read_flags` / `judge_kwargs` (clock, sleep, retry): tests and emulators."""
    from infra.canary.api import _typed_stack
    from infra.flag_gate import criteria_for, judge_flag_ramp

    read_flags = read_flags or (lambda: deployed_flags(release.project, release.flags_secret))
    criteria = criteria_for(_typed_stack(release.stack), release.flag)  # what the optimization must deliver

    def gate(t: Target, stage: int) -> rel.Verdict:
        value = read_flags().get(release.flag)
        if not flags.is_ramp(value) or killed(value) or _percent(value) != stage:
            seen = (f"{_percent(value)} %" + (" with the kill switch on" if killed(value) else "")
                    if flags.is_ramp(value) else "not a ramp")
            raise OperationFailed(f"the services read {release.flag} at {seen} from secret {release.flags_secret} "
                                     f"(version latest), not {stage} % as applied")
        verdict = judge_flag_ramp(release.project, t.service_name, release.flag, stage, settings, client=client,
                                  stack=release.stack, progress=between_intervals(log, between), criteria=criteria,
                                  **judge_kwargs)
        return rollout_verdict(verdict, f"verdict-{release.stack}-flag-{release.flag}-{t.key}-{stage}.json",
                                  t.candidate, stage, f"the gate on {release.flag}'s arms in {t.key}")

    return gate


def flag_status(doc: dict, where: str) -> list[str]:
    """`status` lines: the flag ramp in progress and the last verdict per flag (`where`: the flags naming the
    stack in a printed command, `--stack S` or `--sandbox DIR`)."""
    j = doc.get(FLAG_RAMP_KEY)
    out = []
    if j:
        state = f"rejected: {j['rejected']}" if j.get("rejected") else "not rejected"
        out.append(f"  flag ramp in progress: {j.get('flag')} live {j.get('live')} % (from {j.get('from')} %, judged on "
                   f"{', '.join(j.get('services') or [])}; {state})")
        out.append(f"            next: python -m infra rollout {where} --flag {j.get('flag')}")
    for name, a in sorted((doc.get(FLAG_APPROVALS_KEY) or {}).items()):
        out.append(f"  flag {name}: {'rejected' if a.get('rejected') else 'approved'} at {a.get('stage')} % by "
                   f"{a.get('by')}" + (f" ({a.get('at')})" if a.get("at") else ""))
    return out
