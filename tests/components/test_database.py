import pytest

from infra.components.database import Database, DatabaseArgs, client_env, client_user
from infra.config.platform import DatabaseConfig

from .conftest import PROD, STAGING, TEARDOWN, is_secret, register

SQL = "gcp:sql/databaseInstance:DatabaseInstance"
USER = "gcp:sql/user:User"
IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"


def build(site=PROD, **config):
    def go():
        db = Database("database", DatabaseArgs(site, DatabaseConfig.model_validate(config), network_id="vpc-id",
                                               allocated_ip_range="netra-prod-private-services",
                                               backups_bucket="netra-test-backups", clients=("auth", "backend")))
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


def test_every_password_is_a_secret_and_every_client_has_its_own_user():
    reg = build()
    users = {u.inputs["name"]: u for u in reg.of(USER)}
    # one user per database client; the migration user owns the schema
    assert set(users) == {"netra_app_auth", "netra_app_backend", "netra_migrate"}
    assert all(is_secret(u.inputs["password"]) for u in users.values())
    assert client_user(DatabaseConfig(), "token-api") == "netra_app_token_api"
    long = client_user(DatabaseConfig(), "x" * 60)
    assert len(long) == 63 and long != client_user(DatabaseConfig(), "x" * 61)


@pytest.mark.parametrize("site,protected", [(PROD, True), (STAGING, True), (TEARDOWN, False)])
def test_deletion_protection_in_every_stack_until_teardown(site, protected):
    sql = build(site).one(SQL)
    assert sql["deletionProtection"] is protected and sql["settings"]["deletionProtectionEnabled"] is protected


def test_client_env_carries_the_pool_only_for_clients_with_one():
    db = DatabaseConfig()
    assert dict(client_env(db, "netra_app_backend", 7))["DB_POOL_SIZE"] == "7"
    assert dict(client_env(db, "netra_app_backend", 7))["DB_USER"] == "netra_app_backend"
    assert "DB_POOL_SIZE" not in dict(client_env(db, "netra_migrate"))
    assert dict(client_env(db, "netra_migrate"))["DB_SSLMODE"] == "verify-ca"
    assert dict(client_env(db, "netra_migrate"))["DB_SSLROOTCERT"] == "/secrets/db/server-ca.pem"


def test_migration_env_connects_as_the_migration_user_and_names_the_app_user():
    from infra.components.database import migration_env

    env = dict(migration_env(DatabaseConfig(), ("backend", "auth")))
    assert (env["DB_USER"], env["DB_APP_USER"], env["DB_SSLMODE"]) == ("netra_migrate", "netra_app_auth,netra_app_backend",
                                                                       "verify-ca")
    assert "DB_APP_USER" not in dict(migration_env(DatabaseConfig(), ()))
    with pytest.raises(ValueError, match="must differ from userName"):
        DatabaseConfig.model_validate({"userName": "netra", "migrationUserName": "netra"})
