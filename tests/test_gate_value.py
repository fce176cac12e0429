"""The gate's value signals end to end: the real google-cloud-monitoring client over gRPC to the emulator
serving LLM cost and tokens per request (exponential distributions), quality scores, cache lookups and
their latency, semantic-match checks and Cloud Run's memory utilizations per revision (and per flag arm);
the verdict file, the progress line and the reason say what the release is worth. Virtual time."""
from __future__ import annotations

import json

import pytest

from infra.canary.emulator import MEMORY, FakeMetricService, Profile, serve
from infra.canary.monitoring import default_retry, make_client
from infra.canary.value import Criteria
from infra.flag_gate import arms, criteria_for, judge_flag_ramp
from infra.signals import LLM_REQUEST_COST, QUALITY_SCORE

from .test_gate import CANARY, INFO, SERVICE, STABLE, T0, Clock, gate, gate_service, settings

VALUE = dict(cost_usd=0.01, tokens=2000.0, quality=0.85, memory_percent=40.0, memory_t0=T0)


@pytest.fixture
def monitoring():
    fake = FakeMetricService(SERVICE, {STABLE: Profile(rps=180.0, **VALUE), CANARY: Profile(rps=20.0, **VALUE)}, seed=3)
    server, endpoint = serve(fake)
    client = make_client(endpoint)
    yield fake, client
    client.transport.close()
    server.stop(0)


def test_a_healthy_canary_promotes_and_the_verdict_says_what_it_is_worth(monitoring):
    fake, client = monitoring
    lines = []
    v = gate(client, progress=lines.append)
    assert v["decision"] == "promote", v["reason"]
    worth = v["value"]
    cost = worth["effects"]["cost"]
    assert cost["interval"][0] < 0 < cost["interval"][1] and cost["confidence"] == 0.95
    assert abs(cost["change"]) < 0.1 and cost["stable_mean"] == pytest.approx(0.01, rel=0.1)
    assert worth["effects"]["tokens"]["interval"][0] < 0 < worth["effects"]["tokens"]["interval"][1]
    q = worth["effects"]["quality"]
    assert q["interval"][0] <= 1.0 <= q["interval"][1] and q["canary_scores"] > 100
    assert worth["effects"]["memory"]["canary_percent"] == pytest.approx(40, abs=5)
    assert "projected_saving" in worth and "req/s at 100 %" in worth["projected_saving"]["basis"]
    assert any("cost " in line and "USD/day saved at 100 %" in line for line in lines)
    json.dumps(v, allow_nan=False)
    # the value queries: per revision, server-side merged distributions
    types = {r.filter.split('"')[1]: r for r in fake.calls}
    for metric in (LLM_REQUEST_COST.metric_type, QUALITY_SCORE.metric_type, MEMORY):
        agg = types[metric].aggregation
        assert agg.per_series_aligner.name == "ALIGN_DELTA" and agg.cross_series_reducer.name == "REDUCE_SUM"
        assert list(agg.group_by_fields) == ["resource.label.revision_name"]


def test_a_canary_costing_1_5x_is_rolled_back_with_its_cost_in_the_reason(monitoring):
    fake, client = monitoring
    fake.revisions[CANARY] = Profile(rps=20.0, **{**VALUE, "cost_usd": 0.015})
    v = gate(client)
    assert v["decision"] == "rollback" and v["exit_code"] == 1
    assert v["reason"].startswith("rollback: cost per request: cost +"), v["reason"]
    lo, hi = v["value"]["effects"]["cost"]["interval"]
    assert 0.1 < lo and (hi is None or hi > 0.3)
    assert v["value"]["projected_saving"]["usd_per_day"] < 0  # it would cost more, not save


def test_a_memory_leak_rolls_back_before_30_minutes(monitoring):
    fake, client = monitoring
    fake.revisions[CANARY] = Profile(rps=20.0, **{**VALUE, "memory_growth_per_hour": 20.0})
    clock = Clock()
    v = gate_service(INFO, settings(), stack="prod", client=client, clock=clock, sleep=clock.sleep,
                     retry=default_retry(timeout_s=5, initial_s=0.01), rpc_timeout_s=5.0)
    assert v["decision"] == "rollback" and "memory" in v["reason"] and v["elapsed_s"] <= 1800
    assert v["calibration"]["memory"].endswith("stable memory intervals before the canary")


def flag_settings():
    return settings()


