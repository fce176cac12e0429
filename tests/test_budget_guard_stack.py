"""Where the emergency limits live, in the plan: a secret of their own that Pulumi seeds once and never
updates, mounted beside the feature flags in every flags reader, written only by the budget guard (whose
identity has no grant on the flags), and never carried by the flags themselves."""
from __future__ import annotations

import json


from infra.components.secrets import Secrets, SecretsArgs
from infra.plan import engine
from infra.plan.engine import unwrap

from .components.conftest import PROD, register
from .conftest import config_problems, one, resources_of, run_of, stack_config

RUN = "gcp:cloudrunv2/service:Service"
VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
FLAG_READERS = ("frontend", "backend", "auth")


def test_every_flags_reader_mounts_the_emergency_limits(prod_plan):
    for key in FLAG_READERS:
        t = one(prod_plan, RUN, key)["inputs"]["template"]
        (vol,) = [v for v in t["volumes"] if v["name"] == "emergency-limits"]
        assert vol["secret"]["secret"] == "prod-emergency-limits"
        assert [(i["path"], i["version"]) for i in vol["secret"]["items"]] == [("limits.json", "latest")]
        c = t["containers"][0]
        assert {"name": "emergency-limits", "mountPath": "/secrets/emergency-limits"} in c["volumeMounts"]
        assert {"name": "EMERGENCY_LIMITS", "value": "/secrets/emergency-limits/limits.json"} in c["envs"]
        grants = {r["inputs"]["secretId"] for r in resources_of(prod_plan, SECRET_IAM)
                  if r["inputs"]["member"] == f"serviceAccount:netra-{key}-prod@netra-production.iam.gserviceaccount.com"}
        assert "prod-emergency-limits" in grants


def test_the_guard_writes_only_the_emergency_limits(prod_plan):
    guard = "serviceAccount:netra-budget-guard-prod@netra-production.iam.gserviceaccount.com"
    grants = {(r["inputs"]["secretId"], r["inputs"]["role"]) for r in resources_of(prod_plan, SECRET_IAM)
              if r["inputs"]["member"] == guard}
    assert grants == {("prod-emergency-limits", "roles/secretmanager.secretAccessor"),
                      ("prod-emergency-limits", "roles/secretmanager.secretVersionAdder"),
                      ("prod-pagerduty-key", "roles/secretmanager.secretAccessor")}


def test_pulumi_seeds_the_limits_off_once_and_never_writes_them_again():
    """The seed version: the limits off, abandoned (not disabled) on delete, its payload ignored after the
    first create; a feature-flags change (or any other config change) never touches it."""
    seen: dict[str, list[str]] = {}
    register_resource = engine._RecordingMonitor.RegisterResource

    def recording(self, request):
        seen[request.name] = list(request.ignoreChanges)
        return register_resource(self, request)

    engine._RecordingMonitor.RegisterResource = recording
    try:
        reg = register(lambda: {"ids": Secrets("secrets", SecretsArgs(
            PROD, {"feature-flags": "{}", "emergency-limits": '{"enable_emergency_limits":false}'},
            seeded=frozenset({"emergency-limits"}))).ids})
    finally:
        engine._RecordingMonitor.RegisterResource = register_resource
    seed = reg.one(VERSION, "emergency-limits")
    assert seed["deletionPolicy"] == "ABANDON" and seen["emergency-limits"] == ["secretData"]
    assert reg.one(VERSION, "feature-flags")["deletionPolicy"] == "DISABLE" and seen["feature-flags"] == []

    run = {r.name: unwrap(r.inputs) for r in run_of("prod").resources if r.type == VERSION}
    assert json.loads(run["emergency-limits"]["secretData"]) == {"enable_emergency_limits": False}
    flipped = {r.name: unwrap(r.inputs) for r in run_of("prod", {"netra:platform.featureFlags.semantic_cache": True}).resources
               if r.type == VERSION}
    assert flipped["emergency-limits"] == run["emergency-limits"] and flipped["feature-flags"] != run["feature-flags"]


def test_the_flags_may_not_carry_the_emergency_keys():
    for key, value in (("enable_emergency_limits", True), ("max_hourly_cost", 100)):
        cfg = stack_config("prod")
        cfg["netra:platform"]["featureFlags"][key] = value
        problems = config_problems(cfg)
        (path,) = [p for p in problems if key in p]
        assert path == f"netra:platform.featureFlags.{key}"
        assert "emergency-limits" in problems[path] and "docs/budget-guard.md" in problems[path]


def test_the_function_checks_notifications_against_the_declared_budget(prod_plan):
    budget = one(prod_plan, "gcp:billing/budget:Budget", "monthly")["inputs"]
    env = one(prod_plan, "gcp:cloudfunctionsv2/function:Function", "emergency-budget")["inputs"]["serviceConfig"][
        "environmentVariables"]
    assert env["BUDGET_NAME"].startswith(f"billingAccounts/{budget['billingAccount']}/budgets/")
    assert env["BUDGET_CURRENCY"] == budget["amount"]["specifiedAmount"]["currencyCode"] == "USD"


def test_the_function_is_built_by_its_own_identity(prod_plan):
    """Not the project's default build service account: a build identity that reads the source, writes logs
    and pushes the image, and nothing else."""
    fn = one(prod_plan, "gcp:cloudfunctionsv2/function:Function", "emergency-budget")["inputs"]
    email = "netra-budget-build-prod@netra-production.iam.gserviceaccount.com"
    assert fn["buildConfig"]["serviceAccount"] == f"projects/netra-production/serviceAccounts/{email}"
    grants = {(r["type"].split(":")[-1], r["inputs"]["role"]) for r in prod_plan["resources"]
              if r["inputs"].get("member") == f"serviceAccount:{email}"}
    assert grants == {("BucketIAMMember", "roles/storage.objectViewer"), ("IAMMember", "roles/logging.logWriter"),
                      ("IAMMember", "roles/artifactregistry.writer")}


def test_no_service_can_point_itself_away_from_the_limits():
    """EMERGENCY_LIMITS is the platform's: neither a service's `env` nor its `secrets` may set it."""
    for where, value in (("env", "/tmp/no-limits.json"), ("secrets", "pricing-config")):
        cfg = stack_config("prod")
        cfg["netra:services"]["auth"].setdefault(where, {})["EMERGENCY_LIMITS"] = value
        problems = config_problems(cfg)
        assert "the emergency limits file" in problems[f"netra:services.auth.{where}.EMERGENCY_LIMITS"]
