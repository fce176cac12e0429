"""Benchmark of canary judges on simulated Cloud Run traffic.

    python -m benchmarks.canary --scenarios benchmarks/scenarios/canary.json --json

Each scenario simulates `runs` independent canary stages of `duration_s` seconds, in intervals of
`interval_s`: per interval the request count is Poisson(rps * interval_s), each request goes to the
canary with probability canary_percent / 100 (Cloud Run splits at random), fails (5xx) with the
revision's error rate, and has a lognormal latency (from the revision's median and p95) recorded in
Cloud Run's latency histogram buckets. Every judge sees exactly the same counts. Judges:

* ``netra``             ours (infra.canary.judge, the very code the gate runs, vectorised over runs)
* ``seed-fixed-window`` the seed's plan: watch 60 min, then roll back if error > 1 % or p95 > 2 s
* ``release-manager``   GoogleCloudPlatform/cloud-run-release-manager defaults: check every interval
                        over the last 30 min; < 100 requests = inconclusive; error > 1 % or p95 > 2 s
                        = rollback; healthy and >= 30 min in the stage = promote
* ``argo-threshold``    Argo Rollouts AnalysisTemplate: one measurement per interval, success when
                        the interval's error rate < 1 %, failureLimit 3 (the 4th failed measurement
                        fails the analysis), count 30; NaN (no requests) is a failed measurement
* ``kayenta-mw``        Kayenta's NetflixACAJudge with the Mann-Whitney classifier: after 30 min,
                        per-interval error rate and p95 of canary vs baseline, two-sided test at 98 %
                        confidence; a metric is High when significant and the canary is worse; with
                        two metrics one High scores 50 < 75 (marginal) -> rollback, else promote
* ``sprt-oracle``       Wald's SPRT that knows both true rates (alpha = beta = 0.01), only for
                        scenarios where the canary differs; the yardstick for time to rollback

Unknown scenario fields are ignored.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
from scipy import stats

from infra.canary.buckets import CLOUD_RUN_LATENCY
from infra.canary.judge import PROMOTE, ROLLBACK, BatchJudge, JudgeConfig

Z95 = stats.norm.ppf(0.95)
BOUNDS = np.asarray(CLOUD_RUN_LATENCY.bounds)
NB = CLOUD_RUN_LATENCY.num_buckets


# ---------------------------------------------------------------------------------------------------
# scenarios and simulation


def _revision(spec: dict, where: str) -> dict:
    try:
        lat = spec["latency_ms"]
        rev = {
            "error_rate": float(spec["error_rate"]),
            "median": float(lat["median"]),
            "p95": float(lat["p95"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: needs error_rate and latency_ms.median/p95 ({exc})") from None
    if not 0 <= rev["error_rate"] < 1 or not 0 < rev["median"] < rev["p95"]:
        raise ValueError(f"{where}: need 0 <= error_rate < 1 and 0 < median < p95")
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
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: missing or bad field ({exc})") from None
        if not (0 < sc["canary_percent"] < 100 and sc["rps"] > 0 and sc["interval_s"] > 0):
            raise ValueError(f"{where}: need 0 < canary_percent < 100, rps > 0, interval_s > 0")
        sc["targets"] = bool(s.get("targets", True))  # false: informative scenario, no target checks
        sc["stable"] = _revision(s.get("stable"), where + ".stable")
        sc["canary"] = _revision(s.get("canary"), where + ".canary")
        out.append(sc)
    if not out:
        raise ValueError("no scenarios in the file")
    return out


def bucket_probs(median: float, p95: float) -> np.ndarray:
    """Probability of each Cloud Run latency bucket (underflow .. overflow) for a lognormal."""
    mu, sigma = math.log(median), (math.log(p95) - math.log(median)) / Z95
    cdf = stats.norm.cdf((np.log(BOUNDS) - mu) / sigma)
    p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return np.clip(p, 0, None) / np.clip(p, 0, None).sum()


def simulate(sc: dict) -> dict:
    rng = np.random.default_rng(sc["seed"])
    R = sc["runs"]
    T = int(sc["duration_s"] // sc["interval_s"])
    N = rng.poisson(sc["rps"] * sc["interval_s"], size=(R, T))
    n_c = rng.binomial(N, sc["canary_percent"] / 100.0)
    n_s = N - n_c
    data = {"T": T, "n_s": n_s, "n_c": n_c}
    for side, n in (("stable", n_s), ("canary", n_c)):
        rev = sc[side]
        data[f"e_{side[0]}"] = rng.binomial(n, rev["error_rate"])
        data[f"h_{side[0]}"] = rng.multinomial(n, bucket_probs(rev["median"], rev["p95"])).astype(np.int32)
    return data


# ---------------------------------------------------------------------------------------------------
# helpers shared by the reference judges


def hist_quantile(h: np.ndarray, q: float) -> np.ndarray:
    """Quantile from histograms (..., NB), linear inside the bucket (as Monitoring's percentile
    reducers do); NaN where a histogram is empty."""
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
    """decision (0 hold / 1 promote / 2 rollback) and decision interval index from first-event
    indices (-1 = never)."""
    big = T + 1
    r = np.where(roll_at >= 0, roll_at, big)
    p = np.where(prom_at >= 0, prom_at, big)
    dec = np.where(r <= p, np.where(r < big, ROLLBACK, 0), PROMOTE)
    at = np.where(dec == ROLLBACK, r, np.where(dec == PROMOTE, p, -1))
    return dec, at


# ---------------------------------------------------------------------------------------------------
# judges: each returns (decision (R,), decision interval index (R,), -1 for hold)


def judge_netra(sc, d, config: JudgeConfig | None = None):
    R, T = sc["runs"], d["T"]
    bj = BatchJudge(config or JudgeConfig(), R, CLOUD_RUN_LATENCY)
    at = np.full(R, -1)
    valid = np.ones(R, bool)
    for t in range(T):
        before = bj.decision.copy()
        dec = bj.step(
            sc["interval_s"], valid, d["n_s"][:, t], d["n_c"][:, t], d["e_s"][:, t], d["e_c"][:, t],
            d["h_s"][:, t], d["h_c"][:, t],
        )
        newly = (before == 0) & (dec != 0)
        at[newly] = t
        if (dec != 0).all():
            break
    return bj.decision.copy(), at


def judge_seed(sc, d):
    R, T = sc["runs"], d["T"]
    k = int(round(3600 / sc["interval_s"]))
    if k > T:
        return np.zeros(R, int), np.full(R, -1)
    n = d["n_c"][:, :k].sum(1)
    err = np.divide(d["e_c"][:, :k].sum(1), n, out=np.zeros(R), where=n > 0)
    p95 = hist_quantile(d["h_c"][:, :k].sum(1), 0.95)
    bad = (err > 0.01) | (np.nan_to_num(p95) > 2000)
    return np.where(bad, ROLLBACK, PROMOTE), np.full(R, k - 1)


def _trailing(x: np.ndarray, w: int) -> np.ndarray:
    cs = np.cumsum(x, axis=1)
    out = cs.copy()
    out[:, w:] = cs[:, w:] - cs[:, :-w]
    return out


def judge_release_manager(sc, d):
    R, T = sc["runs"], d["T"]
    w = max(1, int(round(1800 / sc["interval_s"])))
    n = _trailing(d["n_c"], w)
    err = np.divide(_trailing(d["e_c"], w), n, out=np.zeros((R, T)), where=n > 0)
    p95 = hist_quantile(_trailing(d["h_c"], w), 0.95)
    enough = n >= 100
    unhealthy = enough & ((err * 100 > 1.0) | (np.nan_to_num(p95) > 2000))
    elapsed = (np.arange(T) + 1) * sc["interval_s"]
    healthy = enough & ~unhealthy & (elapsed >= 1800)[None, :]
    return combine(R, T, first_true(unhealthy), first_true(healthy))


def judge_argo(sc, d, failure_limit=3, count=30):
    R, T = sc["runs"], d["T"]
    m = min(count, T)
    n = d["n_c"][:, :m]
    rate = np.divide(d["e_c"][:, :m], n, out=np.full((R, m), np.nan), where=n > 0)
    failed = ~(rate < 0.01)  # NaN -> failed
    nfail = np.cumsum(failed, axis=1)
    roll = first_true(nfail > failure_limit)
    prom = np.full(R, m - 1 if m == count else -1)
    return combine(R, T, roll, np.where(roll >= 0, -1, prom))


def judge_kayenta(sc, d, confidence=0.98, window_s=1800):
    R, T = sc["runs"], d["T"]
    k = int(round(window_s / sc["interval_s"]))
    if k > T:
        return np.zeros(R, int), np.full(R, -1)
    metrics = []
    for side in "sc":
        n = d[f"n_{side}"][:, :k]
        er = np.divide(d[f"e_{side}"][:, :k], n, out=np.full((R, k), np.nan), where=n > 0)
        p95 = hist_quantile(d[f"h_{side}"][:, :k], 0.95)
        metrics.append((er, p95))
    high_any = np.zeros(R, bool)
    for j in range(2):
        base, can = metrics[0][j], metrics[1][j]
        with np.errstate(all="ignore"):
            res = stats.mannwhitneyu(can, base, alternative="two-sided", axis=1, nan_policy="omit")
        p = np.asarray(res.pvalue, float)
        worse = np.nanmedian(can, axis=1) > np.nanmedian(base, axis=1)
        # ties in the medians (common for sparse error rates): compare the means
        tie = np.nanmedian(can, axis=1) == np.nanmedian(base, axis=1)
        worse |= tie & (np.nanmean(can, axis=1) > np.nanmean(base, axis=1))
        high_any |= (p < 1 - confidence) & worse
    return np.where(high_any, ROLLBACK, PROMOTE), np.full(R, k - 1)


def oracle_boundary(sc) -> int:
    """Bucket index where 'slow' starts for the oracle: the first boundary at or above stable's true p95."""
    return CLOUD_RUN_LATENCY.first_bucket_at_or_above(sc["stable"]["p95"])


