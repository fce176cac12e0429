"""`python -m infra status`: per service the stable and candidate revision, live stage, last verdict and
next step; the flag ramp in progress. Read-only. Exit 0, 2 usage."""
from __future__ import annotations

import json
import sys
import time
from typing import Optional

from infra.release import model as rel
from infra.release.backends import stack_ledger, stack_raw_config
from infra.release.cli.common import err
from infra.release.flag import FLAG_APPROVALS_KEY, FLAG_RAMP_KEY, flag_status
from infra.release.ledger import LedgerError
from infra.release.lock import describe
from infra.release.state import EXIT_FAILED, EXIT_RELEASED, STACK_PERCENT_KEY, decode, read_release_doc
from infra.release.view import current
from infra.release import sandbox


def register(subparsers) -> None:
    st = subparsers.add_parser("status", help="per service: stable and candidate revision, live stage, last verdict, "
                                              "next step, the lease and the rollback fence",
                               description="Read-only. Exit 0, 2 usage, 4 the ledger cannot be read.")
    st.add_argument("--stack", help="stack name")
    st.add_argument("--json", action="store_true", help="one JSON object on stdout")
    sandbox.add_argument(st)
    st.set_defaults(func=run_status)


def configured_stages(config: dict) -> dict[str, int]:
    """Per service key with an entry in the config: the stage the config asks for (its override, else the
    stack's `netra:canaryPercent`)."""
    services = decode(config.get("netra:services")) or {}
    stack_stage = int(decode(config.get(STACK_PERCENT_KEY, 0)) or 0)
    return {k: int((v or {}).get("canaryPercent", stack_stage) or 0) for k, v in services.items()}


def service_status(outputs: dict, doc: dict, stages, stack: str = "<stack>",
                   configured: Optional[dict[str, int]] = None, where: Optional[str] = None) -> list[dict]:
    """Per service: stable, candidate, live stage, last verdict, next step (pure; `status` prints it). Each
    next step is a command that runs as printed (it names the stack). `configured`: the stages the ledger's
    config asks for; after a rollback they, not the rejected journal's last stage, are what serves.
    `where`: the flags that name the stack in the commands (default `--stack STACK`; a sandbox's `--sandbox DIR`)."""
    journal = doc.get("rollout") or {}
    where = where or f"--stack {stack}"
    rollout = f"python -m infra rollout {where}"
    rows = []
    for key in sorted(outputs.get("services") or {}):
        s = outputs["services"][key]
        cand, stable = s["candidateRevision"], s.get("stableRevision") or None
        a = (doc.get("approvals") or {}).get(key)
        live = s.get("canaryPercent", 0)
        in_rollout = key in (journal.get("candidates") or {})
        rolled_back_from = None
        if in_rollout and journal.get("live", -1) >= 0:
            live = journal["live"]
            if journal.get("rejected") and configured and key in configured and configured[key] != live:
                # a rollback applied its stage with its own `pulumi up`; the journal keeps the stage it left
                rolled_back_from, live = live, configured[key]
        verdict = None
        if a:
            verdict = (f"{'rejected' if a.get('rejected') else 'approved'} {a.get('revision')} at {a.get('stage')} % "
                       f"by {a.get('by')}" + (f" ({a.get('at')})" if a.get("at") else ""))
        ladder = rel.ladder_for(stable, stages)
        if stable == cand:
            nxt = "nothing: the candidate is the stable revision"
        elif journal.get("rejected") and in_rollout and rolled_back_from is not None:
            nxt = f"close the rejected rollout (the rollback already set {live} %): {rollout}"
        elif journal.get("rejected") and in_rollout:
            nxt = f"finish the rollback: {rollout} (or python -m infra rollback {where})"
        elif a and a.get("revision") == cand and a.get("rejected"):
            nxt = "rejected: change the template (new candidate) or approve explicitly"
        elif journal.get("finalizing") and in_rollout:
            nxt = f"finish finalizing: {rollout}"
        elif a and a.get("revision") == cand:
            nxt = f"climb to {rel.next_stage(ladder, int(a.get('stage', 0)))} %: {rollout}"
        elif live == 0 or not in_rollout:
            nxt = f"verify at 0 %: {rollout} --service {key}"
        else:
            nxt = f"judge the live {live} %: {rollout}"
        bake = (doc.get("bake") or {}).get(key)
        bake = {"previous": bake.get("previous"), "until": bake.get("until")} if bake and bake.get("revision") == stable else None
        rows.append({"service": key, "stable": stable, "candidate": cand, "live": live, "rolledBackFrom": rolled_back_from,
                     "lastVerdict": verdict, "inRollout": in_rollout, "next": nxt, "bake": bake})
    return rows


