"""The bootstrap program (bootstrap/, infra/bootstrap/): planned offline with the main stack's mocks and
recorder, like the main stack. What a new project gets before its first `pulumi up`, and that the deploy
identity's roles are exactly what the main program's resource types need."""
from __future__ import annotations

import json

import pytest

from infra.bootstrap import roles
from infra.bootstrap.cli import plan
from infra.ci_identity import attribute_condition
from infra.config import ConfigError

from .conftest import ROOT, cli
from .test_workflows import _claims, _evaluate

REPO = "my-org/netra-platform"


@pytest.fixture(scope="module")
def run():
    return plan("example")


def _of(run, type_token: str) -> list:
    return [r for r in run.resources if r.type == type_token]


def _one(run, type_token: str, name: str):
    found = [r for r in _of(run, type_token) if r.name == name]
    assert len(found) == 1, (type_token, name, [r.name for r in _of(run, type_token)])
    return found[0]


def test_state_bucket_is_versioned_private_and_kept(run):
    bucket = _one(run, "gcp:storage/bucket:Bucket", "state").inputs
    assert bucket["name"] == "my-netra-project-pulumi-state"
    assert bucket["versioning"] == {"enabled": True}
    assert bucket["uniformBucketLevelAccess"] is True and bucket["publicAccessPrevention"] == "enforced"
    assert bucket["forceDestroy"] is False
    rule = bucket["lifecycleRules"][0]
    assert rule["condition"]["withState"] == "ARCHIVED" and rule["condition"]["daysSinceNoncurrentTime"] == 90


def test_secrets_key_rotates_and_the_provider_url_names_it(run):
    key = _one(run, "gcp:kms/cryptoKey:CryptoKey", "pulumi-secrets").inputs
    assert key["purpose"] == "ENCRYPT_DECRYPT" and key["rotationPeriod"] == "7776000s"
    assert run.outputs["secretsProvider"] == ("gcpkms://projects/my-netra-project/locations/us-central1/keyRings/"
                                              "netra-pulumi/cryptoKeys/pulumi-secrets")
    assert run.outputs["PULUMI_BACKEND_URL"] == "gs://my-netra-project-pulumi-state"


def test_image_repository_has_immutable_tags(run):
    repo = _one(run, "gcp:artifactregistry/repository:Repository", "images").inputs
    assert repo["format"] == "DOCKER" and repo["dockerConfig"] == {"immutableTags": True}
    assert run.outputs["imageRepository"] == "us-central1-docker.pkg.dev/my-netra-project/netra"


def test_every_main_program_type_has_a_deploy_role_and_every_role_a_type():
    """Least privilege against the plans: the committed roles are exactly deploy_roles(types of both plans)."""
    types = roles.planned_types()
    computed = roles.deploy_roles(types)
    assert json.loads((ROOT / "bootstrap/deploy-roles.json").read_text()) == {k: list(v) for k, v in computed.items()}, \
        "bootstrap/deploy-roles.json is stale: run `make docs-reference`"
    gcp_types = {t for t in types if t.startswith("gcp:")}
    covered = {t for ts in computed.values() for t in ts}
    assert gcp_types <= covered
    assert not roles.FORBIDDEN & set(computed)
    assert all(ts for ts in computed.values())  # no role without a planned type that needs it


def test_a_new_type_without_a_role_is_refused_by_name():
    with pytest.raises(roles.UnmappedType, match="gcp:bigquery/dataset:Dataset"):
        roles.deploy_roles(["gcp:bigquery/dataset:Dataset", "gcp:sql/user:User"])
    assert roles.deploy_roles(["random:index/randomPassword:RandomPassword"]) == {}
    assert roles.deploy_roles(["gcp:cloudrunv2/service:Service"]) == {
        "roles/iam.serviceAccountUser": ("gcp:cloudrunv2/service:Service",),
        "roles/run.admin": ("gcp:cloudrunv2/service:Service",)}


