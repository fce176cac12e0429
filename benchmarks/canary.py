"""Benchmark of canary judges on simulated Cloud Run traffic.

    python -m benchmarks.canary --scenarios benchmarks/scenarios/canary.json --json

Each scenario simulates `runs` independent canary stages of `duration_s` seconds, in intervals of
`interval_s`, vectorised over runs with numpy. Per interval the request count is Poisson(rps *
interval_s) (rps ramps linearly to `rps_end` when given); each request goes to the canary with
probability canary_percent / 100 (Cloud Run splits at random). Per revision:

* 5xx: rate `error_rate`, times per-interval gamma noise of mean 1 and coefficient of variation
  `error_rate_cv`; failures arrive in clumps of geometric size with mean `error_clump` (a crash kills
  the in-flight requests), so the expected 5xx share stays `error_rate`;
* latency: lognormal from `latency_ms.median` / `.p95`, counted in Cloud Run's latency buckets;
* `token` / `websocket` `{per_request, failure_rate}`: Poisson(per_request * requests) outcomes of
  which Binomial(failure_rate) fail (the log-based metrics);
* `phases`: [{from_s, to_s, stable: {...}, canary: {...}}] override any of these during [from_s,
  to_s) after the canary got traffic (an interval belongs to the phase its midpoint is in; nested
  latency_ms / token / websocket merge key by key).

Before the canary, `history_s` seconds (default 1800) of stable-only traffic at `rps` are simulated
for judges that calibrate on it. Extensions of this benchmark (other tools ignore them): `expect`
(promote | rollback | no-promote: what a good judge should do, for the target checks), `kind`,
`fault` ({kind, ...}: corrupt the data every judge sees, see `FAULTS`), `targets` (false: informative).
Unknown scenario fields are ignored. Every judge sees exactly the same counts.

Issue 22 (`benchmarks/canary_value.py`): a revision may also have `cost`, `tokens`, `quality`, `cache`
and `memory`; a scenario may have `criteria` (judged as a flag ramp's: stable = off arm, canary = on
arm), `expect: "not-met"`, `promote_target` (share promoted within the hour, default 0.9),
`rollback_within_s` and `oracle_time_target` (false: the oracle's time is shown, not a target). Each
result row gains `not_met` (runs that ended on a criterion confidently missed) and `right_by_5min`
(share with the expected decision by 5, 10, ..., 60 min; `--plot PNG` draws them). Judges:

* ``netra``             ours (infra.canary.judge, the very code the gate runs, vectorised over runs)
* ``seed-fixed-window`` the seed's plan: watch 60 min, then roll back if error > 1 %, p95 > 2 s,
                        token-optimization failures > 10 % or WebSocket failures > 5 %
* ``release-manager``   GoogleCloudPlatform/cloud-run-release-manager defaults: check every interval
                        over the last 30 min; < 100 requests = inconclusive; error > 1 % or p95 > 2 s
                        = rollback; healthy and >= 30 min in the stage = promote
* ``argo-threshold``    Argo Rollouts AnalysisTemplate: one measurement per interval, success when
                        the interval's error rate < 1 %, failureLimit 3, count 30; NaN is a failure
* ``kayenta-mw``        Kayenta's NetflixACAJudge with the Mann-Whitney classifier: after 30 min,
                        per-interval error rate, p95 (and token / WebSocket failure rates when there
                        are any) of canary vs baseline, two-sided at 98 %; score = share of metrics
                        not High; < 75 -> rollback
* ``sprt-oracle``       Wald's SPRT (alpha = beta = 0.01) that knows the true rates and when the
                        canary differs, compares it with the concurrent stable revision (conditional
                        binomial per signal), skips a 2-minute warm-up; only for expected rollbacks
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time

import numpy as np
from scipy import stats

from benchmarks import canary_value as cv
from infra.canary.buckets import CLOUD_RUN_LATENCY
from infra.canary.calibration import calibrate
from infra.canary.counts import Batch
from infra.canary.judge import BatchJudge, JudgeConfig
from infra.canary.verdict import Decision

PROMOTE, ROLLBACK, UNDECIDED = int(Decision.PROMOTE), int(Decision.ROLLBACK), int(Decision.CONTINUE)
HOLD = int(Decision.HOLD)
Z95 = stats.norm.ppf(0.95)
BOUNDS = np.asarray(CLOUD_RUN_LATENCY.bounds)
NB = CLOUD_RUN_LATENCY.num_buckets
ORACLE_WARMUP_S = 120.0
EXPECT = ("promote", "rollback", "no-promote", "not-met")
OUTCOMES = ("token", "websocket")
FAULTS = {
    "missing_5xx_canary": "the canary's 5xx series is missing (request_count without it; latency complete)",
    "missing_latency_canary": "the canary's latency series is missing",
    "unlabelled_canary": "the canary's request_count series carry no revision label",
    "negative_canary_5xx": "the canary's 5xx counts are negative",
    "nan_canary_5xx": "the canary's 5xx counts are NaN",
    "inf_stable_requests": "the stable revision's request counts are infinite",
    "duplicated_stable": "every stable series is duplicated (summed twice)",
    "swapped_labels": "the two revision labels are swapped",
    "share_off": "the canary really gets `actual_percent`, not the configured share",
}


# ---------------------------------------------------------------------------------------------------
# scenarios


def _revision(spec, where: str, base: dict | None = None) -> dict:
    """A revision's parameters; with `base`, `spec` is a (partial) override of it."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: must be an object")
    rev = copy.deepcopy(base) if base else {"error_clump": 1.0, "error_rate_cv": 0.0, "token": None, "websocket": None}
    try:
        if "error_rate" in spec:
            rev["error_rate"] = float(spec["error_rate"])
        if "latency_ms" in spec:
            lat = spec["latency_ms"]
            rev["median"] = float(lat.get("median", rev.get("median", 0)))
            rev["p95"] = float(lat.get("p95", rev.get("p95", 0)))
        for key in ("error_clump", "error_rate_cv"):
            if key in spec:
                rev[key] = float(spec[key])
        for key in OUTCOMES:
            if spec.get(key) is not None:
                old = rev.get(key) or {"per_request": 0.0, "failure_rate": 0.0}
                rev[key] = {k: float(spec[key].get(k, old[k])) for k in ("per_request", "failure_rate")}
        cv.parse_fields(spec, rev, where)
    except (AttributeError, TypeError, ValueError) as exc:
        if str(exc).startswith(where):
            raise

        raise ValueError(f"{where}: bad field ({exc})") from None
    if base is None and ("error_rate" not in rev or "median" not in rev):
        raise ValueError(f"{where}: needs error_rate and latency_ms.median/p95")
    if not (0 <= rev["error_rate"] < 1 and 0 < rev["median"] < rev["p95"]):
        raise ValueError(f"{where}: need 0 <= error_rate < 1 and 0 < median < p95")
    if rev["error_clump"] < 1 or rev["error_rate_cv"] < 0:
        raise ValueError(f"{where}: need error_clump >= 1 and error_rate_cv >= 0")
    for key in OUTCOMES:
        o = rev.get(key)
        if o is not None and not (o["per_request"] >= 0 and 0 <= o["failure_rate"] < 1):
            raise ValueError(f"{where}.{key}: need per_request >= 0 and 0 <= failure_rate < 1")
    return rev


