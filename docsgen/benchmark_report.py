"""docs/explanation/benchmark.md and its plots, rendered from a saved benchmark result.

`make bench-canary` runs `python -m benchmarks.canary --json` over benchmarks/scenarios/canary.json into
benchmarks/results/canary.json (committed), then `make docs-reference` renders this page from it: the
table every judge's decisions per scenario, the targets, and two SVG plots (median decision time and the
share of wrong decisions per judge and scenario). Nothing here is typed in by hand; a new run rewrites it.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from .markdown import GENERATED

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = "benchmarks/scenarios/canary.json"
RESULT = "benchmarks/results/canary.json"
PAGE = "docs/explanation/benchmark.md"
DECISIONS_SVG = "docs/explanation/img/canary-decision-times.svg"
WRONG_SVG = "docs/explanation/img/canary-wrong-decisions.svg"
MARKERS = "os^vDPX*"


def _load():
    from benchmarks.canary import JUDGES, load_scenarios

    scenarios = load_scenarios(str(ROOT / SCENARIOS))
    saved = json.loads((ROOT / RESULT).read_text())
    names = {r["scenario"] for r in saved["results"]}
    scenarios = [s for s in scenarios if s["name"] in names]
    judges = [j for j in JUDGES if any(r["judge"] == j for r in saved["results"])]
    return scenarios, saved, judges


def _wrong(sc: dict, row: dict) -> float:
    """Share of runs that ended in the decision a good judge must not take."""
    n = row["runs"]
    if sc["expect"] == "promote":
        return row["rollback"] / n
    if sc["expect"] == "rollback":
        return 1 - row["rollback"] / n
    return row["promote"] / n


def _svg(metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios, saved, judges = _load()
    by = {(r["scenario"], r["judge"]): r for r in saved["results"]}
    plt.rcParams.update({"svg.hashsalt": "netra-benchmark", "svg.fonttype": "none", "font.size": 8})
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(scenarios) + 1.2))
    ys = range(len(scenarios))
    for k, judge in enumerate(judges):
        xs, yy = [], []
        for y, sc in zip(ys, scenarios):
            row = by.get((sc["name"], judge))
            if row is None:
                continue
            if metric == "time":
                if row["median_decision_s"] is None:
                    continue
                xs.append(row["median_decision_s"] / 60)
            else:
                xs.append(100 * _wrong(sc, row))
            yy.append(y + (k - len(judges) / 2) * 0.08)
        ax.scatter(xs, yy, s=14, marker=MARKERS[k % len(MARKERS)], label=judge)
    ax.set_yticks(list(ys), [f"{s['name']} ({s['expect']})" for s in scenarios])
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    if metric == "time":
        ax.set_xlabel("median time to a decision (minutes after the canary got traffic)")
    else:
        ax.set_xlabel("wrong decisions, % of runs (false rollback, missed rollback, or promote on faulty data)")
        ax.set_xlim(-2, 102)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6 / (0.22 * len(scenarios) + 1.2)),
              ncol=3, fontsize=7, frameon=False)
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return out.getvalue()


def decisions_svg() -> str:
    return _svg("time")


def wrong_svg() -> str:
    return _svg("wrong")


def render() -> str:
    from benchmarks.canary import check_targets, wide_table

    scenarios, saved, judges = _load()
    checks = check_targets(scenarios, saved["results"])
    missed = [c for c in checks if not c["ok"]]
    runs = sum(r["runs"] for r in saved["results"] if r["judge"] == judges[0])
    lines = [
        "# Benchmark: the canary judge against the known alternatives",
        "",
        GENERATED.format(source=f"`{RESULT}` (`make bench-canary`)", target="docs-reference"),
        "",
        f"{len(scenarios)} scenarios of simulated Cloud Run traffic (`{SCENARIOS}`), {runs} simulated canary "
        f"stages per judge in all; every judge sees exactly the same counts. `netra` is the code the gate runs "
        "(`infra/canary/judge.py`); the others are the seed's fixed window, cloud-run-release-manager's "
        "defaults, an Argo Rollouts analysis, Kayenta's Mann-Whitney judge and an SPRT oracle that knows the "
        "true rates (a lower bound on time to rollback). How the simulation works: `benchmarks/canary.py`. "
        f"Wall time of this run: {saved['wall_s']:.0f} s.",
        "",
        "![Median decision time per judge and scenario](img/canary-decision-times.svg)",
        "",
        "![Wrong decisions per judge and scenario](img/canary-wrong-decisions.svg)",
        "",
        "## Decisions per scenario",
        "",
        "Each cell: runs promoted / rolled back / held, and the median time to a decision.",
        "",
        wide_table(scenarios, saved["results"]),
        "",
        f"## Targets ({len(checks) - len(missed)} of {len(checks)} met)",
        "",
        "| scenario | target | measured | met |",
        "|---|---|---|---|",
        *[f"| {c['scenario']} | {c['target']} | {c['measured']} | {'yes' if c['ok'] else '**no**'} |" for c in checks],
        "",
    ]
    return "\n".join(lines)
