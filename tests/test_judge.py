"""The judge: decisions on hand-made intervals for each signal, warm-up, late onset, shared incidents,
faulty data, the calibration on stable's history, and the statistical guarantees (false rollbacks <=
alpha at the null boundary, however often it looks) by simulation."""
from __future__ import annotations

import numpy as np
import pytest

from infra.canary.buckets import CLOUD_RUN_LATENCY, BucketLayout
from infra.canary.calibration import calibrate
from infra.canary.counts import Batch, Interval
from infra.canary.judge import ALL_TESTS, TESTS, BatchJudge, Judge, JudgeConfig
from infra.canary.sanity import CHECKS
from infra.canary.verdict import Decision

NB = CLOUD_RUN_LATENCY.num_buckets


def hist(n: int, slow_share: float = 0.04, slow_ms: float = 600.0, fast_ms: float = 100.0) -> list[int]:
    """n requests: (1 - slow_share) at fast_ms, slow_share at slow_ms (deterministic)."""
    h = [0] * NB
    slow = round(n * slow_share)
    h[CLOUD_RUN_LATENCY.first_bucket_at_or_above(fast_ms)] += n - slow
    h[CLOUD_RUN_LATENCY.first_bucket_at_or_above(slow_ms)] += slow
    return h


def interval(n_s=2700, n_c=300, err_s=0.002, err_c=0.002, slow_s=0.04, slow_c=0.04, slow_ms_c=600.0,
             slow_ms_s=600.0, duration=60.0, token=None, ws=None, token_s=None, ws_s=None, fault=None) -> Interval:
    return Interval(
        duration_s=duration,
        stable_requests=n_s,
        canary_requests=n_c,
        stable_errors=round(n_s * err_s),
        canary_errors=round(n_c * err_c),
        stable_latency=hist(n_s, slow_s, slow_ms=slow_ms_s),
        canary_latency=hist(n_c, slow_c, slow_ms=slow_ms_c),
        layout=CLOUD_RUN_LATENCY,
        canary_token=token,
        canary_websocket=ws,
        stable_token=token_s,
        stable_websocket=ws_s,
        fault=fault,
    )


def feed(judge: Judge, make, steps: int) -> list[str]:
    out = []
    for _ in range(steps):
        out.append(judge.observe(make()))
        if out[-1] != "continue":
            break
    return out


BIG = dict(n_s=27000, n_c=3000)


def test_healthy_canary_is_promoted_only_after_the_soak_and_request_minimums():
    j = Judge(JudgeConfig(min_soak_s=600))
    decisions = feed(j, lambda: interval(**BIG), 30)
    assert decisions[-1] == "promote"
    assert len(decisions) == 10  # 10 x 60 s of clean soak, not earlier
    assert "promote" in j.reason()
    ev = j.evidence()
    assert set(ALL_TESTS) <= set(ev)
    assert ev["errors"]["promote_evidence"]["reached"] and ev["latency"]["promote_evidence"]["reached"]


def test_promote_waits_for_minimum_canary_requests():
    j = Judge(JudgeConfig(min_soak_s=60, min_canary_requests=500))
    decisions = feed(j, lambda: interval(n_s=9000, n_c=100, err_s=0.0, err_c=0.0), 4)
    assert decisions == ["continue"] * 4
    assert "canary requests 400/500" in j.reason()


def test_error_regression_rolls_back_with_the_errors_test():
    j = Judge()
    decisions = feed(j, lambda: interval(err_s=0.002, err_c=0.03), 20)
    assert decisions[-1] == "rollback"
    assert len(decisions) <= 5
    assert j.reason().startswith("rollback: errors")
    assert j.evidence()["errors"]["over_threshold"]


def test_latency_gives_evidence_from_the_first_interval_and_rolls_back():
    j = Judge(JudgeConfig(warmup_s=0))
    decisions = feed(j, lambda: interval(slow_s=0.04, slow_c=0.30, slow_ms_c=1500.0), 20)
    assert decisions[0] == "rollback"  # the slow boundary is the pooled p95: no need to wait for history
    assert "latency" in j.reason() and j.evidence()["latency"]["slow_above_ms"] is not None


@pytest.mark.parametrize("field, stable_field, name", [("token", "token_s", "token_optimization"),
                                                      ("ws", "ws_s", "websocket")])
def test_log_based_outcomes_are_compared_with_stable(field, stable_field, name):
    """3x stable's failure rate, still under the seed's absolute limit: the relative test rolls back."""
    j = Judge()
    decisions = feed(j, lambda: interval(**{field: (970, 30), stable_field: (9900, 100)}), 30)
    assert decisions[-1] == "rollback"
    assert j.reason().startswith(f"rollback: {name}:")


