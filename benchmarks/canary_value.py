"""The value signals of the canary benchmark (issue 22): cost, tokens, quality, cache, memory and the
scenario's `criteria`. Kept beside `benchmarks.canary`, which parses, simulates and judges with it.

Revision fields (stable, canary and phase overrides, merged key by key):
* `cost: {usd_per_request, cv}`: one LLM request per HTTP request, cost gamma(mean, cv), counted in
  the cost metric's buckets (infra.canary.value.COST_LAYOUT);
* `tokens: {per_request, cv}`: tokens per request, gamma as above (TOKENS_LAYOUT);
* `quality: {per_request, mean, sd}`: a share of requests carries a score normal(mean, sd) clipped to
  [0, 1]; the judge sees each interval's sum, count and sum of squared deviations (what Cloud
  Monitoring's distribution gives; the latter drawn as sd^2 chi-square(count - 1));
* `cache: {per_request, hit_rate, latency_ms: {median, p95}}`: Poisson lookups per request, hits,
  lognormal lookup latency in the cache-latency metric's buckets;
* `memory: {percent, growth_per_hour, sd}`: the revision's mean memory utilization per interval,
  percent + growth x hours since the canary got traffic + normal(0, sd); stable's history is flat.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from infra.canary.buckets import BucketLayout
from infra.canary.value import CACHE_LAYOUT, COST_LAYOUT, TOKENS_LAYOUT, Criteria, ValueData
Z95 = stats.norm.ppf(0.95)
FIELDS = {
    "cost": ("usd_per_request", "cv"),
    "tokens": ("per_request", "cv"),
    "quality": ("per_request", "mean", "sd"),
    "cache": ("per_request", "hit_rate"),
    "memory": ("percent", "growth_per_hour", "sd"),
}
CRITERIA = ("tokens_change", "cost_change", "quality_min_ratio", "cache_hit_rate_min", "cache_p95_max_ms",
            "memory_max_increase", "match_accuracy_min", "tracking_accuracy_min", "on_miss")


def parse_fields(spec: dict, rev: dict, where: str) -> None:
    """Merge the value fields of `spec` into `rev` (in place), key by key."""
    for key, names in FIELDS.items():
        if spec.get(key) is None:
            continue
        new = spec[key]
        if not isinstance(new, dict):
            raise ValueError(f"{where}.{key}: must be an object")
        old = rev.get(key) or {}
        merged = {n: float(new.get(n, old.get(n, 0.0))) for n in names}
        if key == "cache":
            lat = new.get("latency_ms", {})
            merged["median"] = float(lat.get("median", old.get("median", 2.0)))
            merged["p95"] = float(lat.get("p95", old.get("p95", 20.0)))
            if not 0 < merged["median"] < merged["p95"]:
                raise ValueError(f"{where}.cache.latency_ms: need 0 < median < p95")
        rev[key] = merged
    c, t = rev.get("cost"), rev.get("tokens")
    if c and not (c["usd_per_request"] > 0 and c["cv"] > 0):
        raise ValueError(f"{where}.cost: need usd_per_request > 0 and cv > 0")
    if t and not (t["per_request"] > 0 and t["cv"] > 0):
        raise ValueError(f"{where}.tokens: need per_request > 0 and cv > 0")
    q = rev.get("quality")
    if q and not (0 < q["per_request"] <= 1 and 0 <= q["mean"] <= 1 and q["sd"] >= 0):
        raise ValueError(f"{where}.quality: need 0 < per_request <= 1, 0 <= mean <= 1, sd >= 0")
    ca = rev.get("cache")
    if ca and not (ca["per_request"] > 0 and 0 <= ca["hit_rate"] <= 1):
        raise ValueError(f"{where}.cache: need per_request > 0 and 0 <= hit_rate <= 1")
    m = rev.get("memory")
    if m and not (0 <= m["percent"] <= 100 and m["sd"] >= 0):
        raise ValueError(f"{where}.memory: need 0 <= percent <= 100 and sd >= 0")


def parse_criteria(raw, where: str) -> Criteria | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}.criteria: must be an object")
    unknown = sorted(set(raw) - set(CRITERIA))
    if unknown:
        raise ValueError(f"{where}.criteria: unknown key {unknown[0]!r}; allowed: {', '.join(CRITERIA)}")
    kw = {}
    for k, v in raw.items():
        kw[k] = tuple(float(x) for x in v) if k.endswith("_change") else (v if k == "on_miss" else float(v))
    c = Criteria(**kw)
    try:
        c.validate()
    except ValueError as exc:
        raise ValueError(f"{where}.criteria: {exc}") from None
    return c


def layout_probs(layout: BucketLayout, cdf) -> np.ndarray:
    b = np.asarray(layout.bounds, float)
    p = np.clip(np.diff(np.concatenate([[0.0], cdf(b), [1.0]])), 0, None)
    return p / p.sum()


def gamma_probs(layout: BucketLayout, mean: float, cv: float) -> np.ndarray:
    shape = 1.0 / cv**2
    return layout_probs(layout, lambda x: stats.gamma.cdf(x, shape, scale=mean / shape))


def lognormal_probs(layout: BucketLayout, median: float, p95: float) -> np.ndarray:
    mu, sigma = math.log(median), (math.log(p95) - math.log(median)) / Z95
    return layout_probs(layout, lambda x: stats.norm.cdf((np.log(x) - mu) / sigma))


def clipped_normal(mean: float, sd: float) -> tuple[float, float]:
    """Mean and sd of normal(mean, sd) clipped to [0, 1]."""
    if sd == 0:
        v = min(max(mean, 0.0), 1.0)
        return v, 0.0
    x = np.linspace(mean - 8 * sd, mean + 8 * sd, 4001)
    w = stats.norm.pdf(x, mean, sd)
    w /= w.sum()
    c = np.clip(x, 0, 1)
    m = float((w * c).sum())
    return m, float(math.sqrt(max((w * (c - m) ** 2).sum(), 0.0)))


def has_value(sc) -> bool:
    revs = [sc["stable"], sc["canary"]] + [p[s] for p in sc["phases"] for s in ("stable", "canary") if p[s]]
    return any(r.get(k) for r in revs for k in FIELDS)


def simulate(sc: dict, d: dict, rng, mids: np.ndarray, params_at) -> None:
    """Add the value signals' per-interval data to `d` (see the module docstring)."""
    if not has_value(sc):
        return
    R, T = sc["runs"], d["T"]
    for side in ("stable", "canary"):
        s = side[0]
        n = d[f"n_{s}"]
        out = {}
        for t in range(T):
            rev = params_at(sc, side, mids[t])
            nt = n[:, t]
            for key, layout, mean_key in (("cost", COST_LAYOUT, "usd_per_request"), ("tokens", TOKENS_LAYOUT, "per_request")):
                if rev.get(key):
                    h = out.setdefault(key, np.zeros((R, T, layout.num_buckets), np.int32))
                    h[:, t] = rng.multinomial(nt, gamma_probs(layout, rev[key][mean_key], rev[key]["cv"]))
            q = rev.get("quality")
            if q:
                k = rng.binomial(nt, q["per_request"])
                m, sd = clipped_normal(q["mean"], q["sd"])
                total = np.clip(rng.normal(k * m, np.sqrt(k) * sd), 0, k)
                ssd = sd**2 * rng.chisquare(np.maximum(k - 1, 1)) * (k > 1)
                out.setdefault("quality", (np.zeros((R, T)), np.zeros((R, T)), np.zeros((R, T))))
                out["quality"][0][:, t], out["quality"][1][:, t], out["quality"][2][:, t] = total, k, ssd
            c = rev.get("cache")
            if c:
                look = rng.poisson(nt * c["per_request"])
                hits = rng.binomial(look, c["hit_rate"])
                out.setdefault("cache", (np.zeros((R, T)), np.zeros((R, T))))
                out["cache"][0][:, t], out["cache"][1][:, t] = look, hits
                h = out.setdefault("cache_latency", np.zeros((R, T, CACHE_LAYOUT.num_buckets), np.int32))
                h[:, t] = rng.multinomial(look, lognormal_probs(CACHE_LAYOUT, c["median"], c["p95"]))
            mem = rev.get("memory")
            if mem:
                v = out.setdefault("memory", np.full((R, T), np.nan))
                v[:, t] = mem["percent"] + mem["growth_per_hour"] * mids[t] / 3600 + rng.normal(0, mem["sd"], R)
        for key, v in out.items():
            d[f"{key}_{s}"] = v
    H = int(sc["history_s"] // sc["interval_s"])
    mem = sc["stable"].get("memory")
    if mem and H:
        d["hist_memory"] = mem["percent"] + rng.normal(0, mem["sd"], (R, H))


def value_data(d: dict, t: int) -> ValueData | None:
    if not any(k.endswith(("_s", "_c")) and k.split("_")[0] in ("cost", "tokens", "quality", "cache", "memory")
               for k in d):
        return None

    def get(key):
        v = d.get(key)
        if v is None:
            return None
        return tuple(a[:, t] for a in v) if isinstance(v, tuple) else v[:, t]

    return ValueData(
        cost_s=get("cost_s"), cost_c=get("cost_c"), tokens_s=get("tokens_s"), tokens_c=get("tokens_c"),
        quality_s=get("quality_s"), quality_c=get("quality_c"), cache_c=get("cache_c"),
        cache_latency_c=get("cache_latency_c"), memory_s=get("memory_s"), memory_c=get("memory_c"),
    )


def oracle_signals(sc, d, t, s, c):
    """For the SPRT oracle: (ratio, x_c, x_s, n_c, n_s) of the value signals that differ (cost and
    tokens: counts above stable's true 80th-percentile bucket boundary), and the Gaussian log-LR
    of memory and quality (known means and noise) for this interval."""
    signals, llr = [], np.zeros(sc["runs"])
    for key, layout, mean_key in (("cost", COST_LAYOUT, "usd_per_request"), ("tokens", TOKENS_LAYOUT, "per_request")):
        if s.get(key) and c.get(key) and s[key] != c[key]:
            ps = gamma_probs(layout, s[key][mean_key], s[key]["cv"])
            pc = gamma_probs(layout, c[key][mean_key], c[key]["cv"])
            k = int(np.argmax(np.cumsum(ps) >= 0.8)) + 1  # stable's true 80th percentile, as the judge's boundary
            hs, hc = d[f"{key}_s"][:, t], d[f"{key}_c"][:, t]
            signals.append((pc[k:].sum() / ps[k:].sum(), hc[:, k:].sum(-1), hs[:, k:].sum(-1), hc.sum(-1), hs.sum(-1)))
    ms, mc = s.get("memory"), c.get("memory")
    mid = (t + 0.5) * sc["interval_s"] / 3600
    if ms and mc and ms != mc:
        delta = (mc["percent"] + mc["growth_per_hour"] * mid) - (ms["percent"] + ms["growth_per_hour"] * mid)
        var = mc["sd"] ** 2 + ms["sd"] ** 2
        dd = d["memory_c"][:, t] - d["memory_s"][:, t]
        if var > 0:
            llr += (delta * dd - delta**2 / 2) / var
    qs, qc = s.get("quality"), c.get("quality")
    if qs and qc and qs != qc:
        m_s, sd_s = clipped_normal(qs["mean"], qs["sd"])
        m_c, sd_c = clipped_normal(qc["mean"], qc["sd"])
        (sum_c, k_c, _), (sum_s, k_s, _) = (tuple(a[:, t] for a in d["quality_c"]), tuple(a[:, t] for a in d["quality_s"]))
        ok = (k_c > 0) & (k_s > 0)
        diff = np.divide(sum_c, np.maximum(k_c, 1)) - np.divide(sum_s, np.maximum(k_s, 1))
        var = sd_c**2 / np.maximum(k_c, 1) + sd_s**2 / np.maximum(k_s, 1)
        delta = m_c - m_s
        llr += np.where(ok & (var > 0), (delta * diff - delta**2 / 2) / np.where(var > 0, var, 1), 0.0)
    return signals, llr
