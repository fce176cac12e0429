"""The canary judge: sequential, anytime-valid tests of a candidate revision against the stable one.

Every interval the judge gets per-revision counts (`infra.canary.counts`) of four signals: 5xx among
requests, slow requests (latency histogram), token-optimization failures and WebSocket connection
failures (the log-based metrics). For each signal it runs two tests from one table (`TESTS`), each a
mixture e-process behind one interface (`infra.canary.sequential`):

* **relative**: canary vs stable in the same interval (Cloud Run splits traffic at random), H0:
  canary rate <= tolerance x stable's, from the conditional binomial law of the canary's share of the
  interval's events given its realised share of trials. Common-mode shocks cancel.
* **absolute**: the seed's rollback trigger on the canary alone (limits from the stack config), H0:
  rate <= limit. For latency the trigger is "p95 > limit", read as "more than 5 % of requests at or
  above the first bucket boundary >= the limit".

Decisions:
* **rollback** when a test's e-value reaches 1/alpha_i (the alpha_i add up to `alpha`: Ville's
  inequality bounds the false-rollback probability of the whole gate by alpha, however often it
  looks), with a minimum of events behind it, outside a shared incident.
* **promote** after `min_soak_s` of clean soak and the request minimums, when the latest interval is
  clean and incident-free, no test is at its threshold, no test's evidence of the last few intervals
  trends over its limit, and every signal that matters has shown it is *not* much worse than stable
  (second e-process per signal, at beta).
* otherwise **continue** (the gate turns "continue until max duration" into hold).

Real traffic, handled here:
* **warm-up**: during the first `warmup_s` each interval's evidence is capped, so a cold start alone
  can reach at most `warmup_evidence_share` of a threshold; a persistent regression keeps that head
  start and is caught about one interval after the warm-up.
* **late onset**: the e-processes mix over start times, and recent evidence blocks a promote.
* **shared incidents**: when the stable revision breaches the same absolute limit in the same interval,
  the interval is an incident: that trigger skips it, nothing rolls back and nothing promotes. Once
  the shared breach has lasted longer than `incident_max_s`, the seed's rule applies again.
* **overdispersion**: the 5xx test is calibrated on stable's pre-canary history (`calibration`).
* **faulty data**: `sanity.DataChecks` turns malformed intervals into faults (no evidence, no promote).

The state is vectorised over a leading batch axis so the benchmark runs thousands of simulated gates
through the very same code; the gate uses a batch of one (`Judge`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from infra.canary.buckets import CLOUD_RUN_LATENCY, BucketLayout
from infra.canary.calibration import Calibration
from infra.canary.counts import Batch, Interval, batch_of_one
from infra.canary.sanity import DataChecks, describe
from infra.canary.sequential import AbsoluteTest, Observation, RelativeTest, SequentialTest, Step
from infra.canary.value import CACHE_LAYOUT, Criteria, ValueConfig, ValueJudge
from infra.canary.verdict import Decision

CONTINUE, PROMOTE, ROLLBACK, HOLD = Decision.CONTINUE, Decision.PROMOTE, Decision.ROLLBACK, Decision.HOLD
SIGNALS = ("errors", "latency", "token", "websocket")


@dataclass(frozen=True)
class TestSpec:
    """One row of the judge's table of tests."""

    name: str
    signal: str
    kind: str  # relative | absolute
    alpha_share: float  # share of the gate's alpha


TESTS = (
    TestSpec("errors", "errors", "relative", 0.35),
    TestSpec("latency", "latency", "relative", 0.25),
    TestSpec("token_optimization", "token", "relative", 0.10),
    TestSpec("websocket", "websocket", "relative", 0.10),
    TestSpec("error_rate", "errors", "absolute", 0.05),
    TestSpec("p95_latency", "latency", "absolute", 0.05),
    TestSpec("token_failure_rate", "token", "absolute", 0.05),
    TestSpec("websocket_failure_rate", "websocket", "absolute", 0.05),
)
ALL_TESTS = tuple(t.name for t in TESTS)
RELATIVE_TESTS = tuple(t.name for t in TESTS if t.kind == "relative")
ABSOLUTE_TESTS = tuple(t.name for t in TESTS if t.kind == "absolute")


