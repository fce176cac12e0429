"""The bake watch: the seed's rollback triggers on one revision that serves 100 %.

After finalize the released revision serves alone, so nothing runs beside it to compare with and only
the absolute triggers apply (5xx > 1 %, p95 > 2 s, token-optimization failures > 10 %, WebSocket
failures > 5 %, from `netra:observability.thresholds`), as the same anytime-valid tests the gate uses
(`AbsoluteTest`: the e-value of "rate <= limit" reaching 1/alpha_i, with a minimum of observations).

* **runs of a window**: a bake is watched in runs (`python -m infra bake`, e.g. hourly from cron); a run
  of length L gets alpha x L / window, so the runs of one window together stay below alpha (union
  bound), however the window is cut into runs.
* **faulty data**: malformed intervals (`infra.canary.sanity`: NaN, negative counts, more 5xx than
  requests, count/latency disagreement) give no evidence, so they can never roll back; they are named.
* **overdispersion**: the 5xx test is tempered by the revision's own dispersion over the `history_s`
  before the run (infra.canary.calibration, as the gate does with stable's), scaled to the count
  expected at the limit (H0's boundary) rather than the observed one, so a real breach keeps its weight.
* **no comparator**: a dependency outage breaches the triggers as a regression does; the watch cannot
  tell them apart (see README, "Bake window").
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from infra.canary.buckets import CLOUD_RUN_LATENCY, BucketLayout
from infra.canary.calibration import Calibration
from infra.canary.counts import Batch, Interval, batch_of_one
from infra.canary.gate import GateOptions, _iso, calibrate_from, windows
from infra.canary.judge import TESTS, JudgeConfig
from infra.canary.report import SIGNAL_WORDS
from infra.canary.sanity import DataChecks, describe
from infra.canary.sequential import AbsoluteTest, Observation, Step

CLEAN, ROLLBACK, ERROR = "clean", "rollback", "error"


class Watch:
    """The absolute tests of the judge's table on one revision (the counts' canary side), vectorised over
    `runs` like the judge (the bake uses one run; the benchmark thousands)."""

    def __init__(self, config: JudgeConfig, alpha: float, horizon: int, calibration: Calibration | None = None,
                 calibration_note: str = "", layout: BucketLayout = CLOUD_RUN_LATENCY, runs: int = 1):
        config.validate()
        self.config, self.alpha, self.layout, self.runs = config, alpha, layout, runs
        self.calibration = calibration or Calibration.none(runs)
        self.calibration_note = calibration_note
        absolute = [t for t in TESTS if t.kind == "absolute"]
        total = sum(t.alpha_share for t in absolute)
        self.tests = [AbsoluteTest(t.name, t.signal, config.limit(t.signal), alpha * t.alpha_share / total, runs,
                                   horizon, config.absolute_min_count, config.start_weight, config.recent_intervals)
                      for t in absolute]
        self.checks = DataChecks(runs, None, config.count_mismatch_tolerance, config.share_tolerance)
        self.intervals = 0
        self.faulted = np.zeros(runs, int)
        self.requests = np.zeros(runs)
        self.over = np.zeros((runs, len(self.tests)), bool)  # tests at their threshold, per run
        self.faults: list[str] = []  # run 0's

    def step(self, b: Batch) -> np.ndarray:
        """Feed one interval of every run; (runs,) bool: a trigger has fired (it stays fired)."""
        self.intervals += 1
        code = self.checks.check(b, np.ones(self.runs, bool))  # b.upstream_fault included
        valid = code == 0
        self.faulted += ~valid
        if code[0]:
            self.faults.append("; ".join(describe(int(code[0]))))
        self.requests += np.where(valid, np.nan_to_num(b.n_c), 0.0)
        zero = np.zeros(self.runs)  # no stable side: the absolute tests read the watched revision only
        for test in self.tests:
            counts = self._counts(test.signal, b)
            if counts is None:
                continue
            events, trials = (np.where(valid, np.nan_to_num(a), 0.0) for a in counts)
            obs = Observation(events, trials, zero, zero)
            # the revision's dispersion at the null's boundary (rate = limit), not at the observed count:
            # valid under H0 without discounting the large counts a real breach produces
            temper = self.calibration.temper(test.limit * obs.n_c) if test.signal == "errors" else 1.0
            test.update(obs, Step(valid & (obs.n_c > 0), np.full(self.runs, np.inf), np.ones(self.runs, bool),
                                  temper=temper))
        self.over |= np.stack([t.over() for t in self.tests], axis=1)
        return self.over.any(axis=1)

    def observe(self, iv: Interval) -> str:
        """Feed one interval of a single run; CLEAN (no trigger so far) or ROLLBACK."""
        fault = iv.fault
        if fault is None and iv.layout is not None and iv.layout != self.layout:
            if self.intervals == int(self.faulted[0]):
                self.layout = iv.layout  # the API's layout, adopted from the first usable interval
            else:
                fault = "latency bucket layout changed between intervals"
        b = batch_of_one(iv, self.layout.num_buckets)
        b.upstream_fault = np.array([fault is not None])
        fired = self.step(b)[0]
        if fault is not None:
            self.faults[-1] = "; ".join(x for x in (fault, self.faults[-1]) if x)
        return ROLLBACK if fired else CLEAN

    @property
    def fired(self) -> list[str]:
        return [t.name for t, hit in zip(self.tests, self.over[0]) if hit]

    def _counts(self, signal: str, b: Batch) -> tuple[np.ndarray, np.ndarray] | None:
        """(events, trials) of a signal in the watched revision, or None when the interval has no such data."""
        if signal == "errors":
            return b.e_c, b.n_c
        if signal == "latency":
            if b.h_c is None:
                return None
            index = self.layout.first_bucket_at_or_above(self.config.max_p95_ms)
            return b.h_c[:, index:].sum(axis=1), b.h_c.sum(axis=1)
        pair = b.token_c if signal == "token" else b.websocket_c
        if pair is None:
            return None
        attempts, failures = pair
        return failures, attempts

    def reason(self) -> str:
        if self.fired:
            parts = []
            for t in self.tests:
                if t.name in self.fired:
                    rate = t.events_c[0] / t.trials_c[0] if t.trials_c[0] else 0.0
                    parts.append(f"{SIGNAL_WORDS[t.signal]} {rate:.2%} over the limit "
                                 f"{t.limit:.2%}{' (of requests at or above the p95 limit)' if t.signal == 'latency' else ''} "
                                 f"(e-value {float(np.exp(min(t.log_e()[0], 700))):.3g} >= {1 / t.alpha:.3g}, "
                                 f"{int(t.trials_c[0])} observations)")
            return "rollback: " + "; ".join(parts)
        faulted = int(self.faulted[0])
        return (f"clean: no rollback trigger fired over {self.intervals - faulted} interval(s) and "
                f"{int(self.requests[0])} requests"
                + (f"; {faulted} interval(s) gave no evidence ({self.faults[-1]})" if faulted else ""))

    def evidence(self) -> dict:
        return {t.name: {"signal": t.signal, "limit": t.limit, "events": int(t.events_c[0]),
                         "observations": int(t.trials_c[0]), "e_value": float(np.exp(min(t.log_e()[0], 700))),
                         "threshold": 1 / t.alpha} for t in self.tests}


@dataclass
class WatchVerdict:
    decision: str  # clean | rollback | error
    reason: str
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"decision": self.decision, "reason": self.reason, **self.details}


def run_watch(sources: dict[str, object], config: JudgeConfig, options: GateOptions, alpha: float, *,
              clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
              progress: Callable[[str], None] | None = None) -> dict[str, WatchVerdict]:
    """Watch every source's revision for `options.max_duration_s`, window by window; a service whose
    trigger fires is done (rollback) while the others go on. Never raises: a source that fails is an
    ERROR verdict for its service (no evidence either way)."""
    t0 = clock()
    horizon = max(1, int(options.max_duration_s // options.interval_s))
    watches: dict[str, Watch] = {}
    verdicts: dict[str, WatchVerdict] = {}
    for key, source in sources.items():
        calibration, note = calibrate_from(source, t0, options)
        watches[key] = Watch(config, alpha, horizon, calibration, note)
    window_end = t0
    for window_start, window_end in windows(t0, options, clock, sleep):
        for key, w in watches.items():
            if key in verdicts:
                continue
            try:
                decision = w.observe(sources[key].fetch(window_start, window_end))
            except Exception as exc:  # noqa: BLE001 - a broken source is no evidence, never a rollback
                verdicts[key] = WatchVerdict(ERROR, f"error: {type(exc).__name__}: {exc}"[:300],
                                             _details(w, t0, window_end))
                continue
            if progress:
                progress(f"{key} {window_end - t0:.0f}s: {w.reason()}")
            if decision == ROLLBACK:
                verdicts[key] = WatchVerdict(ROLLBACK, w.reason(), _details(w, t0, window_end))
        if len(verdicts) == len(watches):
            break
    for key, w in watches.items():
        if key not in verdicts and w.intervals == int(w.faulted[0]):  # nothing judged is no verdict, never "clean"
            verdicts[key] = WatchVerdict(ERROR, f"error: no usable interval in {w.intervals}: "
                                                f"{w.faults[-1] if w.faults else 'no data'}", _details(w, t0, window_end))
        verdicts.setdefault(key, WatchVerdict(CLEAN, w.reason(), _details(w, t0, window_end)))
    return verdicts


def _details(w: Watch, t0: float, t1: float) -> dict:
    return {"window": {"start": _iso(t0), "end": _iso(t1)}, "alpha": w.alpha,
            "intervals": w.intervals, "faulted_intervals": int(w.faulted[0]), "requests": int(w.requests[0]),
            "faults": w.faults[-10:], "evidence": w.evidence(),
            "calibration": {**w.calibration.summary(0), "note": w.calibration_note}}
