"""The pack over the analyzer protocol on the repo's stacks, as `python -m infra plan` runs it, and the
`--policy-pack-config` semantics the offline runner reproduces from the Pulumi CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.plan import plan_document, policy_violations
from infra.plan.analyzer import PolicyConfig, PolicyInfo, PolicyPackError, parse_pack_config, reconcile, to_struct
from infra.plan.engine import SECRET_SIG, SIG_KEY

from .conftest import cli, run_of

ROOT = Path(__file__).resolve().parents[1]


def mandatory(violations):
    return [v for v in violations if v["level"] == "mandatory"]


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_repo_stacks_pass_the_pack(stack):
    run = run_of(stack)
    violations = policy_violations(run)
    assert mandatory(violations) == []
    assert {v["policy"] for v in violations} <= {"cloudrun-ingress-restricted", "stack-seed-alerts",
                                                 "stack-seed-dashboards", "stack-billing-budget",
                                                 "stack-log-retention"}
    assert all(set(v) == {"policy", "level", "urn", "message"} for v in violations)
    assert plan_document(run, violations)["policy"]["violations"] == violations


def test_broken_prod_config_exits_1_with_the_violation(reuse_plans):
    proc = cli("plan", "--stack", "prod", "--set", "netra:services.backend.minInstances=1")
    assert proc.returncode == 1, proc.stderr
    assert "[mandatory] cloudrun-prod-min-instances: netra-backend-prod: template.scaling.minInstanceCount is 1" \
        in proc.stdout
    assert "gcp:cloudrunv2/service:Service::backend" in proc.stdout


def test_prod_only_policies_are_disabled_in_staging():
    """Staging runs 0 instances and image tags: the same resources fail prod's config."""
    run = run_of("staging")
    staging = {v["policy"] for v in mandatory(policy_violations(run))}
    assert staging == set()
    prod_cfg = ROOT / "policies" / "config.prod.json"
    tmp_root = _pack_copy(ROOT / "build" / "policy-test-prod-on-staging", config=prod_cfg.read_text(), stack="staging")
    hit = {v["policy"] for v in mandatory(policy_violations(run, tmp_root))}
    # (staging's data is protected as in prod: sql-deletion-protection passes; stateful-protected covers it there)
    assert hit == {"cloudrun-prod-min-instances", "cloudrun-image-digest", "cloudrun-deletion-protection",
                   "stack-billing-budget", "sql-regional-ha", "redis-standard-ha"}


def _pack_copy(root: Path, config: str, stack: str) -> Path:
    """A project root whose policies/ is the real pack with another config.<stack>.json."""
    import shutil

    if root.exists():
        shutil.rmtree(root)
    (root / "policies").mkdir(parents=True)
    for item in (ROOT / "policies").iterdir():
        if item.name.startswith("config.") or item.name in ("venv", "__pycache__"):
            continue
        (root / "policies" / item.name).symlink_to(item)
    (root / "policies" / f"config.{stack}.json").write_text(config)
    return root


def test_broken_policy_config_is_a_mandatory_violation_not_a_traceback():
    run = run_of("prod")
    root = _pack_copy(ROOT / "build" / "policy-test-bad-config", stack="prod",
                      config=json.dumps({"cloudrun-traffic-ladder": {"stages": "ten"}}))
    [v] = policy_violations(run, root)
    assert v["policy"] == "policy-pack" and v["level"] == "mandatory"
    assert "cloudrun-traffic-ladder: stages: invalid type. Expected: array" in v["message"]
    root = _pack_copy(ROOT / "build" / "policy-test-bad-level", stack="prod", config='{"all": "strict"}')
    [v] = policy_violations(run, root)
    assert "'strict' is not a valid enforcement level" in v["message"]


def test_policy_config_properties_reach_the_pack():
    """A stricter ladder from config turns the repo's own 0 % candidate into a violation."""
    run = run_of("prod")
    root = _pack_copy(ROOT / "build" / "policy-test-ladder", stack="prod",
                      config=json.dumps({"cloudrun-traffic-ladder": {"enforcementLevel": "mandatory",
                                                                     "stages": [10, 50, 100]}}))
    hits = [v for v in mandatory(policy_violations(run, root)) if v["policy"] == "cloudrun-traffic-ladder"]
    assert len(hits) == 3 and "not on the ladder [10, 50, 100]" in hits[0]["message"]


# ---------------------------------------------------------------- config file semantics (the CLI's)

def test_parse_pack_config_like_the_cli():
    cfg = parse_pack_config('{"all": "advisory", "a": {"enforcementLevel": "disabled", "x": 1}, "b": {}}')
    assert cfg == {"all": PolicyConfig("advisory"), "a": PolicyConfig("disabled", {"x": 1})}  # empty "b" dropped
    assert parse_pack_config("  ") == {}
    for bad in ('{"a": "block"}', '{"a": 3}', '[1]', '{"a": {"enforcementLevel": "nope"}}', "{"):
        with pytest.raises(PolicyPackError):
            parse_pack_config(bad)


def test_reconcile_all_then_per_policy_then_schema_defaults():
    schema = {"properties": {"n": {"type": "integer", "minimum": 1, "default": 2}}, "required": []}
    policies = [PolicyInfo("p", "d", "mandatory", schema), PolicyInfo("q", "d", "advisory", None)]
    out = reconcile(policies, {}, {"all": PolicyConfig("advisory"), "p": PolicyConfig("", {"n": 5})})
    assert out["p"] == PolicyConfig("advisory", {"n": 5})
    assert out["q"] == PolicyConfig("advisory", None)
    out = reconcile(policies, {}, {"q": PolicyConfig("disabled")})
    assert out["p"] == PolicyConfig("mandatory", {"n": 2}) and out["q"].enforcement_level == "disabled"
    with pytest.raises(PolicyPackError, match="p: n: must be greater than or equal to 1"):
        reconcile(policies, {}, {"p": PolicyConfig("", {"n": 0})})


def test_repo_configs_are_valid_for_the_pack():
    from tests.test_policy_rules import PACK
    from infra.plan.analyzer import PackSession, load_pack_config

    with PackSession(PACK, "netra", "prod") as s:
        policies = s.analyzer_info()
        names = {p.name for p in policies}
        for stack in ("staging", "prod"):
            given = load_pack_config(PACK / f"config.{stack}.json")
            assert set(given) - {"all"} <= names, stack
            resolved = reconcile(policies, s.initial_config(), given)
            assert all(resolved[n].enforcement_level in ("mandatory", "advisory", "disabled") for n in names)


def test_secrets_reach_the_pack_wrapped():
    struct = to_struct({"secretData": {SIG_KEY: SECRET_SIG, "value": "x"}, "__defaults": [], "n": 2})
    assert dict(struct["secretData"]) == {SIG_KEY: SECRET_SIG, "value": "x"}
    assert "__defaults" not in struct and struct["n"] == 2.0


def test_streaming_check_during_the_run_equals_the_check_after_it():
    """The plan analyzes each resource as the program registers it; the verdict must not depend on that."""
    from infra.plan import checked_run

    overrides = {"netra:services.backend.minInstances": 1, "netra:services.auth.image": "gcr.io/x/auth:latest"}
    with pytest.raises(Exception, match="pinned by digest"):
        checked_run("prod", overrides=overrides)  # refused config: the started pack is stopped, nothing leaks
    run, streamed = checked_run("prod", overrides={"netra:services.backend.minInstances": 1})
    assert streamed == policy_violations(run)
    assert [v["policy"] for v in mandatory(streamed)] == ["cloudrun-prod-min-instances"]
