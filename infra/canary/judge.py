"""The canary judge: sequential, anytime-valid tests of a candidate revision against the stable one.

Every interval the gate hands the judge per-revision counts (requests, 5xx, latency histogram, the
log-based outcome counters). The judge keeps one e-process per test and decides:

* **rollback** as soon as one e-process reaches its threshold 1/alpha_i (Ville's inequality: under the
  test's null hypothesis the probability that this *ever* happens, however often we look, is at most
  alpha_i; the alpha_i add up to `alpha`), and the test has seen a minimum number of events;
* **promote** once the canary has soaked `min_soak_s` of clean intervals, both revisions served the
  minimum number of requests, the latest interval was clean and no e-process is at its threshold;
* otherwise **continue** (the gate turns "continue until max duration" into hold).

Relative tests (canary vs stable at the same time; Cloud Run splits traffic at random):
    Given the total number m of events (5xx, or "slow" requests) in an interval, and the realised
    canary share pi = n_c / (n_c + n_s) of that interval's requests, the canary's count is
    Binomial(m, q) with q = pi*rho / (pi*rho + 1 - pi), rho = canary rate / stable rate (Poisson
    thinning; for equal rates the exact conditional law is hypergeometric, which is smaller in convex
    order, so the test stays conservative). H0: rho <= tolerance. The e-process is a discrete mixture
    over alternatives rho' = tolerance * g (g on a log grid) of the per-interval likelihood ratios
    q(rho')/q(tolerance); for every rho <= tolerance each factor has expectation <= 1, so the mixture is
    a test supermartingale for the whole composite null. Common-mode noise (a slow database, a traffic
    burst) hits both revisions in the same interval and cancels in the conditional law.

    "Slow" = slower than stable's p95, read from histogram buckets: the boundary is the lowest bucket
    boundary above which at most 5 % of *previous* intervals' stable requests fell (predictable, so
    the e-process stays valid; the first interval therefore gives no latency evidence).

Absolute triggers (the seed's rollback rules, canary revision only):
    error rate > 1 %, p95 > 2 s (i.e. more than 5 % of requests slower than the first bucket boundary
    >= 2 s: conservative, we never claim more than the buckets show), token-optimization failures
    > 10 %, WebSocket connection failures > 5 %. Each is a one-sided binomial mixture e-process for
    H0: p <= p0 (alternatives p' > p0 only, so every p <= p0 is covered), fired only once the canary
    has at least `absolute_min_count` observations of that kind, so three failed requests out of three
    at start-up do not roll a release back.

The state is vectorised over a leading batch axis so the benchmark runs hundreds of simulated gates
through the very same code; the gate uses a batch of one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from infra.canary.buckets import BucketLayout

CONTINUE, PROMOTE, ROLLBACK = 0, 1, 2
DECISION_NAMES = {CONTINUE: "continue", PROMOTE: "promote", ROLLBACK: "rollback"}

RELATIVE_TESTS = ("errors", "latency")
ABSOLUTE_TESTS = ("error_rate", "p95_latency", "token_optimization", "websocket")
ALL_TESTS = RELATIVE_TESTS + ABSOLUTE_TESTS


@dataclass(frozen=True)
class JudgeConfig:
    """Everything the judge decides with. Defaults are the gate's defaults."""

    alpha: float = 0.01  # bound on the false-rollback probability of one gate, all tests together
    relative_alpha_share: float = 0.4  # share of alpha for each of the two relative tests
    error_tolerance: float = 1.1  # H0: canary 5xx rate <= tolerance * stable's
    latency_tolerance: float = 1.25  # H0: canary share of slow requests <= tolerance * stable's
    slow_quantile: float = 0.95  # "slow" = slower than stable's p95
    min_slow_threshold_requests: int = 200  # stable requests needed before the slow boundary is set
    min_soak_s: float = 600.0  # clean observation time before a promote
    min_canary_requests: int = 500
    min_stable_requests: int = 500
    min_relative_events: int = 5  # canary events a relative test needs before it can roll back
    max_error_rate: float = 0.01  # seed: error rate > 1 %
    max_p95_ms: float = 2000.0  # seed: p95 latency > 2 s
    max_token_failure: float = 0.10  # seed: token optimization failure > 10 %
    max_websocket_failure: float = 0.05  # seed: WebSocket connection failures > 5 %
    absolute_min_count: int = 100  # observations an absolute trigger needs before it can fire
    # promote side: evidence that the canary is NOT much worse (so a short soak of a bad canary that
    # has not yet crossed the rollback threshold cannot promote it)
    beta: float = 0.01  # bound on promoting a canary >= promote_max_ratio x worse, per metric
    promote_max_ratio: float = 3.0  # "much worse" for errors and for slow requests
    negligible_error_rate: float = 0.001  # a canary confidently below this 5xx rate needs no ratio

    def validate(self) -> None:
        checks = [
            (0 < self.alpha < 1, "alpha must be in (0, 1)"),
            (0 < self.relative_alpha_share < 0.5, "relative_alpha_share must be in (0, 0.5)"),
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
            (
                self.promote_max_ratio > max(self.error_tolerance, self.latency_tolerance),
                "promote_max_ratio must exceed both tolerances",
            ),
            (0 < self.negligible_error_rate < 1, "negligible_error_rate must be in (0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def alphas(self) -> dict[str, float]:
        """Per-test alpha (Bonferroni: they add up to `alpha`)."""
        rel = self.alpha * self.relative_alpha_share
        abs_ = self.alpha * (1 - 2 * self.relative_alpha_share) / len(ABSOLUTE_TESTS)
        return {**{t: rel for t in RELATIVE_TESTS}, **{t: abs_ for t in ABSOLUTE_TESTS}}

    def as_dict(self) -> dict:
        return asdict(self)


# Mixture grids. Relative: rho' = tolerance * g. Absolute: p' = p0 * g, capped below 1.
RELATIVE_GRID = np.geomspace(1.15, 40.0, 14)
ABSOLUTE_GRID_POINTS = 14


def _absolute_grid(p0: float) -> np.ndarray:
    return p0 * np.geomspace(1.15, min(40.0, 0.98 / p0), ABSOLUTE_GRID_POINTS)


def _exp(log_e: np.ndarray) -> np.ndarray:
    """e-values for reporting, capped at 1e12 (JSON has no infinity; the decision uses log values)."""
    return np.exp(np.minimum(log_e, math.log(1e12)))


def _logmeanexp(log_e: np.ndarray) -> np.ndarray:
    """log of the equally weighted mixture of the grid's e-values, along the last axis."""
    m = np.max(log_e, axis=-1)
    return m + np.log(np.mean(np.exp(log_e - m[..., None]), axis=-1))


def _ratio_increment(x_c, x_s, pi, rho0: float, rho1: np.ndarray) -> np.ndarray:
    """log LR increments (R, K) of the conditional binomial law for one interval: alternatives
    rho1 (K,) against the boundary rho0, given canary / stable event counts and canary share pi."""
    x_c = np.asarray(x_c, float)[:, None]
    x_s = np.asarray(x_s, float)[:, None]
    ok = ((pi > 0) & (pi < 1))[:, None]
    p = np.clip(pi, 1e-12, 1 - 1e-12)[:, None]
    r1 = rho1[None, :]
    q0 = p * rho0 / (p * rho0 + 1 - p)
    q1 = p * r1 / (p * r1 + 1 - p)
    inc = x_c * (np.log(q1) - np.log(q0)) + x_s * (np.log1p(-q1) - np.log1p(-q0))
    return np.where(ok, inc, 0.0)


def _absolute_increment(x, n, p0, grid) -> np.ndarray:
    """log LR increments (R, K) of binomial counts x of n: alternatives grid (K,) against p0."""
    x = np.asarray(x, float)[:, None]
    n = np.asarray(n, float)[:, None]
    g = grid[None, :]
    return x * (np.log(g) - math.log(p0)) + (n - x) * (np.log1p(-g) - math.log1p(-p0))


@dataclass
class Interval:
    """One interval's counts for one gate (the gate's unit of evidence)."""

    duration_s: float
    stable_requests: int = 0
    canary_requests: int = 0
    stable_errors: int = 0
    canary_errors: int = 0
    stable_latency: list[int] | None = None  # bucket counts (underflow .. overflow)
    canary_latency: list[int] | None = None
    layout: BucketLayout | None = None
    canary_token: tuple[int, int] | None = None  # (success, failure)
    canary_websocket: tuple[int, int] | None = None
    stable_token: tuple[int, int] | None = None
    stable_websocket: tuple[int, int] | None = None
    fault: str | None = None  # set when the interval must not count (API error, missing series, ...)
    notes: list[str] = field(default_factory=list)


class BatchJudge:
    """R independent judges advanced in lock-step (one per simulated run; R = 1 for the gate)."""

    def __init__(self, config: JudgeConfig, runs: int, layout: BucketLayout):
        config.validate()
        self.config = config
        self.R = runs
        self.layout = layout
        self.bounds = np.asarray(layout.bounds, float)
        alphas = config.alphas()
        self.log_threshold = {t: math.log(1.0 / a) for t, a in alphas.items()}
        self.grids = {
            "errors": RELATIVE_GRID,
            "latency": RELATIVE_GRID,
            "error_rate": _absolute_grid(config.max_error_rate),
            "p95_latency": _absolute_grid(1 - 0.95),
            "token_optimization": _absolute_grid(config.max_token_failure),
            "websocket": _absolute_grid(config.max_websocket_failure),
        }
        self.log_e = {t: np.zeros((runs, len(g))) for t, g in self.grids.items()}
        # promote side ("safe"): H0 = the canary is promote_max_ratio x worse (or, for errors, its
        # rate is >= negligible_error_rate); alternatives below the boundary.
        self.safe_grids = {
            "errors": config.promote_max_ratio / RELATIVE_GRID,
            "latency": config.promote_max_ratio / RELATIVE_GRID,
            "error_floor": config.negligible_error_rate / RELATIVE_GRID,
            # canary's share of requests slower than stable's p95 confidently below ratio x 5 %
            "latency_floor": config.promote_max_ratio * (1 - config.slow_quantile) / RELATIVE_GRID,
        }
        self.log_safe = {t: np.zeros((runs, len(g))) for t, g in self.safe_grids.items()}
        self.log_safe_threshold = math.log(1.0 / config.beta)
        self.events = {t: np.zeros(runs) for t in ALL_TESTS}  # canary events seen per test
        self.trials = {t: np.zeros(runs) for t in ALL_TESTS}  # canary observations per test
        self.stable_events = {t: np.zeros(runs) for t in RELATIVE_TESTS}
        self.stable_trials = {t: np.zeros(runs) for t in RELATIVE_TESTS}
        self.stable_hist = np.zeros((runs, layout.num_buckets))
        self.slow_index = np.full(runs, -1)  # bucket index where "slow" starts (-1: not yet known)
        self.p95_index = layout.first_bucket_at_or_above(config.max_p95_ms)
        self.soak_s = np.zeros(runs)
        self.elapsed_s = np.zeros(runs)
        self.canary_requests = np.zeros(runs)
        self.stable_requests = np.zeros(runs)
        self.clean_intervals = np.zeros(runs, int)
        self.faulted_intervals = np.zeros(runs, int)
        self.decision = np.zeros(runs, int)
        self.fired = np.zeros((runs, len(ALL_TESTS)), bool)

    # ---- evidence ------------------------------------------------------------------------------
    def e_values(self) -> dict[str, np.ndarray]:
        return {t: _exp(_logmeanexp(self.log_e[t])) for t in ALL_TESTS}

    def _over(self) -> np.ndarray:
        """(R, T) bool: test's e-process is at or above its threshold and its event guard is met."""
        cfg = self.config
        cols = []
        for t in ALL_TESTS:
            over = _logmeanexp(self.log_e[t]) >= self.log_threshold[t]
            if t in RELATIVE_TESTS:
                over &= self.events[t] >= cfg.min_relative_events
            else:
                over &= self.trials[t] >= cfg.absolute_min_count
            cols.append(over)
        return np.stack(cols, axis=1)

    def safe_e_values(self) -> dict[str, np.ndarray]:
        return {t: _exp(_logmeanexp(v)) for t, v in self.log_safe.items()}

    def safe(self) -> np.ndarray:
        """(R, 2) bool: promote-side evidence reached for [errors, latency]."""
        lt = self.log_safe_threshold
        s = {t: _logmeanexp(v) >= lt for t, v in self.log_safe.items()}
        return np.stack([s["errors"] | s["error_floor"], s["latency"] | s["latency_floor"]], axis=1)

    def _raw_over(self) -> np.ndarray:
        return np.stack(
            [_logmeanexp(self.log_e[t]) >= self.log_threshold[t] for t in ALL_TESTS], axis=1
        )

    # ---- one interval for all runs ---------------------------------------------------------------
    def step(
        self,
        duration_s,
        valid,
        stable_requests,
        canary_requests,
        stable_errors,
        canary_errors,
        stable_hist=None,
        canary_hist=None,
        canary_token=None,
        canary_websocket=None,
    ) -> np.ndarray:
        """Feed one interval (arrays of shape (R,), histograms (R, B), outcome pairs as (ok, fail)
        arrays). Runs already decided are left untouched. Returns the decision array (R,)."""
        cfg = self.config
        R = self.R
        active = self.decision == CONTINUE
        valid = np.asarray(valid, bool) & active
        dur = np.broadcast_to(np.asarray(duration_s, float), (R,))
        self.elapsed_s = np.where(active, self.elapsed_s + dur, self.elapsed_s)
        self.faulted_intervals += (active & ~valid).astype(int)
        self.clean_intervals += valid.astype(int)
        self.soak_s = np.where(valid, self.soak_s + dur, self.soak_s)

        z = np.zeros(R)
        n_s = np.where(valid, stable_requests, z)
        n_c = np.where(valid, canary_requests, z)
        e_s = np.where(valid, stable_errors, z)
        e_c = np.where(valid, canary_errors, z)
        self.stable_requests += n_s
        self.canary_requests += n_c
        total = n_s + n_c
        pi = np.divide(n_c, total, out=np.zeros(R), where=total > 0)

        # errors: relative
        self._update_relative("errors", e_c, e_s, n_c, n_s, pi, cfg.error_tolerance, valid)
        # error rate: absolute
        self._update_absolute("error_rate", e_c, n_c, cfg.max_error_rate, valid)
        self.log_safe["error_floor"] += np.where(
            valid[:, None],
            _absolute_increment(e_c, n_c, cfg.negligible_error_rate, self.safe_grids["error_floor"]),
            0.0,
        )

        if stable_hist is not None and canary_hist is not None:
            hs = np.where(valid[:, None], np.asarray(stable_hist, float), 0.0)
            hc = np.where(valid[:, None], np.asarray(canary_hist, float), 0.0)
            hn_s, hn_c = hs.sum(axis=1), hc.sum(axis=1)
            hv = valid & (hn_s > 0) & (hn_c > 0)
            # latency: relative, on requests above the (predictable) slow boundary
            k = self.slow_index
            known = hv & (k >= 0)
            cum_s = np.cumsum(hs[:, ::-1], axis=1)[:, ::-1]  # cum_s[:, i] = count in buckets >= i
            cum_c = np.cumsum(hc[:, ::-1], axis=1)[:, ::-1]
            kk = np.clip(k, 0, self.layout.num_buckets - 1)
            slow_s = np.take_along_axis(cum_s, kk[:, None], axis=1)[:, 0]
            slow_c = np.take_along_axis(cum_c, kk[:, None], axis=1)[:, 0]
            hpi = np.divide(hn_c, hn_s + hn_c, out=np.zeros(R), where=(hn_s + hn_c) > 0)
            self._update_relative(
                "latency", slow_c, slow_s, hn_c, hn_s, hpi, cfg.latency_tolerance, known
            )
            p_floor = cfg.promote_max_ratio * (1 - cfg.slow_quantile)
            self.log_safe["latency_floor"] += np.where(
                known[:, None],
                _absolute_increment(np.where(known, slow_c, 0), np.where(known, hn_c, 0), p_floor,
                                    self.safe_grids["latency_floor"]),
                0.0,
            )
            # p95 absolute: share of canary requests at or above the first boundary >= max_p95_ms
            if self.p95_index < self.layout.num_buckets:
                over_c = cum_c[:, self.p95_index]
            else:
                over_c = np.zeros(R)
            self._update_absolute("p95_latency", over_c, hn_c, 0.05, hv)
            # the slow boundary for the *next* interval, from stable's histogram so far
            self.stable_hist += hs
            self._update_slow_index()

        for name, pair, p0 in (
            ("token_optimization", canary_token, cfg.max_token_failure),
            ("websocket", canary_websocket, cfg.max_websocket_failure),
        ):
            if pair is not None:
                ok, fail = (np.where(valid, np.asarray(a, float), 0.0) for a in pair)
                self._update_absolute(name, fail, ok + fail, p0, valid)

        over = self._over()
        rollback = active & over.any(axis=1)
        self.fired |= over & rollback[:, None]
        promote = (
            active
            & ~rollback
            & valid
            & (self.soak_s >= cfg.min_soak_s)
            & (self.canary_requests >= cfg.min_canary_requests)
            & (self.stable_requests >= cfg.min_stable_requests)
            & ~self._raw_over().any(axis=1)
            & self.safe().all(axis=1)
        )
        self.decision = np.where(rollback, ROLLBACK, np.where(promote, PROMOTE, self.decision))
        return self.decision

    def _update_relative(self, test, x_c, x_s, n_c, n_s, pi, tol, mask):
        x_c, x_s = np.where(mask, x_c, 0), np.where(mask, x_s, 0)
        inc = _ratio_increment(x_c, x_s, pi, tol, tol * self.grids[test])
        self.log_e[test] += np.where(mask[:, None], inc, 0.0)
        safe = _ratio_increment(x_c, x_s, pi, self.config.promote_max_ratio, self.safe_grids[test])
        self.log_safe[test] += np.where(mask[:, None], safe, 0.0)
        self.events[test] += np.where(mask, x_c, 0)
        self.trials[test] += np.where(mask, n_c, 0)
        self.stable_events[test] += np.where(mask, x_s, 0)
        self.stable_trials[test] += np.where(mask, n_s, 0)

    def _update_absolute(self, test, x, n, p0, mask):
        x = np.where(mask, x, 0.0)
        n = np.where(mask, n, 0.0)
        inc = _absolute_increment(x, n, p0, self.grids[test])
        self.log_e[test] += np.where(mask[:, None], inc, 0.0)
        self.events[test] += x
        self.trials[test] += n

    def _update_slow_index(self):
        cfg = self.config
        tot = self.stable_hist.sum(axis=1)
        cum = np.cumsum(self.stable_hist[:, ::-1], axis=1)[:, ::-1]  # count at or above bucket i
        frac = np.divide(cum, tot[:, None], out=np.ones_like(cum), where=tot[:, None] > 0)
        # lowest bucket i >= 1 (a finite lower bound) with frac[i] <= 1 - q
        okb = frac <= (1 - cfg.slow_quantile)
        okb[:, 0] = False
        idx = np.where(okb.any(axis=1), okb.argmax(axis=1), -1)
        self.slow_index = np.where(tot >= cfg.min_slow_threshold_requests, idx, -1)

    # ---- reporting for one run ---------------------------------------------------------------------
    def evidence(self, i: int = 0) -> dict:
        cfg = self.config
        e = self.e_values()
        out = {}
        alphas = cfg.alphas()
        for t in ALL_TESTS:
            ev = {
                "e_value": float(e[t][i]),
                "threshold": round(1.0 / alphas[t], 3),
                "canary_events": int(self.events[t][i]),
                "canary_observations": int(self.trials[t][i]),
            }
            n = self.trials[t][i]
            ev["canary_rate"] = float(self.events[t][i] / n) if n > 0 else None
            if t in RELATIVE_TESTS:
                ns = self.stable_trials[t][i]
                ev["stable_events"] = int(self.stable_events[t][i])
                ev["stable_observations"] = int(ns)
                ev["stable_rate"] = float(self.stable_events[t][i] / ns) if ns > 0 else None
                ev["tolerance"] = cfg.error_tolerance if t == "errors" else cfg.latency_tolerance
                if ev["canary_rate"] is not None and ev["stable_rate"]:
                    ev["ratio"] = ev["canary_rate"] / ev["stable_rate"]
                else:
                    ev["ratio"] = None
                if t == "latency":
                    k = int(self.slow_index[i])
                    ev["slow_above_ms"] = self.layout.lower_bound(k) if k >= 1 else None
            else:
                ev["limit"] = {
                    "error_rate": cfg.max_error_rate,
                    "p95_latency": 0.05,
                    "token_optimization": cfg.max_token_failure,
                    "websocket": cfg.max_websocket_failure,
                }[t]
                if t == "p95_latency":
                    ev["slow_above_ms"] = self.layout.lower_bound(self.p95_index) if self.p95_index < self.layout.num_buckets else None
                    ev["p95_limit_ms"] = cfg.max_p95_ms
                ev["min_observations"] = cfg.absolute_min_count
            ev["over_threshold"] = bool(ev["e_value"] >= ev["threshold"])
            out[t] = ev
        se = self.safe_e_values()
        safe = self.safe()[i]
        out["errors"]["promote_evidence"] = {
            "e_value_vs_ratio": float(se["errors"][i]),
            "e_value_vs_negligible_rate": float(se["error_floor"][i]),
            "threshold": round(1.0 / cfg.beta, 3),
            "ratio": cfg.promote_max_ratio,
            "negligible_rate": cfg.negligible_error_rate,
            "reached": bool(safe[0]),
        }
        out["latency"]["promote_evidence"] = {
            "e_value_vs_ratio": float(se["latency"][i]),
            "e_value_vs_slow_share": float(se["latency_floor"][i]),
            "slow_share_limit": cfg.promote_max_ratio * (1 - cfg.slow_quantile),
            "threshold": round(1.0 / cfg.beta, 3),
            "ratio": cfg.promote_max_ratio,
            "reached": bool(safe[1]),
        }
        return out

    def reason(self, i: int = 0) -> str:
        cfg = self.config
        d = int(self.decision[i])
        if d == ROLLBACK:
            ev = self.evidence(i)
            names = [t for j, t in enumerate(ALL_TESTS) if self.fired[i, j]]
            parts = []
            for t in names:
                x = ev[t]
                if t in RELATIVE_TESTS:
                    parts.append(
                        f"{t}: canary {x['canary_events']}/{x['canary_observations']} vs stable "
                        f"{x['stable_events']}/{x['stable_observations']}, e-value {x['e_value']:.3g} >= {x['threshold']:g} "
                        f"(H0: canary <= {x['tolerance']:g} x stable)"
                    )
                else:
                    parts.append(
                        f"{t}: canary {x['canary_events']}/{x['canary_observations']} above the {x['limit']:.0%} limit, "
                        f"e-value {x['e_value']:.3g} >= {x['threshold']:g}"
                    )
            return "rollback: " + "; ".join(parts)
        if d == PROMOTE:
            return (
                f"promote: {self.soak_s[i]:.0f} s clean soak, {int(self.canary_requests[i])} canary and "
                f"{int(self.stable_requests[i])} stable requests, no rollback test at its threshold, "
                f"errors and latency shown below {cfg.promote_max_ratio:g} x stable"
            )
        missing = []
        if self.soak_s[i] < cfg.min_soak_s:
            missing.append(f"soak {self.soak_s[i]:.0f}/{cfg.min_soak_s:.0f} s")
        if self.canary_requests[i] < cfg.min_canary_requests:
            missing.append(f"canary requests {int(self.canary_requests[i])}/{cfg.min_canary_requests}")
        if self.stable_requests[i] < cfg.min_stable_requests:
            missing.append(f"stable requests {int(self.stable_requests[i])}/{cfg.min_stable_requests}")
        safe = self.safe()[i]
        if not safe[0]:
            missing.append(
                f"errors: not yet shown below {cfg.promote_max_ratio:g} x stable "
                f"(or below {cfg.negligible_error_rate:.2%})"
            )
        if not safe[1]:
            missing.append(
                f"latency: not yet shown below {cfg.promote_max_ratio:g} x stable's share of requests slower "
                f"than its p95 (or below {cfg.promote_max_ratio * (1 - cfg.slow_quantile):.0%})"
            )
        raw = self._raw_over()[i]
        for j, t in enumerate(ALL_TESTS):
            if raw[j]:
                missing.append(f"{t} over threshold but below its minimum count")
        return "no decision yet: " + (", ".join(missing) if missing else "last interval not clean")


class Judge:
    """The gate's judge: one run, fed `Interval` objects."""

    def __init__(self, config: JudgeConfig | None = None, layout: BucketLayout | None = None):
        from infra.canary.buckets import CLOUD_RUN_LATENCY

        self.config = config or JudgeConfig()
        self.config.validate()
        self._layout = layout or CLOUD_RUN_LATENCY
        self._batch = BatchJudge(self.config, 1, self._layout)
        self.last_fault: str | None = None
        self.faults: list[str] = []

    @property
    def batch(self) -> BatchJudge:
        return self._batch

    def observe(self, iv: Interval) -> str:
        b = self._batch
        valid = iv.fault is None
        if valid and iv.stable_requests + iv.canary_requests == 0:
            valid = False
            iv.fault = "no requests in the interval"
        if valid and iv.layout is not None and iv.layout != self._layout:
            if b.clean_intervals[0] == 0:
                # adopt the layout the API reports (it is the same for every revision of a metric)
                self._layout = iv.layout
                old = b
                self._batch = b = BatchJudge(self.config, 1, iv.layout)
                b.elapsed_s, b.faulted_intervals = old.elapsed_s, old.faulted_intervals
            else:
                valid = False
                iv.fault = "latency bucket layout changed between intervals"
        if not valid:
            self.last_fault = iv.fault
            self.faults.append(iv.fault or "fault")
        else:
            self.last_fault = None

        def arr(x):
            return np.asarray([x], float)

        def hist(h):
            if h is None:
                return None
            v = np.zeros((1, self._layout.num_buckets))
            h = list(h)[: self._layout.num_buckets]
            v[0, : len(h)] = h
            return v

        def pair(p):
            return None if p is None else (arr(p[0]), arr(p[1]))

        has_hist = valid and iv.stable_latency is not None and iv.canary_latency is not None
        b.step(
            arr(iv.duration_s),
            np.asarray([valid]),
            arr(iv.stable_requests),
            arr(iv.canary_requests),
            arr(iv.stable_errors),
            arr(iv.canary_errors),
            hist(iv.stable_latency) if has_hist else None,
            hist(iv.canary_latency) if has_hist else None,
            pair(iv.canary_token) if valid else None,
            pair(iv.canary_websocket) if valid else None,
        )
        return DECISION_NAMES[int(b.decision[0])]

    @property
    def decision(self) -> str:
        return DECISION_NAMES[int(self._batch.decision[0])]

    def evidence(self) -> dict:
        return self._batch.evidence(0)

    def reason(self) -> str:
        r = self._batch.reason(0)
        if self.decision == "continue" and self.last_fault:
            r += f"; last interval gave no evidence ({self.last_fault})"
        return r

    def summary(self) -> dict:
        b = self._batch
        return {
            "elapsed_s": float(b.elapsed_s[0]),
            "soak_s": float(b.soak_s[0]),
            "clean_intervals": int(b.clean_intervals[0]),
            "faulted_intervals": int(b.faulted_intervals[0]),
            "requests": {"stable": int(b.stable_requests[0]), "canary": int(b.canary_requests[0])},
        }
