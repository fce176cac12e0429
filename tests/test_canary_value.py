"""The value judge (infra/canary/value.py) through the judge the gate runs: cost and tokens per request
(heavy-tailed: exact exceedance tests on shifted histograms), quality (empirical Bernstein), memory,
flag criteria (met / missed / on_miss) and what the verdict says it is worth. Data from the benchmark's
simulation with few runs: these check the decisions and their words, the benchmark measures the rates."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from benchmarks import canary as bc
from benchmarks import canary_value as cv
from infra.canary.counts import Batch
from infra.canary.judge import BatchJudge, JudgeConfig
from infra.canary.report import reason, value_line, worth
from infra.canary.value import (COST_LAYOUT, GROWTH, SHIFTS, Criteria, QualityTest, ScaleTest, ValueConfig,
                                bucket_mids, grid_ratio, shift_of)
from infra.canary.verdict import Decision

SCEN = "benchmarks/scenarios/value.json"


def scenario(name: str, runs: int = 60) -> dict:
    sc = next(s for s in bc.load_scenarios(SCEN) if s["name"] == name)
    sc["runs"] = runs
    return sc


def run(sc: dict) -> tuple[BatchJudge, np.ndarray]:
    """The judge the gate runs, over the scenario's simulated intervals; (judge, decision interval)."""
    d = bc.simulate(sc)
    R, T = sc["runs"], d["T"]
    bj = BatchJudge(JudgeConfig(horizon_intervals=T), R, configured_share=sc["canary_percent"] / 100,
                    criteria=sc["criteria"], memory_history=d.get("hist_memory"), cache_layout=cv.CACHE_LAYOUT)
    at = np.full(R, -1)
    for t in range(T):
        before = bj.decision.copy()
        dec = bj.step(Batch(sc["interval_s"], d["n_s"][:, t], d["n_c"][:, t], d["e_s"][:, t], d["e_c"][:, t],
                            d["h_s"][:, t], d["h_c"][:, t], value=cv.value_data(d, t)))
        at[(before == int(Decision.CONTINUE)) & (dec != int(Decision.CONTINUE))] = t
    return bj, at


def share(bj: BatchJudge, decision: Decision) -> float:
    return float(np.mean(bj.decision == int(decision)))


def test_the_cost_layout_shifts_exactly_by_the_seed_spike():
    assert grid_ratio(4) == pytest.approx(1.5) and shift_of(1.5) == 4 and shift_of(0.6) == -5
    assert COST_LAYOUT.params[1] == pytest.approx(GROWTH)
    # bucket k holds [scale g^(k-1), scale g^k): a value times g^4 lands exactly 4 buckets up
    b = np.asarray(COST_LAYOUT.bounds)
    assert np.allclose(b[4:] / b[:-4], 1.5)


def test_the_exceedance_tests_hold_their_level_on_equal_heavy_tailed_costs():
    """Equal gamma costs with cv 2 (heavy right tail): no shift's test rejects more often than its level."""
    rng = np.random.default_rng(7)
    R, T = 400, 30
    test = ScaleTest("cost", R, T, 0.8, 20)
    p = cv.gamma_probs(COST_LAYOUT, 0.01, 2.0)
    mids = bucket_mids(COST_LAYOUT)
    for _ in range(T):
        n = rng.poisson(200 * 60, R)
        n_c = rng.binomial(n, 0.1)
        test.update(rng.multinomial(n - n_c, p).astype(float), rng.multinomial(n_c, p).astype(float), mids,
                    np.ones(R, bool), np.full(R, np.inf), np.ones(R, bool))
    alpha = 0.05
    assert test.rejects_up(0, alpha).mean() <= 2 * alpha  # canary > stable: never true here
    assert test.rejects_down(0, alpha).mean() <= 2 * alpha
    lo, hi = test.interval(alpha)
    assert np.mean((lo <= 1.0) & (hi >= 1.0)) >= 1 - 2 * alpha  # the interval covers the true ratio 1
    assert np.median(hi) < 1.5 and np.median(lo) > 1 / 1.5  # and it is narrow enough to decide


def test_a_revision_costing_1_5x_stable_is_rolled_back_and_the_reason_says_so():
    bj, at = run(scenario("cost-1.5x-200rps", runs=40))
    assert share(bj, Decision.ROLLBACK) >= 0.95
    assert bj.value_fired["cost"].mean() >= 0.95
    text = reason(bj, int(np.argmax(bj.decision == int(Decision.ROLLBACK))))
    assert text.startswith("rollback: cost per request: cost +") and "tolerance" in text


