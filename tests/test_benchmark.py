"""The judge benchmark: schema of its JSON, every judge on the same data, unknown fields ignored,
bad scenario files refused with exit 2. Few runs: this checks the tool, not the figures."""
from __future__ import annotations

import json

import numpy as np

from benchmarks import canary as bc

SCEN = "benchmarks/scenarios/canary.json"


def test_default_scenarios_run_and_report_every_judge(capsys):
    assert bc.main(["--scenarios", SCEN, "--json", "--runs", "40"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"]
    keys = {"scenario", "judge", "runs", "promote", "rollback", "hold", "median_decision_s", "p90_decision_s"}
    assert all(keys <= set(r) for r in rows)
    assert all(r["promote"] + r["rollback"] + r["hold"] == r["runs"] == 40 for r in rows)
    judges = {r["judge"] for r in rows}
    assert judges == {"netra", "seed-fixed-window", "release-manager", "argo-threshold", "kayenta-mw", "sprt-oracle"}
    names = {s["name"] for s in bc.load_scenarios(SCEN)}
    assert {"aa-10pct", "aa-50pct", "errors-5x-10pct", "p95-3x-10pct", "both-10pct"} <= names
    assert not [r for r in rows if r["judge"] == "sprt-oracle" and r["scenario"].startswith("aa-")]
    assert doc["targets"] and all({"scenario", "target", "measured", "ok"} <= set(c) for c in doc["targets"])


def test_unknown_fields_are_ignored_and_the_seed_makes_runs_reproducible(tmp_path, capsys):
    sc = json.load(open(SCEN))["scenarios"][3]
    sc = {**sc, "runs": 30, "owner": "someone", "stable": {**sc["stable"], "colour": "blue"}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [sc], "extra": 1}))
    outs = []
    for _ in range(2):
        assert bc.main(["--scenarios", str(path), "--json", "--judge", "netra"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["results"])
    assert outs[0] == outs[1] and outs[0][0]["rollback"] >= 25


def test_simulation_matches_the_scenario():
    sc = bc.load_scenarios(SCEN)[0]
    sc["runs"] = 200
    d = bc.simulate(sc)
    share = d["n_c"].sum() / (d["n_c"].sum() + d["n_s"].sum())
    assert abs(share - sc["canary_percent"] / 100) < 0.01
    p95 = bc.hist_quantile(d["h_s"].sum(axis=(0, 1)), 0.95)
    assert abs(p95 / sc["stable"]["p95"] - 1) < 0.15
    assert np.all(d["h_c"].sum(-1) == d["n_c"])


def test_bad_scenario_file_is_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"scenarios": [{"name": "x"}]}))
    assert bc.main(["--scenarios", str(p)]) == 2
    assert "--scenarios" in capsys.readouterr().err
    assert bc.main(["--scenarios", str(tmp_path / "missing.json")]) == 2
