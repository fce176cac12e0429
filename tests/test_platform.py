"""The platform of both stacks, planned offline with the real program (inventory style: pin what matters)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.plan.engine import is_secret, unwrap

from .conftest import ROOT, one, plan_of, resources_of, routes_of, run_of

RUN = "gcp:cloudrunv2/service:Service"
JOB = "gcp:cloudrunv2/job:Job"
SA = "gcp:serviceaccount/account:Account"
NETWORK = "gcp:compute/network:Network"
SUBNET = "gcp:compute/subnetwork:Subnetwork"
ADDRESS = "gcp:compute/globalAddress:GlobalAddress"
CONNECTION = "gcp:servicenetworking/connection:Connection"
SQL = "gcp:sql/databaseInstance:DatabaseInstance"
SQL_DB = "gcp:sql/database:Database"
SQL_USER = "gcp:sql/user:User"
REDIS = "gcp:redis/instance:Instance"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
OBJECT = "gcp:storage/bucketObject:BucketObject"
SECRET = "gcp:secretmanager/secret:Secret"
VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
RUN_IAM = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND = "gcp:compute/backendService:BackendService"
BACKEND_BUCKET = "gcp:compute/backendBucket:BackendBucket"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
URL_MAP = "gcp:compute/uRLMap:URLMap"
SSL_POLICY = "gcp:compute/sSLPolicy:SSLPolicy"
CERT = "gcp:compute/managedSslCertificate:ManagedSslCertificate"
HTTPS_PROXY = "gcp:compute/targetHttpsProxy:TargetHttpsProxy"
HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
RULE = "gcp:compute/globalForwardingRule:GlobalForwardingRule"
ACCESSOR = "roles/secretmanager.secretAccessor"
SERVICES = ("frontend", "backend", "auth")
STACKS = [("prod_plan", "prod"), ("staging_plan", "staging")]


def container(plan: dict, key: str) -> dict:
    return one(plan, RUN, key)["inputs"]["template"]["containers"][0]


def plain_env(plan: dict, key: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(plan, key)["envs"] if "value" in e}


def secret_env(plan: dict, key: str) -> dict[str, str]:
    return {e["name"]: e["valueSource"]["secretKeyRef"]["secret"] for e in container(plan, key)["envs"] if "valueSource" in e}


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("plan_name,env", STACKS)
def test_network_for_direct_vpc_egress_and_private_services(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    vpc = one(plan, NETWORK, "vpc")["inputs"]
    assert vpc["name"] == f"netra-{env}-vpc" and vpc["autoCreateSubnetworks"] is False
    subnet = one(plan, SUBNET, "run-egress")["inputs"]
    # Private Google Access only where the load test job (egress ALL_TRAFFIC) runs: staging (docs/iam.md)
    assert subnet["network"] == "vpc-id" and subnet["privateIpGoogleAccess"] is (env == "staging")
    psa = one(plan, ADDRESS, "private-services")["inputs"]
    assert (psa["purpose"], psa["addressType"], psa["network"]) == ("VPC_PEERING", "INTERNAL", "vpc-id")
    conn = one(plan, CONNECTION, "private-services")["inputs"]
    assert conn["service"] == "servicenetworking.googleapis.com"
    assert conn["reservedPeeringRanges"] == [psa["name"]]
    assert conn["deletionPolicy"] == "ABANDON"  # staging can be torn down while producers hold addresses
    for key in SERVICES:
        vpc_access = one(plan, RUN, key)["inputs"]["template"]["vpcAccess"]
        assert vpc_access == {"egress": "PRIVATE_RANGES_ONLY",
                              "networkInterfaces": [{"network": vpc["name"], "subnetwork": subnet["name"]}]}


def test_prod_network_ranges(prod_plan):
    assert one(prod_plan, SUBNET, "run-egress")["inputs"]["ipCidrRange"] == "10.8.0.0/22"
    assert one(prod_plan, SUBNET, "run-egress")["inputs"]["logConfig"] == {  # VPC Flow Logs (CIS 3.8)
        "aggregationInterval": "INTERVAL_5_SEC", "flowSampling": 0.5, "metadata": "INCLUDE_ALL_METADATA"}
    psa = one(prod_plan, ADDRESS, "private-services")["inputs"]
    assert (psa["address"], psa["prefixLength"]) == ("10.60.0.0", 16)


@pytest.fixture(scope="module")
def dependencies() -> dict[str, set[str]]:
    """Resource name -> names of the resources it depends on explicitly (what the engine receives)."""
    return {f"{r.type}::{r.name}": {urn.rsplit("::", 1)[-1] for urn in r.dependencies} for r in run_of("staging").resources}


def test_sql_and_redis_depend_on_the_peering_explicitly(dependencies):
    assert "private-services" in dependencies[f"{SQL}::postgres"]
    assert "private-services" in dependencies[f"{REDIS}::redis"]


def test_services_wait_for_their_secrets_and_grants(dependencies):
    deps = dependencies[f"{RUN}::backend"]
    assert {"backend-sa", "backend-db-password", "feature-flags", "backend-reads-staging-backend-db-password",
            "run-egress"} <= deps
    assert {"migrate-sa", "migrate-reads-db-migrate-password", "migrate-reads-db-ca", "migrate-reads-migrations",
            "001_token_usage_tracking.up.sql"} <= dependencies[f"{JOB}::migrate"]


# ---------------------------------------------------------------- Cloud SQL


@pytest.mark.parametrize("plan_name,env", STACKS)
def test_cloud_sql_postgres_15_private_ssl_backups_insights(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    sql = one(plan, SQL, "postgres")["inputs"]
    s = sql["settings"]
    assert sql["databaseVersion"] == "POSTGRES_15"
    assert s["ipConfiguration"]["ipv4Enabled"] is False  # private IP only
    assert s["ipConfiguration"]["privateNetwork"] == "vpc-id"
    assert s["ipConfiguration"]["allocatedIpRange"] == f"netra-{env}-private-services"
    assert s["ipConfiguration"]["sslMode"] in ("ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED")
    assert "authorizedNetworks" not in s["ipConfiguration"]
    b = s["backupConfiguration"]
    assert b["enabled"] is True and b["pointInTimeRecoveryEnabled"] is True
    assert b["transactionLogRetentionDays"] >= 1 and b["backupRetentionSettings"]["retainedBackups"] >= 7
    assert set(s["maintenanceWindow"]) == {"day", "hour", "updateTrack"}
    assert s["insightsConfig"]["queryInsightsEnabled"] is True
    flags = {f["name"]: f["value"] for f in s["databaseFlags"]}
    assert {k: flags[k] for k in ("log_connections", "log_disconnections", "log_checkpoints", "log_lock_waits",
                                  "log_min_duration_statement", "cloudsql.enable_pgaudit")} == {
        "log_connections": "on", "log_disconnections": "on", "log_checkpoints": "on", "log_lock_waits": "on",
        "log_min_duration_statement": "-1", "cloudsql.enable_pgaudit": "on"}
    assert flags["pgaudit.log"] == "ddl,role"
    assert flags["log_hostname"] == "on"  # CKV_GCP_108
    assert one(plan, SQL_DB, "app")["inputs"]["name"] == "netra"
    for key in ("auth", "backend"):  # one user per database client (docs/iam.md)
        user = one(plan, SQL_USER, f"{key}-db-user")["inputs"]
        assert user["name"] == f"netra_app_{key}" and user["password"] == "[secret]" and user["type"] == "BUILT_IN"


def test_prod_sql_is_ha_protected_and_sized_from_config(prod_plan):
    sql = one(prod_plan, SQL, "postgres")["inputs"]
    s = sql["settings"]
    assert sql["name"] == "netra-production-db"  # the seed's restore procedure names it so
    assert (s["availabilityType"], s["tier"], s["edition"], s["diskSize"]) == ("REGIONAL", "db-custom-8-32768", "ENTERPRISE", 100)
    assert sql["deletionProtection"] is True and s["deletionProtectionEnabled"] is True  # both levels
    assert s["backupConfiguration"]["transactionLogRetentionDays"] == 7
    assert s["backupConfiguration"]["backupRetentionSettings"] == {"retainedBackups": 30, "retentionUnit": "COUNT"}
    assert s["maintenanceWindow"] == {"day": 7, "hour": 4, "updateTrack": "stable"}
    assert {"name": "max_connections", "value": "1000"} in s["databaseFlags"]


def test_staging_sql_is_small_and_its_data_guarded_too(staging_plan):
    sql = one(staging_plan, SQL, "postgres")["inputs"]
    assert (sql["settings"]["availabilityType"], sql["settings"]["tier"]) == ("ZONAL", "db-custom-1-3840")
    # staging data is protected as well; `python -m infra teardown` lifts it (tests/test_data_safety.py)
    assert sql["deletionProtection"] is True and sql["settings"]["deletionProtectionEnabled"] is True


@pytest.mark.parametrize("plan_name,pool", [("prod_plan", 6), ("staging_plan", 11)])
def test_pool_size_is_pinned_per_client_so_every_instance_fits(request, plan_name, pool):
    plan = request.getfixturevalue(plan_name)
    db = plan["outputs"]["platform"]["database"]
    assert db["poolSizes"] == {"backend": pool, "auth": pool}
    clients = [k for k in SERVICES if "DB_PASSWORD" in secret_env(plan, k)]
    assert clients == ["backend", "auth"]
    instances = sum(one(plan, RUN, k)["inputs"]["template"]["scaling"]["maxInstanceCount"] for k in clients)
    flags = {f["name"]: f["value"] for f in one(plan, SQL, "postgres")["inputs"]["settings"]["databaseFlags"]}
    assert instances * pool < int(flags["max_connections"])
    for key in clients:
        env = plain_env(plan, key)
        assert env["DB_POOL_SIZE"] == str(pool)
        assert (env["DB_NAME"], env["DB_USER"], env["DB_PORT"], env["DB_SSLMODE"]) == ("netra", f"netra_app_{key}", "5432",
                                                                                   "verify-ca")
        # the server certificate is verified against the instance's CA, from Secret Manager, mounted as a file
        assert env["DB_SSLROOTCERT"] == "/secrets/db/server-ca.pem"
        tpl = one(plan, RUN, key)["inputs"]["template"]
        assert {"name": "db-ca", "secret": {"secret": f"{plan['stack']}-db-ca", "defaultMode": 0o444, "items": [
            {"path": "server-ca.pem", "version": "latest", "mode": 0o444}]}} in tpl["volumes"]
        assert {"name": "db-ca", "mountPath": "/secrets/db"} in tpl["containers"][0]["volumeMounts"]
    assert "DB_POOL_SIZE" not in plain_env(plan, "frontend")


# ---------------------------------------------------------------- Memorystore


@pytest.mark.parametrize("plan_name,env", STACKS)
def test_redis_7_auth_tls_private_rdb(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    r = one(plan, REDIS, "redis")["inputs"]
    assert r["redisVersion"] == "REDIS_7_2"
    assert r["authEnabled"] is True
    assert r["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert r["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert r["authorizedNetwork"] == "vpc-id" and r["reservedIpRange"] == f"netra-{env}-private-services"
    assert r["persistenceConfig"]["persistenceMode"] == "RDB"
    window = r["maintenancePolicy"]["weeklyMaintenanceWindows"][0]
    assert window["day"] == "SUNDAY" and 0 <= window["startTime"]["hours"] <= 23


def test_prod_redis_is_ha_staging_basic(prod_plan, staging_plan):
    p, s = one(prod_plan, REDIS, "redis")["inputs"], one(staging_plan, REDIS, "redis")["inputs"]
    assert (p["tier"], p["memorySizeGb"], p["deletionProtection"]) == ("STANDARD_HA", 5, True)
    assert (s["tier"], s["memorySizeGb"], s["deletionProtection"]) == ("BASIC", 1, True)


@pytest.mark.parametrize("plan_name", ["prod_plan", "staging_plan"])
def test_redis_credentials_and_ca_come_from_secret_manager(request, plan_name):
    plan = request.getfixturevalue(plan_name)
    env = plan["stack"]
    for key in ("backend", "auth"):
        assert secret_env(plan, key)["REDIS_AUTH"] == f"{env}-redis-auth"
        assert secret_env(plan, key)["REDIS_HOST"] == f"{env}-redis-host"
        plain = plain_env(plan, key)
        assert not any("AUTH" in name for name in plain)
        assert (plain["REDIS_PORT"], plain["REDIS_TLS"], plain["REDIS_CA_CERT_PATH"]) == ("6378", "true", "/secrets/redis/server-ca.pem")
        tpl = one(plan, RUN, key)["inputs"]["template"]
        assert {"name": "redis-ca", "secret": {
            "secret": f"{env}-redis-ca", "defaultMode": 0o444,
            "items": [{"path": "server-ca.pem", "version": "latest", "mode": 0o444}]}} in tpl["volumes"]
        assert {"name": "redis-ca", "mountPath": "/secrets/redis"} in tpl["containers"][0]["volumeMounts"]


# ---------------------------------------------------------------- Cloud Storage


@pytest.mark.parametrize("plan_name,env", STACKS)
def test_buckets_uniform_access_and_public_prevention(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    project = plan["outputs"]["gcpProject"]
    buckets = {r["name"]: r["inputs"] for r in resources_of(plan, BUCKET) if "netra:platform:Storage" in r["parent"]}
    assert set(buckets) == {"static-assets", "backups", "migrations", "access-logs", "release-ledger"}
    # the other buckets (load-test results, budget guard state) are private too
    assert {r["inputs"]["publicAccessPrevention"] for r in resources_of(plan, BUCKET)
            if "netra:platform:Storage" not in r["parent"]} <= {"enforced"}
    for name, b in buckets.items():
        assert b["name"] == f"{project}-{name}"
        assert b["uniformBucketLevelAccess"] is True
        assert b["forceDestroy"] is False  # in every stack (docs/data-safety.md)
    assert buckets["backups"]["publicAccessPrevention"] == "enforced"
    assert buckets["migrations"]["publicAccessPrevention"] == "enforced"
    assert buckets["access-logs"]["publicAccessPrevention"] == "enforced"
    # the release ledger (docs/release-ledger.md): every generation kept, soft delete as its retention
    ledger = buckets["release-ledger"]
    assert ledger["publicAccessPrevention"] == "enforced" and ledger["versioning"] == {"enabled": True}
    assert int(ledger["softDeletePolicy"]["retentionDurationSeconds"]) == 30 * 86400
    assert "retentionPolicy" not in ledger  # it would forbid the overwrites the ledger is made of
    assert plan["outputs"]["releaseLedger"] == f"gs://{project}-release-ledger"
    # every bucket but the log bucket writes usage logs there (CKV_GCP_62)
    assert {n: b.get("logging") for n, b in buckets.items()} == {
        n: ({"logBucket": f"{project}-access-logs", "logObjectPrefix": n} if n != "access-logs" else None)
        for n in buckets}
    # public by design in config: served through the load balancer's CDN backend bucket
    assert buckets["static-assets"]["publicAccessPrevention"] == "inherited"
    public = [r["inputs"] for r in resources_of(plan, BUCKET_IAM) if r["inputs"]["member"] == "allUsers"]
    # read an object by name, never list the bucket
    assert public == [{"bucket": f"{project}-static-assets", "role": "roles/storage.legacyObjectReader", "member": "allUsers"}]


def test_a_bucket_not_marked_public_is_enforced():
    plan = plan_of("staging", {"netra:platform.storage.staticAssets.public": False})
    assert one(plan, BUCKET, "static-assets")["inputs"]["publicAccessPrevention"] == "enforced"
    assert not [r for r in resources_of(plan, BUCKET_IAM) if r["inputs"]["member"] in ("allUsers", "allAuthenticatedUsers")]


def test_backups_bucket_retained_not_versioned_and_colder_with_age(prod_plan):
    b = one(prod_plan, BUCKET, "backups")["inputs"]
    # Cloud Storage refuses a retention policy on a versioned bucket: the retention policy alone, and the
    # period as the string pulumi-gcp 10 types it
    assert "versioning" not in b
    assert b["retentionPolicy"] == {"retentionPeriod": str(30 * 86400)}
    moves = [(r["action"]["storageClass"], r["condition"]["age"]) for r in b["lifecycleRules"]
             if r["action"]["type"] == "SetStorageClass"]
    assert moves == [("NEARLINE", 30), ("COLDLINE", 90), ("ARCHIVE", 365)]
    assert [r for r in b["lifecycleRules"] if r["action"]["type"] == "Delete"] == []  # backups never expire by rule


def test_access_logs_bucket_written_only_by_cloud_storage(prod_plan):
    b = one(prod_plan, BUCKET, "access-logs")["inputs"]
    assert b["lifecycleRules"] == [{"action": {"type": "Delete"}, "condition": {"age": 90, "withState": "ANY"}}]
    writers = [r["inputs"] for r in resources_of(prod_plan, BUCKET_IAM) if r["inputs"]["bucket"] == b["name"]]
    assert writers == [{"bucket": b["name"], "role": "roles/storage.objectCreator",
                        "member": "group:cloud-storage-analytics@google.com"}]


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize("plan_name,env", STACKS)
def test_secrets_named_as_the_seed_with_secret_payloads(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    ids = {r["name"]: r["inputs"]["secretId"] for r in resources_of(plan, SECRET) if "netra:platform:Secrets" in r["parent"]}
    clickhouse = ("clickhouse-host", "clickhouse-password", "clickhouse-ca", "clickhouse-admin-password",
                  "clickhouse-grafana-password", "clickhouse-interserver-password", "clickhouse-tls-cert",
                  "clickhouse-tls-key", "clickhouse-backup-hmac-id", "clickhouse-backup-hmac-secret",
                  "prometheus-config",  # the Managed Prometheus sidecar's RunMonitoring config
                  "canary-verify-token")  # the rollout verifier's load-balancer token (tests/test_canary_route.py)
    assert ids == {k: f"{env}-{k}" for k in ("token-optimization-config", "pricing-config", "feature-flags",
                                            "auth-db-password", "backend-db-password", "db-migrate-password",
                                            "db-host", "db-ca",
                                            "redis-auth", "redis-host", "redis-ca", "emergency-limits", *clickhouse)}
    for v in resources_of(plan, VERSION):
        assert v["inputs"]["secretData"] == "[secret]" and v["inputs"]["secret"] == f"{v['name']}-id"


def test_no_secret_value_in_plaintext_anywhere_in_the_plan(prod_plan):
    text = json.dumps(prod_plan)
    for value in ("offline-plan-password", "offline-plan-redis-auth", "PRIVATE KEY", "10.60.0.3", "10.60.1.4"):
        assert value not in text, value
    # server CA certificates travel in secret payloads; the tls provider's own inputs (the ClickHouse CA's
    # certificate and the server's signing request, both public) are the only plaintext certificates
    public = [r for r in prod_plan["resources"] if r["type"] == "tls:index/locallySignedCert:LocallySignedCert"]
    assert "BEGIN CERTIFICATE" not in json.dumps({**prod_plan, "resources": [
        r for r in prod_plan["resources"] if r not in public]})
    run = run_of("prod")  # wire form: the engine sees every payload wrapped as a secret
    for r in run.resources:
        if r.type == VERSION:
            assert is_secret(r.inputs["secretData"]), r.name
        if r.type == SQL_USER:
            assert is_secret(r.inputs["password"])
    payload = {r.name: unwrap(r.inputs["secretData"]) for r in run.resources if r.type == VERSION}
    assert json.loads(payload["feature-flags"])["token_optimization"] is True
    assert json.loads(payload["pricing-config"])["llmPricing"]["gpt4"] == {"input": 0.00003, "output": 0.00006}
    assert json.loads(payload["token-optimization-config"])["defaultTargetReduction"] == 20
    assert payload["backend-db-password"] == payload["auth-db-password"] == "offline-plan-password" and payload["redis-auth"] == "offline-plan-redis-auth"


def test_feature_flag_flip_is_a_new_secret_version_and_nothing_else():
    def wire(overrides=None):
        run = run_of("prod", overrides)
        return {r.urn: unwrap(r.inputs) for r in run.resources}, run.outputs

    before, out_before = wire()
    after, out_after = wire({"netra:platform.featureFlags.semantic_cache": True})
    changed = [urn for urn in before if before[urn] != after[urn]]
    assert len(changed) == 1 and changed[0].endswith("secretVersion:SecretVersion::feature-flags")
    assert json.loads(after[changed[0]]["secretData"])["semantic_cache"] is True
    assert out_before["services"] == out_after["services"]  # same candidate revisions, same traffic


@pytest.mark.parametrize("plan_name", ["prod_plan", "staging_plan"])
def test_each_service_reads_exactly_its_configured_secrets(request, plan_name):
    plan = request.getfixturevalue(plan_name)
    env = plan["stack"]
    import yaml
    services = yaml.safe_load((ROOT / f"Pulumi.{env}.yaml").read_text())["config"]["netra:services"]
    for key in SERVICES:
        configured = services[key].get("secrets", {})
        # feature-flags is mounted as a file (new versions reach running instances); its variable holds the path
        # db-password is the service's own password: <env>-<service>-db-password
        assert secret_env(plan, key) == {var: f"{env}-{key}-{k}" if k == "db-password" else f"{env}-{k}"
                                         for var, k in configured.items() if k != "feature-flags"}
        assert {var: plain_env(plan, key)[var] for var, k in configured.items() if k == "feature-flags"} == {
            var: "/secrets/feature-flags/flags.json" for var, k in configured.items() if k == "feature-flags"}
        assert all(e["valueSource"]["secretKeyRef"]["version"] == "latest"
                   for e in container(plan, key)["envs"] if "valueSource" in e)
        volumes = {v["secret"]["secret"] for v in one(plan, RUN, key)["inputs"]["template"].get("volumes", [])}
        reads = set(secret_env(plan, key).values()) | volumes
        member = f"serviceAccount:netra-{key}-{env}@{plan['outputs']['gcpProject']}.iam.gserviceaccount.com"
        granted = {r["inputs"]["secretId"] for r in resources_of(plan, SECRET_IAM)
                   if r["inputs"]["member"] == member and r["inputs"]["role"] == ACCESSOR}
        assert granted == reads, key


# ---------------------------------------------------------------- migrations job


@pytest.mark.parametrize("plan_name,env", STACKS)
def test_migration_job_reads_the_bucket_with_its_own_identity(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    project = plan["outputs"]["gcpProject"]
    assert plan["outputs"]["migrationJob"] == {"name": f"netra-migrate-{env}", "region": "us-central1"}
    job = one(plan, JOB, "migrate")["inputs"]
    tpl = job["template"]["template"]
    c = tpl["containers"][0]
    assert job["name"] == f"netra-migrate-{env}" and job["deletionProtection"] is (env == "prod")
    assert tpl["serviceAccount"] == f"netra-migrate-{env}@{project}.iam.gserviceaccount.com"
    assert one(plan, SA, "migrate-sa")["inputs"]["accountId"] == f"netra-migrate-{env}"
    assert tpl["volumes"] == [{"name": "migrations", "gcs": {"bucket": f"{project}-migrations", "readOnly": True}},
                              {"name": "db-ca", "secret": {"secret": f"{env}-db-ca", "defaultMode": 0o444, "items": [
                                  {"path": "server-ca.pem", "version": "latest", "mode": 0o444}]}}]
    assert c["volumeMounts"] == [{"name": "migrations", "mountPath": "/migrations"},
                                 {"name": "db-ca", "mountPath": "/secrets/db"}]
    assert c["args"] == ["up", "--dir", "/migrations"]
    # its own user (owns the schema) and password; the services' user is restricted to rows after every run
    assert {e["name"]: e["valueSource"]["secretKeyRef"]["secret"] for e in c["envs"] if "valueSource" in e} == {
        "DB_HOST": f"{env}-db-host", "DB_PASSWORD": f"{env}-db-migrate-password"}
    plain = {e["name"]: e["value"] for e in c["envs"] if "value" in e}
    assert (plain["DB_USER"], plain["DB_APP_USER"], plain["DB_SSLMODE"], plain["DB_SSLROOTCERT"]) == (
        "netra_migrate", "netra_app_auth,netra_app_backend", "verify-ca", "/secrets/db/server-ca.pem")
    users = {r["inputs"]["name"] for r in resources_of(plan, "gcp:sql/user:User")}
    assert users == {"netra_app_auth", "netra_app_backend", "netra_migrate"}
    assert tpl["vpcAccess"]["networkInterfaces"] == [{"network": f"netra-{env}-vpc", "subnetwork": f"netra-{env}-run-egress"}]
    files = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    objects = {r["inputs"]["name"]: r["inputs"] for r in resources_of(plan, OBJECT)
               if r["inputs"]["bucket"] == f"{project}-migrations"}
    assert sorted(objects) == files and files
    for name, o in objects.items():
        assert o["bucket"] == f"{project}-migrations" and o["source"] == {"fileAsset": f"migrations/{name}"}


def test_prod_migration_runner_is_pinned(prod_plan):
    assert "@sha256:" in one(prod_plan, JOB, "migrate")["inputs"]["template"]["template"]["containers"][0]["image"]


# ---------------------------------------------------------------- edge


@pytest.mark.parametrize("plan_name,env", STACKS)
def test_https_load_balancer_routes(request, plan_name, env):
    plan = request.getfixturevalue(plan_name)
    domain = {"prod": "app.netra.ai", "staging": "staging.netra.ai"}[env]
    assert one(plan, ADDRESS, "lb-ip")["inputs"]["addressType"] == "EXTERNAL"
    assert one(plan, CERT, "cert")["inputs"]["managed"] == {"domains": [domain]}
    for key in SERVICES:
        neg = one(plan, NEG, f"{key}-neg")["inputs"]
        assert neg["networkEndpointType"] == "SERVERLESS" and neg["cloudRun"] == {"service": f"netra-{key}-{env}"}
        be = one(plan, BACKEND, f"{key}-backend")["inputs"]
        assert be["loadBalancingScheme"] == "EXTERNAL_MANAGED" and be["backends"] == [{"group": f"{key}-neg-id"}]
        assert be["logConfig"] == {"enable": True, "sampleRate": 1}
        assert be["securityPolicy"] == "armor-id" and be["protocol"] == "HTTPS"
        # HSTS on every response through the load balancer
        assert be["customResponseHeaders"] == ["Strict-Transport-Security: max-age=31536000; includeSubDomains"]
    url_map = one(plan, URL_MAP, "https")["inputs"]
    project = plan["outputs"]["gcpProject"]
    bs = f"projects/{project}/global/backendServices/"  # the URL map names backends by relative URL
    assert url_map["defaultService"] == f"{bs}netra-frontend-{env}-backend"
    # the first host rule is the application's; Grafana's own hostname behind IAP follows (tests/test_analytics.py)
    assert url_map["hostRules"][0] == {"hosts": [domain], "pathMatcher": "netra"}
    matcher = url_map["pathMatchers"][0]
    assert matcher["defaultService"] == f"{bs}netra-frontend-{env}-backend"
    static = f"projects/{project}/global/backendBuckets/netra-{env}-static"
    assert routes_of(url_map) == {"/api/*": f"{bs}netra-backend-{env}-backend", "/ws/*": f"{bs}netra-backend-{env}-backend",
                                  "/auth/*": f"{bs}netra-auth-{env}-backend", "/static/*": static, "/assets/*": static}
    static = one(plan, BACKEND_BUCKET, "static-backend")["inputs"]
    assert static["enableCdn"] is True and static["bucketName"] == f"{plan['outputs']['gcpProject']}-static-assets"
    ssl = one(plan, SSL_POLICY, "ssl-policy")["inputs"]
    assert (ssl["profile"], ssl["minTlsVersion"]) == ("MODERN", "TLS_1_2")
    proxy = one(plan, HTTPS_PROXY, "https")["inputs"]
    assert proxy["sslPolicy"] == "ssl-policy-id" and proxy["sslCertificates"][0] == "cert-id" and proxy["urlMap"] == "https-id"
    https, http = one(plan, RULE, "https")["inputs"], one(plan, RULE, "http-redirect")["inputs"]
    assert (https["portRange"], https["target"], https["ipAddress"]) == ("443", "https-id", "lb-ip-id")
    assert (http["portRange"], http["target"], http["ipAddress"]) == ("80", "http-redirect-id", "lb-ip-id")
    redirect = one(plan, URL_MAP, "http-redirect")["inputs"]["defaultUrlRedirect"]
    assert redirect["httpsRedirect"] is True and redirect["redirectResponseCode"] == "MOVED_PERMANENTLY_DEFAULT"
    assert one(plan, HTTP_PROXY, "http-redirect")["inputs"]["urlMap"] == "http-redirect-id"


@pytest.mark.parametrize("plan_name", ["prod_plan", "staging_plan"])
def test_cloud_run_only_behind_the_load_balancer(request, plan_name):
    plan = request.getfixturevalue(plan_name)
    for key in SERVICES:
        assert one(plan, RUN, key)["inputs"]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
        invoker = one(plan, RUN_IAM, f"{key}-invoker")["inputs"]
        assert (invoker["name"], invoker["role"], invoker["member"]) == (
            f"netra-{key}-{plan['stack']}", "roles/run.invoker", "allUsers")


def test_cloud_armor_waf_and_rate_limit(prod_plan, staging_plan):
    rules = one(prod_plan, ARMOR, "armor")["inputs"]["rules"]
    waf = [r for r in rules if "evaluatePreconfiguredWaf" in r["match"].get("expr", {}).get("expression", "")]
    assert [r["match"]["expr"]["expression"].split("'")[1] for r in waf] == [
        "sqli-v33-stable", "xss-v33-stable", "lfi-v33-stable", "rfi-v33-stable", "rce-v33-stable",
        "scannerdetection-v33-stable", "protocolattack-v33-stable", "sessionfixation-v33-stable"]
    assert all(r["action"] == "deny(403)" and r["preview"] is False for r in waf)
    limit = [r for r in rules if "rateLimitOptions" in r]
    assert len(limit) == 1 and limit[0]["action"] == "rate_based_ban"
    opts = limit[0]["rateLimitOptions"]
    assert opts["rateLimitThreshold"] == {"count": 600, "intervalSec": 60} and opts["enforceOnKey"] == "IP"
    assert opts["exceedAction"] == "deny(429)" and opts["banDurationSec"] == 300
    assert rules[-1]["priority"] == 2147483647 and rules[-1]["action"] == "allow"
    staging_waf = [r for r in one(staging_plan, ARMOR, "armor")["inputs"]["rules"] if "expr" in r["match"]]
    cve = [r for r in staging_waf if "cve-canary" in r["match"]["expr"]["expression"]]
    # the CRS rules are tried in preview on staging first; the Log4Shell rule blocks everywhere
    assert staging_waf and all(r["preview"] is True for r in staging_waf if r not in cve)
    assert cve == [r for r in rules if "cve-canary" in r["match"].get("expr", {}).get("expression", "")]
    assert len(cve) == 1 and cve[0]["preview"] is False and cve[0]["action"] == "deny(403)"
    assert cve[0]["match"]["expr"]["expression"] == "evaluatePreconfiguredExpr('cve-canary')"


def test_waf_rules_switch_in_config():
    plan = plan_of("prod", {"netra:platform.edge.waf.xss": False, "netra:platform.edge.waf.methodEnforcement": True})
    exprs = " ".join(r["match"].get("expr", {}).get("expression", "") for r in one(plan, ARMOR, "armor")["inputs"]["rules"])
    assert "xss-v33-stable" not in exprs and "methodenforcement-v33-stable" in exprs


# ---------------------------------------------------------------- identity


def identity_table(plan: dict) -> set[tuple[str, str, str]]:
    """(member, role, on what) of every IAM grant in the plan."""
    out = set()
    for r in plan["resources"]:
        i = r["inputs"]
        if r["type"] == SECRET_IAM:
            out.add((i["member"], i["role"], f"secret {i['secretId']}"))
        elif r["type"] == BUCKET_IAM:
            out.add((i["member"], i["role"], f"bucket {i['bucket']}"))
        elif r["type"] == RUN_IAM:
            out.add((i["member"], i["role"], f"service {i['name']}"))
        elif "iam" in r["type"].lower():
            out.add((i.get("member", "?"), i.get("role", "?"), r["type"]))
    return out


def test_identity_least_privilege_prod(prod_plan):
    sa = lambda who: f"serviceAccount:netra-{who}-prod@netra-production.iam.gserviceaccount.com"  # noqa: E731
    secret = lambda *keys: {f"secret prod-{k}" for k in keys}  # noqa: E731
    expected = set()
    reads = {
        # every flags reader also reads the emergency limits the budget guard writes (docs/budget-guard.md)
        "frontend": secret("feature-flags", "emergency-limits"),
        "backend": secret("db-host", "backend-db-password", "db-ca", "redis-host", "redis-auth", "redis-ca",
                          "token-optimization-config", "pricing-config", "feature-flags", "emergency-limits"),
        "auth": secret("db-host", "auth-db-password", "db-ca", "redis-host", "redis-auth", "redis-ca", "feature-flags",
                       "emergency-limits"),
        "migrate": secret("db-host", "db-migrate-password", "db-ca"),
    }
    for who, things in reads.items():
        expected |= {(sa(who), ACCESSOR, t) for t in things}
    expected.add((sa("migrate"), "roles/storage.objectViewer", "bucket netra-production-migrations"))
    expected.add(("serviceAccount:p000000000000-mock@gcp-sa-cloud-sql.iam.gserviceaccount.com",
                  "roles/storage.objectCreator", "bucket netra-production-backups"))
    expected.add(("allUsers", "roles/storage.legacyObjectReader", "bucket netra-production-static-assets"))
    expected.add(("group:cloud-storage-analytics@google.com", "roles/storage.objectCreator",
                  "bucket netra-production-access-logs"))
    expected |= {("allUsers", "roles/run.invoker", f"service netra-{k}-prod") for k in SERVICES}
    # the emergency budget guard: Cloud Billing publishes, the function turns the emergency limits on and
    # pages; it has no grant on the feature flags
    guard = sa("budget-guard")
    expected |= {("serviceAccount:billing-budget-alert@system.gserviceaccount.com", "roles/pubsub.publisher",
                  "gcp:pubsub/topicIAMMember:TopicIAMMember"),
                 (guard, ACCESSOR, "secret prod-emergency-limits"),
                 (guard, "roles/secretmanager.secretVersionAdder", "secret prod-emergency-limits"),
                 (guard, ACCESSOR, "secret prod-pagerduty-key"),
                 (guard, "roles/storage.objectUser", "bucket netra-production-budget-guard"),
                 # its own build identity (not the default build service account): source, logs, image
                 (sa("budget-build"), "roles/storage.objectViewer", "bucket netra-production-budget-guard"),
                 (sa("budget-build"), "roles/logging.logWriter", "gcp:projects/iAMMember:IAMMember"),
                 (sa("budget-build"), "roles/artifactregistry.writer", "gcp:projects/iAMMember:IAMMember"),
                 (guard, "roles/run.invoker", "service netra-budget-guard-prod")}
    # the analytics cluster (README "Analytics"): node identities read their own secrets and write logs and
    # metrics (the Ops Agent); the backup identity writes under clickhouse/ in the backups bucket only
    node = lambda role: f"serviceAccount:netra-prod-{role}@netra-production.iam.gserviceaccount.com"  # noqa: E731
    from infra.components.clickhouse.render import KEEPER_SECRETS, NODE_SECRETS, TLS_SECRETS

    expected |= {(node("clickhouse"), ACCESSOR, t) for t in secret(*NODE_SECRETS, *TLS_SECRETS)}
    expected |= {(node("keeper"), ACCESSOR, t) for t in secret(*KEEPER_SECRETS)}
    project_roles = {(node(role), r, "gcp:projects/iAMMember:IAMMember") for role in ("clickhouse", "keeper")
                     for r in ("roles/logging.logWriter", "roles/monitoring.metricWriter")}
    expected |= project_roles
    expected.add((node("ch-backup"), "roles/storage.objectAdmin", "bucket netra-production-backups"))
    # the Managed Prometheus sidecar in every service reads its RunMonitoring config; Grafana is invoked
    # through the load balancer with IAP in front (its own grants: _observability_grants)
    expected |= {(sa(k), ACCESSOR, "secret prod-prometheus-config") for k in SERVICES}
    expected.add(("serviceAccount:service-366603648421@gcp-sa-iap.iam.gserviceaccount.com", "roles/run.invoker",
                  "service netra-grafana-prod"))  # IAP's service agent (the project number is the offline stand-in)
    assert identity_table(prod_plan) - _observability_grants(prod_plan) == expected
    # one dedicated account per service, one for the migration job, one per analytics role; project-level
    # grants only where a role cannot be scoped to a resource (the Ops Agent's log and metric writers)
    assert sorted(r["inputs"]["accountId"] for r in resources_of(prod_plan, SA)
                  if not r["inputs"]["accountId"].startswith(("netra-prod-", "netra-grafana"))) == [
        "netra-auth-prod", "netra-backend-prod", "netra-budget-build-prod", "netra-budget-guard-prod", "netra-frontend-prod",
        "netra-migrate-prod"]
    project_grants = {(r["inputs"]["member"], r["inputs"]["role"], r["type"]) for r in prod_plan["resources"]
                      if r["type"].startswith("gcp:projects/") and r["type"] != "gcp:projects/service:Service"}
    # ... and the budget guard's build identity (its image repository exists only after the first build)
    build = "serviceAccount:netra-budget-build-prod@netra-production.iam.gserviceaccount.com"
    project_roles |= {(build, role, "gcp:projects/iAMMember:IAMMember")
                      for role in ("roles/logging.logWriter", "roles/artifactregistry.writer")}
    assert project_grants - _observability_grants(prod_plan) == project_roles


def _observability_grants(plan: dict) -> set:
    """Grafana's own identity (monitoring.viewer, its provisioning bucket and ClickHouse secrets), the IAP
    members allowed to Grafana, and each service's metric writer (the Prometheus sidecar): checked in
    tests/test_analytics.py."""
    return {g for g in identity_table(plan) if g[1] in ("roles/monitoring.viewer", "roles/iap.httpsResourceAccessor")
            or (g[1] == "roles/monitoring.metricWriter" and "-prod@" in g[0] and "netra-prod-" not in g[0])
            or g[0].startswith("serviceAccount:netra-grafana")}


def test_identity_table_in_docs_matches_the_plan(prod_plan):
    """docs/explanation/platform.md lists every role granted and why; each grant in the plan appears there."""
    doc = (ROOT / "docs/explanation/platform.md").read_text()
    for _member, role, _what in identity_table(prod_plan):
        assert f"`{role}`" in doc, role


# ---------------------------------------------------------------- both stacks


# Prod-only by design: the billing budget, and the pager / extra email channels of its on-call routing.
PROD_ONLY_TYPES = {"gcp:billing/budget:Budget", "netra:observability:Budget",
                   "gcp:monitoring/notificationChannel:NotificationChannel"}


def _verification(plan: dict, r: dict) -> bool:
    """netra:verification resources differ per stack by design: the load test runs on staging, the budget guard
    exists where the budget does (prod)."""
    parents = {x["urn"]: x for x in plan["resources"]}
    while r:
        if r["type"].startswith("netra:verification:"):
            return True
        r = parents.get(r["parent"])
    return False


def test_staging_has_the_same_shape_as_prod(prod_plan, staging_plan):
    shape = lambda plan: sorted((r["type"], r["name"].replace("-prod-", "-").replace("-staging-", "-"))  # noqa: E731
                                for r in plan["resources"]
                                if r["type"] not in PROD_ONLY_TYPES and not _verification(plan, r)
                                # the enabled APIs follow the types present (tests/test_apis.py)
                                and r["type"] != "gcp:projects/service:Service")
    assert shape(prod_plan) == shape(staging_plan)


def test_platform_outputs(prod_plan):
    p = prod_plan["outputs"]["platform"]
    assert p["database"]["connectionName"] == "netra-production:us-central1:netra-production-db"
    assert p["buckets"] == {"staticAssets": "netra-production-static-assets", "backups": "netra-production-backups",
                            "migrations": "netra-production-migrations", "accessLogs": "netra-production-access-logs",
                            "releaseLedger": "netra-production-release-ledger"}
    assert p["edge"]["domains"] == ["app.netra.ai"] and p["edge"]["ip"]
    assert p["redis"] == {"instance": "netra-prod-redis", "port": 6378}


def test_dockerfile_runs_the_tested_runner():
    text = (ROOT / "migrations" / "Dockerfile").read_text()
    assert "COPY infra/migrate.py /app/migrate.py" in text and Path(ROOT / "infra" / "migrate.py").exists()
