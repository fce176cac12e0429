"""Typed stack config: every error names its key and what is allowed, all at once, before any resource."""
from __future__ import annotations

import json

import pytest

from infra.config import load_stack_config

from .conftest import cli, config_problems as problems, flat, stack_config

DIGEST = "@sha256:" + "0" * 64


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_repo_stacks_are_valid(stack):
    cfg = load_stack_config(flat(stack_config(stack)), stack)
    assert cfg.environment == stack


def test_seed_production_settings_reach_the_services_by_default():
    cfg = load_stack_config(flat(stack_config("prod")), "prod")
    env = cfg.app.environment()
    assert env["TOKEN_OPTIMIZATION_ENABLED"] == "true"
    assert env["TOKEN_OPTIMIZATION_DEFAULT_TARGET_REDUCTION"] == "20"
    assert env["TOKEN_OPTIMIZATION_MAX_RETRIES"] == "3"
    assert env["LLM_PRICING_GPT4_INPUT"] == "0.00003" and env["LLM_PRICING_GPT4_OUTPUT"] == "0.00006"
    assert env["LLM_PRICING_GPT35_INPUT"] == "0.0000015" and env["LLM_PRICING_GPT35_OUTPUT"] == "0.000002"
    assert (env["COST_ALERT_LOW_THRESHOLD"], env["COST_ALERT_MEDIUM_THRESHOLD"], env["COST_ALERT_HIGH_THRESHOLD"]) == ("1.00", "3.00", "5.00")
    assert env["COST_OPTIMIZATION_TARGET_SAVINGS"] == "0.20" and env["USER_BUDGET_DEFAULT_MONTHLY"] == "100.00"
    assert env["TOKEN_SESSION_TTL_MINUTES"] == "60" and env["TOKEN_CONTEXT_CLEANUP_INTERVAL"] == "300"


def test_structured_app_settings_are_validated():
    cfg = stack_config("prod")
    cfg["netra:app"] = {"tokenOptimization": {"defaultTargetReduction": 120}, "session": {"ttlMinute": 5}}
    found = problems(cfg)
    assert "less than or equal to 100" in found["netra:app.tokenOptimization.defaultTargetReduction"]
    assert "did you mean 'ttlMinutes'" in found["netra:app.session.ttlMinute"]


def test_unknown_keys_get_did_you_mean_and_the_allowed_list():
    cfg = stack_config("prod")
    cfg["netra:canaryPrecent"] = 10
    cfg["netra:services"]["backend"]["minInstance"] = 3
    cfg["netra:services"]["backend"]["dbPoolSzie"] = 3
    cfg["netra:services"]["Worker_1"] = {"image": "x"}
    found = problems(cfg)
    assert "did you mean 'canaryPercent'" in found["netra:canaryPrecent"]
    assert "did you mean 'minInstances'" in found["netra:services.backend.minInstance"]
    assert "did you mean 'dbPoolSize'" in found["netra:services.backend.dbPoolSzie"]
    assert "service name must be lowercase letters" in found["netra:services.Worker_1"]


def test_wrong_types_name_key_and_value():
    cfg = stack_config("prod")
    cfg["netra:services"]["auth"]["maxInstances"] = "lots"
    cfg["netra:services"]["auth"]["sessionAffinity"] = "maybe"
    cfg["netra:services"]["auth"]["cpu"] = 3
    found = problems(cfg)
    assert found["netra:services.auth.maxInstances"] == "must be a whole number, got 'lots'"
    assert found["netra:services.auth.sessionAffinity"] == "must be true or false, got 'maybe'"
    assert "one of 1, 2, 4, 6, 8" in found["netra:services.auth.cpu"]


@pytest.mark.parametrize("value", [5, 20, 101, -10])
def test_canary_percent_off_the_ladder(value):
    cfg = stack_config("prod")
    cfg["netra:canaryPercent"] = value
    assert "must be one of netra:stages [0, 10, 50, 100]" in problems(cfg)["netra:canaryPercent"]


def test_custom_ladder_is_honoured_and_validated():
    cfg = stack_config("prod")
    cfg["netra:stages"] = [0, 5, 10, 25, 50, 100]
    cfg["netra:canaryPercent"] = 25
    assert load_stack_config(flat(cfg), "prod").canary_percent == 25
    cfg["netra:stages"] = [10, 50]
    assert "from 0 to 100" in problems(cfg)["netra:stages"]


