import dataclasses

import pytest

from infra.release import model as release
from infra.components.service import (ACCOUNT_ID_MAX, CloudRunService, CloudRunServiceArgs, SecretEnv, ServiceWiring,
                                      revision_spec, service_account_id)
from infra.config import ServiceConfig

from .conftest import PROD, STAGING, register

RUN = "gcp:cloudrunv2/service:Service"
SA = "gcp:serviceaccount/account:Account"
GRANT = "gcp:secretmanager/secretIamMember:SecretIamMember"
IMAGE = "us-docker.pkg.dev/p/r/api@sha256:" + "a" * 64


def config(**kw) -> ServiceConfig:
    return ServiceConfig.model_validate({"image": IMAGE, **kw})


def args(key_config=None, site=PROD, canary=0, **wiring) -> CloudRunServiceArgs:
    return CloudRunServiceArgs(site=site, config=key_config or config(), canary_percent=canary,
                               app_env=(("APP", "1"),), wiring=ServiceWiring(**wiring))


def build(key="api", a=None):
    return register(lambda: {"summary": CloudRunService(key, a or args()).summary()})


def test_service_account_template_and_labels():
    reg = build("api", args(config(minInstances=2, maxInstances=20, cpu="2", memory="1Gi"),
                            vpc_network="vpc", vpc_subnetwork="sub"))
    run = reg.one(RUN)
    assert run["name"] == "netra-api-prod" and run["deletionProtection"] is True
    assert run["labels"] == {"env": "prod", "service": "api", "cost-center": "llm-platform", "managed-by": "pulumi"}
    tpl = run["template"]
    assert tpl["scaling"] == {"minInstanceCount": 2, "maxInstanceCount": 20}
    assert tpl["serviceAccount"] == "netra-api-prod@netra-test.iam.gserviceaccount.com" == reg.outputs["summary"]["serviceAccount"]
    assert tpl["vpcAccess"]["networkInterfaces"] == [{"network": "vpc", "subnetwork": "sub"}]
    container = tpl["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {e["name"]: e.get("value") for e in container["envs"]}["APP"] == "1"
    assert reg.one(SA)["accountId"] == "netra-api-prod"


def test_revision_name_is_the_hash_of_the_spec_and_traffic_names_revisions():
    a = args(config(stableRevision="netra-api-prod-00000000"), canary=10)
    candidate = release.candidate_revision("netra-api-prod", revision_spec("api", a))
    a = dataclasses.replace(a, approval=release.Approval(candidate, 0, "gate", "0" * 64))  # passed stage 0
    reg = build("api", a)
    run = reg.one(RUN)
    assert run["template"]["revision"] == candidate == reg.outputs["summary"]["candidateRevision"]
    assert run["traffics"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "netra-api-prod-00000000", "percent": 90, "tag": "stable"},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": candidate, "percent": 10, "tag": "canary"}]


def test_revision_depends_only_on_this_services_args():
    base = args(config(memory="1Gi"))
    same = revision_spec("api", base)
    # what is not in the template never renames it: traffic, stable revision, ingress, routes, public
    for other in (dataclasses.replace(base, canary_percent=50),
                  dataclasses.replace(base, config=config(memory="1Gi", stableRevision="netra-api-prod-1",
                                                          routes=["/x/*"], public=True)),
                  dataclasses.replace(base, wiring=ServiceWiring(ingress="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"))):
        assert revision_spec("api", other) == same
    assert revision_spec("api", dataclasses.replace(base, config=config(memory="2Gi"))) != same


def test_a_share_above_zero_needs_an_approval_of_this_revision():
    reg = build("api", args(config(stableRevision="netra-api-prod-00000000"), canary=10))
    assert [t["percent"] for t in reg.one(RUN)["traffics"]] == [100, 0]
    assert any("has no approval" in w for w in reg.warnings)


def test_first_deploy_gives_the_candidate_everything_with_a_warning():
    reg = build("api", args(site=STAGING, canary=10))
    assert [t["percent"] for t in reg.one(RUN)["traffics"]] == [100]
    assert any("first deploy" in w for w in reg.warnings) and reg.one(RUN)["deletionProtection"] is False


def test_reads_exactly_the_secrets_it_is_wired_with():
    reg = build("api", args(secret_env=(SecretEnv("DB_PASSWORD", "prod-db-password"),)))
    assert reg.one(GRANT)["secretId"] == "prod-db-password" and reg.one(GRANT)["role"] == "roles/secretmanager.secretAccessor"
    env = {e["name"]: e for e in reg.one(RUN)["template"]["containers"][0]["envs"]}
    assert env["DB_PASSWORD"]["valueSource"]["secretKeyRef"] == {"secret": "prod-db-password", "version": "latest"}


def test_worker_ingress_is_internal_by_default():
    assert build().one(RUN)["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"


@pytest.mark.parametrize("key", ["frontend", "notification-dispatcher", "a" * 40])
def test_service_account_ids_fit_30_characters(key):
    account = service_account_id(key, "staging")
    assert 6 <= len(account) <= ACCOUNT_ID_MAX and account[0].isalpha() and not account.endswith("-")
    if len(f"netra-{key}-staging") <= ACCOUNT_ID_MAX:
        assert account == f"netra-{key}-staging"  # the seed's names stay
