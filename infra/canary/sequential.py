"""Sequential tests of the canary judge: e-processes behind one small interface, vectorised over runs.

Every test is a mixture e-process: under its null hypothesis its expectation is at most 1 at every
interval, so by Ville's inequality it ever reaches 1/alpha with probability at most alpha, however
often the gate looks.

* The mixture is over alternatives (a log grid, equal weights) and over **start times**: weight
  `start_weight` on the product since the canary started, and (1 - start_weight) / horizon on each
  product started at a later interval (a Shiryaev-Roberts sum, S_t = (S_{t-1} + w) * L_t). Each product
  is a test supermartingale, the weights add up to at most 1, so the sum is one too: a regression that
  starts at minute 7 is not buried under seven clean minutes of evidence for the null.
* An increment may be capped (`min(L, c)` is still a valid factor): the judge caps the warm-up
  intervals so that a cold start alone can never reach a threshold.
* An increment may be tempered (`L ** (1/phi)`): the quasi-likelihood correction for overdispersed
  counts, phi calibrated on the stable revision's history before the canary started.
* `log_recent` is the mixture over the last few intervals only: the judge's "trending over its
  limit" check that blocks a promote (it is never used to roll back).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID = np.geomspace(1.1, 10.0, 8)  # alternatives: boundary x GRID


def log_mean_exp(x: np.ndarray) -> np.ndarray:
    """log of the equally weighted mixture along the last axis."""
    m = np.max(x, axis=-1)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m + np.log(np.mean(np.exp(x - m[..., None]), axis=-1))


def ratio_increment(x_c, x_s, pi, rho0, rho1) -> np.ndarray:
    """log LR (R, K) of the conditional binomial law of one interval: given m = x_c + x_s events and
    the realised canary share pi of the trials, x_c ~ Binomial(m, q), q = pi*rho / (pi*rho + 1 - pi).
    rho0 (R,) is the boundary, rho1 (R, K) the alternatives."""
    x_c = np.asarray(x_c, float)[:, None]
    x_s = np.asarray(x_s, float)[:, None]
    ok = ((pi > 0) & (pi < 1))[:, None]
    p = np.clip(pi, 1e-12, 1 - 1e-12)[:, None]
    r0 = np.asarray(rho0, float).reshape(-1, 1)
    q0 = p * r0 / (p * r0 + 1 - p)
    q1 = p * rho1 / (p * rho1 + 1 - p)
    inc = x_c * (np.log(q1) - np.log(q0)) + x_s * (np.log1p(-q1) - np.log1p(-q0))
    return np.where(ok, inc, 0.0)


def binomial_increment(x, n, p0: float, p1: np.ndarray) -> np.ndarray:
    """log LR (R, K) of x successes in n trials: alternatives p1 (K,) against p0."""
    x = np.asarray(x, float)[:, None]
    n = np.asarray(n, float)[:, None]
    return x * (np.log(p1) - math.log(p0))[None, :] + (n - x) * (np.log1p(-p1) - math.log1p(-p0))[None, :]


class EProcess:
    """Mixture over alternatives and start times (see the module docstring)."""

    def __init__(self, runs: int, alternatives: int, horizon: int, start_weight: float = 0.5, recent: int = 3):
        self.log_w0 = math.log(start_weight)
        self.log_wk = math.log((1 - start_weight) / max(horizon, 1)) if start_weight < 1 else -math.inf
        self.horizon = horizon
        self.log_main = np.zeros((runs, alternatives))
        self.log_post = np.zeros((runs, alternatives))  # product since restarts were first allowed (after warm-up)
        self.log_sr = np.full((runs, alternatives), -np.inf)
        self.starts = np.zeros(runs, int)
        self.recent = np.zeros((max(recent, 1), runs, alternatives))

    def update(self, inc: np.ndarray, mask: np.ndarray, restart: np.ndarray | None = None) -> None:
        if restart is not None and self.log_wk > -math.inf:
            add = mask & restart & (self.starts < self.horizon)
            self.log_sr = np.where(add[:, None], np.logaddexp(self.log_sr, self.log_wk), self.log_sr)
            self.starts += add
        inc = np.where(mask[:, None], inc, 0.0)
        self.log_main += inc
        if restart is not None:
            self.log_post += np.where(restart[:, None], inc, 0.0)
        self.log_sr = self.log_sr + inc
        shifted = np.concatenate([self.recent[1:], inc[None]], axis=0)
        self.recent = np.where(mask[None, :, None], shifted, self.recent)

    def log_e(self) -> np.ndarray:
        return log_mean_exp(np.logaddexp(self.log_w0 + self.log_main, self.log_sr))

    def log_recent(self) -> np.ndarray:
        return log_mean_exp(self.recent.sum(axis=0))

    def log_since_warmup(self) -> np.ndarray:
        return log_mean_exp(self.log_post)


@dataclass
class Observation:
    """One interval's counts of one signal, per run: canary and stable events out of trials."""

    x_c: np.ndarray
    n_c: np.ndarray
    x_s: np.ndarray
    n_s: np.ndarray

    @property
    def share(self) -> np.ndarray:
        total = self.n_c + self.n_s
        return np.divide(self.n_c, total, out=np.zeros_like(total, dtype=float), where=total > 0)