@pytest.mark.parametrize("on_tokens, decision, words", [
    (1100.0, "promote", "every criterion met: tokens -4"),
    (1900.0, "hold", "hold: does not deliver: tokens -"),
])
def test_a_flag_ramp_is_judged_on_its_success_criteria(on_tokens, decision, words):
    off, on = arms("conversation_pruning")
    fake = FakeMetricService(SERVICE, {off: Profile(rps=45.0, tokens=2000.0, quality=0.85),
                                       on: Profile(rps=45.0, tokens=on_tokens, quality=0.85)}, seed=4)
    server, endpoint = serve(fake)
    client = make_client(endpoint)
    clock = Clock()
    try:
        crit = Criteria(tokens_change=(-0.60, -0.40), quality_min_ratio=0.95)
        v = judge_flag_ramp("netra-production", SERVICE, "conversation_pruning", 50, flag_settings(), client=client,
                            criteria=crit, clock=clock, sleep=clock.sleep,
                            retry=default_retry(timeout_s=0.3, initial_s=0.01)).as_dict()
    finally:
        client.transport.close()
        server.stop(0)
    assert v["decision"] == decision and words in v["reason"], v["reason"]
    assert "target -40..-60 %" in v["reason"]
    assert v["value"]["criteria_config"]["tokens_change"] == [-0.6, -0.4]
    filters = [r.filter for r in fake.calls]
    assert all("flag_arm" in f for f in filters)


def test_the_stack_config_declares_criteria_over_the_seed_defaults():
    from infra.components.secrets import config_payloads
    from infra.config import load_stack_config

    from .conftest import stack_config

    raw = stack_config("prod")
    raw["netra:platform"]["featureFlags"]["conversation_pruning"] = {
        "percent": 10, "criteria": {"tokensChange": [-0.5, -0.3], "onMiss": "rollback"}}
    raw["netra:platform"]["featureFlags"]["prompt_caching"] = {"percent": 0}
    cfg = load_stack_config(raw, "prod")
    c = criteria_for(cfg, "conversation_pruning")
    assert c == Criteria(tokens_change=(-0.5, -0.3), quality_min_ratio=0.95, on_miss="rollback")
    assert criteria_for(cfg, "prompt_caching") == Criteria(cache_hit_rate_min=0.85, cost_change=(-0.9, -0.7),
                                                           cache_p95_max_ms=50.0)
    # the criteria are the gate's: the services' flags document carries only {percent, killSwitch}
    doc = json.loads(config_payloads(cfg.app, cfg.platform.feature_flags)["feature-flags"])
    assert doc["conversation_pruning"] == {"percent": 10.0, "killSwitch": False}


def test_bad_criteria_in_the_stack_config_name_the_key():
    from infra.config import ConfigError, load_stack_config

    from .conftest import stack_config

    raw = stack_config("prod")
    raw["netra:platform"]["featureFlags"]["conversation_pruning"] = {"percent": 10, "criteria": {"tokensChange": [-0.3, -0.5]}}
    with pytest.raises(ConfigError) as e:
        load_stack_config(raw, "prod")
    assert "featureFlags.conversation_pruning.criteria.tokensChange" in str(e.value.problems[0])


def test_the_release_verdict_event_says_what_the_release_is_worth(prod_plan, monkeypatch, tmp_path):
    """The gate's `value` rides on the rollout's Verdict into the `verdict` event (message and field)."""
    import io

    from infra.notify import Notifier
    from infra.release import model as rel
    from infra.release.effects import rollout_verdict
    from infra.canary.verdict import Decision, Verdict

    from .conftest import stack_config
    from .test_rollout import World, make_release

    worth = {"effects": {"cost": {"change": -0.42, "interval": [-0.47, -0.36], "confidence": 0.95}},
             "projected_saving": {"usd_per_day": 1234.5, "interval": [1100.0, 1380.0], "basis": "x"}}
    monkeypatch.chdir(tmp_path)
    v = rollout_verdict(Verdict(Decision.PROMOTE, "promote: ...", {"value": worth}), "v.json", "cand", 10, "the gate")
    assert v.worth == worth and json.loads((tmp_path / "v.json").read_text())["value"] == worth
    release = make_release(prod_plan, ("backend",), "service")
    world = World(stack_config("prod"))
    out = io.StringIO()
    driver = world.driver(release, notifier=Notifier("prod", out=out))
    gate = driver.gate
    driver.gate = lambda t, stage: rel.Verdict(**{**gate(t, stage).__dict__, "worth": worth})
    assert driver.run().exit_code == 0
    events = [json.loads(line) for line in out.getvalue().splitlines() if '"verdict"' in line]
    gated = [e for e in events if e.get("value")]
    assert gated and gated[0]["value"] == worth
    assert "worth: cost -42 % [-47 %, -36 %], ~+1234 USD/day saved at 100 %" in gated[0]["message"]