def judge_oracle(sc, d, alpha=0.01, beta=0.01):
    R, T = sc["runs"], d["T"]
    llr = np.zeros((R, T))
    s, c = sc["stable"], sc["canary"]
    if c["error_rate"] != s["error_rate"] and s["error_rate"] > 0:
        r0, r1 = s["error_rate"], c["error_rate"]
        llr += d["e_c"] * math.log(r1 / r0) + (d["n_c"] - d["e_c"]) * math.log((1 - r1) / (1 - r0))
    if (c["median"], c["p95"]) != (s["median"], s["p95"]):
        k = oracle_boundary(sc)
        p0 = bucket_probs(s["median"], s["p95"])[k:].sum()
        p1 = bucket_probs(c["median"], c["p95"])[k:].sum()
        slow = d["h_c"][:, :, k:].sum(-1)
        llr += slow * math.log(p1 / p0) + (d["n_c"] - slow) * math.log((1 - p1) / (1 - p0))
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


def is_aa(sc) -> bool:
    return sc["stable"] == sc["canary"]


def summarise(sc, name, dec, at) -> dict:
    R = len(dec)
    t = (at + 1) * sc["interval_s"]
    decided = dec != 0
    rb = dec == ROLLBACK
    out = {
        "scenario": sc["name"],
        "judge": name,
        "runs": int(R),
        "promote": int((dec == PROMOTE).sum()),
        "rollback": int(rb.sum()),
        "hold": int((dec == 0).sum()),
        "median_decision_s": float(np.median(t[decided])) if decided.any() else None,
        "p90_decision_s": float(np.percentile(t[decided], 90)) if decided.any() else None,
        "median_rollback_s": float(np.median(t[rb])) if rb.any() else None,
    }
    return out