def test_equal_cost_promotes_and_reports_its_interval():
    bj, _ = run(scenario("cost-equal-cv2-200rps", runs=40))
    assert share(bj, Decision.ROLLBACK) == 0 and share(bj, Decision.PROMOTE) >= 0.9
    i = int(np.argmax(bj.decision == int(Decision.PROMOTE)))
    eff = worth(bj, i)["effects"]["cost"]
    lo, hi = eff["interval"]
    assert lo < 0 < hi and hi < 0.5 and eff["confidence"] == 0.95
    assert "cost" in value_line(bj, i)


def test_a_memory_leak_is_rolled_back_within_30_minutes_and_never_promoted():
    bj, at = run(scenario("memory-leak-20pts-per-hour-100rps", runs=40))
    assert share(bj, Decision.PROMOTE) == 0
    rolled = bj.decision == int(Decision.ROLLBACK)
    assert rolled.mean() >= 0.95 and np.all((at[rolled] + 1) * 60 <= 1800)
    assert bj.value_fired["memory"][rolled].all()
    assert "memory" in reason(bj, int(np.argmax(rolled)))


def test_healthy_memory_noise_does_not_roll_back():
    bj, _ = run(scenario("memory-healthy-noise-100rps", runs=40))
    assert share(bj, Decision.ROLLBACK) == 0 and share(bj, Decision.PROMOTE) >= 0.9


def test_a_pruning_ramp_that_delivers_is_promoted_with_its_criteria_in_the_reason():
    bj, _ = run(scenario("ramp-pruning-tokens-45pct-50rps", runs=40))
    assert share(bj, Decision.PROMOTE) >= 0.9
    i = int(np.argmax(bj.decision == int(Decision.PROMOTE)))
    text = reason(bj, i)
    assert "every criterion met" in text and "tokens -4" in text and "target -40..-60 %" in text
    doc = worth(bj, i)
    assert doc["criteria"]["tokens_change"]["met"] and doc["criteria"]["quality_min_ratio"]["met"]
    lo, hi = doc["effects"]["tokens"]["interval"]
    assert lo <= -0.45 <= hi  # the realised change's interval covers the truth


def test_a_ramp_that_saves_5_percent_holds_with_does_not_deliver():
    bj, _ = run(scenario("ramp-pruning-tokens-5pct-50rps", runs=30))
    assert share(bj, Decision.HOLD) >= 0.9 and bj.not_met.mean() >= 0.9 and share(bj, Decision.PROMOTE) == 0
    i = int(np.argmax(bj.not_met))
    text = reason(bj, i)
    assert text.startswith("hold: does not deliver: tokens -") and "target -40..-60 %" in text
    assert "[" in text and "(tested at -40 %)" in text


def test_on_miss_rollback_rolls_back_a_confident_miss():
    sc = scenario("ramp-prompt-cache-hit-70pct-50rps", runs=20)
    sc["criteria"] = Criteria(**{**sc["criteria"].__dict__, "on_miss": "rollback"})
    bj, _ = run(sc)
    assert share(bj, Decision.ROLLBACK) >= 0.9 and bj.not_met.mean() >= 0.9
    text = reason(bj, int(np.argmax(bj.not_met)))
    assert re.match(r"rollback: does not deliver: cache hit rate \d+ % of \d+, target > 85 %", text), text


def test_quality_at_90_percent_of_off_is_a_guardrail_rollback_not_a_hold():
    bj, _ = run(scenario("ramp-pruning-quality-90pct-50rps", runs=30))
    assert share(bj, Decision.ROLLBACK) >= 0.95 and not bj.not_met.any()
    assert bj.value_fired["quality"].mean() >= 0.95
    assert "quality 9" in reason(bj, 0) and "confidently below 95 %" in reason(bj, 0)


def test_projected_saving_at_100_percent_from_the_cost_effect():
    bj, _ = run(scenario("ramp-prompt-cache-hit-92pct-50rps", runs=20))
    i = int(np.argmax(bj.decision == int(Decision.PROMOTE)))
    saving = worth(bj, i)["projected_saving"]
    # 50 rps x 86400 s x 0.01 USD x 80 % saved = 34 560 USD/day; the interval holds it
    assert saving["usd_per_day"] == pytest.approx(34560, rel=0.15)
    assert saving["interval"][0] <= 34560 <= saving["interval"][1]


