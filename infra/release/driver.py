"""The Driver: a reconcile loop over a release kind's step table. Each turn it reads the state fresh
(the ledger and the stack config, view.current), runs the first step whose `when` holds, and the step
records what it achieved right after achieving it; a driver killed anywhere and started again re-derives
where it was.

Effects go through `effect`, which first looks at the ledger (`guard`): when the rollback fence moved
since the driver started, it stops at once (`Superseded`: exit 1, event `superseded`); it also renews
the lease. Writes go through `update`, one compare-and-swap of a fresh ledger read that re-checks the
fence and the lease inside the swap, then renders the stack config; `up` renders and checks the stack
config against the ledger read just now before `pulumi up`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from infra.release import model as rel
from infra.release import view
from infra.release.backends import MemoryBackend
from infra.release.lock import Lease, LeaseLost
from infra.release.state import (EXIT_FAILED, EXIT_RELEASED, EXIT_ROLLED_BACK, OperationFailed, Kind, Outcome, State,
                                 Step, Superseded, Target, read_state)


@dataclass
class Driver:
    release: Kind
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
    actor: str = "rollout"  # who writes, in the ledger's history
    lease: Optional[Lease] = None  # held by the command while the driver runs (renewed before every effect)
    fence_seq: Optional[int] = None  # the rollback fence when the driver started: it stops when it moves

    @property
    def tag_requested(self) -> bool:
        return self.tag is not None

    # the ledger ------------------------------------------------------------------------------------
    def check_fence(self, doc: dict) -> None:
        if self.fence_seq is not None and int((doc.get("fence") or {}).get("seq", 0)) != self.fence_seq:
            raise Superseded(doc["fence"])

    def guard(self) -> None:
        """Before every effect: a fresh look at the ledger (stop when the fence moved), and the heartbeat."""
        self.check_fence(self.backend.ledger.read().doc)
        if self.lease is not None:
            self.lease.renew()

    def update(self, what: str, release: Optional[Callable[[dict], None]] = None, values: Optional[dict] = None,
               remove: tuple[str, ...] = ()) -> None:
        """One compare-and-swap of the ledger: `release(record)` changes the fresh release record, `values`
        and `remove` the config the program renders; refused (nothing written) when the fence moved or the
        lease is no longer ours. Then the stack config is rendered from what was written."""
        for k, v in (values or {}).items():
            self.log(f"set config {k} = {json.dumps(v) if not isinstance(v, (str, int)) else v}")
        for k in remove:
            self.log(f"remove config {k}")
        if release is not None:
            self.log(f"record in the ledger: {what}")
        self.trace.append(("write", what))

        def change(doc: dict) -> None:
            self.check_fence(doc)
            if self.lease is not None and (doc.get("lease") or {}).get("id") != self.lease.id:
                raise LeaseLost("the lease is no longer ours")
            if release is not None:
                release(doc["release"])
            for k, v in (values or {}).items():
                doc["config"][k] = v
            for k in remove:
                doc["config"][k] = None

        snap, _ = self.backend.ledger.update(change, self.actor, what)
        self.render(snap)

    def render(self, snap) -> None:
        for key in view.render(self.backend, snap):
            self.log(f"refused: {key} in the stack config is not what the release ledger holds (hand-written, or a "
                     f"stale copy): ignored, the config is rendered from the ledger")

    def write(self, values: dict, remove: tuple[str, ...] = (), what: str = "") -> None:
        self.update(what, values=values, remove=remove)

    def record(self, change: Callable[[dict], None], what: str) -> None:
        """Update the journal after an effect succeeded (in the fresh record: the effect may have taken long)."""
        key = self.release.journal_key

        def journal(record: dict) -> None:
            j = dict(record.get(key) or {})
            change(j)
            record[key] = j

        self.update(what, release=journal)

    def fail(self, s: State, why: str) -> None:
        """A failure (not a verdict) rolls back too: the journal says why, and the candidates lose their
        approvals (so they start again from verification, and no stage key can give them traffic)."""
        key = s.release.journal_key

        def failed(record: dict) -> None:
            record[key] = {**(record.get(key) or {}), "rejected": why, "failed": True}
            s.release.forget_approvals(record)

        self.update(f"record the failure: {why}", release=failed)

    def close_journal(self, s: State) -> None:
        self.update("close the journal", release=lambda record: record.pop(s.release.journal_key, None),
                    remove=s.release.closing_removals())

    # effects -------------------------------------------------------------------------------------
    def effect(self, kind: str, fn: Callable[[], Any], what: str = "") -> Any:
        self.guard()
        self.trace.append(("effect", kind))
        self.log(f"{kind} {what}".rstrip())
        return fn()

    def up(self, message: str, what: str = "") -> None:
        """`pulumi up` on the stack config rendered from the ledger read just now (checked, else refused)."""
        snap = self.backend.ledger.read()
        self.check_fence(snap.doc)
        try:
            view.check_rendered(self.backend, snap)
        except OperationFailed:  # a stale or hand-edited config (another machine's copy): render it again
            self.render(snap)
            view.check_rendered(self.backend, snap)
        self.effect("pulumi up", lambda: self.backend.up(message), what)

    def notify(self, event: str, message: str, **fields) -> None:
        if self.notifier is not None:
            self.notifier.emit(event, message, **fields)

    # the loop ------------------------------------------------------------------------------------
    def run(self) -> Outcome:
        if not self.release.targets:
            return Outcome(EXIT_RELEASED, "nothing to roll out: every service's candidate is already its stable revision")
        if self.fence_seq is None:
            self.fence_seq = int(self.backend.ledger.read().fence.get("seq", 0))
        try:
            return self._loop()
        except Superseded as stop:
            f = stop.fence
            why = (f"superseded: {f.get('by')} rolled back at {f.get('at')} ({f.get('why')}); stopped before any "
                   f"further effect")
            self.trace.append(("superseded", f.get("seq")))
            self.notify("superseded", why, by=f.get("by"), at=f.get("at"), fence=f.get("seq"))
            return Outcome(EXIT_ROLLED_BACK, why)
        except LeaseLost as exc:
            return Outcome(EXIT_FAILED, f"stopped: {exc}; another actor holds the stack now")

    def _loop(self) -> Outcome:
        steps = self.steps if self.steps is not None else self.release.steps
        for _ in range(self.max_turns):
            state = read_state(self.release, self.backend, self.tag_requested)
            self.check_fence(state.ledger)
            step = next((st for st in steps if st.when(state)), None)
            if step is None:
                raise RuntimeError(f"no step fits the recorded state (live {state.live}, desired {state.desired})")
            self.trace.append(("step", step.name))
            self.log(f"-- {step.name}")
            outcome = step.run(self, state)
            if outcome is not None:
                return outcome
        raise RuntimeError(f"the rollout did not converge in {self.max_turns} steps")


def dry_run_gate(decisions: dict[int, str] | None = None):
    """A scripted check for the dry run: promote, or the decision given for a stage."""

    def check(t: Target, stage: int) -> rel.Verdict:
        decision = (decisions or {}).get(stage, "promote")
        return rel.Verdict(decision, t.candidate, stage, rel.evidence_digest({"dry-run": stage}),
                           f"dry run: assumed {decision}", by="verify" if stage == 0 else "gate")

    return check


def simulate(release: Kind, config: dict, decisions: dict[int, str] | None = None, tag: bool = False,
             log=lambda line: None) -> tuple[Outcome, list, MemoryBackend]:
    backend = MemoryBackend(config)
    check = dry_run_gate(decisions)
    driver = Driver(release, backend, gate=check, verify=check, tag=(lambda: None) if tag else None, log=log)
    outcome = driver.run()
    return outcome, driver.trace, backend