@dataclass
class Step:
    """How to feed one interval to a test: which runs, and the judge's adjustments."""

    mask: np.ndarray  # runs whose interval counts for this test
    cap: np.ndarray  # per-run cap on the log increment (+inf: none; the warm-up cap otherwise)
    restart: np.ndarray  # runs where a new start may be placed before this interval
    temper: np.ndarray | float = 1.0  # divide log increments by this (overdispersion)
    boundary_factor: np.ndarray | float = 1.0  # multiply a relative test's tolerance (rate drift)


class SequentialTest:
    """The interface every test of the judge's table implements."""

    name: str
    signal: str
    kind: str  # "relative" | "absolute"
    alpha: float

    def update(self, obs: Observation, step: Step) -> None:
        raise NotImplementedError

    def log_e(self) -> np.ndarray:
        return self.process.log_e()

    def log_recent(self) -> np.ndarray:
        return self.process.log_recent()

    def log_since_warmup(self) -> np.ndarray:
        return self.process.log_since_warmup()

    @property
    def log_threshold(self) -> float:
        return math.log(1.0 / self.alpha)

    def raw_over(self) -> np.ndarray:
        return self.log_e() >= self.log_threshold

    def guard(self) -> np.ndarray:
        """Enough observations for this test to roll back on its own."""
        raise NotImplementedError

    def over(self) -> np.ndarray:
        return self.raw_over() & self.guard()