def load_scenarios(path: str) -> list[dict]:
    with open(path) as f:
        doc = json.load(f)
    out = []
    for i, s in enumerate(doc.get("scenarios", [])):
        where = f"scenarios[{i}]"
        try:
            sc = {
                "name": str(s["name"]),
                "rps": float(s["rps"]),
                "canary_percent": float(s["canary_percent"]),
                "duration_s": float(s["duration_s"]),
                "interval_s": float(s["interval_s"]),
                "runs": int(s["runs"]),
                "seed": int(s["seed"]),
                "rps_end": float(s.get("rps_end", s["rps"])),
                "history_s": float(s.get("history_s", 1800)),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: missing or bad field ({exc})") from None
        if not (0 < sc["canary_percent"] < 100 and sc["rps"] > 0 and sc["rps_end"] > 0 and sc["interval_s"] > 0
                and sc["history_s"] >= 0):
            raise ValueError(f"{where}: need 0 < canary_percent < 100, rps > 0, rps_end > 0, interval_s > 0, history_s >= 0")
        sc["targets"] = bool(s.get("targets", True))
        sc["kind"] = str(s.get("kind", ""))
        sc["stable"] = _revision(s.get("stable"), where + ".stable")
        sc["canary"] = _revision(s.get("canary"), where + ".canary")
        sc["phases"] = []
        for j, ph in enumerate(s.get("phases") or []):
            w = f"{where}.phases[{j}]"
            try:
                phase = {"from_s": float(ph["from_s"]), "to_s": float(ph["to_s"])}
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{w}: needs from_s and to_s ({exc})") from None
            for side in ("stable", "canary"):
                phase[side] = _revision(ph[side], f"{w}.{side}", sc[side]) if ph.get(side) else None
            sc["phases"].append(phase)
        fault = s.get("fault")
        if fault is not None:
            if not isinstance(fault, dict) or fault.get("kind") not in FAULTS:
                raise ValueError(f"{where}.fault: kind must be one of {', '.join(FAULTS)}")
            sc["fault"] = dict(fault)
        else:
            sc["fault"] = None
        sc["criteria"] = cv.parse_criteria(s.get("criteria"), where)
        sc["expect"] = s.get("expect") or ("promote" if _same(sc) else "rollback")
        if sc["expect"] not in EXPECT:
            raise ValueError(f"{where}.expect: must be one of {', '.join(EXPECT)}")
        sc["promote_target"] = float(s.get("promote_target", 0.9))
        sc["rollback_within_s"] = float(s["rollback_within_s"]) if "rollback_within_s" in s else None
        sc["oracle_time_target"] = bool(s.get("oracle_time_target", True))
        out.append(sc)
    if not out:
        raise ValueError("no scenarios in the file")
    return out


def _same(sc) -> bool:
    return sc["stable"] == sc["canary"] and not sc["phases"]


def params_at(sc, side: str, t_mid: float) -> dict:
    rev = sc[side]
    for ph in sc["phases"]:
        if ph[side] is not None and ph["from_s"] <= t_mid < ph["to_s"]:
            rev = ph[side]
    return rev


# ---------------------------------------------------------------------------------------------------
# simulation


def bucket_probs(median: float, p95: float) -> np.ndarray:
    """Probability of each Cloud Run latency bucket (underflow .. overflow) for a lognormal."""
    mu, sigma = math.log(median), (math.log(p95) - math.log(median)) / Z95
    cdf = stats.norm.cdf((np.log(BOUNDS) - mu) / sigma)
    p = np.clip(np.diff(np.concatenate([[0.0], cdf, [1.0]])), 0, None)
    return p / p.sum()


def draw_errors(rng, n: np.ndarray, rev: dict) -> np.ndarray:
    """5xx among n requests: gamma-noised rate, geometric clumps of mean error_clump."""
    rate = np.full(n.shape, rev["error_rate"])
    cv = rev["error_rate_cv"]
    if cv > 0:
        rate = rate * rng.gamma(1.0 / cv**2, cv**2, size=n.shape)
    k = rev["error_clump"]
    if k <= 1:
        return rng.binomial(n, np.clip(rate, 0, 1))
    events = rng.poisson(n * rate / k)
    extra = rng.negative_binomial(np.maximum(events, 1), 1.0 / k)  # geometric sizes: events + failures
    return np.minimum(np.where(events > 0, events + extra, 0), n)


def _outcome(rng, n, rev, key):
    o = rev.get(key)
    if o is None:
        return None
    attempts = rng.poisson(n * o["per_request"])
    return attempts, rng.binomial(attempts, o["failure_rate"])


def simulate(sc: dict) -> dict:
    rng = np.random.default_rng(sc["seed"])
    R, I = sc["runs"], sc["interval_s"]
    T = int(sc["duration_s"] // I)
    mids = (np.arange(T) + 0.5) * I
    rps = sc["rps"] + (sc["rps_end"] - sc["rps"]) * mids / sc["duration_s"]
    fault = sc["fault"] or {}
    share = (fault.get("actual_percent", sc["canary_percent"]) if fault.get("kind") == "share_off"
             else sc["canary_percent"]) / 100.0
    N = rng.poisson(rps[None, :] * I, size=(R, T))
    n_c = rng.binomial(N, share)
    d = {"T": T, "n_s": N - n_c, "n_c": n_c}
    for side in ("stable", "canary"):
        s = side[0]
        n = d[f"n_{s}"]
        e = np.zeros((R, T), np.int64)
        h = np.zeros((R, T, NB), np.int32)
        outs = {k: None for k in OUTCOMES}
        for t in range(T):
            rev = params_at(sc, side, mids[t])
            e[:, t] = draw_errors(rng, n[:, t], rev)
            h[:, t] = rng.multinomial(n[:, t], bucket_probs(rev["median"], rev["p95"]))
            for key in OUTCOMES:
                o = _outcome(rng, n[:, t], rev, key)
                if o is not None:
                    if outs[key] is None:
                        outs[key] = (np.zeros((R, T), np.int64), np.zeros((R, T), np.int64))
                    outs[key][0][:, t], outs[key][1][:, t] = o
        d[f"e_{s}"], d[f"h_{s}"] = e, h
        for key in OUTCOMES:
            d[f"{key}_{s}"] = outs[key]
    cv.simulate(sc, d, rng, mids, params_at)
    H = int(sc["history_s"] // I)
    hist_n = rng.poisson(sc["rps"] * I, size=(R, H))
    d["hist_n"], d["hist_e"] = hist_n, draw_errors(rng, hist_n, sc["stable"]) if H else np.zeros((R, 0))
    d["unlabelled"] = np.zeros((R, T))
    if fault:
        apply_fault(d, fault)
    return d


def apply_fault(d: dict, fault: dict) -> None:
    """Corrupt what the judges see (from `from_s`, default 0, to the end)."""
    kind = fault["kind"]
    d["n_s"], d["n_c"], d["e_s"], d["e_c"] = (d[k].astype(float) for k in ("n_s", "n_c", "e_s", "e_c"))
    if kind == "missing_5xx_canary":
        d["n_c"] = d["n_c"] - d["e_c"]
        d["e_c"] = np.zeros_like(d["e_c"])
    elif kind == "missing_latency_canary":
        d["h_c"] = np.zeros_like(d["h_c"])
    elif kind == "unlabelled_canary":
        d["unlabelled"] = d["n_c"].copy()
        d["n_c"], d["e_c"] = np.zeros_like(d["n_c"]), np.zeros_like(d["e_c"])
    elif kind == "negative_canary_5xx":
        d["e_c"] = -d["e_c"]
    elif kind == "nan_canary_5xx":
        d["e_c"] = np.full_like(d["e_c"], np.nan)
    elif kind == "inf_stable_requests":
        d["n_s"] = np.full_like(d["n_s"], np.inf)
    elif kind == "duplicated_stable":
        d["n_s"], d["e_s"], d["h_s"] = 2 * d["n_s"], 2 * d["e_s"], 2 * d["h_s"]
        for key in OUTCOMES:
            if d[f"{key}_s"] is not None:
                d[f"{key}_s"] = tuple(2 * a for a in d[f"{key}_s"])
    elif kind == "swapped_labels":
        for a, b in (("n_s", "n_c"), ("e_s", "e_c"), ("h_s", "h_c")):
            d[a], d[b] = d[b], d[a]
        for key in OUTCOMES:
            d[f"{key}_s"], d[f"{key}_c"] = d[f"{key}_c"], d[f"{key}_s"]


# ---------------------------------------------------------------------------------------------------
# helpers shared by the reference judges


def hist_quantile(h: np.ndarray, q: float) -> np.ndarray:
    """Quantile from histograms (..., NB), linear inside the bucket (as Monitoring's percentile
    reducers do); NaN where a histogram is empty."""
    h = np.asarray(h, float)
    tot = h.sum(axis=-1)
    cum = np.cumsum(h, axis=-1)
    target = q * tot
    idx = np.argmax(cum >= target[..., None], axis=-1)
    below = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0], 0)
    inb = np.take_along_axis(h, idx[..., None], -1)[..., 0]
    lo_b = np.concatenate([[0.0], BOUNDS])  # underflow bucket [0, b0)
    hi_b = np.concatenate([BOUNDS, [BOUNDS[-1] * 1.4]])
    lo, hi = lo_b[idx], hi_b[idx]
    frac = np.divide(target - below, inb, out=np.zeros_like(target, dtype=float), where=inb > 0)
    val = lo + (hi - lo) * np.clip(frac, 0, 1)
    return np.where(tot > 0, val, np.nan)


def first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along axis 1, or -1."""
    return np.where(mask.any(axis=1), mask.argmax(axis=1), -1)


def combine(R: int, T: int, roll_at: np.ndarray, prom_at: np.ndarray):
    """decision and decision interval index from first-event indices (-1 = never)."""
    big = T + 1
    r = np.where(roll_at >= 0, roll_at, big)
    p = np.where(prom_at >= 0, prom_at, big)
    dec = np.where(r <= p, np.where(r < big, ROLLBACK, UNDECIDED), PROMOTE)
    at = np.where(dec == ROLLBACK, r, np.where(dec == PROMOTE, p, -1))
    return dec, at


def _rate(x, n, fill=0.0):
    x, n = np.asarray(x, float), np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        return np.divide(x, n, out=np.full(np.broadcast(x, n).shape, fill), where=n > 0)


# ---------------------------------------------------------------------------------------------------
# judges: each returns (decision (R,), decision interval index (R,), -1 when undecided)


def judge_netra(sc, d, config: JudgeConfig | None = None):
    R, T = sc["runs"], d["T"]
    cfg = config or JudgeConfig(horizon_intervals=T)
    cal = calibrate(d["hist_n"], d["hist_e"]) if d["hist_n"].shape[1] else None
    bj = BatchJudge(cfg, R, CLOUD_RUN_LATENCY, configured_share=sc["canary_percent"] / 100.0, calibration=cal,
                    criteria=sc.get("criteria"), memory_history=d.get("hist_memory"), cache_layout=cv.CACHE_LAYOUT)
    at = np.full(R, -1)

    def pair(key, s, t):
        v = d[f"{key}_{s}"]
        return None if v is None else (v[0][:, t], v[1][:, t])

    for t in range(T):
        before = bj.decision.copy()
        b = Batch(sc["interval_s"], d["n_s"][:, t], d["n_c"][:, t], d["e_s"][:, t], d["e_c"][:, t],
                  d["h_s"][:, t], d["h_c"][:, t], pair("token", "s", t), pair("token", "c", t),
                  pair("websocket", "s", t), pair("websocket", "c", t), d["unlabelled"][:, t],
                  value=cv.value_data(d, t))
        dec = bj.step(b)
        at[(before == UNDECIDED) & (dec != UNDECIDED)] = t
        if (dec != UNDECIDED).all():
            break
    return bj.decision.copy(), at, bj.not_met.copy()


def _outcome_rate(d, key, s, upto=None, window=None):
    v = d[f"{key}_{s}"]
    if v is None:
        return None
    a, f = v
    if upto is not None:
        return _rate(f[:, :upto].sum(1), a[:, :upto].sum(1))
    return _rate(_trailing(f, window), _trailing(a, window))


def judge_seed(sc, d):
    R, T = sc["runs"], d["T"]
    k = int(round(3600 / sc["interval_s"]))
    if k > T:
        return np.full(R, UNDECIDED), np.full(R, -1)
    err = _rate(d["e_c"][:, :k].sum(1), d["n_c"][:, :k].sum(1))
    p95 = hist_quantile(d["h_c"][:, :k].sum(1), 0.95)
    with np.errstate(invalid="ignore"):
        bad = (err > 0.01) | (np.nan_to_num(p95) > 2000)
        for key, limit in (("token", 0.10), ("websocket", 0.05)):
            r = _outcome_rate(d, key, "c", upto=k)
            if r is not None:
                bad |= r > limit
    return np.where(bad, ROLLBACK, PROMOTE), np.full(R, k - 1)


def _trailing(x: np.ndarray, w: int) -> np.ndarray:
    x = np.asarray(x, float)
    cs = np.cumsum(x, axis=1)
    out = cs.copy()
    out[:, w:] = cs[:, w:] - cs[:, :-w]
    return out


def judge_release_manager(sc, d):
    R, T = sc["runs"], d["T"]
    w = max(1, int(round(1800 / sc["interval_s"])))
    n = _trailing(d["n_c"], w)
    err = _rate(_trailing(d["e_c"], w), n)
    p95 = hist_quantile(_trailing(d["h_c"], w), 0.95)
    with np.errstate(invalid="ignore"):
        enough = n >= 100
        unhealthy = enough & ((err * 100 > 1.0) | (np.nan_to_num(p95) > 2000))
    elapsed = (np.arange(T) + 1) * sc["interval_s"]
    healthy = enough & ~unhealthy & (elapsed >= 1800)[None, :]
    return combine(R, T, first_true(unhealthy), first_true(healthy))


def judge_argo(sc, d, failure_limit=3, count=30):
    R, T = sc["runs"], d["T"]
    m = min(count, T)
    rate = _rate(d["e_c"][:, :m], d["n_c"][:, :m], fill=np.nan)
    with np.errstate(invalid="ignore"):
        failed = ~(rate < 0.01)  # NaN -> failed
    nfail = np.cumsum(failed, axis=1)
    roll = first_true(nfail > failure_limit)
    prom = np.full(R, m - 1 if m == count else -1)
    return combine(R, T, roll, np.where(roll >= 0, -1, prom))


def judge_kayenta(sc, d, confidence=0.98, window_s=1800):
    R, T = sc["runs"], d["T"]
    k = int(round(window_s / sc["interval_s"]))
    if k > T:
        return np.full(R, UNDECIDED), np.full(R, -1)
    metrics = []  # (baseline, canary) per-interval values (R, k)
    metrics.append(tuple(_rate(d[f"e_{s}"][:, :k], d[f"n_{s}"][:, :k], fill=np.nan) for s in "sc"))
    metrics.append(tuple(hist_quantile(d[f"h_{s}"][:, :k], 0.95) for s in "sc"))
    for key in OUTCOMES:
        if d[f"{key}_s"] is not None and d[f"{key}_c"] is not None:
            metrics.append(tuple(_rate(d[f"{key}_{s}"][1][:, :k], d[f"{key}_{s}"][0][:, :k], fill=np.nan) for s in "sc"))
    high = np.zeros(R)
    for base, can in metrics:
        with np.errstate(all="ignore"), _quiet():
            res = stats.mannwhitneyu(can, base, alternative="two-sided", axis=1, nan_policy="omit")
            p = np.asarray(res.pvalue, float)
            mc, mb = np.nanmedian(can, axis=1), np.nanmedian(base, axis=1)
            worse = (mc > mb) | ((mc == mb) & (np.nanmean(can, axis=1) > np.nanmean(base, axis=1)))
        high += ((p < 1 - confidence) & worse).astype(float)
    score = 100.0 * (1 - high / len(metrics))
    return np.where(score < 75, ROLLBACK, PROMOTE), np.full(R, k - 1)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        self._w.__exit__(*a)


def judge_oracle(sc, d, alpha=0.01, beta=0.01):
    """Wald's SPRT on the canary's share of each differing signal's events, given the interval's
    total, against the concurrent stable revision; knows the true ratio and when the canary differs;
    ignores the first two minutes."""
    R, T = sc["runs"], d["T"]
    I = sc["interval_s"]
    llr = np.zeros((R, T))
    k_slow = CLOUD_RUN_LATENCY.first_bucket_at_or_above(sc["stable"]["p95"])
    for t in range(T):
        mid = (t + 0.5) * I
        if mid < ORACLE_WARMUP_S:
            continue
        s, c = params_at(sc, "stable", mid), params_at(sc, "canary", mid)
        signals = []
        if c["error_rate"] != s["error_rate"] and s["error_rate"] > 0:
            signals.append((c["error_rate"] / s["error_rate"], d["e_c"][:, t], d["e_s"][:, t], d["n_c"][:, t], d["n_s"][:, t]))
        if (c["median"], c["p95"]) != (s["median"], s["p95"]):
            ps, pc = bucket_probs(s["median"], s["p95"])[k_slow:].sum(), bucket_probs(c["median"], c["p95"])[k_slow:].sum()
            x_c, x_s = d["h_c"][:, t, k_slow:].sum(-1), d["h_s"][:, t, k_slow:].sum(-1)
            signals.append((pc / ps, x_c, x_s, d["h_c"][:, t].sum(-1), d["h_s"][:, t].sum(-1)))
        for key in OUTCOMES:
            os_, oc = s.get(key), c.get(key)
            if os_ and oc and oc != os_ and os_["failure_rate"] > 0 and d[f"{key}_c"] is not None:
                ratio = (oc["failure_rate"] * oc["per_request"]) / (os_["failure_rate"] * os_["per_request"])
                signals.append((ratio, d[f"{key}_c"][1][:, t], d[f"{key}_s"][1][:, t],
                                d["n_c"][:, t], d["n_s"][:, t]))
        extra, gauss = cv.oracle_signals(sc, d, t, s, c)
        signals += extra
        llr[:, t] += gauss
        for rho, x_c, x_s, n_c, n_s in signals:
            pi = _rate(n_c, n_c + n_s)
            q1 = pi * rho / (pi * rho + 1 - pi)
            with np.errstate(divide="ignore", invalid="ignore"):
                inc = x_c * (np.log(q1) - np.log(pi)) + x_s * (np.log1p(-q1) - np.log1p(-pi))
            llr[:, t] += np.where((pi > 0) & (pi < 1), np.nan_to_num(inc), 0.0)
    cum = np.cumsum(llr, axis=1)
    roll = first_true(cum >= math.log((1 - beta) / alpha))
    prom = first_true(cum <= math.log(beta / (1 - alpha)))
    return combine(R, T, roll, prom)


JUDGES = {
    "netra": judge_netra,
    "seed-fixed-window": judge_seed,
    "release-manager": judge_release_manager,
    "argo-threshold": judge_argo,
    "kayenta-mw": judge_kayenta,
    "sprt-oracle": judge_oracle,
}


def summarise(sc, name, dec, at, not_met=None) -> dict:
    R = len(dec)
    t = (at + 1) * sc["interval_s"]
    decided = dec != UNDECIDED
    rb = dec == ROLLBACK
    pr = dec == PROMOTE
    limit = sc.get("rollback_within_s")
    return {
        "scenario": sc["name"],
        "judge": name,
        "runs": int(R),
        "promote": int(pr.sum()),
        "rollback": int(rb.sum()),
        "hold": int((~pr & ~rb).sum()),
        "not_met": int(np.asarray(not_met).sum()) if not_met is not None else 0,
        "median_decision_s": float(np.median(t[decided])) if decided.any() else None,
        "p90_decision_s": float(np.percentile(t[decided], 90)) if decided.any() else None,
        "median_rollback_s": float(np.median(t[rb])) if rb.any() else None,
        "median_promote_s": float(np.median(t[pr])) if pr.any() else None,
        "promoted_within_600s": int((pr & (t <= 600)).sum()),
        **({"rolled_back_within_s": int((rb & (t <= limit)).sum())} if limit else {}),
        # share of runs with the expected decision by 5, 10, ..., 60 min (the decision-time plots)
        **({"right_by_5min": [round(float((right & (t <= m * 60)).mean()), 4) for m in range(5, 65, 5)]}
           if (right := {"promote": pr, "rollback": rb, "not-met": dec == HOLD}.get(sc["expect"])) is not None else {}),
    }


def run_scenario(sc, judges=None) -> list[dict]:
    d = simulate(sc)
    rows = []
    for name, fn in JUDGES.items():
        if judges and name not in judges:
            continue
        if name == "sprt-oracle" and sc["expect"] != "rollback":
            continue
        dec, at, *rest = fn(sc, d)
        rows.append(summarise(sc, name, dec, at, *rest))
    return rows


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
    """Upper end of the 95 % Wilson interval of k/n (to report what a measured 0 % really bounds)."""
    p = k / n
    return (p + z * z / (2 * n) + z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def wilson_lower(k: int, n: int, z: float = 1.96) -> float:
    p = k / n
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def _noisy(sc) -> bool:
    revs = [sc["stable"], sc["canary"]] + [p[s] for p in sc["phases"] for s in ("stable", "canary") if p[s]]
    return any(r["error_clump"] > 1 or r["error_rate_cv"] > 0 for r in revs)


def check_targets(scenarios, rows) -> list[dict]:
    """The issue's targets, evaluated from the measured rows (nothing here is assumed)."""
    by = {(r["scenario"], r["judge"]): r for r in rows}
    checks = []

    def add(sc, target, measured, ok):
        checks.append({"scenario": sc["name"], "target": target, "measured": measured, "ok": bool(ok)})

    for sc in scenarios:
        ours = by.get((sc["name"], "netra"))
        if ours is None or not sc["targets"]:
            continue
        n = ours["runs"]
        if sc["expect"] == "promote":
            limit = 0.02 if _noisy(sc) else 0.01
            rate = ours["rollback"] / n
            add(sc, f"false rollback <= {limit:.0%}",
                f"{rate:.2%} ({ours['rollback']}/{n}; 95 % upper {wilson_upper(ours['rollback'], n):.2%})", rate <= limit)
            if min(sc["rps"], sc["rps_end"]) >= 20:
                p, goal = ours["promote"] / n, sc["promote_target"]
                add(sc, f"promoted >= {goal:.0%} within the hour", f"{p:.1%}", p >= goal)
            if min(sc["rps"], sc["rps_end"]) >= 200:
                p = ours["promoted_within_600s"] / n
                add(sc, "promoted >= 90 % within 10 min", f"{p:.1%}", p >= 0.9)
        elif sc["expect"] == "rollback":
            rate = ours["rollback"] / n
            add(sc, "rolled back >= 95 %", f"{rate:.1%} (95 % lower {wilson_lower(ours['rollback'], n):.1%})", rate >= 0.95)
            orc = by.get((sc["name"], "sprt-oracle"))
            if orc and orc["median_rollback_s"] and ours["median_rollback_s"] and sc["oracle_time_target"]:
                limit = 2 * orc["median_rollback_s"] + sc["interval_s"]
                add(sc, "median time to rollback <= 2 x oracle + 1 interval",
                    f"{ours['median_rollback_s']:.0f} s vs limit {limit:.0f} s (oracle {orc['median_rollback_s']:.0f} s)",
                    ours["median_rollback_s"] <= limit)
            if sc["rollback_within_s"]:
                k = ours.get("rolled_back_within_s", 0)
                add(sc, f"rolled back >= 95 % within {sc['rollback_within_s']:.0f} s", f"{k / n:.1%}", k / n >= 0.95)
                add(sc, "never promoted", f"{ours['promote']}/{n}", ours["promote"] == 0)
        elif sc["expect"] == "not-met":
            p = ours["promote"] / n
            add(sc, "promoted <= 1 %", f"{p:.2%} ({ours['promote']}/{n}; 95 % upper {wilson_upper(ours['promote'], n):.2%})",
                p <= 0.01)
            m = ours["not_met"] / n
            add(sc, "not_met >= 90 %", f"{m:.1%}", m >= 0.9)
        else:
            add(sc, "faulty data: 0 promotes", f"{ours['promote']}/{n}", ours["promote"] == 0)
    return checks


def plot_decision_times(scenarios, rows, path: str) -> None:
    """Share of runs with the expected decision (promote, rollback, not met) by each 5 minutes, per judge,
    one panel per scenario (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["name"] for s in scenarios if any(r["scenario"] == s["name"] and "right_by_5min" in r for r in rows)]
    cols = 3
    fig, axes = plt.subplots(math.ceil(len(names) / cols), cols, figsize=(15, 3.2 * math.ceil(len(names) / cols)),
                             squeeze=False)
    minutes = list(range(5, 65, 5))
    expect = {s["name"]: s["expect"] for s in scenarios}
    for ax, name in zip(axes.flat, names):
        for r in rows:
            if r["scenario"] == name and "right_by_5min" in r:
                ax.plot(minutes, [100 * x for x in r["right_by_5min"]], marker=".", label=r["judge"])
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 102)
        ax.set_xlabel("minutes", fontsize=8)
        ax.set_ylabel(f"% {expect[name]} by then", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def wide_table(scenarios, rows) -> str:
    """One row per scenario, one column per judge: promote / rollback / hold counts and the median
    decision time (the README's table)."""
    by = {(r["scenario"], r["judge"]): r for r in rows}
    judges = [j for j in JUDGES if any(r["judge"] == j for r in rows)]
    lines = ["| scenario | kind | expect | runs | " + " | ".join(judges) + " |",
             "|---|---|---|---:|" + "---|" * len(judges)]
    for sc in scenarios:
        cells = []
        for j in judges:
            r = by.get((sc["name"], j))
            if r is None:
                cells.append("")
                continue
            t = "-" if r["median_decision_s"] is None else f"{r['median_decision_s']:.0f} s"
            cells.append(f"{r['promote']}/{r['rollback']}/{r['hold']} · {t}")
        runs = next((r["runs"] for r in rows if r["scenario"] == sc["name"]), "")
        expect = sc["expect"] + ("" if sc["targets"] else " (info)")
        lines.append(f"| {sc['name']} | {sc['kind']} | {expect} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.canary", description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="benchmarks/scenarios/canary.json", help="scenario file (JSON)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    ap.add_argument("--judge", action="append", choices=sorted(JUDGES), help="only these judges")
    ap.add_argument("--only", action="append", metavar="NAME", help="only these scenarios")
    ap.add_argument("--runs", type=int, help="override every scenario's runs")
    ap.add_argument("--from-json", metavar="FILE", help="render the tables from a saved --json result instead of running")
    ap.add_argument("--plot", metavar="PNG", help="also draw each scenario's decision-time curves, one panel per scenario")
    args = ap.parse_args(argv)
    try:
        scenarios = load_scenarios(args.scenarios)
    except (OSError, ValueError) as exc:
        print(f"benchmarks.canary: error: --scenarios {args.scenarios}: {exc}", file=sys.stderr)
        return 2
    if args.only:
        unknown = sorted(set(args.only) - {s["name"] for s in scenarios})
        if unknown:
            print(f"benchmarks.canary: error: --only: unknown scenario {unknown[0]!r}", file=sys.stderr)
            return 2
        scenarios = [s for s in scenarios if s["name"] in args.only]
    if args.runs is not None:
        if args.runs < 1:
            print("benchmarks.canary: error: --runs must be >= 1", file=sys.stderr)
            return 2
        for sc in scenarios:
            sc["runs"] = args.runs
    t0 = time.perf_counter()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        rows, wall = saved["results"], saved["wall_s"]
        names = {r["scenario"] for r in rows}
        scenarios = [s for s in scenarios if s["name"] in names]
    else:
        rows = []
        for sc in scenarios:
            rows.extend(run_scenario(sc, args.judge))
        wall = time.perf_counter() - t0
    checks = check_targets(scenarios, rows)
    if args.plot:
        plot_decision_times(scenarios, rows, args.plot)
    if args.json:
        json.dump({"results": rows, "targets": checks, "wall_s": round(wall, 1)}, sys.stdout, indent=1)
        print()
    else:
        print(wide_table(scenarios, rows))
        print()
        for c in checks:
            print(f"- {'OK  ' if c['ok'] else 'MISS'} {c['scenario']}: {c['target']}: {c['measured']}")
        print(f"\n({wall:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