def test_websocket_failures_far_above_stable_never_promote():
    """8 % vs 1 % on few connections: promote waits until the signal shows it is safe; it rolls back."""
    j = Judge()
    decisions = feed(j, lambda: interval(**BIG, ws=(23, 2), ws_s=(248, 2)), 60)
    assert "promote" not in decisions
    assert decisions[-1] == "rollback" and "websocket" in j.reason()


def test_absolute_p95_trigger_uses_buckets_at_or_above_two_seconds():
    j = Judge()
    decisions = feed(j, lambda: interval(slow_s=0.2, slow_c=0.2, slow_ms_c=5000.0), 20)
    assert decisions[-1] == "rollback"
    assert "p95_latency" in j.reason() or "latency" in j.reason()
    assert j.evidence()["p95_latency"]["canary_events"] > 0


def test_rollback_triggers_come_from_the_config():
    """A 3 % canary error rate with stable at 3 % too: an incident under the seed's 1 %, nothing under 5 %."""
    healthy = Judge(JudgeConfig(max_error_rate=0.05, min_soak_s=300))
    assert feed(healthy, lambda: interval(**BIG, err_s=0.03, err_c=0.03), 20)[-1] == "promote"


def test_a_breach_shared_with_stable_is_an_incident_until_it_lasts_too_long():
    j = Judge(JudgeConfig(incident_max_s=300))
    decisions = feed(j, lambda: interval(err_s=0.05, err_c=0.05), 5)
    assert decisions == ["continue"] * 5
    assert "incident" in j.reason() and "5xx > 1%" in j.reason()
    assert j.batch.incident_signals(0) == ["errors"]
    decisions = feed(j, lambda: interval(err_s=0.05, err_c=0.05), 20)
    assert decisions[-1] == "rollback" and "error_rate" in j.reason()  # the seed's rule applies again


def test_a_short_warm_up_never_rolls_back_and_a_persistent_one_is_caught_one_interval_later():
    cold = Judge()
    decisions = [cold.observe(interval(**BIG, slow_c=0.6, slow_ms_c=3000.0, err_c=0.03)) for _ in range(2)]
    decisions += feed(cold, lambda: interval(**BIG), 20)
    assert "rollback" not in decisions and decisions[-1] == "promote"
    persistent = Judge()
    decisions = feed(persistent, lambda: interval(**BIG, slow_c=0.6, slow_ms_c=3000.0), 20)
    assert len(decisions) == 3 and decisions[-1] == "rollback"  # warm-up (2 intervals) + 1


def test_a_regression_after_the_soak_started_blocks_the_promote_and_rolls_back():
    j = Judge(JudgeConfig(min_soak_s=600))
    decisions = feed(j, lambda: interval(**BIG), 8)
    decisions += feed(j, lambda: interval(**BIG, err_c=0.006), 30)
    assert "promote" not in decisions and decisions[-1] == "rollback"


def test_log_based_trigger_needs_its_minimum_count():
    # 3 failures out of 3 token optimizations per interval for 10 intervals: 30 observations < 100
    j = Judge(JudgeConfig(absolute_min_count=100, min_soak_s=60))
    decisions = feed(j, lambda: interval(**BIG, token=(0, 3)), 10)
    assert "rollback" not in decisions and "promote" not in decisions
    assert "token_failure_rate over threshold but below its minimum count" in j.reason()


def test_faulted_intervals_give_no_evidence_and_never_promote():
    j = Judge(JudgeConfig(min_soak_s=60))
    decisions = feed(j, lambda: interval(**BIG, fault="request_count: 503 UNAVAILABLE"), 30)
    assert decisions == ["continue"] * 30
    s = j.summary()
    assert s["faulted_intervals"] == 30 and s["clean_intervals"] == 0 and s["requests"]["canary"] == 0
    assert "UNAVAILABLE" in j.reason()


def _corrupt(**changes):
    def make():
        iv = interval(**BIG, err_c=0.05)
        for k, v in changes.items():
            setattr(iv, k, v)
        return iv
    return make


