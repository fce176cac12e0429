"""The judge: decisions on hand-made intervals, the seed's absolute triggers with their minimum counts,
faults, and the statistical guarantees (false rollbacks <= alpha at the null boundary) by simulation."""
from __future__ import annotations

import numpy as np
import pytest

from infra.canary.buckets import CLOUD_RUN_LATENCY, BucketLayout
from infra.canary.judge import ALL_TESTS, ROLLBACK, BatchJudge, Interval, Judge, JudgeConfig

NB = CLOUD_RUN_LATENCY.num_buckets


def hist(n: int, slow_share: float = 0.04, slow_ms: float = 600.0, fast_ms: float = 100.0) -> list[int]:
    """n requests: (1 - slow_share) at fast_ms, slow_share at slow_ms (deterministic)."""
    h = [0] * NB
    slow = round(n * slow_share)
    h[CLOUD_RUN_LATENCY.first_bucket_at_or_above(fast_ms)] += n - slow
    h[CLOUD_RUN_LATENCY.first_bucket_at_or_above(slow_ms)] += slow
    return h


def interval(
    n_s=2700, n_c=300, err_s=0.002, err_c=0.002, slow_s=0.04, slow_c=0.04, slow_ms_c=600.0,
    duration=60.0, token=None, ws=None, fault=None,
) -> Interval:
    return Interval(
        duration_s=duration,
        stable_requests=n_s,
        canary_requests=n_c,
        stable_errors=round(n_s * err_s),
        canary_errors=round(n_c * err_c),
        stable_latency=hist(n_s, slow_s),
        canary_latency=hist(n_c, slow_c, slow_ms=slow_ms_c),
        layout=CLOUD_RUN_LATENCY,
        canary_token=token,
        canary_websocket=ws,
        fault=fault,
    )


def feed(judge: Judge, make, steps: int) -> list[str]:
    out = []
    for _ in range(steps):
        out.append(judge.observe(make()))
        if out[-1] != "continue":
            break
    return out


def test_healthy_canary_is_promoted_only_after_the_soak_and_request_minimums():
    j = Judge(JudgeConfig(min_soak_s=600))
    decisions = feed(j, lambda: interval(n_s=27000, n_c=3000, err_s=0.002, err_c=0.002), 30)
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
    reason = j.reason()
    assert reason.startswith("rollback: errors")
    assert j.evidence()["errors"]["over_threshold"]


def test_latency_regression_rolls_back_on_slow_requests_but_not_in_the_first_interval():
    j = Judge()
    decisions = feed(j, lambda: interval(slow_s=0.04, slow_c=0.30), 20)
    assert decisions[0] == "continue"  # the slow boundary comes from previous stable data only
    assert decisions[-1] == "rollback"
    assert "latency" in j.reason()
    assert j.evidence()["latency"]["slow_above_ms"] is not None


def test_absolute_error_trigger_fires_even_when_stable_is_as_bad():
    j = Judge()
    decisions = feed(j, lambda: interval(err_s=0.05, err_c=0.05), 20)
    assert decisions[-1] == "rollback"
    assert "error_rate" in j.reason() and "errors:" not in j.reason()


def test_absolute_p95_trigger_uses_buckets_at_or_above_two_seconds():
    j = Judge()
    decisions = feed(j, lambda: interval(slow_s=0.2, slow_c=0.2, slow_ms_c=5000.0), 20)
    # stable's slow requests are at 600 ms, the canary's at 5 s: relative latency may fire too,
    # the absolute p95 trigger must be among the reasons
    assert decisions[-1] == "rollback"
    assert "p95_latency" in j.reason()


def test_p95_trigger_does_not_fire_below_two_seconds():
    j = Judge(JudgeConfig(min_soak_s=120))
    decisions = feed(j, lambda: interval(n_s=27000, n_c=3000, slow_s=0.2, slow_c=0.2, slow_ms_c=600.0), 20)
    assert decisions[-1] == "promote"


@pytest.mark.parametrize("name, field, limit", [("token_optimization", "token", 0.10), ("websocket", "ws", 0.05)])
def test_log_based_triggers_fire_on_sustained_failures(name, field, limit):
    fail_share = limit * 3
    pair = (round(200 * (1 - fail_share)), round(200 * fail_share))
    j = Judge()
    decisions = feed(j, lambda: interval(**{field: pair}), 20)
    assert decisions[-1] == "rollback"
    assert name in j.reason()


