"""Cloud SQL for PostgreSQL 15 (seed: HA, connection pooling): private IP only, SSL enforced, CIS flags."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.config.platform import DatabaseConfig

from .site import Site

COMPONENT_TYPE = "netra:platform:Database"
INSTANCE_TYPE = "gcp:sql/databaseInstance:DatabaseInstance"
DATABASE_VERSION = "POSTGRES_15"
PORT = 5432
# The instance's server CA, from Secret Manager, mounted as a file for every client. sslmode verify-ca:
# the chain must lead to this instance's own CA; verify-full cannot work over the private IP (Cloud SQL
# server certificates name `<project>:<instance>`, not an address).
CA_MOUNT_PATH = "/secrets/db"
CA_FILE = "server-ca.pem"
SSLMODE = "verify-ca"
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


def database_flags(db: DatabaseConfig) -> list[tuple[str, str]]:
    return [*LOGGING_FLAGS, ("pgaudit.log", db.pgaudit_log), ("max_connections", str(db.max_connections))]


def client_user(db: DatabaseConfig, service: str) -> str:
    """The database user of one service: `<userName>_<service>` (a PostgreSQL identifier, at most 63
    characters: a longer one keeps a prefix and gets 8 hex of a hash, so two services never share a user)."""
    name = f"{db.user_name}_{service.replace('-', '_')}"
    return name if len(name) <= 63 else f"{name[:54]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def client_env(db: DatabaseConfig, user: str, pool_size: Optional[int] = None) -> tuple[tuple[str, str], ...]:
    """Plain settings a database client reads besides DB_HOST / DB_PASSWORD (which come from secrets):
    `user` is who it connects as; DB_POOL_SIZE only for a client with a pool (the migration job has none)."""
    env = (
        ("DB_NAME", db.database_name),
        ("DB_USER", user),
        ("DB_PORT", str(PORT)),
        ("DB_SSLMODE", SSLMODE),
        ("DB_SSLROOTCERT", f"{CA_MOUNT_PATH}/{CA_FILE}"),
    )
    return env if pool_size is None else (*env, ("DB_POOL_SIZE", str(pool_size)))


def migration_env(db: DatabaseConfig, clients: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The migration job connects as the migration user and names every service's user (DB_APP_USER, comma
    separated), which the runner restricts to row access after every run (infra/migrate.py APP_PRIVILEGES)."""
    env = client_env(db, db.migration_user_name)
    users = ",".join(client_user(db, key) for key in sorted(clients))
    return (*env, ("DB_APP_USER", users)) if users else env


@dataclass(frozen=True)
class DatabaseArgs:
    """The instance's config and the network it gets its private IP from. `allocated_ip_range` should
    come from the peering (Network.peered_range): the API refuses the instance until the peering exists."""

    site: Site
    config: DatabaseConfig
    network_id: pulumi.Input[str]
    allocated_ip_range: pulumi.Input[str]
    backups_bucket: pulumi.Input[str]
    clients: tuple[str, ...] = ()  # service keys that read the database: one user (and password) each


class Database(pulumi.ComponentResource):
    """The instance, the application database, one user per client service and the migration user (random
    passwords, kept in Secret Manager). One user per service: a leaked password is one service's, the
    audit log (pgaudit, log_connections) names the service, and one service can be revoked alone.

    Outputs: `instance_name`, `instance`, `passwords` (service key -> RandomPassword), `users` (service key
    -> user name), `migrate_password` (every `result` is secret), `private_ip`, `connection_name`,
    `server_ca` (PEM of the instance's server CA).
    """

    def __init__(self, name: str, args: DatabaseArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site, db = args.site, args.config
        child = pulumi.ResourceOptions(parent=self)
        self.instance_name = db.instance(site.environment)
        # the API's guards, in every stack (the Pulumi-side `protect` comes from infra/components/guards.py)
        protect = site.guards.kept(INSTANCE_TYPE, "postgres")

        settings = gcp.sql.DatabaseInstanceSettingsArgs(
            tier=db.tier,
            edition=db.edition,
            availability_type=db.availability_type,
            disk_type="PD_SSD",
            disk_size=db.disk_size_gb,
            disk_autoresize=True,
            deletion_protection_enabled=protect,  # the API's own guard (also blocks console/gcloud deletes)
            user_labels=site.labels(),
            ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                ipv4_enabled=False,
                private_network=args.network_id,
                allocated_ip_range=args.allocated_ip_range,
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
                            for n, v in database_flags(db)],
        )
        self.instance = gcp.sql.DatabaseInstance(
            "postgres",
            gcp.sql.DatabaseInstanceArgs(
                name=self.instance_name, project=site.project, region=site.region,
                database_version=DATABASE_VERSION, deletion_protection=protect, settings=settings),
            opts=child,
        )
        self.database = gcp.sql.Database(
            "app",
            gcp.sql.DatabaseArgs(name=db.database_name, instance=self.instance.name, project=site.project,
                                 # the provider's default DELETE is DROP DATABASE; ABANDON only forgets it
                                 deletion_policy="ABANDON"),
            opts=child,
        )
        self.passwords: dict[str, random.RandomPassword] = {}
        self.users: dict[str, str] = {}
        for key in args.clients:
            self.users[key] = client_user(db, key)
            self.passwords[key] = random.RandomPassword(
                f"{key}-db-password", random.RandomPasswordArgs(length=32, special=False, min_upper=4, min_lower=4,
                                                                min_numeric=4),
                opts=child)
            gcp.sql.User(
                f"{key}-db-user",
                gcp.sql.UserArgs(
                    name=self.users[key], instance=self.instance.name, project=site.project, type="BUILT_IN",
                    password=self.passwords[key].result,
                    # PostgreSQL refuses to drop a role that owns objects; the instance takes it along on teardown
                    deletion_policy="ABANDON"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.database]))
        # The migration job's user owns the schema; the services' users above end up with rows only.
        self.migrate_password = random.RandomPassword(
            "migrate-password", random.RandomPasswordArgs(length=32, special=False, min_upper=4, min_lower=4,
                                                          min_numeric=4),
            opts=child,
        )
        self.migrate_user = gcp.sql.User(
            "migrate",
            gcp.sql.UserArgs(
                name=db.migration_user_name, instance=self.instance.name, project=site.project, type="BUILT_IN",
                password=self.migrate_password.result, deletion_policy="ABANDON"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.database]),
        )
        self.server_ca = self.instance.server_ca_certs.apply(
            lambda certs: "\n".join(c["cert"] if isinstance(c, dict) else c.cert for c in certs or []))
        # `gcloud sql export` writes with the instance's own service agent: it may create objects in
        # the backups bucket (not read, not delete; the bucket's retention policy guards the rest).
        self.export_grant = gcp.storage.BucketIAMMember(
            "exports-to-backups",
            gcp.storage.BucketIAMMemberArgs(
                bucket=args.backups_bucket, role="roles/storage.objectCreator",
                member=self.instance.service_account_email_address.apply(lambda e: f"serviceAccount:{e}")),
            opts=child,
        )
        self.private_ip = self.instance.private_ip_address
        self.connection_name = self.instance.connection_name
        self.register_outputs({"instance": self.instance_name, "connectionName": self.instance.connection_name})
