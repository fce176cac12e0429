"""The bootstrap program: one component per logical entity (state backend, image repository, CI
identities), all typed pulumi_gcp Args. Run once per project by a person (`cd bootstrap && pulumi up`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_gcp as gcp

from infra import ci_identity

from infra.config.loader import ConfigError

from .config import BootstrapConfig, load_bootstrap_config
from .roles import BILLING_ROLES, committed_roles

# APIs the bootstrap's own resources use (the main stack enables the ones its resources need).
APIS = ("artifactregistry.googleapis.com", "cloudkms.googleapis.com", "cloudresourcemanager.googleapis.com",
        "iam.googleapis.com", "iamcredentials.googleapis.com", "serviceusage.googleapis.com",
        "storage.googleapis.com", "sts.googleapis.com")
IDENTITIES = ("deploy", "gate", "preview")
# Read-only identities: the gate judges metrics and compares live traffic (drift); a PR preview needs the
# project lookup its program makes. State and key access are granted on the bucket and the key.
READ_ROLES = {"gate": ("roles/monitoring.viewer", "roles/run.viewer"), "preview": ("roles/browser",)}
KEY_ROTATION = "7776000s"  # 90 days
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
LOCKS = ".pulumi/locks/"
KEY_RING, KEY = "netra-pulumi", "pulumi-secrets"  # where Pulumi's self-managed backend writes its lock files


@dataclass(frozen=True)
class Api:
    enabled: list[gcp.projects.Service]

    def opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(depends_on=self.enabled)


class StateBackend(pulumi.ComponentResource):
    """The Pulumi state bucket (versioned: a bad state write is rolled back by restoring a version) and the
    KMS key that encrypts the stacks' secrets (`gcpkms://` secrets provider)."""

    def __init__(self, name: str, cfg: BootstrapConfig, api: Api, opts: pulumi.ResourceOptions | None = None):
        super().__init__("netra:bootstrap:StateBackend", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True, retain_on_delete=True))
        self.bucket = gcp.storage.Bucket("state", gcp.storage.BucketArgs(
            name=cfg.bucket, project=cfg.project, location=cfg.region,
            uniform_bucket_level_access=True, public_access_prevention="enforced", force_destroy=False,
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            lifecycle_rules=[gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    with_state="ARCHIVED", days_since_noncurrent_time=cfg.state_noncurrent_days))],
            labels={"managed-by": "pulumi", "purpose": "pulumi-state"}), pulumi.ResourceOptions.merge(kept, api.opts()))
        self.key_ring = gcp.kms.KeyRing("pulumi", gcp.kms.KeyRingArgs(
            name=KEY_RING, project=cfg.project, location=cfg.region), pulumi.ResourceOptions.merge(kept, api.opts()))
        self.key = gcp.kms.CryptoKey("pulumi-secrets", gcp.kms.CryptoKeyArgs(
            name=KEY, key_ring=self.key_ring.id, purpose="ENCRYPT_DECRYPT", rotation_period=KEY_ROTATION,
            labels={"managed-by": "pulumi", "purpose": "pulumi-secrets"}), kept)
        self.backend_url = pulumi.Output.concat("gs://", self.bucket.name)
        # the key's id as the provider returns it (projects/P/locations/L/keyRings/R/cryptoKeys/K), from config
        self.secrets_provider = (f"gcpkms://projects/{cfg.project}/locations/{cfg.region}/keyRings/{KEY_RING}"
                                 f"/cryptoKeys/{KEY}")
        self.register_outputs({"backendUrl": self.backend_url, "secretsProvider": self.secrets_provider})

    def grant(self, identity: str, member: pulumi.Input[str], write: bool) -> None:
        """State read (+ lock files, or full write) and the key's decrypt (+ encrypt) for one identity."""
        child = pulumi.ResourceOptions(parent=self)
        gcp.storage.BucketIAMMember(f"state-{identity}-read", gcp.storage.BucketIAMMemberArgs(
            bucket=self.bucket.name, role="roles/storage.objectViewer", member=member), child)
        if write:
            gcp.storage.BucketIAMMember(f"state-{identity}-write", gcp.storage.BucketIAMMemberArgs(
                bucket=self.bucket.name, role="roles/storage.objectUser", member=member), child)
        else:  # a read-only identity still takes and releases the stack's lock, nothing else
            gcp.storage.BucketIAMMember(f"state-{identity}-locks", gcp.storage.BucketIAMMemberArgs(
                bucket=self.bucket.name, role="roles/storage.objectUser", member=member,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title="pulumi-locks-only", description="lock files of Pulumi's self-managed backend",
                    expression=pulumi.Output.concat(
                        'resource.name.startsWith("projects/_/buckets/', self.bucket.name, f'/objects/{LOCKS}")'))),
                child)
        gcp.kms.CryptoKeyIAMMember(f"key-{identity}", gcp.kms.CryptoKeyIAMMemberArgs(
            crypto_key_id=self.key.id, member=member,
            role="roles/cloudkms.cryptoKeyEncrypterDecrypter" if write else "roles/cloudkms.cryptoKeyDecrypter"),
            child)


class ImageRepository(pulumi.ComponentResource):
    """The Docker repository the services' images are pushed to; tags are immutable, so a digest and its tag
    never part."""

    def __init__(self, name: str, cfg: BootstrapConfig, api: Api, opts: pulumi.ResourceOptions | None = None):
        super().__init__("netra:bootstrap:ImageRepository", name, None, opts)
        self.repository = gcp.artifactregistry.Repository("images", gcp.artifactregistry.RepositoryArgs(
            repository_id=cfg.artifact_repository, project=cfg.project, location=cfg.region, format="DOCKER",
            description="Netra service images (pinned by digest in prod)",
            docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True),
            labels={"managed-by": "pulumi"}),
            pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self, protect=True), api.opts()))
        self.url = f"{cfg.region}-docker.pkg.dev/{cfg.project}/{cfg.artifact_repository}"
        self.register_outputs({"url": self.url})


