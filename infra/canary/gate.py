"""The gate loop: every interval, fetch the window's counts, feed the judge, report, stop on a verdict.

Windows are [start + k*interval, start + (k+1)*interval). Cloud Run's metrics become visible up to
180 s after the sample (`lag_s`), so window k is fetched at its end + lag_s. `max_duration_s` bounds
the observed time: when the next window would end past it without a promote or rollback, the verdict
is hold. Clock and sleep are injectable so tests run the real loop in virtual time.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable

from infra.canary.judge import ALL_TESTS, Judge
from infra.canary.verdict import Decision, Verdict


@dataclass(frozen=True)
class GateOptions:
    interval_s: float = 60.0
    max_duration_s: float = 3600.0
    lag_s: float = 180.0


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).isoformat(timespec="seconds")


def _fmt_elapsed(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(label: str, elapsed: float, iv, judge: Judge, decision: str) -> str:
    ev = judge.evidence()
    s = judge.summary()
    if iv.fault:
        now = f"no evidence: {iv.fault}"
    else:
        now = (
            f"stable {iv.stable_requests} req {iv.stable_errors} 5xx | "
            f"canary {iv.canary_requests} req {iv.canary_errors} 5xx"
        )
    tests = " ".join(
        f"{t}={ev[t]['e_value']:.3g}/{ev[t]['threshold']:g}" for t in ALL_TESTS if ev[t]["canary_observations"]
    )
    return (
        f"[{label}] {_fmt_elapsed(elapsed)} {now} | total stable {s['requests']['stable']} canary "
        f"{s['requests']['canary']} | e {tests or '-'} | {decision}"
    )


def run_gate(
    source,
    judge: Judge,
    options: GateOptions,
    *,
    label: str = "gate",
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
    start: float | None = None,
) -> Verdict:
    """Run until promote, rollback or max duration."""
    t0 = clock() if start is None else start
    window_start = t0
    decision = "continue"
    while True:
        window_end = window_start + options.interval_s
        if window_end - t0 > options.max_duration_s + 1e-9:
            break
        wait = window_end + options.lag_s - clock()
        if wait > 0:
            sleep(wait)
        iv = source.fetch(window_start, window_end)
        decision = judge.observe(iv)
        if progress:
            progress(progress_line(label, window_end - t0, iv, judge, decision))
        window_start = window_end
        if decision != "continue":
            break
    final = {"promote": Decision.PROMOTE, "rollback": Decision.ROLLBACK}.get(decision, Decision.HOLD)
    return verdict(judge, final, t0, window_start)


def verdict(judge: Judge, decision: Decision, t0: float, t1: float) -> Verdict:
    reason = judge.reason()
    if decision == Decision.HOLD:
        reason = "hold: max duration reached without a decision; " + reason.removeprefix("no decision yet: ")
    return Verdict(decision, reason, {
        "window": {"start": _iso(t0), "end": _iso(t1)},
        **judge.summary(),
        "faults": judge.faults[-10:],
        "evidence": judge.evidence(),
        "config": judge.config.as_dict(),
    })
