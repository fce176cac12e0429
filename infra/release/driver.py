"""The Driver: a reconcile loop over a release kind's step table. Each turn it reads the state fresh,
runs the first step whose `when` holds, and the step records what it achieved right after achieving it;
a driver killed anywhere and started again re-derives where it was. Effects go through `effect` (traced,
logged) and config writes through `write`/`record` (a fresh read, never a copy from before an effect).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from infra.release import model as rel
from infra.release.backends import MemoryBackend
from infra.release.state import (EXIT_RELEASED, RELEASE_KEY, Kind, Outcome, Step, Target, read_release_doc,
                                 read_state)


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