def test_log_based_trigger_needs_its_minimum_count():
    # 3 failures out of 3 token optimizations per interval for 10 intervals: 30 observations < 100
    j = Judge(JudgeConfig(absolute_min_count=100, min_soak_s=60))
    decisions = feed(j, lambda: interval(n_s=27000, n_c=3000, token=(0, 3)), 10)
    assert "rollback" not in decisions
    assert decisions[-1] == "continue"  # over its threshold without the count: never promote either
    assert "token_optimization over threshold but below its minimum count" in j.reason()


def test_faulted_intervals_give_no_evidence_and_never_promote():
    j = Judge(JudgeConfig(min_soak_s=60))
    decisions = feed(j, lambda: interval(n_s=27000, n_c=3000, fault="request_count: 503 UNAVAILABLE"), 30)
    assert decisions == ["continue"] * 30
    s = j.summary()
    assert s["faulted_intervals"] == 30 and s["clean_intervals"] == 0 and s["requests"]["canary"] == 0
    assert "UNAVAILABLE" in j.reason()


def test_no_requests_is_a_fault():
    j = Judge(JudgeConfig(min_soak_s=0, min_canary_requests=0, min_stable_requests=0))
    assert j.observe(Interval(duration_s=60)) == "continue"
    assert "no requests" in j.reason()


def test_a_fault_after_enough_soak_blocks_that_interval_only():
    j = Judge(JudgeConfig(min_soak_s=600))
    for _ in range(10):
        last = j.observe(interval(n_s=27000, n_c=3000, fault="canary revision missing"))
    assert last == "continue"
    assert feed(j, lambda: interval(n_s=27000, n_c=3000), 20)[-1] == "promote"
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


@pytest.mark.parametrize(
    "kwargs",
    [dict(alpha=0), dict(alpha=1.5), dict(error_tolerance=0.5), dict(beta=0), dict(promote_max_ratio=1.0),
     dict(max_error_rate=2.0), dict(slow_quantile=0.2)],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        JudgeConfig(**kwargs).validate()


def test_alpha_is_split_across_all_tests():
    a = JudgeConfig(alpha=0.01).alphas()
    assert set(a) == set(ALL_TESTS)
    assert abs(sum(a.values()) - 0.01) < 1e-12


def _simulate(judge: BatchJudge, rng, T, rps, share, err_s, err_c, interval_s=60.0):
    R = judge.R
    p_slow = 0.05
    for _ in range(T):
        N = rng.poisson(rps * interval_s, R)
        n_c = rng.binomial(N, share)
        n_s = N - n_c
        e_s, e_c = rng.binomial(n_s, err_s), rng.binomial(n_c, err_c)
        hs = np.zeros((R, NB))
        hc = np.zeros((R, NB))
        fast = CLOUD_RUN_LATENCY.first_bucket_at_or_above(100)
        slow = CLOUD_RUN_LATENCY.first_bucket_at_or_above(600)
        sl_s, sl_c = rng.binomial(n_s, p_slow), rng.binomial(n_c, p_slow)
        hs[:, fast], hs[:, slow] = n_s - sl_s, sl_s
        hc[:, fast], hc[:, slow] = n_c - sl_c, sl_c
        judge.step(interval_s, np.ones(R, bool), n_s, n_c, e_s, e_c, hs, hc)
    return judge


def test_false_rollbacks_stay_below_alpha_at_the_null_boundary():
    """Canary exactly `tolerance` x worse on errors (the hardest null), looked at every minute for an
    hour with the promote rule disabled: rollbacks by the errors test must stay below its alpha share."""
    cfg = JudgeConfig(min_soak_s=1e9)  # never promote: keep peeking for the whole hour
    rng = np.random.default_rng(7)
    j = _simulate(BatchJudge(cfg, 3000, CLOUD_RUN_LATENCY), rng, 60, 50, 0.1, 0.004, 0.004 * cfg.error_tolerance)
    rate = float(np.mean(j.decision == ROLLBACK))
    assert rate <= cfg.alphas()["errors"] + 0.002  # 0.4 % + Monte Carlo slack


def test_e_values_have_mean_at_most_one_under_the_null():
    cfg = JudgeConfig(min_soak_s=1e9)
    rng = np.random.default_rng(3)
    j = _simulate(BatchJudge(cfg, 4000, CLOUD_RUN_LATENCY), rng, 5, 50, 0.5, 0.01, 0.01 * cfg.error_tolerance)
    assert float(np.mean(j.e_values()["errors"])) <= 1.1


def test_bad_canary_is_caught_in_nearly_every_run():
    cfg = JudgeConfig()
    rng = np.random.default_rng(5)
    j = _simulate(BatchJudge(cfg, 1000, CLOUD_RUN_LATENCY), rng, 30, 50, 0.1, 0.002, 0.01)
    assert float(np.mean(j.decision == ROLLBACK)) >= 0.99
