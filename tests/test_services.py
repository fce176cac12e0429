"""Cloud Run services of both stacks, planned offline with the real program (inventory style)."""
from __future__ import annotations

import pytest

from .conftest import ledger_stamped, one, plan_of, resources_of

RUN = "gcp:cloudrunv2/service:Service"
SA = "gcp:serviceaccount/account:Account"
SEED_INSTANCES = {"frontend": (2, 100), "backend": (2, 100), "auth": (2, 50)}


@pytest.mark.parametrize("key", sorted(SEED_INSTANCES))
def test_prod_instances_follow_the_seed(prod_plan, key):
    scaling = one(prod_plan, RUN, key)["inputs"]["template"]["scaling"]
    assert (scaling["minInstanceCount"], scaling["maxInstanceCount"]) == SEED_INSTANCES[key]


@pytest.mark.parametrize("key", sorted(SEED_INSTANCES))
def test_staging_is_smaller(staging_plan, prod_plan, key):
    s = one(staging_plan, RUN, key)["inputs"]["template"]["scaling"]
    p = one(prod_plan, RUN, key)["inputs"]["template"]["scaling"]
    assert s["maxInstanceCount"] < p["maxInstanceCount"] and s["minInstanceCount"] < p["minInstanceCount"]


@pytest.mark.parametrize("plan_name,env", [("prod_plan", "prod"), ("staging_plan", "staging")])
def test_every_service_shape(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    assert {r["name"] for r in resources_of(plan, RUN)} - {"grafana"} == set(SEED_INSTANCES)  # grafana: test_analytics
    for key in SEED_INSTANCES:
        svc = one(plan, RUN, key)["inputs"]
        sa = one(plan, SA, f"{key}-sa")["inputs"]
        tpl = svc["template"]
        container = tpl["containers"][0]
        assert svc["name"] == f"netra-{key}-{env}"
        assert tpl["serviceAccount"] == f"{sa['accountId']}@{sa['project']}.iam.gserviceaccount.com"
        assert sa["accountId"] == f"netra-{key}-{env}"  # dedicated, one per service
        assert tpl["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
        assert container["startupProbe"]["httpGet"]["path"] and container["livenessProbe"]["httpGet"]["path"]
        assert svc["labels"] == {"env": env, "service": key, "cost-center": "llm-platform", "managed-by": "pulumi"}
        assert svc["deletionProtection"] is (env == "prod")
        assert svc["template"]["revision"].startswith(svc["name"] + "-")
        assert all(t["type"] == "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION" for t in svc["traffics"])
        env_names = {e["name"] for e in container["envs"]}
        assert {"TOKEN_OPTIMIZATION_ENABLED", "LLM_PRICING_GPT4_INPUT", "TOKEN_SESSION_TTL_MINUTES"} <= env_names


@pytest.mark.parametrize("plan_name", ["prod_plan", "staging_plan"])
def test_backend_is_ready_for_websockets(request, plan_name):
    tpl = one(request.getfixturevalue(plan_name), RUN, "backend")["inputs"]["template"]
    assert tpl["timeout"] == "3600s" and tpl["sessionAffinity"] is True


def test_prod_images_are_pinned(prod_plan):
    for r in resources_of(prod_plan, RUN):
        assert "@sha256:" in r["inputs"]["template"]["containers"][0]["image"]


def test_outputs_per_service(prod_plan):
    out = prod_plan["outputs"]
    assert out["gcpProject"] == "netra-production" and out["stages"] == [0, 10, 50, 100]
    for key in SEED_INSTANCES:
        svc = out["services"][key]
        run = one(prod_plan, RUN, key)["inputs"]
        assert svc["url"].startswith("https://")
        assert svc["candidateRevision"] == run["template"]["revision"]
        assert svc["traffic"] == [{"revision": t["revision"], "percent": t["percent"], "tag": t["tag"]} for t in run["traffics"]]


def test_first_deploy_warns_and_gives_candidate_everything(staging_plan):
    assert len(staging_plan["warnings"]) == 3 and all("first deploy" in w for w in staging_plan["warnings"])
    for key in SEED_INSTANCES:
        run = one(staging_plan, RUN, key)["inputs"]
        assert run["traffics"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": run["template"]["revision"],
                                    "percent": 100, "tag": "canary"}]


def approved_at(stage: int, plan: dict) -> dict:
    """Overrides recording that each service's candidate was approved at `stage` (netra:release.approvals)."""
    return {f"netra:release.approvals.{key}": {"revision": svc["candidateRevision"], "stage": stage, "by": "gate",
                                               "evidence": "e" * 64}
            for key, svc in plan["outputs"]["services"].items()}


@pytest.fixture(scope="module")
def stage_plans(prod_plan) -> dict[int, dict]:
    """Each stage, with the candidates approved at 50 % (so every stage up to 100 % is allowed)."""
    return {p: plan_of("prod", ledger_stamped("prod", {"netra:canaryPercent": p, **approved_at(50, prod_plan)})) for p in (0, 10, 50, 100)}


def _without_traffic(doc: dict) -> dict:
    out = {}
    for r in doc["resources"]:
        inputs = {k: v for k, v in r["inputs"].items() if not (r["type"] == RUN and k == "traffics")}
        out[r["urn"]] = (r["type"], r["parent"], inputs)
    return out


def test_stage_change_is_a_traffic_only_diff(stage_plans):
    base = _without_traffic(stage_plans[0])
    for percent, doc in stage_plans.items():
        assert _without_traffic(doc) == base, f"stage {percent} changed something besides traffic"
        for key in SEED_INSTANCES:
            svc = doc["outputs"]["services"][key]
            assert svc["candidateRevision"] == stage_plans[0]["outputs"]["services"][key]["candidateRevision"]
            assert [(t["tag"], t["percent"]) for t in svc["traffic"]] == [("stable", 100 - percent), ("canary", percent)]


def test_rollback_is_stage_zero(stage_plans):
    for key in SEED_INSTANCES:
        traffic = stage_plans[0]["outputs"]["services"][key]["traffic"]
        assert traffic[0]["tag"] == "stable" and traffic[0]["percent"] == 100 and traffic[1]["percent"] == 0


def test_per_service_override_moves_only_that_service(stage_plans, prod_plan):
    doc = plan_of("prod", ledger_stamped("prod", {"netra:services.backend.canaryPercent": 50, **approved_at(10, prod_plan)}))
    assert doc["outputs"]["services"]["backend"]["traffic"] == stage_plans[50]["outputs"]["services"]["backend"]["traffic"]
    assert doc["outputs"]["services"]["auth"]["traffic"] == stage_plans[0]["outputs"]["services"]["auth"]["traffic"]


def test_finalize_keeps_the_template_and_revision(stage_plans):
    full = stage_plans[100]
    overrides = {"netra:canaryPercent": 0, **approved_at(50, full)}
    for key in SEED_INSTANCES:
        overrides[f"netra:services.{key}.stableRevision"] = full["outputs"]["services"][key]["candidateRevision"]
    done = plan_of("prod", ledger_stamped("prod", overrides))
    assert _without_traffic(done) == _without_traffic(full)
    for key in SEED_INSTANCES:
        cand = full["outputs"]["services"][key]["candidateRevision"]
        assert done["outputs"]["services"][key]["traffic"] == [{"revision": cand, "percent": 100, "tag": "stable"}]


def test_template_edit_makes_a_new_candidate_but_never_moves_traffic_to_it(stage_plans):
    doc = plan_of("prod", ledger_stamped("prod", {"netra:canaryPercent": 10, "netra:services.backend.memory": "8Gi",
                                                  **approved_at(50, stage_plans[0])}))
    before = stage_plans[10]["outputs"]["services"]["backend"]
    after = doc["outputs"]["services"]["backend"]
    assert after["candidateRevision"] != before["candidateRevision"]
    assert after["traffic"][0]["revision"] == before["traffic"][0]["revision"]  # the same stable revision
    # the approval names the old candidate: the new one starts at 0 %, never at the live 10 %
    assert [(t["tag"], t["percent"]) for t in after["traffic"]] == [("stable", 100), ("canary", 0)]
    assert any("backend: canaryPercent 10 asked" in w and after["candidateRevision"] in w for w in doc["warnings"])
    assert doc["outputs"]["services"]["auth"]["candidateRevision"] == stage_plans[10]["outputs"]["services"]["auth"]["candidateRevision"]
