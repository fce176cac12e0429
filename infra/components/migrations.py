"""The schema-migration Cloud Run Job: reads migrations/ from a bucket and applies them with infra/migrate.py.

The rollout runs one execution before the first canary stage (stack output `migrationJob`), so the
schema is ahead of every revision that might need it; migrations are additive and idempotent, so the
stable revision keeps working on the new schema.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from infra import migrate
from infra.config.platform import MigrationsConfig, secret_id

from . import database
from .site import Site

COMPONENT_TYPE = "netra:platform:Migrations"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = "migrations"
MOUNT_PATH = "/migrations"
# The migration user's own password (not the services'), the host, and the server CA it verifies against.
SECRETS_READ = ("db-host", "db-migrate-password", "db-ca")


def job_name(environment: str) -> str:
    return f"netra-migrate-{environment}"


@dataclass(frozen=True)
class MigrationsArgs:
    """The runner image and limits, the database settings it reads (database.client_env without a pool),
    the VPC it reaches Cloud SQL through, the bucket holding migrations/, and what it must wait for
    (the secrets it reads and the egress subnet)."""

    site: Site
    config: MigrationsConfig
    db_env: tuple[tuple[str, str], ...]
    network: str
    subnetwork: str
    bucket: pulumi.Input[str]
    waits_for: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Migrations(pulumi.ComponentResource):
    """Outputs: `name`, `region`, `job`, `service_account`, `objects` (the uploaded SQL files)."""

    def __init__(self, name: str, args: MigrationsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        site, mc = args.site, args.config
        self.name = job_name(site.environment)
        self.region = site.region
        found = migrate.discover(PROJECT_ROOT / MIGRATIONS_DIR)

        self.service_account = gcp.serviceaccount.Account(
            "migrate-sa",
            gcp.serviceaccount.AccountArgs(
                account_id=self.name, project=site.project, display_name=f"Cloud Run job {self.name}",
                description="Applies schema migrations: reads the migrations bucket and the database credentials"),
            opts=child,
        )
        member = self.service_account.member
        grants: list[pulumi.Resource] = [
            gcp.storage.BucketIAMMember(
                "migrate-reads-migrations",
                gcp.storage.BucketIAMMemberArgs(bucket=args.bucket, role="roles/storage.objectViewer",
                                                member=member),
                opts=child),
        ]
        for key in SECRETS_READ:
            grants.append(gcp.secretmanager.SecretIamMember(
                f"migrate-reads-{key}",
                gcp.secretmanager.SecretIamMemberArgs(
                    project=site.project, secret_id=secret_id(site.environment, key),
                    role="roles/secretmanager.secretAccessor", member=member),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.waits_for))))

        self.objects = [
            gcp.storage.BucketObject(
                path.name,
                gcp.storage.BucketObjectArgs(
                    bucket=args.bucket, name=path.name, content_type="application/sql",
                    source=pulumi.FileAsset(f"{MIGRATIONS_DIR}/{path.name}")),
                opts=child)
            for m in found for path in (m.up, m.down)
        ]
        env = [run.JobTemplateTemplateContainerEnvArgs(name=k, value=v)
               for k, v in args.db_env]
        env.append(run.JobTemplateTemplateContainerEnvArgs(name="MIGRATIONS_DIGEST", value=migrate.digest(found)))
        env += [
            run.JobTemplateTemplateContainerEnvArgs(
                name=var, value_source=run.JobTemplateTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=run.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=secret_id(site.environment, key), version="latest")))
            for var, key in (("DB_HOST", "db-host"), ("DB_PASSWORD", "db-migrate-password"))
        ]
        self.job = run.Job(
            "migrate",
            run.JobArgs(
                name=self.name, project=site.project, location=site.region, launch_stage="GA",
                deletion_protection=site.protected,
                labels=site.labels(service="migrate"),
                template=run.JobTemplateArgs(
                    task_count=1, parallelism=1,
                    template=run.JobTemplateTemplateArgs(
                        service_account=f"{self.name}@{site.project}.iam.gserviceaccount.com",
                        execution_environment="EXECUTION_ENVIRONMENT_GEN2",  # Cloud Storage volumes need gen2
                        max_retries=mc.max_retries,
                        timeout=f"{mc.timeout_seconds}s",
                        vpc_access=run.JobTemplateTemplateVpcAccessArgs(
                            egress="PRIVATE_RANGES_ONLY",
                            network_interfaces=[run.JobTemplateTemplateVpcAccessNetworkInterfaceArgs(
                                network=args.network, subnetwork=args.subnetwork)]),
                        volumes=[
                            run.JobTemplateTemplateVolumeArgs(
                                name="migrations",
                                gcs=run.JobTemplateTemplateVolumeGcsArgs(bucket=args.bucket, read_only=True)),
                            run.JobTemplateTemplateVolumeArgs(
                                name="db-ca",
                                secret=run.JobTemplateTemplateVolumeSecretArgs(
                                    secret=secret_id(site.environment, "db-ca"), default_mode=0o444,
                                    items=[run.JobTemplateTemplateVolumeSecretItemArgs(
                                        path=database.CA_FILE, version="latest", mode=0o444)]))],
                        containers=[run.JobTemplateTemplateContainerArgs(
                            image=mc.image,
                            args=["up", "--dir", MOUNT_PATH],
                            envs=env,
                            volume_mounts=[
                                run.JobTemplateTemplateContainerVolumeMountArgs(name="migrations", mount_path=MOUNT_PATH),
                                run.JobTemplateTemplateContainerVolumeMountArgs(name="db-ca",
                                                                                mount_path=database.CA_MOUNT_PATH)],
                            resources=run.JobTemplateTemplateContainerResourcesArgs(limits={"cpu": "1", "memory": "512Mi"}),
                        )],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, *grants, *self.objects,
                                                                  *args.waits_for]),
        )
        self.register_outputs({"name": self.name, "region": self.region})

    def summary(self) -> dict:
        """The `migrationJob` stack output the rollout reads."""
        return {"name": self.name, "region": self.region}