@pytest.mark.parametrize("make, named", [
    (_corrupt(canary_errors=-150), "negative count"),
    (_corrupt(canary_errors=float("nan")), "non-finite"),
    (_corrupt(stable_requests=float("inf")), "non-finite"),
    (_corrupt(unlabelled_requests=3000, canary_requests=0, canary_errors=0), "without a revision label"),
    (_corrupt(canary_requests=2850, canary_errors=0), "disagree for the canary revision"),  # 5xx series missing
    (_corrupt(canary_latency=None), "no request_latencies series for the canary"),
    (_corrupt(stable_requests=54000), "realised canary share"),  # duplicated stable series
    (lambda: interval(n_s=3000, n_c=27000, err_s=0.05), "realised canary share"),  # swapped labels
])
def test_faulty_data_is_named_and_never_promotes(make, named):
    j = Judge(JudgeConfig(min_soak_s=60), configured_share=0.10)
    decisions = feed(j, make, 20)
    assert decisions == ["continue"] * 20
    assert named in j.reason(), j.reason()


def test_every_check_has_a_name():
    assert len(CHECKS) == len(set(CHECKS)) and all(CHECKS)


def test_no_requests_is_a_fault():
    j = Judge(JudgeConfig(min_soak_s=0, min_canary_requests=0, min_stable_requests=0))
    assert j.observe(Interval(duration_s=60)) == "continue"
    assert "no requests" in j.reason()


def test_a_fault_after_enough_soak_blocks_that_interval_only():
    j = Judge(JudgeConfig(min_soak_s=600))
    for _ in range(10):
        last = j.observe(interval(**BIG, fault="canary revision missing"))
    assert last == "continue"
    assert feed(j, lambda: interval(**BIG), 20)[-1] == "promote"
    assert j.summary()["soak_s"] == 600


def test_layout_from_the_api_is_adopted_before_the_first_clean_interval():
    layout = BucketLayout.exponential(40, 2.0, 1.0)
    j = Judge(JudgeConfig(min_soak_s=60))
    iv = interval()
    iv.layout = layout
    iv.stable_latency = [0] * layout.num_buckets
    iv.stable_latency[8] = iv.stable_requests
    iv.canary_latency = [0] * layout.num_buckets
    iv.canary_latency[8] = iv.canary_requests
    j.observe(iv)
    assert j.batch.layout == layout


def test_calibration_finds_clumped_errors_and_leaves_clean_ones_alone():
    rng = np.random.default_rng(1)
    n = np.full((400, 30), 10800)
    clean = calibrate(n, rng.binomial(n, 0.002))
    assert float(np.mean(clean.dispersion == 1.0)) > 0.95
    events = rng.poisson(n * 0.002 / 5)
    clumped = calibrate(n, events + rng.negative_binomial(np.maximum(events, 1), 0.2) * (events > 0))
    assert 6 < float(np.median(clumped.dispersion)) < 12  # geometric clumps of mean 5: 2k - 1 = 9
    assert float(np.median(clumped.boundary_factor())) > 1


