"""The verification resources in the stacks' plans: load-test job (staging), emergency budget guard (prod)."""
from __future__ import annotations

import json

from .conftest import config_problems, one, resources_of, stack_config

JOB = "gcp:cloudrunv2/job:Job"


def test_staging_declares_the_seed_load_test_job(staging_plan):
    job = one(staging_plan, JOB, "load-test")["inputs"]
    assert job["name"] == "netra-loadtest-staging"
    tmpl = job["template"]["template"]
    assert tmpl["vpcAccess"]["egress"] == "ALL_TRAFFIC"  # the tagged run.app URL is internal-ingress only
    assert tmpl["maxRetries"] == 0 and tmpl["timeout"] == "4200s"
    (container,) = tmpl["containers"]
    assert container["commands"] == ["python", "-m", "loadtest.run"]
    env = {e["name"]: e["value"] for e in container["envs"]}
    assert env["LOADTEST_USERS"] == "150" and env["LOADTEST_DURATION_S"] == "3600"  # seed 001 phase 1
    criteria = json.loads(env["LOADTEST_CRITERIA"])
    assert criteria["websocketEventLatencyMs"] == 100 and criteria["memoryGrowthPercent"] == 5
    assert json.loads(env["LOADTEST_HTTP_SCENARIOS"])[0]["path"] == "/health"
    bucket = one(staging_plan, "gcp:storage/bucket:Bucket", "load-test-results")["inputs"]
    assert bucket["publicAccessPrevention"] == "enforced"
    grant = one(staging_plan, "gcp:storage/bucketIAMMember:BucketIAMMember", "load-test-writes-results")["inputs"]
    assert grant["role"] == "roles/storage.objectCreator"
    assert staging_plan["outputs"]["loadTestJob"] == {"name": "netra-loadtest-staging", "region": "us-central1",
                                                      "resultsBucket": "netra-staging-loadtest-results",
                                                      "service": "netra-backend-staging"}


def test_prod_budget_publishes_to_the_emergency_guard(prod_plan):
    budget = resources_of(prod_plan, "gcp:billing/budget:Budget")[0]["inputs"]
    assert budget["allUpdatesRule"]["schemaVersion"] == "1.0" and budget["allUpdatesRule"]["pubsubTopic"]
    fn = one(prod_plan, "gcp:cloudfunctionsv2/function:Function", "emergency-budget")["inputs"]
    assert fn["eventTrigger"]["eventType"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert fn["buildConfig"]["entryPoint"] == "on_budget_notification"
    assert fn["buildConfig"]["source"]["storageSource"]["object"].startswith("source/emergency_budget-")
    env = fn["serviceConfig"]["environmentVariables"]
    assert env["MAX_HOURLY_COST_USD"] == "100" and env["EMERGENCY_SECRET"] == "prod-emergency-limits"
    assert "FLAGS_SECRET" not in env  # the guard never writes the feature flags
    # notifications are checked against the budget the stack declares (its name: account and id)
    assert env["BUDGET_NAME"] == "billingAccounts/01A2B3-C4D5E6-F7A8B9/budgets/offline-plan-monthly"
    assert env["BUDGET_CURRENCY"] == "USD"
    assert env["PAGERDUTY_SECRET"] == "prod-pagerduty-key"
    key = one(prod_plan, "gcp:secretmanager/secretVersion:SecretVersion", "emergency-budget-pagerduty-key")["inputs"]
    assert key["secretData"] == "[secret]"
    roles = {r["inputs"]["role"] for r in resources_of(prod_plan, "gcp:secretmanager/secretIamMember:SecretIamMember")
             if r["name"].startswith("emergency-budget-")}
    assert roles == {"roles/secretmanager.secretAccessor", "roles/secretmanager.secretVersionAdder"}
    assert one(prod_plan, "gcp:pubsub/topicIAMMember:TopicIAMMember", "emergency-budget-billing-publishes")["inputs"][
        "member"] == "serviceAccount:billing-budget-alert@system.gserviceaccount.com"


def test_verification_config_errors_name_their_keys():
    cfg = stack_config("prod")
    cfg["netra:verification"] = {
        "loadTest": {"image": "us-central1-docker.pkg.dev/p/netra/loadtest:main", "users": 0,
                     "thinkTimeSeconds": [3, 1], "env": {"DB_PASSWORD": "x"}},
    }
    problems = config_problems(cfg)
    assert "netra:verification.loadTest.users" in problems
    assert "netra:verification.loadTest.thinkTimeSeconds" in problems
    assert "netra:verification.loadTest.env.DB_PASSWORD" in problems
    cfg["netra:verification"] = {"loadTest": {"image": "us-central1-docker.pkg.dev/p/netra/loadtest:main"}}
    assert "must be pinned by digest in prod" in config_problems(cfg)["netra:verification.loadTest.image"]
    staging = stack_config("staging")
    staging["netra:verification"]["emergencyBudget"] = {"maxHourlyCostUsd": 100}
    assert "needs netra:observability.budget" in config_problems(staging, "staging")["netra:verification.emergencyBudget"]
