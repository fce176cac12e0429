"""The judge benchmark: schema of its JSON, every judge on the same data, the scenario fields (ramps,
history, clumped and noisy errors, log-based outcomes, phases, faults) simulated as specified, unknown
fields ignored, bad scenario files refused with exit 2. Few runs: this checks the tool, not the figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import canary as bc

SCEN = "benchmarks/scenarios/canary.json"
SAMPLE = ["aa-10pct", "warmup-5xx-2pct-60s-200rps", "errors-5x-10pct", "websocket-8pct-vs-1pct-200rps",
          "fault-swapped-labels"]


def scenario(name: str, runs: int = 200) -> dict:
    sc = next(s for s in bc.load_scenarios(SCEN) if s["name"] == name)
    sc["runs"] = runs
    return sc


def test_sample_scenarios_run_and_report_every_judge(capsys):
    argv = ["--scenarios", SCEN, "--json", "--runs", "40"] + [x for n in SAMPLE for x in ("--only", n)]
    assert bc.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"]
    keys = {"scenario", "judge", "runs", "promote", "rollback", "hold", "median_decision_s", "p90_decision_s"}
    assert all(keys <= set(r) for r in rows)
    assert all(r["promote"] + r["rollback"] + r["hold"] == r["runs"] == 40 for r in rows)
    assert {r["judge"] for r in rows} == set(bc.JUDGES)
    oracle = {r["scenario"] for r in rows if r["judge"] == "sprt-oracle"}
    assert oracle == {"errors-5x-10pct", "websocket-8pct-vs-1pct-200rps"}  # only where a rollback is expected
    assert doc["targets"] and all({"scenario", "target", "measured", "ok"} <= set(c) for c in doc["targets"])
    ours = {r["scenario"]: r for r in rows if r["judge"] == "netra"}
    assert ours["fault-swapped-labels"]["promote"] == 0


def test_the_scenario_file_has_every_kind_the_issue_asks_for():
    scs = bc.load_scenarios(SCEN)
    kinds = {s["kind"] for s in scs}
    assert {"healthy", "warm-up", "shared incident", "traffic ramp", "correlated errors", "regression",
            "late onset", "leak", "faulty data"} <= kinds
    assert {s["fault"]["kind"] for s in scs if s["fault"]} == set(bc.FAULTS)
    assert any(s["canary"]["websocket"] for s in scs) and any(s["canary"]["token"] for s in scs)


def test_unknown_fields_are_ignored_and_the_seed_makes_runs_reproducible(tmp_path, capsys):
    raw = next(s for s in json.load(open(SCEN))["scenarios"] if s["name"] == "errors-5x-10pct")
    sc = {**raw, "runs": 30, "owner": "someone", "stable": {**raw["stable"], "colour": "blue"}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [sc], "extra": 1}))
    outs = []
    for _ in range(2):
        assert bc.main(["--scenarios", str(path), "--json", "--judge", "netra"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["results"])
    assert outs[0] == outs[1] and outs[0][0]["rollback"] >= 25


def test_simulation_matches_the_scenario():
    sc = scenario("aa-10pct")
    d = bc.simulate(sc)
    share = d["n_c"].sum() / (d["n_c"].sum() + d["n_s"].sum())
    assert abs(share - sc["canary_percent"] / 100) < 0.01
    p95 = bc.hist_quantile(d["h_s"].sum(axis=(0, 1)), 0.95)
    assert abs(p95 / sc["stable"]["p95"] - 1) < 0.15
    assert np.all(d["h_c"].sum(-1) == d["n_c"])
    assert d["hist_n"].shape == (200, 30)  # history_s 1800 at 60 s


def test_ramp_phases_and_outcomes_are_simulated():
    d = bc.simulate(scenario("ramp-20-to-200rps"))
    per_min = (d["n_s"] + d["n_c"]).mean(axis=0)
    assert abs(per_min[0] / (20.75 * 60) - 1) < 0.05 and abs(per_min[-1] / (199.25 * 60) - 1) < 0.05
    d = bc.simulate(scenario("warmup-5xx-2pct-60s-200rps"))
    rate = d["e_c"].sum(axis=0) / d["n_c"].sum(axis=0)
    assert abs(rate[0] - 0.02) < 0.002 and abs(rate[5] - 0.002) < 0.001  # phase [0, 60 s) only
    d = bc.simulate(scenario("websocket-8pct-vs-1pct-200rps"))
    attempts, failures = d["websocket_c"]
    assert abs(attempts.sum() / d["n_c"].sum() - 0.05) < 0.002
    assert abs(failures.sum() / attempts.sum() - 0.08) < 0.005


@pytest.mark.parametrize("name, clumped", [("clumped-5xx-x5-200rps", True), ("noisy-5xx-cv0.5-200rps", False)])
def test_correlated_errors_keep_their_mean_and_are_overdispersed(name, clumped):
    sc = scenario(name)
    d = bc.simulate(sc)
    e, n = d["e_s"], d["n_s"]
    assert abs(e.sum() / n.sum() - 0.002) < 0.0002
    mu = 0.002 * n
    dispersion = float(((e - mu) ** 2 / mu).mean())
    assert dispersion > 3  # clumps of mean 5: 2k - 1 = 9; cv 0.5 at ~22 per minute: 1 + 22 * 0.25 ~ 6.5


def test_faults_corrupt_what_the_judges_see():
    d = bc.simulate(scenario("fault-nan-canary-5xx"))
    assert np.isnan(d["e_c"]).all()
    d = bc.simulate(scenario("fault-missing-5xx-canary"))
    assert (d["e_c"] == 0).all() and (d["h_c"].sum(-1) > d["n_c"]).any()


def test_bad_scenario_file_is_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"scenarios": [{"name": "x"}]}))
    assert bc.main(["--scenarios", str(p)]) == 2
    assert "--scenarios" in capsys.readouterr().err
    assert bc.main(["--scenarios", str(tmp_path / "missing.json")]) == 2
    raw = json.load(open(SCEN))["scenarios"][0]
    p.write_text(json.dumps({"scenarios": [{**raw, "fault": {"kind": "gremlins"}}]}))
    assert bc.main(["--scenarios", str(p)]) == 2
    assert "fault" in capsys.readouterr().err