def test_the_deploy_identity_gets_the_committed_roles_and_nothing_basic(run):
    members = _of(run, "gcp:projects/iAMMember:IAMMember")
    deploy = {m.inputs["role"] for m in members if m.inputs["member"].startswith("serviceAccount:netra-deploy@")}
    committed = set(roles.committed_roles()) - roles.BILLING_ROLES  # no billingAccount in the example stack
    assert deploy == committed
    granted = {m.inputs["role"] for m in members}
    assert not granted & {"roles/owner", "roles/editor", "roles/viewer"}
    gate = {m.inputs["role"] for m in members if m.inputs["member"].startswith("serviceAccount:netra-gate@")}
    preview = {m.inputs["role"] for m in members if m.inputs["member"].startswith("serviceAccount:netra-preview@")}
    assert gate == {"roles/monitoring.viewer", "roles/run.viewer"} and preview == {"roles/browser"}


def test_read_only_identities_touch_only_lock_files_and_only_decrypt(run):
    locks = _one(run, "gcp:storage/bucketIAMMember:BucketIAMMember", "state-preview-locks").inputs
    assert locks["condition"]["expression"] == \
        'resource.name.startsWith("projects/_/buckets/my-netra-project-pulumi-state/objects/.pulumi/locks/")'
    keys = {r.name: r.inputs["role"] for r in _of(run, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")}
    assert keys == {"key-deploy": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
                    "key-gate": "roles/cloudkms.cryptoKeyDecrypter", "key-preview": "roles/cloudkms.cryptoKeyDecrypter"}
    writers = {r.name for r in _of(run, "gcp:storage/bucketIAMMember:BucketIAMMember") if "condition" not in r.inputs
               and r.inputs["role"] == "roles/storage.objectUser"}
    assert writers == {"state-deploy-write"}


def test_workload_identity_provider_admits_only_the_granted_workflows(run):
    provider = _one(run, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider", "github-actions").inputs
    condition = provider["attributeCondition"]
    assert condition == attribute_condition(REPO, "123456789")
    assert provider["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    claims = _claims("deploy.yml", repository=REPO, repository_id="123456789",
                     workflow_ref=f"{REPO}/.github/workflows/deploy.yml@refs/heads/main")
    assert _evaluate(condition, claims) is True
    assert _evaluate(condition, {**claims, "ref": "refs/heads/feature"}) is False
    assert _evaluate(condition, {**claims, "repository": "fork/netra-platform"}) is False
    bindings = {r.name: r.inputs["member"] for r in _of(run, "gcp:serviceaccount/iAMMember:IAMMember")}
    preview = {n for n in bindings if n.startswith("preview-")}
    assert preview == {"preview-wif-prod-preview", "preview-wif-staging-preview"}
    assert all(m.startswith("principalSet://iam.googleapis.com/projects/") for m in bindings.values())
    assert run.outputs["GCP_WORKLOAD_IDENTITY_PROVIDER"].endswith("/workloadIdentityPools/github/providers/github-actions")


def test_bad_config_names_each_key_and_registers_nothing(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "bootstrap/Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.bad.yaml").write_text(
        "config:\n  gcp:project: Not_A_Project\n  netra-bootstrap:githubRepositoryId: abc\n")
    with pytest.raises(ConfigError) as e:
        plan("bad", tmp_path)
    keys = {p.key for p in e.value.problems}
    assert keys == {"gcp:project", "netra-bootstrap:githubRepository", "netra-bootstrap:githubRepositoryId"}


def test_cli_plans_the_example_and_refuses_an_unknown_stack():
    r = cli("bootstrap", "--stack", "example")
    assert r.returncode == 0 and "roles/run.admin" in r.stdout and "gcpkms://projects/my-netra-project" in r.stdout
    r = cli("bootstrap", "--stack", "nope")
    assert r.returncode == 2 and "known stacks: example" in r.stderr


def test_preflight_can_test_every_deploy_role():
    missing = set(roles.committed_roles()) - set(roles.ROLE_PERMISSION)
    assert not missing, f"add a representative permission to infra/bootstrap/roles.py ROLE_PERMISSION for {missing}"
    mapped = set(roles.MODULE_ROLE.values()) | set(roles.TYPE_ROLE.values()) | set(roles.COMPUTE_ROLE) | {roles.ACT_AS}
    assert mapped <= set(roles.ROLE_PERMISSION)
