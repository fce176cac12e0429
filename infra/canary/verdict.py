"""The gate's answer: one ordered decision type and the verdict document built around it.

`Decision` is ordered by severity, so combining the verdicts of several services is `max(...)`: any
rollback wins, then an error, then a hold; only when every service promotes is the result promote.
The judge's vectorised state stores these values in integer arrays; CONTINUE is the judge's "not
decided yet", which the gate turns into HOLD when its time is up.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Decision(enum.IntEnum):
    PROMOTE = 0
    CONTINUE = 1
    HOLD = 2
    ERROR = 3
    ROLLBACK = 4

    @property
    def exit_code(self) -> int:
        """`python -m infra gate` exit status: 0 promote, 1 rollback, 3 hold, 4 error (2 is usage)."""
        return _EXIT[self]

    @property
    def label(self) -> str:
        return self.name.lower()


_EXIT = {Decision.PROMOTE: 0, Decision.ROLLBACK: 1, Decision.HOLD: 3, Decision.CONTINUE: 3, Decision.ERROR: 4}
EXIT_USAGE = 2


@dataclass
class Verdict:
    """What one gate run concluded, with everything needed to explain it (`as_dict` is the JSON)."""

    decision: Decision
    reason: str
    details: dict = field(default_factory=dict)  # revisions, window, evidence, faults, config, ...

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def as_dict(self) -> dict:
        return {"decision": self.decision.label, "exit_code": self.exit_code, "reason": self.reason, **self.details}


def combine(decisions) -> Decision:
    """The release-wide decision of several services' decisions (the most severe one)."""
    return max(decisions, default=Decision.HOLD)


def worth_summary(worth: dict | None) -> str:
    """One line of what a release is worth from a verdict's `value` (infra.canary.report.worth):
    "cost -42 % [-47 %, -36 %], tokens -45 % [-48 %, -41 %], ~+1200 USD/day saved at 100 %" ("" without data).
    Here, not in report, so the release driver can say it without importing numpy."""
    if not worth:
        return ""

    def pct(x) -> str:
        return "?" if x is None else f"{100 * x:+.0f} %"

    parts = []
    for name, e in (worth.get("effects") or {}).items():
        if not isinstance(e, dict):
            continue
        if e.get("change") is not None:  # cost, tokens: changes
            lo, hi = e.get("interval") or (None, None)
            parts.append(f"{name} {pct(e['change'])} [{pct(lo)}, {pct(hi)}]")
        elif name == "quality" and e.get("ratio") is not None:
            lo, hi = e.get("interval") or (None, None)
            parts.append(f"quality {pct(e['ratio'] - 1)} [{pct(None if lo is None else lo - 1)}, "
                         f"{pct(None if hi is None else hi - 1)}]")
        elif name == "memory" and e.get("canary_percent") is not None and e.get("stable_percent") is not None:
            parts.append(f"memory {e['canary_percent'] - e['stable_percent']:+.1f} points")
    saving = worth.get("projected_saving")
    if saving:
        parts.append(f"~{saving['usd_per_day']:+.0f} USD/day saved at 100 %")
    return ", ".join(parts)
