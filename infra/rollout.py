"""`python -m infra rollout` / `python -m infra rollback`: drive a release through the traffic ladder.

    rollout --stack S [--service KEY] [--dry-run] [--tag NAME] [gate flags]
        migrate (fresh release, if the stack has a migration job) -> for each stage of netra:stages:
        set netra:services.KEY.canaryPercent, `pulumi up`, gate (0 < stage < 100) -> at 100 % finalize:
        stableRevision := candidate, canaryPercent 0, `pulumi up`, optionally `git tag`.
        A rollback verdict sets canaryPercent 0 and runs `pulumi up` at once. A hold stops where it is.
    rollback --stack S [--dry-run]
        emergency: canaryPercent 0 for every service (and the stack-wide key) in one `pulumi up`.

Exit codes: 0 released (or nothing to do), 1 rolled back, 3 held, 4 an operation failed (migration,
`pulumi up`, tag), 2 usage. The stage logic is the pure `transition` function below; `Driver` executes
its actions against a backend: Pulumi's Automation API (LocalWorkspace on the project root) or a
dry-run printer. Import-light: pulumi.automation, google.* are imported only when needed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace

EXIT_RELEASED, EXIT_ROLLED_BACK, EXIT_USAGE, EXIT_HELD, EXIT_FAILED = 0, 1, 2, 3, 4

# ---------------------------------------------------------------------------------------------------
# actions and the pure state machine


@dataclass(frozen=True)
class Migrate:
    pass


@dataclass(frozen=True)
class SetPercent:
    percent: int


@dataclass(frozen=True)
class Up:
    reason: str


@dataclass(frozen=True)
class Gate:
    percent: int


@dataclass(frozen=True)
class Finalize:
    """stableRevision := candidateRevision and canaryPercent := 0 for every service rolled out."""


@dataclass(frozen=True)
class Tag:
    pass


@dataclass(frozen=True)
class Done:
    exit_code: int
    reason: str


@dataclass(frozen=True)
class State:
    stages: tuple[int, ...]
    index: int  # position on the ladder of the traffic the config asks for
    phase: str  # start | migrating | applying | gating | rolling_back | finalizing | tagging | done
    has_migration: bool = False
    tag: bool = False
    exit_code: int | None = None
    failure: str | None = None


def initial_state(stages, current_percent: int, has_migration: bool, tag: bool) -> State:
    stages = tuple(int(s) for s in stages)
    if list(stages) != sorted(set(stages)) or stages[0] != 0 or stages[-1] != 100:
        raise ValueError(f"netra:stages must rise strictly from 0 to 100, got {list(stages)}")
    if len(stages) < 3:
        raise ValueError(f"netra:stages needs a stage between 0 and 100 for the gate, got {list(stages)}")
    if current_percent not in stages:
        raise ValueError(f"canaryPercent {current_percent} is not on the ladder {list(stages)}")
    return State(stages, stages.index(current_percent), "start", has_migration, tag)


def _apply(state: State, index: int) -> tuple[State, list]:
    pct = state.stages[index]
    return replace(state, index=index, phase="applying"), [SetPercent(pct), Up(f"stage {pct} %")]


def _done(state: State, code: int, reason: str) -> tuple[State, list]:
    return replace(state, phase="done", exit_code=code), [Done(code, reason)]


def transition(state: State, event: str) -> tuple[State, list]:
    """Next state and actions. Events: start, migrate_ok, migrate_failed, up_ok, up_failed, promote,
    rollback, hold, tag_ok, tag_failed. An event that does not fit the phase is a programming error."""
    s = state
    pct = s.stages[s.index]
    if s.phase == "done":
        raise ValueError("the rollout is over")
    if s.phase == "start" and event == "start":
        if pct == 0:  # a fresh release: migrate first, then the ladder from stage 0 (deploys the candidate)
            if s.has_migration:
                return replace(s, phase="migrating"), [Migrate()]
            return _apply(s, 0)
        if pct == 100:
            return replace(s, phase="finalizing"), [Finalize(), Up("finalize")]
        return replace(s, phase="gating"), [Gate(pct)]  # resume: judge the stage that is live
    if s.phase == "migrating":
        if event == "migrate_ok":
            return _apply(s, 0)
        if event == "migrate_failed":
            return _done(s, EXIT_FAILED, "the migration job failed: no traffic was moved")
    if s.phase == "applying":
        if event == "up_ok":
            if pct == 100:
                return replace(s, phase="finalizing"), [Finalize(), Up("finalize")]
            if pct == 0:
                return _apply(s, 1)
            return replace(s, phase="gating"), [Gate(pct)]
        if event == "up_failed":
            if pct == 0:
                return _done(s, EXIT_FAILED, "pulumi up failed at stage 0 (the candidate has no traffic)")
            return replace(s, phase="rolling_back", failure=f"pulumi up failed at stage {pct} %"), [
                SetPercent(0), Up("rollback after a failed update")]
    if s.phase == "gating":
        if event == "promote":
            return _apply(s, s.index + 1)
        if event == "rollback":
            return replace(s, phase="rolling_back"), [SetPercent(0), Up(f"rollback: the gate failed the canary at {pct} %")]
        if event == "hold":
            return _done(s, EXIT_HELD, f"held at {pct} %: the gate reached no decision; traffic left as it is")
    if s.phase == "rolling_back":
        if event in ("up_ok", "up_failed"):
            ok = event == "up_ok"
            code = EXIT_FAILED if (s.failure or not ok) else EXIT_ROLLED_BACK
            why = s.failure or f"the gate rolled the canary back at {pct} %"
            return _done(replace(s, index=0), code, why + ("; rolled back to 0 %" if ok else "; the rollback update FAILED too"))
    if s.phase == "finalizing":
        if event == "up_ok":
            if s.tag:
                return replace(s, phase="tagging"), [Tag()]
            return _done(s, EXIT_RELEASED, "released: the candidate is the new stable revision")
        if event == "up_failed":
            return _done(s, EXIT_FAILED, "pulumi up failed while finalizing (the candidate serves 100 %)")
    if s.phase == "tagging":
        if event == "tag_ok":
            return _done(s, EXIT_RELEASED, "released and tagged")
        if event == "tag_failed":
            return _done(s, EXIT_FAILED, "released, but tagging the commit failed")
    raise ValueError(f"event {event!r} does not fit phase {s.phase!r}")


def rollback_actions() -> list:
    return [SetPercent(0), Up("emergency rollback of every service")]


# ---------------------------------------------------------------------------------------------------
# backends


class OperationFailed(Exception):
    pass


class AutomationStack:
    """Executes actions on a Pulumi stack (Automation API `Stack`, or anything with its methods)."""

    def __init__(self, stack, log=print):
        self.stack = stack
        self.log = log

    def set_config(self, values: dict[str, str]) -> None:
        from pulumi import automation as auto

        for key, value in values.items():
            self.stack.set_config(key, auto.ConfigValue(value=str(value)), path=True)

    def up(self, message: str) -> None:
        from pulumi.automation import errors as auto_errors

        try:
            result = self.stack.up(message=message, on_output=lambda line: self.log(line.rstrip("\n")))
        except auto_errors.CommandError as exc:
            raise OperationFailed(f"pulumi up failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from None
        status = getattr(getattr(result, "summary", None), "result", "succeeded")
        if status not in ("succeeded",):
            raise OperationFailed(f"pulumi up ended with {status!r}")


def select_stack(stack_name: str):
    """The real stack: LocalWorkspace on the project root (Pulumi.yaml, project `netra`)."""
    from pulumi import automation as auto

    from infra.canary.stack import PROJECT_ROOT

    return auto.select_stack(stack_name=stack_name, work_dir=str(PROJECT_ROOT))


def run_migration_job(job: dict, project: str, session=None, timeout_s: float = 1800.0, poll_s: float = 5.0,
                      sleep=time.sleep, log=print) -> None:
    """Execute the Cloud Run job and wait for it (Cloud Run Admin API v2, jobs.run + operations.get)."""
    name = job["name"]
    if not name.startswith("projects/"):
        name = f"projects/{project}/locations/{job.get('region')}/jobs/{name}"
    if session is None:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        session = AuthorizedSession(creds)
    base = "https://run.googleapis.com/v2/"
    r = session.post(base + name + ":run", json={})
    if r.status_code >= 300:
        raise OperationFailed(f"migration job {name}: run returned HTTP {r.status_code}: {r.text[:200]}")
    op = r.json()
    log(f"migration job {name}: started ({op.get('name', '?')})")
    waited = 0.0
    while not op.get("done"):
        if waited >= timeout_s:
            raise OperationFailed(f"migration job {name}: not done after {timeout_s:.0f} s")
        sleep(poll_s)
        waited += poll_s
        r = session.get(base + op["name"])
        if r.status_code >= 300:
            raise OperationFailed(f"migration job {name}: operation poll returned HTTP {r.status_code}")
        op = r.json()
    if op.get("error"):
        raise OperationFailed(f"migration job {name} failed: {op['error'].get('message', op['error'])}")
    log(f"migration job {name}: succeeded")


def git_tag(name: str, message: str, cwd) -> None:
    r = subprocess.run(["git", "tag", "-a", name, "-m", message], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationFailed(f"git tag {name}: {r.stderr.strip()}")


# ---------------------------------------------------------------------------------------------------
# the driver


@dataclass
class Release:
    """What one rollout moves: the stack and the service keys, with what the plan knows of them."""

    stack: str
    services: list[str]
    outputs: dict  # plan outputs at the start

    def candidate(self, key: str) -> str:
        return self.outputs["services"][key]["candidateRevision"]


@dataclass
class Driver:
    release: Release
    backend: object | None  # AutomationStack, or None for a dry run
    gate: object  # callable(keys, percent) -> (decision, verdicts)
    migrate: object | None  # callable() -> None (raises OperationFailed)
    tag: object | None  # callable() -> None
    log: object = print
    journal: list = field(default_factory=list)  # every action, in order (dry-run output, tests)

    def config_for(self, action) -> dict[str, str]:
        keys = self.release.services
        if isinstance(action, SetPercent):
            return {f"netra:services.{k}.canaryPercent": str(action.percent) for k in keys}
        if isinstance(action, Finalize):
            out = {}
            for k in keys:
                out[f"netra:services.{k}.stableRevision"] = self.release.candidate(k)
                out[f"netra:services.{k}.canaryPercent"] = "0"
            return out
        return {}

    def execute(self, action) -> str | None:
        """Run one action; return the event it produced (None for actions without one)."""
        self.journal.append(action)
        if isinstance(action, (SetPercent, Finalize)):
            values = self.config_for(action)
            for k, v in values.items():
                self.log(f"set config {k} = {v}")
            if self.backend is not None:
                self.backend.set_config(values)
            return None
        if isinstance(action, Up):
            self.log(f"pulumi up ({action.reason})")
            if self.backend is None:
                return "up_ok"
            try:
                self.backend.up(f"netra rollout: {action.reason}")
            except OperationFailed as exc:
                self.log(str(exc))
                return "up_failed"
            return "up_ok"
        if isinstance(action, Migrate):
            self.log("run the migration job")
            try:
                if self.migrate:
                    self.migrate()
            except OperationFailed as exc:
                self.log(str(exc))
                return "migrate_failed"
            return "migrate_ok"
        if isinstance(action, Gate):
            self.log(f"gate {', '.join(self.release.services)} at {action.percent} %")
            decision, _ = self.gate(self.release.services, action.percent)
            self.log(f"gate verdict: {decision}")
            return decision
        if isinstance(action, Tag):
            self.log("tag the commit")
            try:
                if self.tag:
                    self.tag()
            except OperationFailed as exc:
                self.log(str(exc))
                return "tag_failed"
            return "tag_ok"
        raise TypeError(action)

    def run(self, state: State) -> tuple[int, str]:
        state, actions = transition(state, "start")
        while True:
            event = None
            for a in actions:
                if isinstance(a, Done):
                    self.journal.append(a)
                    return a.exit_code, a.reason
                ev = self.execute(a)
                event = ev if ev is not None else event
            state, actions = transition(state, event)


# ---------------------------------------------------------------------------------------------------
# command line


def register(subparsers) -> None:
    from infra.canary.api import add_gate_arguments

    p = subparsers.add_parser(
        "rollout",
        help="drive a release through the traffic ladder with the canary gate (Pulumi Automation API)",
        description="Migrate, then per stage: set canaryPercent, pulumi up, gate; finalize at 100 %%. "
                    "Exit 0 released, 1 rolled back, 3 held, 4 an operation failed, 2 usage.",
    )
    add_gate_arguments(p)
    p.add_argument("--service", help="roll out only this service key (default: every service with a new candidate)")
    p.add_argument("--dry-run", action="store_true", help="print the ordered actions; change nothing")
    p.add_argument("--tag", metavar="NAME", help="after finalizing, `git tag -a NAME` the current commit")
    p.set_defaults(func=run_rollout)

    r = subparsers.add_parser(
        "rollback",
        help="emergency rollback: canaryPercent 0 for every service in one pulumi up",
        description="Set netra:canaryPercent and every netra:services.KEY.canaryPercent to 0, then pulumi up once. "
                    "Exit 0 done, 4 the update failed, 2 usage.",
    )
    r.add_argument("--stack", help="stack name")
    r.add_argument("--dry-run", action="store_true", help="print the actions; change nothing")
    r.set_defaults(func=run_rollback)


def _err(cmd: str, message: str) -> int:
    print(f"infra {cmd}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def plan_release(stack: str, service: str | None, overrides=None) -> tuple[Release, int, list[int]]:
    """Release, current stage and ladder from the offline plan (raises StackError / ValueError)."""
    from infra.canary.stack import StackError, plan_outputs, service_info

    outputs = plan_outputs(stack, overrides)
    services = outputs.get("services") or {}
    if service is not None:
        keys = [service_info(outputs, service).key]
    else:
        keys = [k for k in sorted(services) if services[k].get("candidateRevision") != services[k].get("stableRevision")]
    percents = {k: int(service_info(outputs, k).canary_percent) for k in keys}
    if len(set(percents.values())) > 1:
        at = ", ".join(f"{k} {p} %" for k, p in percents.items())
        raise StackError(f"--service: the services are at different stages ({at}); roll them out one at a time with --service")
    current = next(iter(percents.values()), 0)
    stages = [int(s) for s in outputs.get("stages") or [0, 10, 50, 100]]
    return Release(stack, keys, outputs), current, stages


def make_gate(args, settings, stack: str, dry_run: bool, log):
    """callable(keys, percent) -> (decision, verdicts): every service gated; rollback if any fails,
    promote only if all promote, hold otherwise."""

    def dry(keys, percent):
        return "promote", {k: {"decision": "promote", "reason": "dry run: gate assumed to promote"} for k in keys}

    if dry_run:
        return dry

    def real(keys, percent):
        from infra.canary import api

        verdicts = {}
        for k in keys:
            try:  # what Cloud Run serves now (traffic tags), not what the config says
                verdict = api.judge(api.deployed_revisions(stack, k), settings, stack=stack, progress=log)
            except api.DeployedStateError as exc:
                verdict = api.Verdict(api.Decision.ERROR, f"error: {exc}", {"service": k})
            verdicts[k] = v = verdict.as_dict()
            with open(f"verdict-{stack}-{k}-{percent}.json", "w") as f:
                json.dump(v, f, indent=2)
            if v["decision"] == "rollback":
                return "rollback", verdicts
        decisions = {v["decision"] for v in verdicts.values()}
        return ("promote" if decisions == {"promote"} else "hold"), verdicts

    return real


def run_rollout(args, *, backend=None, migrate=None, tagger=None, gate=None, log=None) -> int:
    """`rollout`. The keyword hooks let tests inject a fake Automation API stack and gate."""
    from infra.canary.api import UsageError, gate_settings, quiet_google_warnings
    from infra.canary.stack import PROJECT_ROOT, StackError

    quiet_google_warnings()
    log = log or (lambda line: print(line, file=sys.stderr if not args.dry_run else sys.stdout, flush=True))
    if not args.stack:
        return _err("rollout", "--stack is required (a stack name such as prod or staging)")
    try:
        settings = gate_settings(args)
        release, current, stages = plan_release(args.stack, args.service)
        state = initial_state(stages, current, bool(release.outputs.get("migrationJob")), bool(args.tag))
    except (UsageError, StackError, ValueError) as exc:
        return _err("rollout", str(exc))
    if not release.services:
        print("nothing to roll out: every service's candidate is already its stable revision")
        return EXIT_RELEASED
    log(f"rollout {args.stack}: {', '.join(release.services)} from {current} % along {stages}"
        + (" (dry run)" if args.dry_run else ""))

    if args.dry_run:
        backend = None
    elif backend is None:
        try:
            backend = AutomationStack(select_stack(args.stack), log=log)
        except Exception as exc:  # no Pulumi CLI, no such stack, no backend login...
            print(f"infra rollout: error: cannot open stack {args.stack!r} with the Automation API "
                  f"(needs the Pulumi CLI and a logged-in backend): "
                  f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}", file=sys.stderr)
            return EXIT_FAILED
    job = release.outputs.get("migrationJob")
    if migrate is None and job and not args.dry_run:
        def migrate():
            run_migration_job(job, release.outputs.get("gcpProject", ""), log=log)
    if tagger is None and args.tag and not args.dry_run:
        def tagger():
            git_tag(args.tag, f"netra {args.stack}: released {', '.join(release.candidate(k) for k in release.services)}",
                    PROJECT_ROOT)
    if gate is None:
        gate = make_gate(args, settings, args.stack, args.dry_run, log)
    driver = Driver(release, backend, gate, migrate, tagger, log=log)
    code, reason = driver.run(state)
    print(f"rollout {args.stack}: {reason} (exit {code})")
    return code


def run_rollback(args, *, backend=None, log=None) -> int:
    """`rollback`: every service (and the stack-wide key) to canaryPercent 0 in one update."""
    from infra.canary.stack import StackError, plan_outputs

    log = log or (lambda line: print(line, flush=True))
    if not args.stack:
        return _err("rollback", "--stack is required (a stack name such as prod or staging)")
    try:
        outputs = plan_outputs(args.stack)
    except StackError as exc:
        return _err("rollback", str(exc))
    keys = sorted((outputs.get("services") or {}).keys())
    values = {"netra:canaryPercent": "0", **{f"netra:services.{k}.canaryPercent": "0" for k in keys}}
    for k, v in values.items():
        log(f"set config {k} = {v}")
    log("pulumi up (emergency rollback of every service)")
    if args.dry_run:
        return EXIT_RELEASED
    if backend is None:
        try:
            backend = AutomationStack(select_stack(args.stack), log=log)
        except Exception as exc:
            print(f"infra rollback: error: cannot open stack {args.stack!r} with the Automation API "
                  f"(needs the Pulumi CLI and a logged-in backend): "
                  f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}", file=sys.stderr)
            return EXIT_FAILED
    backend.set_config(values)
    try:
        backend.up("netra emergency rollback: canaryPercent 0 for every service")
    except OperationFailed as exc:
        print(f"infra rollback: {exc}", file=sys.stderr)
        return EXIT_FAILED
    log(f"rolled back: {', '.join(keys)} serve their stable revisions")
    return EXIT_RELEASED