class RelativeTest(SequentialTest):
    """Canary vs stable at the same time: H0 canary rate <= tolerance x stable rate (conditional
    binomial, see `ratio_increment`). Also carries the promote-side evidence that the canary is *not*
    much worse: the upper end of a one-sided (1 - beta) Jeffreys interval of the cumulative ratio is
    below the promote margin (`margin`), or that of the canary's rate is below safe_floor. This is a
    fixed-level check at each look (not anytime-valid): a canary exactly margin x worse passes one look
    with probability about beta, and the rollback test keeps running while the promote waits."""

    kind = "relative"

    def __init__(self, name: str, signal: str, tolerance: float, alpha: float, runs: int, horizon: int,
                 safe_ratio: float, safe_floor: float, min_events: int, start_weight: float, recent: int,
                 always_matters: bool, power: float = 0.8, max_margin: float | None = None):
        self.name, self.signal, self.tolerance, self.alpha = name, signal, tolerance, alpha
        self.safe_ratio, self.safe_floor, self.min_events = safe_ratio, safe_floor, min_events
        self.always_matters = always_matters
        self.horizon, self.power = horizon, power
        self.max_margin = safe_ratio if max_margin is None else max(max_margin, safe_ratio)
        k = len(GRID)
        self.process = EProcess(runs, k, horizon, start_weight, recent)
        self.eff = {key: np.zeros(runs) for key in ("x_c", "n_c", "x_s", "n_s")}  # tempered cumulative counts
        self.events_c, self.trials_c = np.zeros(runs), np.zeros(runs)
        self.events_s, self.trials_s = np.zeros(runs), np.zeros(runs)
        self.intervals = np.zeros(runs)
        self.effective_tolerance = np.full(runs, float(tolerance))
        # runs whose counts the calibration found overdispersed: their promote-side bound is the sandwich one
        self.robust = np.zeros(runs, bool)
        self.dispersion = np.ones(runs)  # the calibration's D and drift cv^2 (fixed before the canary)
        self.drift = np.zeros(runs)
        self.moments = {key: np.zeros(runs) for key in ("k", "xc", "nc", "xs", "ns", "xc2", "xcnc", "nc2",
                                                          "xs2", "xsns", "ns2")}

    def update(self, obs: Observation, step: Step) -> None:
        m = step.mask
        x_c, x_s = np.where(m, obs.x_c, 0.0), np.where(m, obs.x_s, 0.0)
        n_c, n_s = np.where(m, obs.n_c, 0.0), np.where(m, obs.n_s, 0.0)
        pi = obs.share
        rho0 = self.tolerance * np.broadcast_to(np.asarray(step.boundary_factor, float), m.shape)
        self.effective_tolerance = np.where(m, rho0, self.effective_tolerance)
        temper = np.broadcast_to(np.asarray(step.temper, float), m.shape)[:, None]
        inc = ratio_increment(x_c, x_s, pi, rho0, rho0[:, None] * GRID[None, :]) / temper
        self.process.update(np.minimum(inc, step.cap[:, None]), m, step.restart)
        # the promote-side evidence leaves out warm-up intervals that looked like a cold start (their
        # evidence hit the cap), and keeps the others
        counts = m & (step.restart | (inc.max(axis=1) <= step.cap))
        for key, v in (("x_c", x_c), ("n_c", n_c), ("x_s", x_s), ("n_s", n_s)):
            self.eff[key] += np.where(counts, v / temper[:, 0], 0.0)
        mo = self.moments
        for key, v in (("k", 1.0), ("xc", x_c), ("nc", n_c), ("xs", x_s), ("ns", n_s), ("xc2", x_c * x_c),
                       ("xcnc", x_c * n_c), ("nc2", n_c * n_c), ("xs2", x_s * x_s), ("xsns", x_s * n_s),
                       ("ns2", n_s * n_s)):
            mo[key] += np.where(counts & (n_c > 0) & (n_s > 0), v, 0.0)
        self.events_c += x_c
        self.trials_c += n_c
        self.events_s += x_s
        self.trials_s += n_s
        self.intervals += m

    def guard(self) -> np.ndarray:
        return self.events_c >= self.min_events

    def upper_bounds(self, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """(ratio, canary rate): upper ends of one-sided (1 - beta) Jeffreys intervals (inf: no data)."""
        from scipy.stats import beta as beta_dist

        e = self.eff
        m = e["x_c"] + e["x_s"]
        total = e["n_c"] + e["n_s"]
        pi = np.divide(e["n_c"], total, out=np.zeros_like(total), where=total > 0)
        q_u = np.where(m > 0, beta_dist.ppf(1 - beta, e["x_c"] + 0.5, np.maximum(m - e["x_c"], 0) + 0.5), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((m > 0) & (pi > 0) & (pi < 1) & (q_u < 1), q_u * (1 - pi) / (pi * (1 - q_u)), np.inf)
        rate = np.where(e["n_c"] > 0, beta_dist.ppf(1 - beta, e["x_c"] + 0.5,
                                                     np.maximum(e["n_c"] - e["x_c"], 0) + 0.5), np.inf)
        return ratio, rate

    def sandwich_bounds(self, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """(ratio, canary rate): upper ends of one-sided (1 - beta) intervals whose variance is the
        between-interval (sandwich) variance of each revision's counts around its own rate, t with k - 1
        degrees of freedom. For overdispersed counts (clumps, drift): the binomial interval is too narrow
        there and the tempered one far too wide."""
        from scipy.stats import t as t_dist

        mo = self.moments
        k = mo["k"]
        pc = np.divide(mo["xc"], mo["nc"], out=np.zeros_like(k), where=mo["nc"] > 0)
        ps = np.divide(mo["xs"], mo["ns"], out=np.zeros_like(k), where=mo["ns"] > 0)
        # sum over intervals of (x - p n)^2, from the running moments; k / (k - 1) small-sample correction
        vc = np.maximum(mo["xc2"] - 2 * pc * mo["xcnc"] + pc**2 * mo["nc2"], 0) * k / np.maximum(k - 1, 1)
        vs = np.maximum(mo["xs2"] - 2 * ps * mo["xsns"] + ps**2 * mo["ns2"], 0) * k / np.maximum(k - 1, 1)
        q = t_dist.ppf(1 - beta, np.maximum(k - 1, 1))
        ok = (k >= 5) & (mo["xc"] > 0) & (mo["xs"] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.sqrt(vc / mo["xc"] ** 2 + vs / mo["xs"] ** 2)
            ratio = np.where(ok, pc / ps * np.exp(q * se), np.inf)
            rate = np.where((k >= 5) & (mo["nc"] > 0), pc + q * np.sqrt(vc) / mo["nc"], np.inf)
        return ratio, rate

    def margin(self, beta: float) -> np.ndarray:
        """(R,) the ratio a promote must exclude: safe_ratio, or, where the stage's traffic cannot resolve
        it, the ratio that a one-sided (1 - beta) bound excludes with probability `power` by the end of
        the stage (`horizon` intervals at the traffic and stable rate seen so far, counts as overdispersed
        as the calibration found stable's), at most max_margin.
        Its inputs are the traffic and stable's rate, never the canary's events, so it cannot drift
        towards a bad canary. At 2 canary rps and 0.2 % 5xx it is about 2.0; from 100 rps on, safe_ratio."""
        from scipy.stats import norm

        k = np.maximum(self.intervals, 1)
        p_s = np.divide(self.events_s, self.trials_s, out=np.zeros_like(k), where=self.trials_s > 0)
        lam_c, lam_s = p_s * self.trials_c / k, p_s * self.trials_s / k  # events per interval at equal rates
        ok = (lam_c > 0) & (lam_s > 0)
        # relative variance of each revision's count per interval: Poisson, or, where the calibration
        # found overdispersion it cannot attribute, the smaller of its two readings (clumps: D / lam;
        # drift: 1 / lam + cv^2), so the margin never widens more than either explanation allows
        spread = np.zeros_like(k)
        for lam in (lam_c, lam_s):
            poisson = np.divide(1.0, lam, out=np.zeros_like(k), where=ok)
            spread += np.minimum(poisson * self.dispersion, poisson + self.drift)
        spread = np.sqrt(spread / self.horizon)
        resolution = np.exp((norm.ppf(1 - beta) + norm.ppf(self.power)) * spread)
        return np.where(ok, np.clip(resolution, self.safe_ratio, self.max_margin), self.safe_ratio)

    def safe(self, beta: float) -> np.ndarray:
        ratio, rate = self.upper_bounds(beta)
        if self.robust.any():  # either bound may show it: the tempered one suits clumps, the sandwich drift;
            # the sandwich at beta / 5, as its looks repeat every interval on few intervals' variance
            r2, rate2 = self.sandwich_bounds(beta / 5)
            ratio = np.where(self.robust, np.minimum(ratio, r2), ratio)
            rate = np.where(self.robust, np.minimum(rate, rate2), rate)
        return (ratio < self.margin(beta)) | (rate < self.safe_floor)

    def matters(self) -> np.ndarray:
        """Must this signal show it is safe before a promote? Errors and latency always; the log-based
        outcomes once the canary has reported a failure (a signal with no failures blocks nothing)."""
        if self.always_matters:
            return np.ones_like(self.events_c, bool)
        return self.events_c > 0


class AbsoluteTest(SequentialTest):
    """The seed's trigger on the canary alone: H0 rate <= limit (one-sided binomial mixture)."""

    kind = "absolute"

    def __init__(self, name: str, signal: str, limit: float, alpha: float, runs: int, horizon: int,
                 min_count: int, start_weight: float, recent: int):
        self.name, self.signal, self.limit, self.alpha, self.min_count = name, signal, limit, alpha, min_count
        self.grid = limit * np.geomspace(1.15, min(40.0, 0.98 / limit), len(GRID))
        self.process = EProcess(runs, len(self.grid), horizon, start_weight, recent)
        self.events_c, self.trials_c = np.zeros(runs), np.zeros(runs)

    def update(self, obs: Observation, step: Step) -> None:
        m = step.mask
        x, n = np.where(m, obs.x_c, 0.0), np.where(m, obs.n_c, 0.0)
        temper = np.broadcast_to(np.asarray(step.temper, float), m.shape)[:, None]
        inc = binomial_increment(x, n, self.limit, self.grid) / temper
        self.process.update(np.minimum(inc, step.cap[:, None]), m, step.restart)
        self.events_c += x
        self.trials_c += n

    def guard(self) -> np.ndarray:
        return self.trials_c >= self.min_count
