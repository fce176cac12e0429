"""The gate loop: calibrate on stable's history, then every interval fetch the window's counts, feed the
judge, report, stop on a verdict.

Before the first canary interval the gate reads the stable revision's last `history_s` (one more
ListTimeSeries) and fixes the judge's calibration from it. Windows are [start + k*interval,
start + (k+1)*interval). Cloud Run's metrics become visible up to 180 s after the sample (`lag_s`), so
window k is fetched at its end + lag_s. `max_duration_s` bounds the observed time: when the next window
would end past it without a promote or rollback, the verdict is hold (and says why: an incident, a
data fault, or evidence still missing). Clock and sleep are injectable so tests run the real loop in
virtual time.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, replace
from typing import Callable

from infra.canary.judge import Judge, JudgeConfig
from infra.canary.verdict import Decision, Verdict


@dataclass(frozen=True)
class GateOptions:
    interval_s: float = 60.0
    max_duration_s: float = 3600.0
    lag_s: float = 180.0
    history_s: float = 1800.0  # stable's pre-canary history for the calibration (0: none)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).isoformat(timespec="seconds")


def calibrate_from(source, t0: float, options: GateOptions):
    """(Calibration | None, note): stable's history before t0, or why there is none."""
    from infra.canary.calibration import calibrate

    if options.history_s <= 0 or not hasattr(source, "history"):
        return None, "no history requested"
    try:
        requests, errors = source.history(t0 - options.history_s, t0, options.interval_s)
    except Exception as exc:  # the gate goes on uncalibrated; the verdict says so
        return None, f"history unavailable ({type(exc).__name__}: {exc})"[:300]
    if len(requests) == 0:
        return None, "history has no stable data"
    return calibrate(requests[None, :], errors[None, :]), f"{len(requests)} stable intervals before the canary"


def windows(t0: float, options: GateOptions, clock: Callable[[], float], sleep: Callable[[float], None]):
    """Yield the windows [start, end) of `options.interval_s` from t0 until `max_duration_s`, each once
    it can be read: `lag_s` after its end (Cloud Run's metrics arrive up to 180 s late)."""
    start = t0
    while start + options.interval_s - t0 <= options.max_duration_s + 1e-9:
        end = start + options.interval_s
        wait = end + options.lag_s - clock()
        if wait > 0:
            sleep(wait)
        yield start, end
        start = end


def run_gate(
    source,
    config: JudgeConfig,
    options: GateOptions,
    *,
    configured_share: float | None = None,
    label: str = "gate",
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
    start: float | None = None,
    criteria=None,
) -> Verdict:
    """Run until promote, rollback or max duration."""
    from infra.canary.report import progress_line

    t0 = clock() if start is None else start
    horizon = max(1, int(options.max_duration_s // options.interval_s))
    config = replace(config, horizon_intervals=horizon)
    calibration, note = calibrate_from(source, t0, options)
    memory, memory_note = memory_history_from(source, t0, options)
    judge = Judge(config, configured_share=configured_share, calibration=calibration, criteria=criteria,
                  memory_history=memory)
    decision, window_end = "continue", t0
    for window_start, window_end in windows(t0, options, clock, sleep):
        iv = source.fetch(window_start, window_end)
        decision = judge.observe(iv)
        if progress:
            progress(progress_line(label, window_end - t0, iv, judge.batch, decision, judge.last_fault))
        if decision != "continue":
            break
    final = {"promote": Decision.PROMOTE, "rollback": Decision.ROLLBACK}.get(decision, Decision.HOLD)
    v = verdict(judge, final, t0, window_end)
    v.details["calibration"] = {**v.details.get("calibration", {}), "note": note, "memory": memory_note}
    return v


def memory_history_from(source, t0: float, options: GateOptions):
    """(stable's memory utilization per interval before t0 as a (1, H) array | None, note): fixes the
    memory test's noise scale before the canary (infra.canary.value.memory_sd)."""
    import numpy as np

    if options.history_s <= 0 or not hasattr(source, "memory_history"):
        return None, "no memory history requested"
    try:
        values = source.memory_history(t0 - options.history_s, t0, options.interval_s)
    except Exception as exc:  # the memory test falls back to its default noise; the verdict says so
        return None, f"memory history unavailable ({type(exc).__name__}: {exc})"[:300]
    if len(values) < 5:
        return None, "memory history too short: default noise scale"
    return np.asarray(values, float)[None, :], f"{len(values)} stable memory intervals before the canary"


def verdict(judge: Judge, decision: Decision, t0: float, t1: float) -> Verdict:
    reason = judge.reason()
    if decision == Decision.HOLD:
        reason = "hold: max duration reached without a decision; " + reason.removeprefix("no decision yet: ")
    return Verdict(decision, reason, {
        "window": {"start": _iso(t0), "end": _iso(t1)},
        **judge.summary(),
        "incident": judge.batch.incident_signals(0),
        "faults": judge.faults[-10:],
        "evidence": judge.evidence(),
        "value": judge.worth(),
        "config": judge.config.as_dict(),
    })