@dataclass(frozen=True)
class JudgeConfig:
    """Everything the judge decides with. Defaults are the gate's defaults; the four limits are the
    seed's rollback triggers, which the gate reads from `netra:observability.thresholds`."""

    alpha: float = 0.01  # bound on the false-rollback probability of one gate, all tests together
    error_tolerance: float = 1.0  # H0: canary 5xx / token / WebSocket failure rate <= tolerance x stable's
    latency_tolerance: float = 1.25  # H0: canary share of slow requests <= tolerance x stable's
    slow_quantile: float = 0.95  # "slow" = slower than the interval's pooled p95 (label-blind)
    min_slow_pool: int = 100  # pooled requests an interval needs to set its slow boundary
    min_soak_s: float = 600.0  # clean observation time before a promote
    min_canary_requests: int = 500
    min_stable_requests: int = 500
    min_relative_events: int = 5  # canary events a relative test needs before it can roll back
    max_error_rate: float = 0.01  # seed: error rate > 1 %
    max_p95_ms: float = 2000.0  # seed: p95 latency > 2 s
    max_token_failure: float = 0.10  # seed: token optimization failure > 10 %
    max_websocket_failure: float = 0.05  # seed: WebSocket connection failures > 5 %
    absolute_min_count: int = 100  # observations an absolute trigger needs before it can fire
    beta: float = 0.05  # a canary promote_max_ratio x worse passes one promote look with about this probability
    promote_max_ratio: float = 1.8  # "much worse": a 2x canary must not promote ...
    promote_power: float = 0.8  # ... unless the stage's traffic cannot resolve it with this power by its end:
    promote_ratio_cap: float = 2.2  # then the margin widens to what it can resolve, never beyond this
    negligible_error_rate: float = 0.001  # a canary confidently below this 5xx rate needs no ratio
    negligible_outcome_share: float = 0.6  # ... below this share of the token / WebSocket limit
    warmup_s: float = 120.0  # candidate warm-up: evidence capped, no rollback on its own
    warmup_evidence_share: float = 0.3  # share of a threshold the whole warm-up may contribute
    incident_max_s: float = 600.0  # a breach shared with stable longer than this: the seed's rule again
    horizon_intervals: int = 60  # later start times the e-processes mix over (max duration / interval)
    start_weight: float = 0.8  # mixture weight of the start-of-canary product
    recent_intervals: int = 3  # "recent evidence" window that can block a promote
    recent_block: float = 4.0  # recent e-value at or above this blocks a promote
    trend_block: float = 3.0  # e-value since the warm-up at or above this blocks a promote
    share_tolerance: float = 0.3  # realised canary share off by more than this x share (and 5 sd): fault
    count_mismatch_tolerance: float = 0.02  # request_count vs request_latencies totals: fault above
    value: ValueConfig = field(default_factory=ValueConfig)  # cost, tokens, quality, memory (infra.canary.value)

    def validate(self) -> None:
        checks = [
            (0 < self.alpha < 1, "alpha must be in (0, 1)"),
            (self.error_tolerance >= 1, "error_tolerance must be >= 1"),
            (self.latency_tolerance >= 1, "latency_tolerance must be >= 1"),
            (0.5 <= self.slow_quantile < 1, "slow_quantile must be in [0.5, 1)"),
            (self.min_soak_s >= 0, "min_soak_s must be >= 0"),
            (self.min_canary_requests >= 0 and self.min_stable_requests >= 0, "min requests must be >= 0"),
            (0 < self.max_error_rate < 1, "max_error_rate must be in (0, 1)"),
            (self.max_p95_ms > 0, "max_p95_ms must be > 0"),
            (0 < self.max_token_failure < 1, "max_token_failure must be in (0, 1)"),
            (0 < self.max_websocket_failure < 1, "max_websocket_failure must be in (0, 1)"),
            (0 < self.beta < 1, "beta must be in (0, 1)"),
            (0.5 <= self.promote_power < 1, "promote_power must be in [0.5, 1)"),
            (self.promote_ratio_cap >= self.promote_max_ratio, "promote_ratio_cap must be >= promote_max_ratio"),
            (
                self.promote_max_ratio > max(self.error_tolerance, self.latency_tolerance),
                "promote_max_ratio must exceed both tolerances",
            ),
            (0 < self.negligible_error_rate < 1, "negligible_error_rate must be in (0, 1)"),
            (0 < self.negligible_outcome_share <= 1, "negligible_outcome_share must be in (0, 1]"),
            (self.warmup_s >= 0, "warmup_s must be >= 0"),
            (0 <= self.warmup_evidence_share < 1, "warmup_evidence_share must be in [0, 1)"),
            (self.incident_max_s >= 0, "incident_max_s must be >= 0"),
            (self.horizon_intervals >= 1, "horizon_intervals must be >= 1"),
            (0 < self.start_weight <= 1, "start_weight must be in (0, 1]"),
            (self.recent_intervals >= 1 and self.recent_block > 1, "recent window >= 1, recent_block > 1"),
            (self.share_tolerance > 0 and self.count_mismatch_tolerance >= 0, "tolerances must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.value.validate()

    def alphas(self) -> dict[str, float]:
        """Per-test alpha (they add up to `alpha`)."""
        return {t.name: self.alpha * t.alpha_share for t in TESTS}

    def limit(self, signal: str) -> float:
        """The absolute trigger's rate limit of a signal (latency: share of requests above max_p95_ms)."""
        return {"errors": self.max_error_rate, "latency": 0.05, "token": self.max_token_failure,
                "websocket": self.max_websocket_failure}[signal]

    def as_dict(self) -> dict:
        return asdict(self)


def build_tests(cfg: JudgeConfig, runs: int) -> list[SequentialTest]:
    """The table of tests, instantiated for `runs` runs."""
    alphas = cfg.alphas()
    floors = {
        "errors": cfg.negligible_error_rate,
        "latency": cfg.promote_max_ratio * (1 - cfg.slow_quantile),
        "token": cfg.negligible_outcome_share * cfg.max_token_failure,
        "websocket": cfg.negligible_outcome_share * cfg.max_websocket_failure,
    }
    common = dict(runs=runs, horizon=cfg.horizon_intervals, start_weight=cfg.start_weight,
                  recent=cfg.recent_intervals)
    tests: list[SequentialTest] = []
    for spec in TESTS:
        if spec.kind == "relative":
            tol = cfg.latency_tolerance if spec.signal == "latency" else cfg.error_tolerance
            tests.append(RelativeTest(spec.name, spec.signal, tol, alphas[spec.name], safe_ratio=cfg.promote_max_ratio,
                                      safe_floor=floors[spec.signal], min_events=cfg.min_relative_events,
                                      always_matters=spec.signal in ("errors", "latency"), power=cfg.promote_power,
                                      max_margin=cfg.promote_ratio_cap, **common))
        else:
            tests.append(AbsoluteTest(spec.name, spec.signal, cfg.limit(spec.signal), alphas[spec.name],
                                      min_count=cfg.absolute_min_count, **common))
    return tests


class BatchJudge:
    """R independent judges advanced in lock-step (one per simulated run; R = 1 for the gate)."""

    def __init__(self, config: JudgeConfig, runs: int, layout: BucketLayout = CLOUD_RUN_LATENCY,
                 configured_share: float | None = None, calibration: Calibration | None = None,
                 criteria: Criteria | None = None, memory_history: np.ndarray | None = None,
                 cache_layout: BucketLayout | None = None):
        config.validate()
        self.config = config
        self.R = runs
        self.layout = layout
        self.configured_share = configured_share
        self.calibration = calibration or Calibration.none(runs)
        self.tests = build_tests(config, runs)
        errors = self.test("errors")
        errors.robust = self.calibration.dispersion > 1  # overdispersed 5xx: sandwich promote bound ...
        errors.dispersion, errors.drift = self.calibration.dispersion, self.calibration.drift  # ... less resolution
        self.checks = DataChecks(runs, configured_share, config.count_mismatch_tolerance, config.share_tolerance)
        self.p95_index = layout.first_bucket_at_or_above(config.max_p95_ms)
        self.elapsed_s = np.zeros(runs)
        self.soak_s = np.zeros(runs)
        self.canary_requests = np.zeros(runs)
        self.stable_requests = np.zeros(runs)
        self.clean_intervals = np.zeros(runs, int)
        self.faulted_intervals = np.zeros(runs, int)
        self.fault_code = np.zeros(runs, int)  # checks that failed in the latest interval
        self.decision = np.full(runs, int(CONTINUE))
        self.fired = np.zeros((runs, len(self.tests)), bool)
        self.incident = {s: np.zeros(runs, bool) for s in SIGNALS}  # latest interval
        self.incident_s = {s: np.zeros(runs) for s in SIGNALS}  # how long the shared breach lasts
        self.incident_intervals = np.zeros(runs, int)
        self.slow_above_ms = np.full(runs, np.nan)
        self.has_data = {s: np.zeros(runs, bool) for s in SIGNALS}
        self.criteria = criteria
        self.value = ValueJudge(config.value, runs, config.horizon_intervals, config.start_weight, criteria,
                                memory_history, cache_layout)
        self.value_fired: dict[str, np.ndarray] = {}
        self.not_met = np.zeros(runs, bool)  # ended because a criterion was confidently missed

    # ---- one interval for all runs ---------------------------------------------------------------
    def step(self, b: Batch) -> np.ndarray:
        cfg = self.config
        R = self.R
        active = self.decision == CONTINUE
        code = self.checks.check(b, active)
        valid = active & (code == 0)
        self.fault_code = np.where(active, code, self.fault_code)
        dur = float(b.duration_s)
        in_warmup = self.elapsed_s < cfg.warmup_s
        self.elapsed_s = np.where(active, self.elapsed_s + dur, self.elapsed_s)
        self.faulted_intervals += (active & ~valid).astype(int)
        self.clean_intervals += valid.astype(int)
        self.soak_s = np.where(valid, self.soak_s + dur, self.soak_s)

        def clean(a):
            a = np.asarray(a, float)
            v = valid if a.ndim == 1 else valid[:, None]
            return np.where(v, np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0)

        n_s, n_c, e_s, e_c = clean(b.n_s), clean(b.n_c), clean(b.e_s), clean(b.e_c)
        self.stable_requests += n_s
        self.canary_requests += n_c
        obs: dict[str, SignalData] = {}
        err = Observation(e_c, n_c, e_s, n_s)
        obs["errors"] = SignalData(err, err, valid & (n_c + n_s > 0))
        if b.h_s is not None and b.h_c is not None:
            obs["latency"] = self._latency(clean(b.h_s), clean(b.h_c), valid)
        for signal, pair_s, pair_c in (("token", b.token_s, b.token_c), ("websocket", b.websocket_s, b.websocket_c)):
            if pair_c is not None:  # the absolute trigger needs the canary only, the relative test both
                a_c, f_c = clean(pair_c[0]), clean(pair_c[1])
                a_s, f_s = (clean(pair_s[0]), clean(pair_s[1])) if pair_s is not None else (np.zeros(R), np.zeros(R))
                o = Observation(f_c, a_c, f_s, a_s)
                mask = valid & (a_c > 0)
                obs[signal] = SignalData(o, o, mask, mask & (a_s > 0))

        # shared incidents: stable breaches the same absolute limit in the same interval
        blocked = np.zeros(R, bool)
        any_incident = np.zeros(R, bool)
        for signal in SIGNALS:
            if signal not in obs:
                self.incident[signal] = np.zeros(R, bool)
                continue
            a, mask = obs[signal].absolute, obs[signal].mask
            self.has_data[signal] |= mask
            rate_s = np.divide(a.x_s, a.n_s, out=np.zeros(R), where=a.n_s > 0)
            inc = mask & (a.n_s >= cfg.absolute_min_count) & (rate_s > cfg.limit(signal))
            self.incident[signal] = inc
            self.incident_s[signal] = np.where(inc, self.incident_s[signal] + dur,
                                               np.where(valid, 0.0, self.incident_s[signal]))
            lasting = self.incident_s[signal] > cfg.incident_max_s
            blocked |= inc & ~lasting
            any_incident |= inc
        self.incident_intervals += any_incident.astype(int)

        temper = self.calibration.temper(e_c + e_s)
        factor = self.calibration.boundary_factor()
        restart = ~in_warmup
        warm_intervals = max(1, math.ceil(cfg.warmup_s / dur)) if dur > 0 else 1
        for test in self.tests:
            if test.signal not in obs:
                continue
            data = obs[test.signal]
            cap = np.where(in_warmup, cfg.warmup_evidence_share * test.log_threshold / warm_intervals, np.inf)
            if test.kind == "absolute":
                lasting = self.incident_s[test.signal] > cfg.incident_max_s
                mask = data.mask & (~self.incident[test.signal] | lasting)
                temper_abs = self.calibration.temper(data.absolute.x_c) if test.signal == "errors" else 1.0
                test.update(data.absolute, Step(mask, cap, restart, temper=temper_abs))
            elif test.signal == "errors":
                test.update(data.relative, Step(data.rel_mask, cap, restart, temper=temper, boundary_factor=factor))
            else:
                test.update(data.relative, Step(data.rel_mask, cap, restart))

        over = np.stack([t.over() for t in self.tests], axis=1)
        rollback = active & valid & over.any(axis=1) & ~blocked
        self.fired |= over & rollback[:, None]
        vo = self.value.step(b.value, valid, in_warmup, cfg.warmup_evidence_share, warm_intervals, dur)
        value_rollback = active & valid & vo.breach & ~blocked & ~rollback
        for name, f in vo.fired.items():
            self.value_fired[name] = self.value_fired.get(name, np.zeros(R, bool)) | (f & value_rollback)
        rollback |= value_rollback
        raw = np.stack([t.raw_over() for t in self.tests], axis=1).any(axis=1)
        recent = self.recent_trend().any(axis=1)
        promote = (
            active
            & ~rollback
            & valid
            & ~any_incident
            & ~in_warmup
            & (self.soak_s >= cfg.min_soak_s)
            & (self.canary_requests >= cfg.min_canary_requests)
            & (self.stable_requests >= cfg.min_stable_requests)
            & ~raw
            & ~recent
            & vo.promote_ok
        )
        if promote.any():  # the interval bounds are the costly part: only where everything else holds
            promote &= self.safe().all(axis=1)
        missed = active & valid & ~rollback & ~promote & vo.missed
        self.not_met |= missed
        on_miss = int(ROLLBACK) if self.criteria is not None and self.criteria.on_miss == "rollback" else int(HOLD)
        self.decision = np.where(rollback, int(ROLLBACK), np.where(promote, int(PROMOTE),
                                 np.where(missed, on_miss, self.decision)))
        return self.decision

    def _latency(self, hs: np.ndarray, hc: np.ndarray, valid: np.ndarray):
        """Slow requests per revision above a boundary chosen from the pooled histogram (label-blind,
        so the count test stays valid and the first interval already gives evidence), and requests
        above the p95 trigger's boundary."""
        cfg = self.config
        R = self.R
        pooled = hs + hc
        total = pooled.sum(axis=1)
        cum = np.cumsum(pooled[:, ::-1], axis=1)[:, ::-1]  # count at or above bucket i
        frac = np.divide(cum, total[:, None], out=np.ones_like(cum), where=total[:, None] > 0)
        okb = frac <= (1 - cfg.slow_quantile)
        okb[:, 0] = False
        k = np.where(okb.any(axis=1), okb.argmax(axis=1), -1)
        usable = valid & (total >= cfg.min_slow_pool) & (k >= 1)
        kk = np.clip(k, 0, self.layout.num_buckets - 1)[:, None]
        cum_s = np.cumsum(hs[:, ::-1], axis=1)[:, ::-1]
        cum_c = np.cumsum(hc[:, ::-1], axis=1)[:, ::-1]
        slow_s = np.take_along_axis(cum_s, kk, axis=1)[:, 0]
        slow_c = np.take_along_axis(cum_c, kk, axis=1)[:, 0]
        n_s, n_c = hs.sum(axis=1), hc.sum(axis=1)
        bounds = np.asarray((-np.inf,) + tuple(self.layout.bounds))
        self.slow_above_ms = np.where(usable, bounds[np.clip(k, 0, len(bounds) - 1)], self.slow_above_ms)
        rel = Observation(np.where(usable, slow_c, 0.0), np.where(usable, n_c, 0.0),
                          np.where(usable, slow_s, 0.0), np.where(usable, n_s, 0.0))
        if self.p95_index < self.layout.num_buckets:
            over_c, over_s = cum_c[:, self.p95_index], cum_s[:, self.p95_index]
        else:
            over_c = over_s = np.zeros(R)
        absolute = Observation(over_c, n_c, over_s, n_s)
        mask = valid & (n_c > 0) & (n_s > 0)
        # the relative test only where the boundary exists; the absolute one wherever both have data
        return SignalData(rel, absolute, mask, usable & mask)

    # ---- promote side --------------------------------------------------------------------------
    def safe(self) -> np.ndarray:
        """(R, relative tests) bool: shown not much worse, or the signal does not matter (yet)."""
        return np.stack([t.safe(self.config.beta) | ~t.matters() for t in self.relative()], axis=1)

    def recent_trend(self) -> np.ndarray:
        """(R, tests) bool: the last few intervals' evidence trends over the test's limit."""
        level, trend = math.log(self.config.recent_block), math.log(self.config.trend_block)
        return np.stack([(t.log_recent() >= level) | (t.log_since_warmup() >= trend) for t in self.tests], axis=1)

    def relative(self) -> list[RelativeTest]:
        return [t for t in self.tests if isinstance(t, RelativeTest)]

    def test(self, name: str) -> SequentialTest:
        return next(t for t in self.tests if t.name == name)

    def fault_names(self, i: int = 0) -> list[str]:
        return describe(int(self.fault_code[i]), self.configured_share)

    def incident_signals(self, i: int = 0) -> list[str]:
        return [s for s in SIGNALS if self.incident[s][i]]


@dataclass
class SignalData:
    """One signal's counts in one interval: for the relative and the absolute test, and where they count."""

    relative: Observation
    absolute: Observation
    mask: np.ndarray
    relative_mask: np.ndarray | None = None

    @property
    def rel_mask(self) -> np.ndarray:
        return self.mask if self.relative_mask is None else self.relative_mask


class Judge:
    """The gate's judge: one run, fed `Interval` objects."""

    def __init__(self, config: JudgeConfig | None = None, layout: BucketLayout | None = None,
                 configured_share: float | None = None, calibration: Calibration | None = None,
                 criteria: Criteria | None = None, memory_history: np.ndarray | None = None):
        self.config = config or JudgeConfig()
        self.config.validate()
        self._layout = layout or CLOUD_RUN_LATENCY
        self.configured_share = configured_share
        self.calibration = calibration
        self._value = dict(criteria=criteria, memory_history=memory_history, cache_layout=CACHE_LAYOUT)
        self._batch = BatchJudge(self.config, 1, self._layout, configured_share, calibration, **self._value)
        self.last_fault: str | None = None
        self.faults: list[str] = []

    @property
    def batch(self) -> BatchJudge:
        return self._batch

    def observe(self, iv: Interval) -> str:
        b = self._batch
        if iv.fault is None and iv.layout is not None and iv.layout != self._layout:
            if b.clean_intervals[0] == 0:
                # adopt the layout the API reports (it is the same for every revision of a metric)
                self._layout = iv.layout
                old = b
                self._batch = b = BatchJudge(self.config, 1, iv.layout, self.configured_share, self.calibration,
                                             **self._value)
                b.elapsed_s, b.faulted_intervals = old.elapsed_s, old.faulted_intervals
            else:
                iv.fault = "latency bucket layout changed between intervals"
        b.step(batch_of_one(iv, self._layout.num_buckets))
        names = [n for n in b.fault_names(0) if n != "upstream"]
        if iv.fault:
            names.insert(0, iv.fault)
        self.last_fault = "; ".join(names) if names else None
        if self.last_fault:
            self.faults.append(self.last_fault)
        return Decision(int(b.decision[0])).label

    @property
    def decision(self) -> str:
        return Decision(int(self._batch.decision[0])).label

    def evidence(self) -> dict:
        from infra.canary.report import evidence

        return evidence(self._batch, 0)

    def reason(self) -> str:
        from infra.canary.report import reason

        r = reason(self._batch, 0)
        if self.decision == "continue" and self.last_fault:
            r += f"; last interval gave no evidence ({self.last_fault})"
        return r

    def summary(self) -> dict:
        b = self._batch
        out = {
            "elapsed_s": float(b.elapsed_s[0]),
            "soak_s": float(b.soak_s[0]),
            "clean_intervals": int(b.clean_intervals[0]),
            "faulted_intervals": int(b.faulted_intervals[0]),
            "incident_intervals": int(b.incident_intervals[0]),
            "requests": {"stable": int(b.stable_requests[0]), "canary": int(b.canary_requests[0])},
            "calibration": b.calibration.summary(0),
        }
        return out

    def worth(self) -> dict:
        from infra.canary.report import worth

        return worth(self._batch, 0)