def run_scenario(sc, judges=None) -> list[dict]:
    d = simulate(sc)
    rows = []
    for name, fn in JUDGES.items():
        if judges and name not in judges:
            continue
        if name == "sprt-oracle" and is_aa(sc):
            continue
        dec, at = fn(sc, d)
        rows.append(summarise(sc, name, dec, at))
    return rows


def check_targets(scenarios, rows) -> list[dict]:
    """The issue's targets, evaluated from the measured rows (nothing here is assumed)."""
    by = {(r["scenario"], r["judge"]): r for r in rows}
    checks = []
    for sc in scenarios:
        ours = by.get((sc["name"], "netra"))
        if ours is None or not sc["targets"]:
            continue
        if is_aa(sc):
            rate = ours["rollback"] / ours["runs"]
            checks.append({"scenario": sc["name"], "target": "false rollback <= 1 %",
                           "measured": f"{rate:.2%}", "ok": rate <= 0.01})
            continue
        rate = ours["rollback"] / ours["runs"]
        checks.append({"scenario": sc["name"], "target": "rolled back >= 99 %",
                       "measured": f"{rate:.2%}", "ok": rate >= 0.99})
        orc = by.get((sc["name"], "sprt-oracle"))
        if orc and orc["median_rollback_s"] and ours["median_rollback_s"]:
            limit = 2 * orc["median_rollback_s"] + sc["interval_s"]
            checks.append({"scenario": sc["name"], "target": "median time to rollback <= 2 x oracle + 1 interval",
                           "measured": f"{ours['median_rollback_s']:.0f} s vs limit {limit:.0f} s "
                                       f"(oracle {orc['median_rollback_s']:.0f} s)",
                           "ok": ours["median_rollback_s"] <= limit})
        if ours["median_rollback_s"]:
            ratio = 3600 / ours["median_rollback_s"]
            checks.append({"scenario": sc["name"], "target": ">= 10x faster than the seed's 60 min window",
                           "measured": f"{ratio:.1f}x", "ok": ratio >= 10})
    return checks


