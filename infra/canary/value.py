"""What a release is worth: LLM cost, tokens, quality, cache and memory, judged sequentially.

The safety judge (`infra.canary.judge`) asks "is the candidate worse?"; this module asks what it
costs and what it saves, with the same guarantees (every test is an e-process, so the gate may look
every interval; Ville's inequality bounds each error) and the same vectorised state over runs.

* **cost and tokens per request** (`ScaleTest`) are heavy-tailed per request (an LLM call costs
  cents or dollars). A mean test would need a variance bound nobody has. Instead each is a log-based
  *distribution* metric with exponential buckets of growth `GROWTH` = 1.5^(1/4), so multiplying a
  value by GROWTH^k moves it exactly k buckets. For a ratio r = GROWTH^k the null "canary costs at
  most r x stable" (stochastic order, which for a scale family is the ratio of means) becomes "the
  canary's values divided by r are no larger than stable's": the canary's histogram is shifted by k
  buckets and compared with stable's by a quantile-exceedance test on the pooled interval (label-blind
  boundary at the pooled 80th percentile). Cloud Run splits requests at random, so under exchangeability the canary's count above
  the pooled boundary is conditionally binomial given the interval's pooled counts; it is monotone in the
  canary's values, so a stochastically smaller canary only makes it smaller. That is the judge's
  conditional-binomial e-process (`sequential.ratio_increment`) again: exact, no moment assumption,
  whatever the tail. One e-process per shift k and direction gives an anytime-valid confidence
  sequence for the ratio (the shifts not rejected), its ends on the GROWTH^k grid (a target of -40 %
  is tested at the nearest grid ratio, -39.8 %; the verdict says which).
* **quality score** (per request, in [0, 1]): two-sample mean test, predictable-plug-in empirical
  Bernstein (`QualityTest`): valid for any score distribution in [0, 1], as tight as the scores'
  real variance, from each interval's count, mean and sum of squared deviations.
* **cache hit rate, semantic-match accuracy, budget-tracking accuracy, cache p95**: binomial
  e-processes of the on arm's own counts against the target (both directions).
* **memory utilization** (`MemoryTest`): one value per revision per interval. A Gaussian mixture
  e-process on d_t = canary - (1 + x) stable with the noise scale calibrated on stable's pre-canary
  history (fixed before the canary starts, floored, with a safety factor): a level above stable's by
  more than the tolerance rolls back; a growth trend (fixed-level slope bound, like the safety judge's
  promote-side checks) blocks a promote.

Decisions it adds: *breach* (rollback: costlier or more tokens than the tolerance, quality below its
ratio, memory above its tolerance), *met* (every criterion confidently met: needed for a promote when
criteria exist), *missed* (a criterion confidently missed: hold or rollback, `on_miss`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from infra.canary.buckets import BucketLayout
from infra.canary.sequential import EProcess, binomial_increment, ratio_increment
from infra.signals import CACHE_LOOKUP_LATENCY, LLM_REQUEST_COST, LLM_REQUEST_TOKENS

COST_LAYOUT = BucketLayout.exponential(*LLM_REQUEST_COST.exponential)  # 10 µUSD .. 10 USD
TOKENS_LAYOUT = BucketLayout.exponential(*LLM_REQUEST_TOKENS.exponential)  # 1 .. 1e6 tokens
CACHE_LAYOUT = BucketLayout.explicit(CACHE_LOOKUP_LATENCY.bounds)
GROWTH = COST_LAYOUT.params[1]  # 1.5^(1/4): 4 buckets = the seed's 1.5x cost spike; 1 bucket = +10.7 %
SCALE_SIGNALS = ("cost", "tokens")
RATE_CRITERIA = {  # criterion -> (Batch field, what it counts)
    "cache_hit_rate_min": ("cache", "cache hit rate"),
    "match_accuracy_min": ("match", "semantic-match accuracy"),
    "tracking_accuracy_min": ("tracking", "budget-tracking accuracy"),
}
SHIFTS = np.arange(-24, 9)  # ratios GROWTH^k from 0.088 to 2.25
UPPER_SHARE = 0.2  # the boundary: pooled 80th percentile (for a scale shift of a gamma-like value it carries
# about 2.4x the information of the median at cv 2, and as much at cv 0.5)
UP_GRID = np.geomspace(1.02, 4.0, 8)  # alternatives: ratio of the canary's share above the boundary
DOWN_GRID = np.geomspace(1.005, 1.24, 8)  # ... of its share below it
RATE_STEPS = np.array([0.02, 0.04, 0.07, 0.11, 0.16, 0.22, 0.3])  # binomial alternatives: target +- these


def shift_of(ratio: float) -> int:
    """The nearest grid shift k (GROWTH^k ~ ratio)."""
    return int(round(math.log(ratio) / math.log(GROWTH)))


def grid_ratio(k: int) -> float:
    return float(GROWTH ** k)


@dataclass(frozen=True)
class Criteria:
    """Success criteria of an optimization (a flag's on arm against its off arm). Changes are
    fractions of the off arm's value: tokens_change (-0.60, -0.40) = 40 to 60 % fewer tokens."""

    tokens_change: tuple[float, float] | None = None
    cost_change: tuple[float, float] | None = None
    quality_min_ratio: float | None = None
    cache_hit_rate_min: float | None = None
    cache_p95_max_ms: float | None = None
    match_accuracy_min: float | None = None
    tracking_accuracy_min: float | None = None
    memory_max_increase: float | None = None
    on_miss: str = "hold"  # hold | rollback when a target is confidently missed

    def validate(self) -> None:
        for name in ("tokens_change", "cost_change"):
            v = getattr(self, name)
            if v is not None and not (len(v) == 2 and -1 < v[0] <= v[1] and v[1] < 1):
                raise ValueError(f"{name} must be [lo, hi] with -1 < lo <= hi < 1 (fractions of the off arm)")
        if self.quality_min_ratio is not None and not (0 < self.quality_min_ratio <= 1):
            raise ValueError("quality_min_ratio must be in (0, 1]")
        for name in RATE_CRITERIA:
            v = getattr(self, name)
            if v is not None and not (0 < v < 1):
                raise ValueError(f"{name} must be in (0, 1)")
        if self.cache_p95_max_ms is not None and not self.cache_p95_max_ms > 0:
            raise ValueError("cache_p95_max_ms must be > 0")
        if self.memory_max_increase is not None and not (0 <= self.memory_max_increase < 1):
            raise ValueError("memory_max_increase must be in [0, 1)")
        if self.on_miss not in ("hold", "rollback"):
            raise ValueError("on_miss must be hold or rollback")

    def names(self) -> list[str]:
        return [k for k, v in asdict(self).items() if v is not None and k != "on_miss"]

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ValueConfig:
    """The value judge's settings (defaults: the seed's numbers)."""

    alpha: float = 0.005  # false-rollback bound of the value tests together (beside the safety judge's alpha)
    confidence_alpha: float = 0.05  # each "met" / "missed" claim and each interval end: 95 %, anytime-valid
    cost_tolerance: float = 1.1  # H0 of the rollback test: canary cost per request <= this x stable's
    tokens_tolerance: float = 1.1
    cost_spike: float = 1.5  # seed cost_spike: never promote what may cost 1.5x stable; the tolerance's ceiling
    quality_min_ratio: float = 0.95  # seed: conversation quality > 95 % of baseline
    memory_max_increase: float = 0.05  # seed: memory usage increase < 5 % (of stable's utilization)
    memory_max_growth_per_hour: float = 10.0  # points per hour (a leak filling the headroom within hours); an
    # upper bound above it blocks a promote
    memory_sd_floor: float = 0.25  # points: the calibrated noise never goes below this
    memory_sd_factor: float = 1.25  # safety factor on the calibrated noise
    memory_sd_default: float = 2.0  # points, when stable has no memory history
    min_pool: int = 20  # pooled values an interval needs for a median boundary
    min_quality: int = 30  # canary scores before the quality guardrail may roll back
    min_rate_count: int = 50  # on-arm observations before a rate criterion may be decided

    def validate(self) -> None:
        checks = [
            (0 < self.alpha < 1 and 0 < self.confidence_alpha < 1, "value alphas must be in (0, 1)"),
            (1 <= self.cost_tolerance <= self.cost_spike, "cost_tolerance must be in [1, cost_spike]"),
            (1 <= self.tokens_tolerance <= self.cost_spike, "tokens_tolerance must be in [1, cost_spike]"),
            (0 < self.quality_min_ratio <= 1, "quality_min_ratio must be in (0, 1]"),
            (0 <= self.memory_max_increase < 1, "memory_max_increase must be in [0, 1)"),
            (self.memory_max_growth_per_hour > 0, "memory_max_growth_per_hour must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class ScaleTest:
    """Confidence sequence for the canary/stable ratio of one heavy-tailed per-request value (see the
    module docstring): for each shift k two median-test e-processes, `up` (H0: canary <= GROWTH^k x
    stable) and `down` (H0: canary >= GROWTH^k x stable), vectorised as runs x shifts."""

    def __init__(self, signal: str, runs: int, horizon: int, start_weight: float, min_pool: int):
        self.signal, self.R, self.min_pool = signal, runs, min_pool
        S = len(SHIFTS)
        self.up = EProcess(runs * S, len(UP_GRID), horizon, start_weight, 1)
        self.down = EProcess(runs * S, len(DOWN_GRID), horizon, start_weight, 1)
        self.count_c, self.count_s = np.zeros(runs), np.zeros(runs)
        self.sum_c, self.sum_s = np.zeros(runs), np.zeros(runs)
        self.has_data = np.zeros(runs, bool)

    def update(self, hs: np.ndarray, hc: np.ndarray, mids: np.ndarray, mask: np.ndarray, cap: np.ndarray,
               restart: np.ndarray) -> None:
        R, B = hs.shape
        S = len(SHIFTS)
        n_s, n_c = hs.sum(axis=1), hc.sum(axis=1)
        self.count_c += np.where(mask, n_c, 0)
        self.count_s += np.where(mask, n_s, 0)
        self.sum_c += np.where(mask, hc @ mids, 0.0)
        self.sum_s += np.where(mask, hs @ mids, 0.0)
        # counts at or above each bucket (index B: 0)
        cum_s = np.concatenate([np.cumsum(hs[:, ::-1], axis=1)[:, ::-1], np.zeros((R, 1))], axis=1)
        cum_c = np.concatenate([np.cumsum(hc[:, ::-1], axis=1)[:, ::-1], np.zeros((R, 1))], axis=1)
        j = np.arange(B + 1)
        idx_c = np.clip(j[None, :] + SHIFTS[:, None], 0, B)  # (S, B+1): canary divided by GROWTH^k
        pooled = cum_s[:, None, :] + cum_c[:, idx_c]  # (R, S, B+1)
        total = (n_s + n_c)[:, None]
        half = pooled <= UPPER_SHARE * total[:, :, None]
        half[:, :, 0] = False
        b = np.where(half.any(axis=2), half.argmax(axis=2), 0)  # (R, S) label-blind boundary
        # exact only where the boundary, shifted, stays above the underflow bucket
        ok = (b >= 1) & (b + SHIFTS[None, :] >= 1) & (b + SHIFTS[None, :] <= B - 1) & (total >= self.min_pool)
        ok &= mask[:, None] & (n_c > 0)[:, None] & (n_s > 0)[:, None]
        x_s = np.take_along_axis(cum_s, b, axis=1)
        x_c = np.take_along_axis(cum_c, np.clip(b + SHIFTS[None, :], 0, B), axis=1)
        pi = np.divide(n_c, n_c + n_s, out=np.zeros(R), where=(n_c + n_s) > 0)
        flat = lambda a: np.broadcast_to(a, (R, S)).reshape(-1)  # noqa: E731
        pi_f, ok_f = flat(pi[:, None]), flat(ok)
        cap_f = flat(cap[:, None])[:, None]
        restart_f = flat(restart[:, None])
        one = np.ones(R * S)
        hi_c, hi_s = flat(x_c), flat(x_s)
        lo_c, lo_s = flat(n_c[:, None]) - hi_c, flat(n_s[:, None]) - hi_s
        inc_up = np.where(ok_f[:, None], ratio_increment(hi_c, hi_s, pi_f, one, UP_GRID[None, :]), 0.0)
        inc_dn = np.where(ok_f[:, None], ratio_increment(lo_c, lo_s, pi_f, one, DOWN_GRID[None, :]), 0.0)
        self.up.update(np.minimum(inc_up, cap_f), ok_f, restart_f)
        self.down.update(np.minimum(inc_dn, cap_f), ok_f, restart_f)
        self.has_data |= ok.any(axis=1)

    def log_up(self) -> np.ndarray:
        return self.up.log_e().reshape(self.R, len(SHIFTS))

    def log_down(self) -> np.ndarray:
        return self.down.log_e().reshape(self.R, len(SHIFTS))

    def rejects_up(self, k: int, alpha: float) -> np.ndarray:
        """Confident that canary > GROWTH^k x stable."""
        return self.log_up()[:, _col(k)] >= math.log(1 / alpha)

    def rejects_down(self, k: int, alpha: float) -> np.ndarray:
        """Confident that canary < GROWTH^k x stable."""
        return self.log_down()[:, _col(k)] >= math.log(1 / alpha)

    def interval(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) ends of the (1 - alpha) confidence sequence of the ratio (0 / inf: open)."""
        thr = math.log(2 / alpha)
        up, down = self.log_up() >= thr, self.log_down() >= thr
        ratios = GROWTH ** SHIFTS.astype(float)
        lo = np.where(up.any(axis=1), ratios[np.where(up, np.arange(len(SHIFTS)), -1).max(axis=1)], 0.0)
        first_down = np.where(down, np.arange(len(SHIFTS)), len(SHIFTS)).min(axis=1)
        hi = np.where(down.any(axis=1), ratios[np.clip(first_down, 0, len(SHIFTS) - 1)], np.inf)
        return lo, hi

    def ratio(self) -> np.ndarray:
        """Realised ratio of the means (NaN without data)."""
        mc = np.divide(self.sum_c, self.count_c, out=np.full(self.R, np.nan), where=self.count_c > 0)
        ms = np.divide(self.sum_s, self.count_s, out=np.full(self.R, np.nan), where=self.count_s > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return mc / ms

    def stable_mean(self) -> np.ndarray:
        return np.divide(self.sum_s, self.count_s, out=np.full(self.R, np.nan), where=self.count_s > 0)


def _col(k: int) -> int:
    return int(np.clip(k - SHIFTS[0], 0, len(SHIFTS) - 1))


def bucket_mids(layout: BucketLayout) -> np.ndarray:
    """A representative value per bucket (geometric middle; underflow: half the first bound)."""
    b = np.asarray(layout.bounds, float)
    inner = np.sqrt(b[:-1] * b[1:])
    return np.concatenate([[b[0] / 2], inner, [b[-1] * math.sqrt(b[-1] / b[-2])]])


class QualityTest:
    """Two-sample mean tests on quality scores in [0, 1] for a grid of ratios r: `worse` (H0: canary
    mean >= r x stable's) and `fine` (H0: canary mean <= r x stable's), each a predictable-plug-in
    empirical-Bernstein e-process (Waudby-Smith & Ramdas 2023, Thm 2) over the interval's scores:
    prod exp(lambda_i (Y_i - E Y_i) - psi(lambda_i) (Y_i - m_i)^2), psi(u) = -log(1 - u) - u, valid for
    any Y_i in [0, 1] with m_i fixed before Y_i. A canary score enters as 1 - X (worse) or X (fine)
    with lambda / n_c, a stable score as r X with lambda r / n_s, so the exponent's drift is lambda x
    (r mu_s - mu_c); the squared deviations come from each interval's count, mean and sum of squared
    deviations (what a Cloud Monitoring distribution holds), around the means of the earlier intervals.
    A score Y >= 0 with centre m deviates by at least -m, so the inequality holds for (Y - m) / k with
    any k >= m and a bet up to 1 / k instead of 1 (k = m, at least 0.05): scores near 1 make 1 - X small,
    and the worse side may bet several times harder there (quality at 90 % of off: rolled back at a median
    360 s instead of 600 s; under the null at most a quarter of alpha in simulation, tests/test_canary_value.py)."""

    RATIOS = np.round(np.arange(0.80, 1.1001, 0.01), 2)
    BETS = np.geomspace(0.01, 0.9, 10)  # the canary's bet per score, as a share of its largest valid one

    def __init__(self, runs: int, ratio: float, horizon: int, start_weight: float):
        self.r = ratio
        rs = np.unique(np.append(self.RATIOS, round(ratio, 4)))
        self.rs = rs
        self.i0 = int(np.argmin(np.abs(rs - ratio)))
        G = len(rs)
        self.R, self.G = runs, G
        self.worse = EProcess(runs * G, len(self.BETS), horizon, start_weight, 3)
        self.fine = EProcess(runs * G, len(self.BETS), horizon, 1.0, 1)
        self.sum_c, self.n_c, self.sum_s, self.n_s = (np.zeros(runs) for _ in range(4))

    def update(self, s_c, n_c, ssd_c, s_s, n_s, ssd_s, mask, cap, restart) -> None:
        R, G = self.R, self.G
        ok = mask & (n_c > 0) & (n_s > 0)
        nc, ns = np.where(ok, n_c, 1.0), np.where(ok, n_s, 1.0)
        xc, xs = s_c / nc, s_s / ns
        mc = np.divide(self.sum_c, self.n_c, out=np.full(R, 0.5), where=self.n_c > 0)  # predictable centres
        ms = np.divide(self.sum_s, self.n_s, out=np.full(R, 0.5), where=self.n_s > 0)
        ss_c = np.where(ok, np.maximum(ssd_c, 0) + nc * (xc - mc) ** 2, 0.0)
        ss_s = np.where(ok, np.maximum(ssd_s, 0) + ns * (xs - ms) ** 2, 0.0)
        r = self.rs[None, :, None]  # (1, G, 1)
        psi = lambda u: -np.log1p(-u) - u  # noqa: E731
        t = r * xs[:, None, None] - xc[:, None, None]  # > 0: canary below r x stable
        incs = []
        # worse: the canary's score enters as 1 - X, stable's as X; fine: the other way round; each side's
        # bet is scaled by its centre (see the class docstring)
        for sign, centre_c, centre_s in ((1.0, 1 - mc, ms), (-1.0, mc, 1 - ms)):
            k_c = np.clip(centre_c, 0.05, 1.0)[:, None, None]
            k_s = np.clip(centre_s, 0.05, 1.0)[:, None, None]
            # (R, G, K) bets, fixed before the scores count: a grid in the canary's own scale (so no grid
            # point is wasted on bets the interval's count makes invalid), within the stable side's limit
            lam = np.minimum(self.BETS[None, None, :] * nc[:, None, None] / k_c, 0.9 * ns[:, None, None] / (r * k_s))
            u_c, u_s = lam / nc[:, None, None] * k_c, lam * r / ns[:, None, None] * k_s
            pen = psi(u_c) * ss_c[:, None, None] / k_c**2 + psi(u_s) * ss_s[:, None, None] / k_s**2
            incs.append((sign * lam * t - pen).reshape(R * G, -1))
        inc_w, inc_f = incs
        okf = np.repeat(ok, G)
        capf = np.repeat(cap, G)[:, None]
        self.worse.update(np.where(okf[:, None], np.minimum(inc_w, capf), 0.0), okf, np.repeat(restart, G))
        self.fine.update(np.where(okf[:, None], inc_f, 0.0), okf)
        for name, val in (("sum_c", s_c), ("n_c", n_c), ("sum_s", s_s), ("n_s", n_s)):
            setattr(self, name, getattr(self, name) + np.where(ok, val, 0.0))

    def log_worse(self) -> np.ndarray:
        return self.worse.log_e().reshape(self.R, self.G)

    def log_fine(self) -> np.ndarray:
        return self.fine.log_e().reshape(self.R, self.G)

    def breach(self, alpha: float) -> np.ndarray:
        return self.log_worse()[:, self.i0] >= math.log(1 / alpha)

    def met(self, alpha: float) -> np.ndarray:
        return self.log_fine()[:, self.i0] >= math.log(1 / alpha)

    def recent_worse(self) -> np.ndarray:
        return self.worse.log_recent().reshape(self.R, self.G)[:, self.i0]

    def interval(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) ends of the (1 - alpha) confidence sequence of the ratio, on the grid (NaN: open)."""
        thr = math.log(2 / alpha)
        fine, worse = self.log_fine() >= thr, self.log_worse() >= thr
        lo = np.where(fine.any(axis=1), self.rs[np.where(fine, np.arange(self.G), 0).max(axis=1)], np.nan)
        hi = np.where(worse.any(axis=1), self.rs[np.where(worse, np.arange(self.G), self.G - 1).min(axis=1)], np.nan)
        return lo, hi

    def ratio(self) -> np.ndarray:
        mc = np.divide(self.sum_c, self.n_c, out=np.full(len(self.n_c), np.nan), where=self.n_c > 0)
        ms = np.divide(self.sum_s, self.n_s, out=np.full(len(self.n_s), np.nan), where=self.n_s > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return mc / ms


class RateTest:
    """The on arm's success share against a target p0 in both directions (binomial mixtures)."""

    def __init__(self, runs: int, target: float, minimum: int):
        self.p0, self.minimum = target, minimum
        self.hi = np.clip(target + RATE_STEPS, None, 0.999)
        self.lo = np.clip(target - RATE_STEPS, 0.001, None)
        self.above = EProcess(runs, len(self.hi), 1, 1.0, 1)
        self.below = EProcess(runs, len(self.lo), 1, 1.0, 1)
        self.n, self.x = np.zeros(runs), np.zeros(runs)

    def update(self, x, n, mask) -> None:
        ok = mask & (n > 0)
        x, n = np.where(ok, x, 0.0), np.where(ok, n, 0.0)
        self.above.update(binomial_increment(x, n, self.p0, self.hi), ok)
        self.below.update(binomial_increment(x, n, self.p0, self.lo), ok)
        self.n += n
        self.x += x

    def met(self, alpha: float) -> np.ndarray:
        return (self.above.log_e() >= math.log(1 / alpha)) & (self.n >= self.minimum)

    def missed(self, alpha: float) -> np.ndarray:
        return (self.below.log_e() >= math.log(1 / alpha)) & (self.n >= self.minimum)

    def rate(self) -> np.ndarray:
        return np.divide(self.x, self.n, out=np.full(len(self.n), np.nan), where=self.n > 0)


class MemoryTest:
    """Memory utilization per revision per interval (percent). `level`: Gaussian mixture e-process of
    H0: canary <= (1 + x) stable, noise scale fixed from stable's history before the canary."""

    def __init__(self, runs: int, increase: float, sd: np.ndarray, horizon: int, start_weight: float):
        self.x = increase
        self.sd_d = sd * math.sqrt(1 + (1 + increase) ** 2)  # canary and stable noise, same scale
        self.deltas = np.geomspace(0.5, 20.0, 8)  # alternatives: excess in points
        self.level = EProcess(runs, len(self.deltas), horizon, start_weight, 3)
        self.d: list[np.ndarray] = []  # per interval d_t (NaN: no data)
        self.t: list[float] = []
        self.last_c, self.last_s = np.full(runs, np.nan), np.full(runs, np.nan)

    def update(self, m_c, m_s, mask, cap, restart, elapsed_h: float) -> None:
        ok = mask & np.isfinite(m_c) & np.isfinite(m_s)
        d = np.where(ok, m_c - (1 + self.x) * m_s, 0.0)
        v = self.sd_d[:, None] ** 2
        lam = self.deltas[None, :] / v
        inc = lam * d[:, None] - lam**2 * v / 2
        self.level.update(np.minimum(inc, cap[:, None]), ok, restart)
        self.d.append(np.where(ok, d, np.nan))
        self.t.append(elapsed_h)
        self.last_c, self.last_s = np.where(ok, m_c, self.last_c), np.where(ok, m_s, self.last_s)

    def slope_upper(self, skip: int, z: float = 1.645) -> tuple[np.ndarray, np.ndarray]:
        """(slope, upper bound) of d_t in points per hour over the intervals after `skip` (NaN: < 4)."""
        if len(self.d) - skip < 4:
            nan = np.full(len(self.sd_d), np.nan)
            return nan, nan
        D = np.stack(self.d[skip:], axis=1)
        T = np.asarray(self.t[skip:])[None, :]
        ok = np.isfinite(D)
        n = ok.sum(axis=1)
        tm = np.where(ok, T, 0).sum(axis=1) / np.maximum(n, 1)
        dm = np.where(ok, D, 0).sum(axis=1) / np.maximum(n, 1)
        sxx = np.where(ok, (T - tm[:, None]) ** 2, 0).sum(axis=1)
        sxy = np.where(ok, (T - tm[:, None]) * (np.nan_to_num(D) - dm[:, None]), 0).sum(axis=1)
        slope = np.divide(sxy, sxx, out=np.full(len(n), np.nan), where=(sxx > 0) & (n >= 4))
        se = np.divide(self.sd_d, np.sqrt(sxx), out=np.full(len(n), np.nan), where=sxx > 0)
        return slope, slope + z * se

    def level_upper(self, skip: int, z: float = 1.645) -> np.ndarray:
        """Upper bound of the mean of d_t after `skip` (NaN: no data)."""
        if len(self.d) <= skip:
            return np.full(len(self.sd_d), np.nan)
        D = np.stack(self.d[skip:], axis=1)
        ok = np.isfinite(D)
        n = ok.sum(axis=1)
        mean = np.divide(np.where(ok, D, 0).sum(axis=1), n, out=np.full(len(n), np.nan), where=n > 0)
        return mean + z * self.sd_d / np.sqrt(np.maximum(n, 1))


def memory_sd(history: np.ndarray | None, cfg: ValueConfig, runs: int) -> np.ndarray:
    """Stable's per-interval memory noise from its history (R, H): from first differences, so a slow
    drift does not inflate it; floored and multiplied by the safety factor."""
    if history is None or history.shape[1] < 5:
        return np.full(runs, cfg.memory_sd_default)
    h = np.asarray(history, float)
    dif = np.diff(h, axis=1)
    ok = np.isfinite(dif)
    n = ok.sum(axis=1)
    ms = np.divide(np.where(ok, dif**2, 0).sum(axis=1), n, out=np.full(runs, np.nan), where=n >= 4)
    sd = np.sqrt(ms / 2)
    sd = np.where(np.isfinite(sd), sd, cfg.memory_sd_default)
    return np.maximum(sd * cfg.memory_sd_factor, cfg.memory_sd_floor)


@dataclass
class ValueData:
    """One interval's value signals for R runs (any may be None: not measured)."""

    cost_s: np.ndarray | None = None  # (R, B) histograms in COST_LAYOUT
    cost_c: np.ndarray | None = None
    tokens_s: np.ndarray | None = None  # (R, B) in TOKENS_LAYOUT
    tokens_c: np.ndarray | None = None
    quality_s: tuple | None = None  # (sum of scores, count, sum of squared deviations from the interval mean)
    quality_c: tuple | None = None
    cache_c: tuple | None = None  # (lookups, hits) of the canary / on arm
    cache_latency_c: np.ndarray | None = None  # (R, B) in `cache_layout`
    match_c: tuple | None = None  # (checks, correct)
    tracking_c: tuple | None = None  # (checks, accurate)
    memory_s: np.ndarray | None = None  # (R,) mean utilization, percent
    memory_c: np.ndarray | None = None

    def arrays(self) -> list[np.ndarray]:
        out = []
        for v in self.__dict__.values():
            if v is None:
                continue
            out.extend(v if isinstance(v, tuple) else [v])
        return out


@dataclass
class ValueOutcome:
    breach: np.ndarray  # (R,) rollback
    promote_ok: np.ndarray  # (R,) nothing here stands in the way of a promote
    missed: np.ndarray  # (R,) a criterion confidently missed
    fired: dict = field(default_factory=dict)  # breach name -> (R,) bool


class ValueJudge:
    """The value tests of R runs, advanced by `BatchJudge.step`."""

    def __init__(self, cfg: ValueConfig, runs: int, horizon: int, start_weight: float,
                 criteria: Criteria | None = None, memory_history: np.ndarray | None = None,
                 cache_layout: BucketLayout | None = None):
        cfg.validate()
        if criteria is not None:
            criteria.validate()
        self.cfg, self.R, self.criteria = cfg, runs, criteria
        self.scale = {s: ScaleTest(s, runs, horizon, start_weight, cfg.min_pool) for s in SCALE_SIGNALS}
        ratio = criteria.quality_min_ratio if criteria and criteria.quality_min_ratio else cfg.quality_min_ratio
        self.quality = QualityTest(runs, ratio, horizon, start_weight)
        inc = (criteria.memory_max_increase if criteria and criteria.memory_max_increase is not None
               else cfg.memory_max_increase)
        self.memory_history = memory_history
        self.memory = MemoryTest(runs, inc, memory_sd(memory_history, cfg, runs), horizon, start_weight)
        self.rates = {name: RateTest(runs, getattr(criteria, name), cfg.min_rate_count)
                      for name in RATE_CRITERIA if criteria and getattr(criteria, name) is not None}
        self.cache_layout = cache_layout or CACHE_LAYOUT
        self.cache_p95 = None
        if criteria and criteria.cache_p95_max_ms is not None:
            self.cache_p95 = RateTest(runs, 0.05, cfg.min_rate_count)  # share of lookups at/above the limit
        self.has = {k: np.zeros(runs, bool) for k in ("cost", "tokens", "quality", "memory")}
        self.warm_intervals = 0
        self.elapsed_s = 0.0
        # rollback tests: cost, tokens, quality, memory share the value alpha equally
        self.alpha_each = cfg.alpha / 4
        self.not_met_names: list[list[str]] = [[] for _ in range(runs)]

    # ---- one interval ----------------------------------------------------------------------------
    def step(self, v: ValueData | None, valid: np.ndarray, in_warmup: np.ndarray, cap_share: float,
             warm_intervals: int, duration_s: float) -> ValueOutcome:
        R = self.R
        ones = np.ones(R, bool)
        if v is None:
            v = ValueData()
        log_thr = math.log(1 / self.alpha_each)
        cap = np.where(in_warmup, cap_share * log_thr / max(warm_intervals, 1), np.inf)
        restart = ~in_warmup
        self.warm_intervals += int(in_warmup.all())
        self.elapsed_s += duration_s
        elapsed_h = self.elapsed_s / 3600.0

        def clean(a):
            a = np.asarray(a, float)
            m = valid if a.ndim == 1 else valid[:, None]
            return np.where(m, np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0)

        for s, layout in (("cost", COST_LAYOUT), ("tokens", TOKENS_LAYOUT)):
            hs, hc = getattr(v, f"{s}_s"), getattr(v, f"{s}_c")
            if hs is not None and hc is not None:
                hs, hc = clean(hs), clean(hc)
                self.scale[s].update(hs, hc, bucket_mids(layout), valid, cap, restart)
                self.has[s] |= valid & (hc.sum(axis=1) > 0)
        if v.quality_s is not None and v.quality_c is not None:
            s_c, n_c, q_c = (clean(a) for a in v.quality_c)
            s_s, n_s, q_s = (clean(a) for a in v.quality_s)
            self.quality.update(s_c, n_c, q_c, s_s, n_s, q_s, valid, cap, restart)
            self.has["quality"] |= valid & (n_c > 0)
        if v.memory_s is not None and v.memory_c is not None:
            self.memory.update(np.asarray(v.memory_c, float), np.asarray(v.memory_s, float), valid, cap, restart,
                               elapsed_h)
            self.has["memory"] |= valid & np.isfinite(np.asarray(v.memory_c, float))
        settled = valid & ~in_warmup  # a cache fills while the revision warms up: rates count after it
        for name, test in self.rates.items():
            pair = getattr(v, RATE_CRITERIA[name][0] + "_c")
            if pair is not None:
                n, x = clean(pair[0]), clean(pair[1])
                test.update(x, n, settled)
        if self.cache_p95 is not None and v.cache_latency_c is not None and self.cache_layout is not None:
            h = clean(v.cache_latency_c)
            k = self.cache_layout.first_bucket_at_or_above(self.criteria.cache_p95_max_ms)
            slow = h[:, k:].sum(axis=1) if k < h.shape[1] else np.zeros(R)
            self.cache_p95.update(slow, h.sum(axis=1), settled)

        fired = self.breaches()
        breach = np.zeros(R, bool)
        for f in fired.values():
            breach |= f
        promote_ok = self.promote_ok()
        missed = self.missed() if self.criteria else np.zeros(R, bool)
        return ValueOutcome(breach, promote_ok & ones, missed, fired)

    # ---- decisions -------------------------------------------------------------------------------
    def breaches(self) -> dict[str, np.ndarray]:
        cfg, a = self.cfg, self.alpha_each
        out = {}
        for s, tol in (("cost", cfg.cost_tolerance), ("tokens", cfg.tokens_tolerance)):
            out[s] = self.has[s] & self.scale[s].rejects_up(max(shift_of(tol), 0), a)
        q = self.quality
        out["quality"] = self.has["quality"] & q.breach(a) & (q.n_c >= cfg.min_quality)
        out["memory"] = self.has["memory"] & (self.memory.level.log_e() >= math.log(1 / a))
        return out

    def promote_ok(self) -> np.ndarray:
        """Value-side conditions of a promote: not possibly a cost spike, quality not trending down,
        memory not growing, every criterion met."""
        cfg, ca = self.cfg, self.cfg.confidence_alpha
        ok = np.ones(self.R, bool)
        for s in SCALE_SIGNALS:
            spike = self.scale[s].rejects_down(shift_of(cfg.cost_spike), ca)
            ok &= ~self.has[s] | spike
        q = self.quality
        ok &= ~self.has["quality"] | (q.recent_worse() < math.log(4.0))
        if self.memory.d:
            slope, upper = self.memory.slope_upper(self.warm_intervals)
            level = self.memory.level_upper(self.warm_intervals)
            mem_ok = (upper < cfg.memory_max_growth_per_hour) & (level < 0) & \
                     (self.memory.level.log_recent() < math.log(4.0))
            ok &= ~self.has["memory"] | mem_ok
        if self.criteria:
            ok &= self.met_all()
        return ok

    def _criterion_states(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """criterion -> (met (R,), missed (R,)), each at confidence_alpha."""
        c, ca = self.criteria, self.cfg.confidence_alpha
        out = {}
        for s in SCALE_SIGNALS:
            band = getattr(c, f"{s}_change")
            if band is None:
                continue
            k = shift_of(1 + band[1])
            t = self.scale[s]
            out[f"{s}_change"] = (t.rejects_down(k, ca), t.rejects_up(k, ca))
        if c.quality_min_ratio is not None:  # a guardrail: its miss is a breach (rollback), never a mere "not met"
            q = self.quality
            out["quality_min_ratio"] = (q.met(ca), np.zeros(self.R, bool))
        for name, test in self.rates.items():
            out[name] = (test.met(ca), test.missed(ca))
        if self.cache_p95 is not None:
            out["cache_p95_max_ms"] = (self.cache_p95.missed(ca), self.cache_p95.met(ca))  # share below 5 %: met
        if c.memory_max_increase is not None:
            lvl = self.memory.level_upper(self.warm_intervals)
            out["memory_max_increase"] = (self.has["memory"] & (lvl < 0), self.memory.level.log_e() >= math.log(1 / ca))
        return out

    def met_all(self) -> np.ndarray:
        states = self._criterion_states()
        ok = np.ones(self.R, bool)
        for met, _ in states.values():
            ok &= met
        return ok

    def missed(self) -> np.ndarray:
        out = np.zeros(self.R, bool)
        for _, miss in self._criterion_states().values():
            out |= miss
        return out

    def missed_names(self, i: int) -> list[str]:
        return [k for k, (_, miss) in self._criterion_states().items() if miss[i]] if self.criteria else []

    def unmet_names(self, i: int) -> list[str]:
        return [k for k, (met, _) in self._criterion_states().items() if not met[i]] if self.criteria else []

    # ---- words ------------------------------------------------------------------------------------
    def describe_effect(self, name: str, i: int = 0) -> str:
        """"tokens -5 % [-7 %, -3 %]" for a signal with data (realised change, anytime-valid interval)."""
        e = self.effects(i).get(name)
        if e is None:
            return f"{name}: no data"
        if name in SCALE_SIGNALS:
            lo, hi = e["interval"]
            return f"{name} {_pct(e['change'])} [{_pct(lo)}, {_pct(hi)}]"
        if name == "quality":
            lo, hi = e["interval"]
            return f"quality {_share(e['ratio'])} of stable [{_share(lo)}, {_share(hi)}]"
        if name == "memory":
            def num(x, fmt):
                return "?" if x is None else format(x, fmt)
            return (f"memory {num(e['canary_percent'], '.1f')} % vs stable {num(e['stable_percent'], '.1f')} %, "
                    f"growing {num(e['growth_points_per_hour'], '+.1f')} points/h")
        return name

    def describe_criterion(self, name: str, i: int = 0) -> str:
        """One criterion with its measurement and its target."""
        c = self.criteria
        if name in ("tokens_change", "cost_change"):
            s = name.removesuffix("_change")
            lo, hi = getattr(c, name)
            tested = grid_ratio(shift_of(1 + hi)) - 1
            return (f"{self.describe_effect(s, i)}, target {100 * hi:+.0f}..{100 * lo:+.0f} %"
                    + (f" (tested at {_pct(tested)})" if abs(tested - hi) > 5e-4 else ""))
        if name == "quality_min_ratio":
            return f"{self.describe_effect('quality', i)}, target >= {_share(c.quality_min_ratio)} of the off arm"
        if name in self.rates:
            t = self.rates[name]
            return f"{RATE_CRITERIA[name][1]} {_share(t.rate()[i])} of {int(t.n[i])}, target > {_share(t.p0)}"
        if name == "cache_p95_max_ms":
            t = self.cache_p95
            return (f"cache lookups at or above {c.cache_p95_max_ms:g} ms {_share(t.rate()[i])} of {int(t.n[i])}, "
                    f"target p95 < {c.cache_p95_max_ms:g} ms (<= 5 % above it)")
        if name == "memory_max_increase":
            return f"{self.describe_effect('memory', i)}, target <= +{_share(c.memory_max_increase)} of stable"
        return name

    def breach_text(self, name: str, i: int = 0) -> str:
        cfg = self.cfg
        if name in SCALE_SIGNALS:
            tol = cfg.cost_tolerance if name == "cost" else cfg.tokens_tolerance
            return (f"{name} per request: {self.describe_effect(name, i)} vs stable, confidently above the "
                    f"{grid_ratio(max(shift_of(tol), 0)):.3g}x tolerance")
        if name == "quality":
            return f"{self.describe_effect('quality', i)}, confidently below {_share(self.quality.r)}"
        if name == "memory":
            return (f"{self.describe_effect('memory', i)}: confidently above stable + "
                    f"{_share(self.memory.x)}")
        return name

    # ---- what it is worth ------------------------------------------------------------------------
    def effects(self, i: int = 0) -> dict:
        """Realised effect per signal with its anytime-valid interval (changes as fractions)."""
        ca = self.cfg.confidence_alpha
        out = {}
        for s in SCALE_SIGNALS:
            t = self.scale[s]
            if not self.has[s][i]:
                continue
            lo, hi = t.interval(ca)
            r = float(t.ratio()[i])
            out[s] = {"change": _finite(r - 1), "interval": [_finite(lo[i] - 1) if lo[i] > 0 else None,
                                                             _finite(hi[i] - 1)],
                      "confidence": 1 - ca, "canary_count": int(t.count_c[i]), "stable_count": int(t.count_s[i]),
                      "stable_mean": _finite(t.stable_mean()[i])}
        if self.has["quality"][i]:
            q = self.quality
            r = float(q.ratio()[i])
            lo, hi = q.interval(ca)
            out["quality"] = {"ratio": _finite(r), "interval": [_finite(lo[i]), _finite(hi[i])], "min_ratio": q.r,
                              "confidence": 1 - ca, "canary_scores": int(q.n_c[i]), "stable_scores": int(q.n_s[i])}
        for name, test in self.rates.items():
            out[name.removesuffix("_min")] = {"rate": _finite(test.rate()[i]), "target": test.p0,
                                              "observations": int(test.n[i])}
        if self.cache_p95 is not None:
            out["cache_slow_share"] = {"rate": _finite(self.cache_p95.rate()[i]), "limit": 0.05,
                                       "above_ms": self.criteria.cache_p95_max_ms,
                                       "observations": int(self.cache_p95.n[i])}
        if self.has["memory"][i]:
            slope, upper = self.memory.slope_upper(self.warm_intervals)
            out["memory"] = {"canary_percent": _finite(self.memory.last_c[i]), "stable_percent": _finite(self.memory.last_s[i]),
                             "excess_upper_points": _finite(self.memory.level_upper(self.warm_intervals)[i]),
                             "growth_points_per_hour": _finite(slope[i]), "growth_upper": _finite(upper[i]),
                             "noise_sd_points": _finite(self.memory.sd_d[i])}
        return out


def _pct(x) -> str:
    """A change: "-45 %"."""
    if x is None or not math.isfinite(float(x)):
        return "?"
    return f"{100 * float(x):+.0f} %"


def _share(x) -> str:
    """A share or ratio: "95 %"."""
    if x is None or not math.isfinite(float(x)):
        return "?"
    return f"{100 * float(x):.0f} %"


def _finite(x) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def projected_saving(effects: dict, requests_per_s: float, llm_calls_per_request: float = 1.0) -> dict | None:
    """USD/day saved at 100 % from the cost effect (negative: extra cost) with its interval."""
    cost = effects.get("cost")
    if not cost or cost.get("stable_mean") is None or cost.get("change") is None:
        return None
    per_day = requests_per_s * 86400 * llm_calls_per_request * cost["stable_mean"]
    lo, hi = cost["interval"]
    return {"usd_per_day": round(-cost["change"] * per_day, 2),
            "interval": [None if hi is None else round(-hi * per_day, 2), None if lo is None else round(-lo * per_day, 2)],
            "basis": f"{requests_per_s:.3g} req/s at 100 %, stable's {cost['stable_mean']:.4g} USD per request"}