class CiIdentities(pulumi.ComponentResource):
    """The deploy, gate and preview service accounts, their roles, and the GitHub Workload Identity pool and
    provider whose attribute condition admits only the granted workflows (infra/ci_identity.py)."""

    def __init__(self, name: str, cfg: BootstrapConfig, api: Api, roles: Mapping[str, tuple[str, ...]],
                 project_number: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("netra:bootstrap:CiIdentities", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.accounts = {
            identity: gcp.serviceaccount.Account(identity, gcp.serviceaccount.AccountArgs(
                account_id=f"netra-{identity}", project=cfg.project, display_name=f"Netra CI: {identity}",
                description=f"GitHub Actions {identity} identity (bootstrap/)"),
                pulumi.ResourceOptions.merge(child, api.opts()))
            for identity in IDENTITIES}
        self.members = {identity: sa.email.apply(lambda e: f"serviceAccount:{e}") for identity, sa in self.accounts.items()}
        for role in roles:
            if role in BILLING_ROLES:
                if cfg.billing_account:
                    gcp.billing.AccountIamMember(f"deploy-{role.split('/')[1]}", gcp.billing.AccountIamMemberArgs(
                        billing_account_id=cfg.billing_account, role=role, member=self.members["deploy"]), child)
                continue
            self._project_role("deploy", role, cfg.project, child)
        for identity, read_roles in READ_ROLES.items():
            for role in read_roles:
                self._project_role(identity, role, cfg.project, child)
        self.pool = gcp.iam.WorkloadIdentityPool("github", gcp.iam.WorkloadIdentityPoolArgs(
            workload_identity_pool_id="github", project=cfg.project, display_name="GitHub Actions",
            description=f"workflows of {cfg.github_repository}"), pulumi.ResourceOptions.merge(child, api.opts()))
        self.provider = gcp.iam.WorkloadIdentityPoolProvider("github-actions", gcp.iam.WorkloadIdentityPoolProviderArgs(
            workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github-actions", project=cfg.project,
            display_name="GitHub Actions OIDC", attribute_mapping=ci_identity.attribute_mapping(),
            attribute_condition=ci_identity.attribute_condition(cfg.github_repository, cfg.github_repository_id),
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_ISSUER)), child)
        pool_path = pulumi.Output.concat("projects/", project_number, "/locations/global/workloadIdentityPools/github")
        for identity, sa in self.accounts.items():
            for env in ci_identity.identity_environments(identity):
                gcp.serviceaccount.IAMMember(f"{identity}-wif-{env}", gcp.serviceaccount.IAMMemberArgs(
                    service_account_id=sa.name, role="roles/iam.workloadIdentityUser",
                    member=pool_path.apply(lambda pool, env=env: f"principalSet://iam.googleapis.com/{pool}"
                                                                 f"/attribute.environment/{env}")), child)
        self.register_outputs({})

    def _project_role(self, identity: str, role: str, project: str, opts: pulumi.ResourceOptions) -> None:
        gcp.projects.IAMMember(f"{identity}-{role.split('/')[1]}", gcp.projects.IAMMemberArgs(
            project=project, role=role, member=self.members[identity]), opts)


def main(roles: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """The Pulumi program. `roles`: the deploy identity's roles; by default the committed
    bootstrap/deploy-roles.json (generated from the main plans' resource types, checked by the tests)."""
    from infra.program import pulumi_config

    try:
        cfg = load_bootstrap_config(pulumi_config())
    except ConfigError as e:  # Pulumi prints a RunError without a traceback; nothing is registered
        raise pulumi.RunError(f"invalid bootstrap config ({len(e.problems)} problem(s)):\n{e}") from None
    roles = committed_roles() if roles is None else roles
    enabled = [gcp.projects.Service(api.split(".")[0], gcp.projects.ServiceArgs(
        project=cfg.project, service=api, disable_on_destroy=False), pulumi.ResourceOptions(retain_on_delete=True))
        for api in APIS]
    api = Api(enabled)
    number = gcp.organizations.get_project_output(project_id=cfg.project).number
    state = StateBackend("state", cfg, api)
    images = ImageRepository("images", cfg, api)
    ci = CiIdentities("ci", cfg, api, roles, number)
    for identity, write in (("deploy", True), ("gate", False), ("preview", False)):
        state.grant(identity, ci.members[identity], write)
    # The deploy identity pushes images (CI builds) and reads them; nobody else writes.
    gcp.artifactregistry.RepositoryIamMember("images-deploy-writer", gcp.artifactregistry.RepositoryIamMemberArgs(
        repository=images.repository.name, location=cfg.region, project=cfg.project,
        role="roles/artifactregistry.writer", member=ci.members["deploy"]), pulumi.ResourceOptions(parent=images))
    # What the GitHub repository's variables and `pulumi login` / `pulumi stack init` need.
    pulumi.export("PULUMI_BACKEND_URL", state.backend_url)
    pulumi.export("secretsProvider", state.secrets_provider)
    pulumi.export("imageRepository", images.url)
    pulumi.export("GCP_WORKLOAD_IDENTITY_PROVIDER", ci.provider.name)
    for identity, sa in ci.accounts.items():
        pulumi.export(f"GCP_{identity.upper()}_SERVICE_ACCOUNT", sa.email)
    pulumi.export("deployRoles", {role: list(types) for role, types in roles.items()})
