from infra.components.database import client_env
from infra.components.migrations import Migrations, MigrationsArgs
from infra.config.platform import DatabaseConfig, MigrationsConfig

from .conftest import PROD, register

JOB = "gcp:cloudrunv2/job:Job"
GRANT = "gcp:secretmanager/secretIamMember:SecretIamMember"
OBJECT = "gcp:storage/bucketObject:BucketObject"


def test_job_reads_the_bucket_and_db_credentials_with_its_own_identity():
    reg = register(lambda: {"summary": Migrations("migrations", MigrationsArgs(
        PROD, MigrationsConfig(image="r/p/migrate@sha256:" + "b" * 64), db_env=client_env(DatabaseConfig(), "netra_migrate"),
        network="vpc", subnetwork="sub", bucket="netra-test-migrations")).summary()})
    job = reg.one(JOB)
    tpl = job["template"]["template"]
    assert job["name"] == "netra-migrate-prod" == reg.outputs["summary"]["name"]
    assert tpl["serviceAccount"] == "netra-migrate-prod@netra-test.iam.gserviceaccount.com"
    env = {e["name"]: e for e in tpl["containers"][0]["envs"]}
    assert "DB_POOL_SIZE" not in env and env["DB_NAME"]["value"] == "netra"
    assert env["DB_PASSWORD"]["valueSource"]["secretKeyRef"]["secret"] == "prod-db-migrate-password"
    assert tpl["volumes"][0]["gcs"] == {"bucket": "netra-test-migrations", "readOnly": True}
    assert sorted(g["secretId"] for g in map(lambda r: r.inputs, reg.of(GRANT))) == [
        "prod-db-ca", "prod-db-host", "prod-db-migrate-password"]
    assert tpl["volumes"][1]["secret"]["secret"] == "prod-db-ca"  # the server CA it verifies against
    assert {r.name for r in reg.of(OBJECT)} >= {"001_token_usage_tracking.up.sql", "001_token_usage_tracking.down.sql"}