@pytest.mark.parametrize("bad, message", [
    ({"tokens_change": [-0.4, -0.6]}, "tokens_change must be [lo, hi]"),
    ({"quality_min_ratio": 1.5}, "quality_min_ratio must be in (0, 1]"),
    ({"on_miss": "ignore"}, "on_miss must be hold or rollback"),
    ({"colour": 1}, "unknown key 'colour'"),
])
def test_bad_criteria_are_refused_naming_the_key(tmp_path, capsys, bad, message):
    raw = json.load(open(SCEN))["scenarios"][0]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [{**raw, "criteria": bad}]}))
    assert bc.main(["--scenarios", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert message in err and "scenarios[0].criteria" in err


def test_value_config_refuses_a_tolerance_above_the_seed_spike():
    with pytest.raises(ValueError, match="cost_tolerance"):
        JudgeConfig(value=ValueConfig(cost_tolerance=1.6)).validate()


def test_the_value_benchmark_reports_not_met_and_the_oracle(capsys):
    names = ["cost-1.5x-50rps", "ramp-pruning-tokens-20pct-50rps"]
    assert bc.main(["--scenarios", SCEN, "--json", "--runs", "20"] + [x for n in names for x in ("--only", n)]) == 0
    doc = json.loads(capsys.readouterr().out)
    ours = {r["scenario"]: r for r in doc["results"] if r["judge"] == "netra"}
    assert ours["ramp-pruning-tokens-20pct-50rps"]["not_met"] >= 18
    assert ours["ramp-pruning-tokens-20pct-50rps"]["hold"] == ours["ramp-pruning-tokens-20pct-50rps"]["runs"]
    assert {r["judge"] for r in doc["results"] if r["scenario"] == "cost-1.5x-50rps"} == set(bc.JUDGES)
    assert any(c["target"] == "not_met >= 90 %" for c in doc["targets"])
    assert SHIFTS[0] < shift_of(0.3) and shift_of(1.5) < SHIFTS[-1]


def test_overdispersed_errors_promote_on_the_sandwich_bound_and_clean_ones_never_use_it():
    """cv 0.8 drift at 800 rps: the tempered binomial bound alone almost never shows a healthy canary
    below 1.8x; the between-interval (sandwich) bound does. Clean data keep the binomial bound only."""
    noisy = next(s for s in bc.load_scenarios(SCEN) if s["name"] == "noisy-5xx-cv0.8-800rps")
    noisy["runs"] = 60
    d = bc.simulate(noisy)
    dec, _, _ = bc.judge_netra(noisy, d)
    assert np.mean(dec == int(Decision.PROMOTE)) >= 0.8 and not np.any(dec == int(Decision.ROLLBACK))
    bad = next(s for s in bc.load_scenarios(SCEN) if s["name"] == "noisy-5xx-cv0.8-800rps-errors-2x")
    bad["runs"] = 60
    dec, _, _ = bc.judge_netra(bad, bc.simulate(bad))
    assert np.mean(dec == int(Decision.PROMOTE)) <= 0.1
    clean = scenario("aa-10pct-20rps", runs=20)
    bj, _ = run(clean)
    assert not bj.test("errors").robust.any()


@pytest.mark.parametrize("kind", ["bernoulli", "u-shaped beta"])
def test_quality_tests_hold_their_level_at_the_boundary_for_the_hardest_scores(kind):
    """Canary mean exactly 95 % of stable's, scores all 0 or 1 (the largest variance in [0, 1]) or
    U-shaped: neither the worse nor the fine test rejects more often than its level, although the
    worse side bets up to 1 / (1 - mean) per score."""
    rng = np.random.default_rng(11)
    R, ratio, p_s, alpha = 2000, 0.95, 0.9, 0.05
    q = QualityTest(R, ratio, 30, 0.8)
    worse, fine = np.zeros(R, bool), np.zeros(R, bool)
    for t in range(30):
        sums = []
        for p, n in ((ratio * p_s, 60), (p_s, 540)):
            x = (rng.random((R, n)) < p).astype(float) if kind == "bernoulli" else rng.beta(p / 2, (1 - p) / 2, (R, n))
            sums.append((x.sum(axis=1), np.full(R, float(n)), ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)))
        q.update(*sums[0], *sums[1], np.ones(R, bool), np.full(R, np.inf), np.full(R, t >= 2))
        worse |= q.log_worse()[:, q.i0] >= np.log(1 / alpha)
        fine |= q.log_fine()[:, q.i0] >= np.log(1 / alpha)
    assert worse.mean() <= alpha and fine.mean() <= alpha


def test_quality_regression_is_caught_within_six_intervals_of_sixty_scores():
    """Scores normal(0.765, 0.1) against normal(0.85, 0.1), 60 canary scores a minute: the worse test
    passes the quality guardrail's threshold within 6 intervals in most runs (it took 9 before the bets
    were scaled to the scores' centre)."""
    rng = np.random.default_rng(5)
    R = 400
    q = QualityTest(R, 0.95, 60, 0.8)
    for t in range(6):
        sums = []
        for mean, n in ((0.765, 60), (0.85, 540)):
            x = np.clip(rng.normal(mean, 0.1, (R, n)), 0, 1)
            sums.append((x.sum(axis=1), np.full(R, float(n)), ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)))
        q.update(*sums[0], *sums[1], np.ones(R, bool), np.full(R, np.inf), np.full(R, t >= 2))
    assert np.mean(q.breach(ValueConfig().alpha / 4)) >= 0.9
