"""`python -m infra approve`: an operator approval of one candidate revision (or a flag ramp) at one
stage, with who, why and when. Exit 0 recorded, 2 usage, 4 failed."""
from __future__ import annotations

import getpass
import re
import sys
from typing import Optional

from infra.release import model as rel
from infra.release.backends import open_backend, stack_raw_config
from infra.release.cli.common import err
from infra.release.flag import FLAG_APPROVALS_KEY, feature_flags, plan_flag_release, shape_problem
from infra.release.ledger import Abort, LedgerError
from infra.release.state import EXIT_FAILED, EXIT_RELEASED, now
from infra.release.view import commit, current
from infra.release import sandbox


def register(subparsers) -> None:
    a = subparsers.add_parser(
        "approve", help="record an operator approval of one candidate revision at one stage (netra:release)",
        description="Approve REVISION of SERVICE at STAGE %, so it may get the next stage. Recorded in stack config "
                    "with who, when and the SHA-256 of the note. Exit 0 recorded, 2 usage, 4 failed.")
    a.add_argument("--stack", help="stack name")
    a.add_argument("--flag", metavar="NAME", help="approve the ramp of this feature flag at --stage instead (no "
                                                  "--service / --revision)")
    a.add_argument("--service", help="service key")
    a.add_argument("--revision", help="the exact candidate revision (see `status`)")
    a.add_argument("--stage", help="the stage it was checked at")
    a.add_argument("--note", help="why (a ticket, a dashboard link, what you checked)")
    a.add_argument("--by", default=None, help="who approves (default: the login name)")
    sandbox.add_argument(a)
    a.set_defaults(func=run_approve)


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
        return run_approve_flag(args, backend=backend)
    for flag in ("stack", "service", "revision", "stage", "note"):
        if not getattr(args, flag):
            return err("approve", f"--{flag} is required")
    try:
        outputs = plan_outputs(args.stack)
        info = service_info(outputs, args.service)
        stage = int(args.stage)
    except StackError as exc:
        return err("approve", str(exc))
    except ValueError:
        return err("approve", f"--stage must be a stage of netra:stages {outputs.get('stages')}, got {args.stage!r}")
    ladder = rel.ladder_for(info.stable, outputs.get("stages") or [0, 10, 50, 100])
    if stage not in ladder or stage == ladder[-1]:
        return err("approve", f"--stage must be one of {list(ladder[:-1])} (the stage it was checked at), got {stage}")
    if args.revision != info.candidate:
        return err("approve", f"--revision {args.revision} is not {info.key}'s candidate {info.candidate}: "
                               f"an approval is bound to the exact revision")
    who, problem = operator_login(args.by)
    if problem:
        return err("approve", problem)
    note = {"service": info.key, "revision": info.candidate, "stage": stage, "by": who, "note": args.note}
    record = {"revision": info.candidate, "stage": stage, "by": f"operator:{who}",
              "evidence": rel.evidence_digest(note), "at": now(), "rejected": False}
    if backend is None:
        backend = open_backend("approve", args.stack)
        if backend is None:
            return EXIT_FAILED

    def approve(doc: dict) -> None:
        reached = (doc["release"].get("reached") or {}).get(info.key) or {}
        if reached.get("revision") != info.candidate or int(reached.get("stage", -1)) < stage:
            seen = (f"it was live at {reached['stage']} % at most" if reached.get("revision") == info.candidate
                    else "it has not been live at any stage")
            raise NotReached(f"--stage {stage}: {info.candidate} never served {stage} % ({seen}); an operator approves "
                             f"what was seen at a stage: run `python -m infra rollout` to reach it first")
        doc["release"]["approvals"] = {**doc["release"].get("approvals", {}), info.key: record}

    code = commit_approval(backend, who, f"approve {info.candidate} at {stage} %: {args.note}", approve)
    if code is not None:
        return code
    print(f"approved {info.candidate} at {stage} % by operator:{who} (evidence {record['evidence'][:12]}…): "
          f"it may now get {rel.next_stage(ladder, stage)} %")
    return EXIT_RELEASED


def run_approve_flag(args, *, backend=None) -> int:
    """`approve --flag NAME --stage S --note WHY`: an operator approval of the flag at stage S (it may then get
    the next stage), bound like the gate's to the revisions serving now; it also lifts a rejection."""
    from infra.canary.api import UsageError
    from infra.canary.stack import StackError

    for name in ("stack", "stage", "note"):
        if not getattr(args, name):
            return err("approve", f"--{name} is required")
    if args.service or args.revision:
        return err("approve", "--flag approves a flag ramp: leave out --service and --revision")
    who, problem = operator_login(args.by)
    if problem:
        return err("approve", problem)
    try:
        config = stack_raw_config(args.stack) if backend is None else current(backend)[0]
        release = plan_flag_release(args.stack, args.flag, None, config)
    except (UsageError, StackError) as exc:
        return err("approve", str(exc))
    shape = shape_problem(feature_flags(config), args.flag)
    if shape:
        return err("approve", shape)
    checked = release.checked_stages
    if str(args.stage) not in {str(s) for s in checked}:
        return err("approve", f"--stage must be one of {checked} (the stage the flag was checked at), got {args.stage!r}")
    stage = int(args.stage)
    if backend is None:
        backend = open_backend("approve", args.stack)
        if backend is None:
            return EXIT_FAILED
        config = current(backend)[0]
        release = plan_flag_release(args.stack, args.flag, None, config)
        shape = shape_problem(feature_flags(config), args.flag)  # what the stack holds, not the stack file
        if shape:
            return err("approve", shape)
    note = {"flag": args.flag, "stage": stage, "by": who, "note": args.note}
    record = {"stage": stage, "by": f"operator:{who}", "evidence": rel.evidence_digest(note), "at": now(),
              "rejected": False, "revisions": dict(release.revisions)}

    def approve(doc: dict) -> None:
        reached = (doc["release"].get("reached") or {}).get(f"flag:{args.flag}") or {}
        if reached.get("revisions") != release.revisions or float(reached.get("stage", -1)) < stage:
            raise NotReached(f"--stage {stage}: flag {args.flag} was never live at {stage} % on the revisions serving now; "
                             f"an operator approves what was seen at a stage: ramp it there first (`python -m infra "
                             f"rollout --flag {args.flag}`)")
        doc["release"][FLAG_APPROVALS_KEY] = {**(doc["release"].get(FLAG_APPROVALS_KEY) or {}), args.flag: record}

    code = commit_approval(backend, who, f"approve flag {args.flag} at {stage} %: {args.note}", approve)
    if code is not None:
        return code
    print(f"approved flag {args.flag} at {stage} % by operator:{who} (evidence {record['evidence'][:12]}…): it may now "
          f"get {rel.next_stage(release.ladder, stage)} %")
    return EXIT_RELEASED


class NotReached(Abort):
    """An operator approval of a stage the candidate never served: refused, nothing written."""


def commit_approval(backend, who: str, what: str, change) -> Optional[int]:
    """The approval as one compare-and-swap of the ledger (then the stack config rendered); None when done,
    else the exit code after one error line."""
    try:
        commit(backend, f"operator:{who}", what, change)
    except NotReached as exc:
        return err("approve", str(exc))
    except LedgerError as exc:
        print(f"infra approve: error: {exc}; nothing was recorded", file=sys.stderr)
        return EXIT_FAILED
    return None