def table(rows) -> str:
    def f(v):
        return "-" if v is None else f"{v:.0f}"

    lines = ["| scenario | judge | runs | promote | rollback | hold | median decision s | p90 decision s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['judge']} | {r['runs']} | {r['promote']} | {r['rollback']} | "
                     f"{r['hold']} | {f(r['median_decision_s'])} | {f(r['p90_decision_s'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.canary", description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="benchmarks/scenarios/canary.json", help="scenario file (JSON)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    ap.add_argument("--judge", action="append", choices=sorted(JUDGES), help="only these judges")
    ap.add_argument("--runs", type=int, help="override every scenario's runs")
    args = ap.parse_args(argv)
    try:
        scenarios = load_scenarios(args.scenarios)
    except (OSError, ValueError) as exc:
        print(f"benchmarks.canary: error: --scenarios {args.scenarios}: {exc}", file=sys.stderr)
        return 2
    if args.runs is not None:
        if args.runs < 1:
            print("benchmarks.canary: error: --runs must be >= 1", file=sys.stderr)
            return 2
        for sc in scenarios:
            sc["runs"] = args.runs
    t0 = time.perf_counter()
    rows = []
    for sc in scenarios:
        rows.extend(run_scenario(sc, args.judge))
    checks = check_targets(scenarios, rows)
    wall = time.perf_counter() - t0
    if args.json:
        json.dump({"results": rows, "targets": checks, "wall_s": round(wall, 1)}, sys.stdout, indent=1)
        print()
    else:
        print(table(rows))
        print()
        for c in checks:
            print(f"- {'OK  ' if c['ok'] else 'MISS'} {c['scenario']}: {c['target']}: {c['measured']}")
        print(f"\n({wall:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