def test_per_service_override_must_be_on_the_ladder():
    cfg = stack_config("prod")
    cfg["netra:services"]["backend"]["canaryPercent"] = 30
    assert "must be one of netra:stages" in problems(cfg)["netra:services.backend.canaryPercent"]


def test_min_instances_above_max():
    cfg = stack_config("prod")
    cfg["netra:services"]["frontend"]["minInstances"] = 200
    assert problems(cfg)["netra:services.frontend.minInstances"] == "must be <= maxInstances (100), got 200"


def test_stable_revision_must_be_prefixed_by_service_name():
    cfg = stack_config("prod")
    cfg["netra:services"]["auth"]["stableRevision"] = "netra-backend-prod-1234abcd"
    assert "must start with the service name 'netra-auth-prod-'" in problems(cfg)["netra:services.auth.stableRevision"]


def test_prod_requires_digest_pinned_images_staging_does_not():
    cfg = stack_config("prod")
    cfg["netra:services"]["backend"]["image"] = "us-central1-docker.pkg.dev/netra-production/netra/backend:latest"
    assert "pinned by digest" in problems(cfg)["netra:services.backend.image"]
    staging = stack_config("staging")
    assert not staging["netra:services"]["backend"]["image"].endswith(DIGEST)
    load_stack_config(flat(staging), "staging")


def test_credentials_never_go_into_env():
    cfg = stack_config("prod")
    cfg["netra:services"]["backend"]["env"] = {"OPENAI_API_KEY": "sk-123", "LOG_LEVEL": "info"}
    found = problems(cfg)
    assert "Secret Manager" in found["netra:services.backend.env.OPENAI_API_KEY"]
    assert not any("LOG_LEVEL" in k for k in found)


def test_unknown_stack_needs_an_environment():
    cfg = stack_config("staging")
    del cfg["netra:environment"]
    assert "required key is missing: one of staging, prod" in problems(cfg, "dev")["netra:environment"]


def test_every_problem_is_listed_at_once():
    cfg = stack_config("prod")
    cfg["netra:canaryPercent"] = 15
    svc = cfg["netra:services"]["frontend"]
    svc.update(minInstances=200, cpu=3, stableRevision="foo-1", image="gcr.io/x/frontend:latest", typo=1)
    found = problems(cfg)
    assert {
        "netra:canaryPercent", "netra:services.frontend.minInstances", "netra:services.frontend.cpu",
        "netra:services.frontend.stableRevision", "netra:services.frontend.image", "netra:services.frontend.typo",
    } <= set(found)


def run_plan(*args: str):
    return cli("plan", *args)


def test_cli_bad_config_exits_2_listing_every_problem_without_traceback():
    proc = run_plan("--stack", "prod", "--json", "--set", "netra:canaryPercent=15",
                    "--set", "netra:services.auth.minInstances=99")
    assert proc.returncode == 2
    # --json: one JSON object listing the problems (nothing planned), each with its key and origin
    doc = json.loads(proc.stdout)
    assert {p["key"]: p["origin"] for p in doc["problems"]} == {
        "netra:canaryPercent": "--set", "netra:services.auth.minInstances": "--set"}
    assert "netra:canaryPercent: must be one of netra:stages" in proc.stderr
    assert "netra:services.auth.minInstances: must be <= maxInstances (50), got 99" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_usage_errors_exit_2():
    proc = run_plan("--stack", "nope")
    assert proc.returncode == 2 and "known stacks: prod, staging" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_plan("--stack", "prod", "--set", "novalue")
    assert proc.returncode == 2 and "--set: expected KEY=VALUE" in proc.stderr


def test_program_itself_refuses_bad_config_before_registering_anything():
    """`pulumi up` path: the program (not the plan's pre-check) raises RunError and registers nothing."""
    import pulumi

    from infra import program
    from infra.plan.engine import run_program
    from infra.plan.stackfile import read_stack

    stack = read_stack("prod", overrides={"netra:canaryPercent": 15})
    with pytest.raises(Exception) as e:
        run_program(program.main, stack.project, "prod", stack.config)
    assert isinstance(e.value, pulumi.RunError) or "netra:canaryPercent" in str(e.value)
    assert "netra:canaryPercent: must be one of netra:stages" in str(e.value)
