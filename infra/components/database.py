"""Cloud SQL for PostgreSQL 15 (seed: HA, connection pooling): private IP only, SSL enforced, CIS flags."""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.config import StackConfig
from infra.config.platform import db_clients, pool_size

COMPONENT_TYPE = "netra:platform:Database"
DATABASE_VERSION = "POSTGRES_15"
PORT = 5432
# CIS GCP 6.2.x and the seed's "audit everything that changes the schema or roles".
LOGGING_FLAGS = (
    ("log_connections", "on"),
    ("log_hostname", "on"),
    ("log_disconnections", "on"),
    ("log_checkpoints", "on"),
    ("log_lock_waits", "on"),
    ("log_min_duration_statement", "-1"),
    ("log_min_messages", "warning"),
    ("log_min_error_statement", "error"),
    ("log_error_verbosity", "default"),
    ("log_statement", "ddl"),
    ("log_temp_files", "0"),
    ("cloudsql.enable_pgaudit", "on"),
)


def database_flags(cfg: StackConfig) -> list[tuple[str, str]]:
    db = cfg.platform.database
    return [*LOGGING_FLAGS, ("pgaudit.log", db.pgaudit_log), ("max_connections", str(db.max_connections))]


def client_env(cfg: StackConfig) -> tuple[tuple[str, str], ...]:
    """Plain settings a database client reads besides DB_HOST / DB_PASSWORD (which come from secrets)."""
    db = cfg.platform.database
    return (
        ("DB_NAME", db.database_name),
        ("DB_USER", db.user_name),
        ("DB_PORT", str(PORT)),
        ("DB_SSLMODE", "require"),
        ("DB_POOL_SIZE", str(pool_size(db, db_clients(cfg.services)))),
    )


class Database(pulumi.ComponentResource):
    """The instance, the application database and its user (random password, kept in Secret Manager)."""

    def __init__(self, cfg: StackConfig, network, backups_bucket: gcp.storage.Bucket,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, "database", None, opts)
        db = cfg.platform.database
        child = pulumi.ResourceOptions(parent=self)
        self.instance_name = db.instance(cfg.environment)
        protect = cfg.is_prod

        settings = gcp.sql.DatabaseInstanceSettingsArgs(
            tier=db.tier,
            edition=db.edition,
            availability_type=db.availability_type,
            disk_type="PD_SSD",
            disk_size=db.disk_size_gb,
            disk_autoresize=True,
            deletion_protection_enabled=protect,  # the API's own guard (also blocks console/gcloud deletes)
            user_labels={"env": cfg.environment, "cost-center": cfg.cost_center, "managed-by": "pulumi"},
            ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                ipv4_enabled=False,
                private_network=network.vpc.id,
                allocated_ip_range=network.psa_range.name,
                ssl_mode=db.ssl_mode,
            ),
            backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                enabled=True,
                start_time=db.backups.start_time,
                point_in_time_recovery_enabled=True,
                transaction_log_retention_days=db.backups.transaction_log_retention_days,
                backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                    retained_backups=db.backups.retained_backups, retention_unit="COUNT"),
            ),
            maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
                day=db.maintenance.day_number, hour=db.maintenance.hour, update_track="stable"),
            insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(
                query_insights_enabled=True, query_string_length=1024, record_application_tags=True,
                record_client_address=False),
            database_flags=[gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(name=n, value=v)
                            for n, v in database_flags(cfg)],
        )
        self.instance = gcp.sql.DatabaseInstance(
            "postgres",
            gcp.sql.DatabaseInstanceArgs(
                name=self.instance_name, project=cfg.project, region=cfg.region,
                database_version=DATABASE_VERSION, deletion_protection=protect, settings=settings),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[network.connection]),
        )
        self.database = gcp.sql.Database(
            "app",
            gcp.sql.DatabaseArgs(name=db.database_name, instance=self.instance.name, project=cfg.project),
            opts=child,
        )
        self.password = random.RandomPassword(
            "app-password", random.RandomPasswordArgs(length=32, special=False, min_upper=4, min_lower=4, min_numeric=4),
            opts=child,
        )
        self.user = gcp.sql.User(
            "app",
            gcp.sql.UserArgs(
                name=db.user_name, instance=self.instance.name, project=cfg.project, type="BUILT_IN",
                password=self.password.result,
                # PostgreSQL refuses to drop a role that owns objects; the instance takes it along on teardown
                deletion_policy="ABANDON"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.database]),
        )
        # `gcloud sql export` writes with the instance's own service agent: it may create objects in
        # the backups bucket (not read, not delete; the bucket's retention policy guards the rest).
        self.export_grant = gcp.storage.BucketIAMMember(
            "exports-to-backups",
            gcp.storage.BucketIAMMemberArgs(
                bucket=backups_bucket.name, role="roles/storage.objectCreator",
                member=self.instance.service_account_email_address.apply(lambda e: f"serviceAccount:{e}")),
            opts=child,
        )
        self.private_ip = self.instance.private_ip_address
        self.register_outputs({"instance": self.instance_name, "connectionName": self.instance.connection_name})
