"""Benchmark of the bake watch (infra/canary/watch.py, the very code `python -m infra bake` runs).

    python -m benchmarks.bake_watch [--windows 200] [--json]

A released revision serves 100 % for a 48 h bake window, watched as `bake` does it from an hourly job:
48 runs of 55 one-minute intervals, each run a fresh watch at alpha x 55 min / 48 h (alpha 0.01), its
5xx test calibrated on the 30 minutes before the run. Traffic is simulated like the canary benchmark
(benchmarks/canary.py: Poisson requests, gamma-noised 5xx rates with geometric clumps, lognormal latency
in Cloud Run's buckets, token / WebSocket outcomes), vectorised over windows.

* healthy scenarios: the share of windows with a (false) rollback; the union bound says <= 1 %;
* breach scenarios: the breach starts with a run; the share caught within that run (55 min) and the
  median minutes to the rollback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.canary import NB, bucket_probs, draw_errors
from infra.canary.calibration import calibrate
from infra.canary.counts import Batch
from infra.canary.judge import JudgeConfig
from infra.canary.watch import Watch

INTERVAL_S, RUN_INTERVALS, RUNS, HISTORY_INTERVALS, ALPHA = 60.0, 55, 48, 30, 0.01
WINDOW_S = RUNS * 3600.0

BASE = {"rps": 20.0, "error_rate": 0.002, "error_rate_cv": 0.0, "error_clump": 1.0,
        "latency_ms": {"median": 120.0, "p95": 450.0}}
SCENARIOS = [
    {"name": "healthy, 20 rps, seed targets (5xx 0.2 %, p95 450 ms)", "kind": "healthy"},
    {"name": "healthy, 200 rps, 5xx 0.8 % (near the 1 % trigger)", "kind": "healthy", "rps": 200.0, "error_rate": 0.008},
    {"name": "healthy, 200 rps, 5xx 0.5 % in crash clumps (mean 20) with drift (cv 0.5)", "kind": "healthy",
     "rps": 200.0, "error_rate": 0.005, "error_clump": 20.0, "error_rate_cv": 0.5},
    {"name": "healthy, 200 rps, 5xx 0.8 % in crash clumps (mean 20) with drift (cv 0.5)", "kind": "healthy",
     "rps": 200.0, "error_rate": 0.008, "error_clump": 20.0, "error_rate_cv": 0.5},
    {"name": "healthy, 20 rps, 5xx 0.5 % in crash clumps (mean 5)", "kind": "healthy", "error_rate": 0.005,
     "error_clump": 5.0},
    {"name": "healthy, 200 rps, p95 1.8 s (near the 2 s trigger)", "kind": "healthy", "rps": 200.0,
     "latency_ms": {"median": 600.0, "p95": 1800.0}},
    {"name": "healthy, 200 rps, token failures 8 % (trigger 10 %)", "kind": "healthy", "rps": 200.0,
     "token": {"per_request": 0.5, "failure_rate": 0.08}},
    {"name": "breach, 200 rps, 5xx 3 %", "kind": "breach", "rps": 200.0, "error_rate": 0.03},
    {"name": "breach, 20 rps, 5xx 3 %", "kind": "breach", "error_rate": 0.03},
    {"name": "breach, 200 rps, 5xx 1.5 %", "kind": "breach", "rps": 200.0, "error_rate": 0.015},
    {"name": "breach, 200 rps, 5xx 3 % in crash clumps (mean 20)", "kind": "breach", "rps": 200.0, "error_rate": 0.03,
     "error_clump": 20.0},
    {"name": "breach, 200 rps, p95 3 s", "kind": "breach", "rps": 200.0, "latency_ms": {"median": 900.0, "p95": 3000.0}},
    {"name": "breach, 200 rps, token failures 20 %", "kind": "breach", "rps": 200.0,
     "token": {"per_request": 0.5, "failure_rate": 0.20}},
    {"name": "breach, 200 rps, WebSocket failures 10 %", "kind": "breach", "rps": 200.0,
     "websocket": {"per_request": 0.05, "failure_rate": 0.10}},
]


def interval(rng, sc: dict, R: int) -> Batch:
    """One minute of the revision's traffic for R windows (both sides of the Batch: the watched revision,
    as `bake`'s source reads it)."""
    n = rng.poisson(sc["rps"] * INTERVAL_S, size=R).astype(float)
    e = draw_errors(rng, n.astype(int), sc).astype(float)
    h = np.stack([rng.multinomial(int(k), bucket_probs(sc["latency_ms"]["median"], sc["latency_ms"]["p95"]))
                  for k in n]).astype(float)
    outcomes = {}
    for key in ("token", "websocket"):
        o = sc.get(key)
        if o is not None:
            attempts = rng.poisson(n * o["per_request"]).astype(float)
            outcomes[key] = (attempts, rng.binomial(attempts.astype(int), o["failure_rate"]).astype(float))
    return Batch(INTERVAL_S, n, n, e, e, h, h, token_s=outcomes.get("token"), token_c=outcomes.get("token"),
                 websocket_s=outcomes.get("websocket"), websocket_c=outcomes.get("websocket"))


def one_run(rng, sc: dict, R: int) -> np.ndarray:
    """A bake run of 55 intervals for R windows; the interval index of the rollback (-1: none)."""
    hist_n, hist_e = [], []
    for _ in range(HISTORY_INTERVALS):
        b = interval(rng, {**sc, **sc.get("before", {})}, R)
        hist_n.append(b.n_c)
        hist_e.append(b.e_c)
    cal = calibrate(np.stack(hist_n, axis=1), np.stack(hist_e, axis=1))
    w = Watch(JudgeConfig(), ALPHA * RUN_INTERVALS * INTERVAL_S / WINDOW_S, RUN_INTERVALS, cal, runs=R)
    at = np.full(R, -1)
    for i in range(RUN_INTERVALS):
        fired = w.step(interval(rng, sc, R))
        at = np.where((at < 0) & fired, i, at)
    return at


def run_scenario(sc: dict, windows: int, seed: int) -> dict:
    sc = {**BASE, **sc}
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    if sc["kind"] == "healthy":
        fired = np.zeros(windows, bool)
        for _ in range(RUNS):
            fired |= one_run(rng, sc, windows) >= 0
        out = {"false_rollback_windows": int(fired.sum()), "windows": windows}
    else:
        # the run's calibration reads the healthy half hour before the breach (same clumping, base rate)
        at = one_run(rng, {**sc, "before": {"error_rate": BASE["error_rate"]}}, windows)
        caught = at >= 0
        out = {"caught_within_run": float(caught.mean()), "windows": windows,
               "median_minutes": float(np.median(at[caught] + 1)) if caught.any() else None}
    return {"scenario": sc["name"], "kind": sc["kind"], **out, "seconds": round(time.perf_counter() - t, 1)}


def table(rows: list[dict]) -> str:
    lines = ["| scenario | result |", "|---|---|"]
    for r in rows:
        if r["kind"] == "healthy":
            res = f"{r['false_rollback_windows']} false rollbacks in {r['windows']} windows of 48 h"
        else:
            res = (f"caught within the run in {r['caught_within_run']:.1%} of {r['windows']}, median "
                   f"{r['median_minutes']:.0f} min" if r["median_minutes"] is not None else "never caught")
        lines.append(f"| {r['scenario']} | {res} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bake_watch", description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=200, help="simulated bake windows per scenario")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    rows = [run_scenario(sc, a.windows, a.seed + i) for i, sc in enumerate(SCENARIOS)]
    print(json.dumps(rows, indent=2) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
