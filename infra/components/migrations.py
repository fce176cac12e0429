"""The schema-migration Cloud Run Job: reads migrations/ from a bucket and applies them with infra/migrate.py.

The rollout runs one execution before the first canary stage (stack output `migrationJob`), so the
schema is ahead of every revision that might need it; migrations are additive and idempotent, so the
stable revision keeps working on the new schema.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from infra import migrate
from infra.config import StackConfig
from infra.config.platform import secret_id

from . import database

COMPONENT_TYPE = "netra:platform:Migrations"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = "migrations"
MOUNT_PATH = "/migrations"
SECRETS_READ = ("db-host", "db-password")


def job_name(cfg: StackConfig) -> str:
    return f"netra-migrate-{cfg.environment}"


class Migrations(pulumi.ComponentResource):
    def __init__(self, cfg: StackConfig, network, storage, secrets, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, "migrations", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        mc = cfg.platform.migrations
        self.name = job_name(cfg)
        self.region = cfg.region
        found = migrate.discover(PROJECT_ROOT / MIGRATIONS_DIR)

        self.service_account = gcp.serviceaccount.Account(
            "migrate-sa",
            gcp.serviceaccount.AccountArgs(
                account_id=self.name, project=cfg.project, display_name=f"Cloud Run job {self.name}",
                description="Applies schema migrations: reads the migrations bucket and the database credentials"),
            opts=child,
        )
        member = self.service_account.member
        grants: list[pulumi.Resource] = [
            gcp.storage.BucketIAMMember(
                "migrate-reads-migrations",
                gcp.storage.BucketIAMMemberArgs(bucket=storage.migrations.name, role="roles/storage.objectViewer",
                                                member=member),
                opts=child),
        ]
        for key in SECRETS_READ:
            grants.append(gcp.secretmanager.SecretIamMember(
                f"migrate-reads-{key}",
                gcp.secretmanager.SecretIamMemberArgs(
                    project=cfg.project, secret_id=secret_id(cfg.environment, key),
                    role="roles/secretmanager.secretAccessor", member=member),
                opts=pulumi.ResourceOptions(parent=self, depends_on=secrets.resources([key]))))

        self.objects = [
            gcp.storage.BucketObject(
                path.name,
                gcp.storage.BucketObjectArgs(
                    bucket=storage.migrations.name, name=path.name, content_type="application/sql",
                    source=pulumi.FileAsset(f"{MIGRATIONS_DIR}/{path.name}")),
                opts=child)
            for m in found for path in (m.up, m.down)
        ]
        env = [run.JobTemplateTemplateContainerEnvArgs(name=k, value=v)
               for k, v in database.client_env(cfg) if k != "DB_POOL_SIZE"]
        env.append(run.JobTemplateTemplateContainerEnvArgs(name="MIGRATIONS_DIGEST", value=migrate.digest(found)))
        env += [
            run.JobTemplateTemplateContainerEnvArgs(
                name=var, value_source=run.JobTemplateTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=run.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=secret_id(cfg.environment, key), version="latest")))
            for var, key in (("DB_HOST", "db-host"), ("DB_PASSWORD", "db-password"))
        ]
        self.job = run.Job(
            "migrate",
            run.JobArgs(
                name=self.name, project=cfg.project, location=cfg.region, launch_stage="GA",
                deletion_protection=cfg.is_prod,
                labels={"env": cfg.environment, "cost-center": cfg.cost_center, "managed-by": "pulumi",
                        "service": "migrate"},
                template=run.JobTemplateArgs(
                    task_count=1, parallelism=1,
                    template=run.JobTemplateTemplateArgs(
                        service_account=f"{self.name}@{cfg.project}.iam.gserviceaccount.com",
                        execution_environment="EXECUTION_ENVIRONMENT_GEN2",  # Cloud Storage volumes need gen2
                        max_retries=mc.max_retries,
                        timeout=f"{mc.timeout_seconds}s",
                        vpc_access=run.JobTemplateTemplateVpcAccessArgs(
                            egress="PRIVATE_RANGES_ONLY",
                            network_interfaces=[run.JobTemplateTemplateVpcAccessNetworkInterfaceArgs(
                                network=network.name, subnetwork=network.subnet_name)]),
                        volumes=[run.JobTemplateTemplateVolumeArgs(
                            name="migrations",
                            gcs=run.JobTemplateTemplateVolumeGcsArgs(bucket=storage.migrations.name, read_only=True))],
                        containers=[run.JobTemplateTemplateContainerArgs(
                            image=mc.image,
                            args=["up", "--dir", MOUNT_PATH],
                            envs=env,
                            volume_mounts=[run.JobTemplateTemplateContainerVolumeMountArgs(
                                name="migrations", mount_path=MOUNT_PATH)],
                            resources=run.JobTemplateTemplateContainerResourcesArgs(limits={"cpu": "1", "memory": "512Mi"}),
                        )],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, *grants, *self.objects,
                                                                  network.subnet]),
        )
        self.register_outputs({"name": self.name, "region": self.region})

    def summary(self) -> dict:
        """The `migrationJob` stack output the rollout reads."""
        return {"name": self.name, "region": self.region}