class StackFile:
    """The stack as `status` reads it without the Pulumi CLI: Pulumi.<stack>.yaml and the stack's ledger."""

    def __init__(self, stack: str):
        self.stack = stack
        self.ledger = stack_ledger(stack, self.read)

    def read(self) -> dict:
        return stack_raw_config(self.stack)


def lease_line(lease: Optional[dict], now_s: float) -> str:
    if not lease:
        return "lease: free"
    state = "live" if float(lease.get("expires", 0)) > now_s else "EXPIRED (its holder stopped heartbeating)"
    return f"lease: {state}: {describe(lease)}"


def fence_line(fence: dict) -> str:
    if not int(fence.get("seq", 0)):
        return "rollback fence: 0 (no rollback recorded)"
    return (f"rollback fence: {fence['seq']}, by {fence.get('by')} at {fence.get('at')} ({fence.get('why')}); rejected: "
            + (", ".join(f"{k} {v}" for k, v in sorted((fence.get("rejected") or {}).items())) or "nothing"))


def run_status(args, *, backend=None) -> int:
    """`status`; `backend`: a stack (read() and ledger) to read instead of Pulumi.<stack>.yaml and its ledger."""
    from infra.canary.stack import StackError, plan_outputs

    if not args.stack:
        return err("status", "--stack is required (a stack name such as prod or staging)")
    try:
        outputs = plan_outputs(args.stack)
    except StackError as exc:
        return err("status", str(exc))
    try:
        config, snap = current(backend or StackFile(args.stack))
    except LedgerError as exc:
        print(f"infra status: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    doc = read_release_doc(config)
    where = f"--sandbox {args.sandbox}" if getattr(args, "sandbox", None) else f"--stack {args.stack}"
    rows = service_status(outputs, doc, outputs.get("stages") or [0, 10, 50, 100], args.stack, configured_stages(config),
                          where)
    now_s = time.time()
    if args.json:
        lease = snap.lease
        print(json.dumps({"stack": args.stack, "rollout": doc.get("rollout"), "services": rows,
                          FLAG_RAMP_KEY: doc.get(FLAG_RAMP_KEY), FLAG_APPROVALS_KEY: doc.get(FLAG_APPROVALS_KEY) or {},
                          "ledger": {"generation": str(snap.generation), "fence": snap.fence,
                                     "lease": ({k: v for k, v in lease.items() if k != "id"}
                                               | {"live": float(lease.get("expires", 0)) > now_s}) if lease else None}},
                         indent=2))
        return EXIT_RELEASED
    j = doc.get("rollout")
    if not j:
        print(f"stack {args.stack}: no rollout in progress")
    elif j.get("rejected"):
        print(f"stack {args.stack}: rollout rejected at {j.get('live')} % ({j['rejected']}); "
              f"`python -m infra rollout {where}` closes it")
    else:
        print(f"stack {args.stack}: rollout in progress (live {j.get('live')} %, not rejected)")
    print(f"  {lease_line(snap.lease, now_s)}")
    print(f"  {fence_line(snap.fence)}")
    for line in flag_status(doc, where):
        print(line)
    for r in rows:
        print(f"  {r['service']:<9} stable {r['stable'] or '(none: first deploy)'}  candidate {r['candidate'] or '(none yet)'}  "
              f"live {r['live']} %" + (f" (rolled back from {r['rolledBackFrom']} %)" if r["rolledBackFrom"] is not None else ""))
        print(f"            last verdict: {r['lastVerdict'] or 'none'}")
        if r["bake"]:
            print(f"            baking until {r['bake']['until']}: `rollback` returns to {r['bake']['previous']}")
        print(f"            next: {r['next']}")
    return EXIT_RELEASED
