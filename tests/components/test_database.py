import pytest

from infra.components.database import Database, DatabaseArgs, client_env
from infra.config.platform import DatabaseConfig

from .conftest import PROD, STAGING, TEARDOWN, is_secret, register

SQL = "gcp:sql/databaseInstance:DatabaseInstance"
USER = "gcp:sql/user:User"
IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"


def build(site=PROD, **config):
    def go():
        db = Database("database", DatabaseArgs(site, DatabaseConfig.model_validate(config), network_id="vpc-id",
                                               allocated_ip_range="netra-prod-private-services",
                                               backups_bucket="netra-test-backups"))
        return {"ip": db.private_ip, "connection": db.connection_name}

    return register(go)


def test_private_postgres_15_with_ssl_backups_and_flags():
    reg = build(maxConnections=300)
    sql = reg.one(SQL)
    assert sql["databaseVersion"] == "POSTGRES_15" and sql["region"] == "us-central1"
    ip = sql["settings"]["ipConfiguration"]
    assert ip == {"ipv4Enabled": False, "privateNetwork": "vpc-id", "allocatedIpRange": "netra-prod-private-services",
                  "sslMode": "ENCRYPTED_ONLY"}
    flags = {f["name"]: f["value"] for f in sql["settings"]["databaseFlags"]}
    assert flags["max_connections"] == "300" and flags["cloudsql.enable_pgaudit"] == "on"
    assert sql["settings"]["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True
    assert reg.one(IAM)["bucket"] == "netra-test-backups" and reg.one(IAM)["role"] == "roles/storage.objectCreator"


def test_both_passwords_are_secrets_and_the_users_differ():
    reg = build()
    users = {u.inputs["name"]: u for u in reg.of(USER)}
    assert set(users) == {"netra_app", "netra_migrate"}  # the migration user owns the schema
    assert all(is_secret(u.inputs["password"]) for u in users.values())


@pytest.mark.parametrize("site,protected", [(PROD, True), (STAGING, True), (TEARDOWN, False)])
def test_deletion_protection_in_every_stack_until_teardown(site, protected):
    sql = build(site).one(SQL)
    assert sql["deletionProtection"] is protected and sql["settings"]["deletionProtectionEnabled"] is protected


def test_client_env_carries_the_pool_only_for_clients_with_one():
    db = DatabaseConfig()
    assert dict(client_env(db, 7))["DB_POOL_SIZE"] == "7"
    assert "DB_POOL_SIZE" not in dict(client_env(db))
    assert dict(client_env(db))["DB_SSLMODE"] == "verify-ca"
    assert dict(client_env(db))["DB_SSLROOTCERT"] == "/secrets/db/server-ca.pem"


def test_migration_env_connects_as_the_migration_user_and_names_the_app_user():
    from infra.components.database import migration_env

    env = dict(migration_env(DatabaseConfig()))
    assert (env["DB_USER"], env["DB_APP_USER"], env["DB_SSLMODE"]) == ("netra_migrate", "netra_app", "verify-ca")
    with pytest.raises(ValueError, match="must differ from userName"):
        DatabaseConfig.model_validate({"userName": "netra", "migrationUserName": "netra"})