@pytest.mark.parametrize(
    "kwargs",
    [dict(alpha=0), dict(alpha=1.5), dict(error_tolerance=0.5), dict(beta=0), dict(promote_max_ratio=1.0),
     dict(max_error_rate=2.0), dict(slow_quantile=0.2), dict(warmup_evidence_share=1.0), dict(promote_power=0.3),
     dict(promote_power=1.0), dict(promote_ratio_cap=1.5)],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        JudgeConfig(**kwargs).validate()


def test_alpha_is_split_across_the_table_of_tests():
    a = JudgeConfig(alpha=0.01).alphas()
    assert set(a) == set(ALL_TESTS) == {t.name for t in TESTS}
    assert abs(sum(a.values()) - 0.01) < 1e-12
    assert {t.signal for t in TESTS} == {"errors", "latency", "token", "websocket"}


SMALL = BucketLayout.explicit([50.0, 200.0, 800.0, 3000.0])  # few buckets: the simulations stay fast


def _simulate(judge: BatchJudge, rng, T, rps, share, err_s, err_c, interval_s=60.0):
    R = judge.R
    fast = SMALL.first_bucket_at_or_above(100)
    slow = SMALL.first_bucket_at_or_above(600)
    for _ in range(T):
        N = rng.poisson(rps * interval_s, R)
        n_c = rng.binomial(N, share)
        n_s = N - n_c
        hs, hc = np.zeros((R, SMALL.num_buckets)), np.zeros((R, SMALL.num_buckets))
        sl_s, sl_c = rng.binomial(n_s, 0.05), rng.binomial(n_c, 0.05)
        hs[:, fast], hs[:, slow] = n_s - sl_s, sl_s
        hc[:, fast], hc[:, slow] = n_c - sl_c, sl_c
        judge.step(Batch(interval_s, n_s, n_c, rng.binomial(n_s, err_s), rng.binomial(n_c, err_c), hs, hc))
    return judge


def test_false_rollbacks_stay_below_alpha_at_the_null_boundary():
    """Canary exactly `tolerance` x worse on errors (the hardest null), looked at every minute for an
    hour with the promote rule disabled: rollbacks by the errors test must stay below its alpha share."""
    cfg = JudgeConfig(min_soak_s=1e9, error_tolerance=1.1)  # never promote: keep peeking for the whole hour
    rng = np.random.default_rng(7)
    j = _simulate(BatchJudge(cfg, 3000, SMALL), rng, 60, 50, 0.1, 0.004, 0.004 * cfg.error_tolerance)
    rate = float(np.mean(j.decision == Decision.ROLLBACK))
    assert rate <= cfg.alphas()["errors"] + 0.002  # 0.35 % + Monte Carlo slack


def test_e_values_have_mean_at_most_one_under_the_null():
    cfg = JudgeConfig(min_soak_s=1e9, warmup_s=0)
    rng = np.random.default_rng(3)
    j = _simulate(BatchJudge(cfg, 4000, SMALL), rng, 5, 50, 0.5, 0.01, 0.01 * cfg.error_tolerance)
    assert float(np.mean(np.exp(j.test("errors").log_e()))) <= 1.1


def test_bad_canary_is_caught_in_nearly_every_run():
    rng = np.random.default_rng(5)
    j = _simulate(BatchJudge(JudgeConfig(), 1000, SMALL), rng, 30, 50, 0.1, 0.002, 0.01)
    assert float(np.mean(j.decision == Decision.ROLLBACK)) >= 0.99


def _margin_after(rps: float, err_c: float, runs: int = 200, T: int = 12, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cfg = JudgeConfig(min_soak_s=1e9, horizon_intervals=60)  # keep looking: the margin, not the decision
    j = _simulate(BatchJudge(cfg, runs, SMALL), rng, T, rps, 0.1, 0.002, err_c)
    return j.test("errors").margin(cfg.beta)


def test_promote_margin_widens_only_where_the_stage_cannot_resolve_it():
    cfg = JudgeConfig()
    busy, quiet, trickle = _margin_after(200, 0.002), _margin_after(20, 0.002), _margin_after(2, 0.002)
    assert np.all(busy == cfg.promote_max_ratio)  # 20 canary rps resolve 1.8x well within the hour
    assert 1.9 < float(np.median(quiet)) < 2.2  # 2 canary rps at 0.2 % 5xx: about 14 canary 5xx an hour
    assert np.all(trickle <= cfg.promote_ratio_cap)  # never beyond the cap: a 2.2x canary never promotes
    assert np.mean(trickle == cfg.promote_ratio_cap) > 0.8  # the rest: stable showed no 5xx yet, so 1.8x


def test_promote_margin_does_not_follow_the_canarys_own_errors():
    """Same traffic and stable rate, a canary 5x worse (its warm-up even looks like a cold start): the
    margin comes from what the canary cannot influence, so a bad canary does not widen its own margin."""
    margins = []
    for err_c in (0.002, 0.01):
        j = Judge(JudgeConfig(min_soak_s=1e9, horizon_intervals=60))
        feed(j, lambda: interval(n_s=1080, n_c=120, err_s=0.002, err_c=err_c), 8)
        margins.append(float(j.batch.test("errors").margin(0.05)[0]))
    assert margins[0] == margins[1] > JudgeConfig().promote_max_ratio


def test_low_traffic_promote_names_the_widened_margin():
    """2 canary rps, canary 5xx about stable's: the cumulative ratio bound gets below the traffic's
    resolution (about 2.0x) well before it gets below 1.8x."""

    def run(cap: float) -> tuple[list[str], Judge]:
        seen = iter(range(10**6))

        def make():
            iv = interval(n_s=1080, n_c=120)
            iv.stable_errors, iv.canary_errors = 2, int(next(seen) % 4 == 3)
            return iv

        j = Judge(JudgeConfig(min_soak_s=600, horizon_intervals=60, promote_ratio_cap=cap))
        return feed(j, make, 60), j

    widened, j = run(JudgeConfig().promote_ratio_cap)
    strict, _ = run(JudgeConfig().promote_max_ratio)
    assert widened[-1] == "promote" and len(widened) < len(strict)
    ev = j.evidence()["errors"]["promote_evidence"]
    assert JudgeConfig().promote_max_ratio < ev["ratio_upper_bound"] < ev["ratio"] <= JudgeConfig().promote_ratio_cap
    assert "what this traffic resolves in the stage" in j.reason()
