"""Every policy of the go-live pack, the pulumi-policy-aws way: a compliant resource passes, a one-property
mutation of it violates exactly that policy. Resources are built with pulumi_gcp's typed Args under
Pulumi's mocks (a misspelt property fails here) and sent to the real pack over the analyzer protocol.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pulumi
import pulumi_gcp as gcp
import pytest

from infra.plan import plan_stack  # noqa: F401  (imports infra.plan before the engine, as the CLI does)
from infra.plan.analyzer import PackSession, PolicyConfig
from infra.plan.engine import SECRET_SIG, SIG_KEY, PlannedResource, run_program

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "policies"
PROJECT = "netra-production"
SERVICE = "gcp:cloudrunv2/service:Service"
SQL = "gcp:sql/databaseInstance:DatabaseInstance"
REDIS = "gcp:redis/instance:Instance"
BUCKET = "gcp:storage/bucket:Bucket"
SSL_POLICY = "gcp:compute/sSLPolicy:SSLPolicy"
HTTPS_PROXY = "gcp:compute/targetHttpsProxy:TargetHttpsProxy"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
DISK = "gcp:compute/disk:Disk"
SUBNET = "gcp:compute/subnetwork:Subnetwork"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
BACKEND_SERVICE = "gcp:compute/backendService:BackendService"
BACKEND_BUCKET = "gcp:compute/backendBucket:BackendBucket"
HSTS = "Strict-Transport-Security: max-age=31536000; includeSubDomains"
CIS_FLAGS = {"log_checkpoints": "on", "log_connections": "on", "log_hostname": "on", "log_disconnections": "on", "log_lock_waits": "on",
             "log_error_verbosity": "default", "log_statement": "ddl", "log_min_messages": "warning",
             "log_min_error_statement": "error", "log_min_duration_statement": "-1", "log_temp_files": "0",
             "cloudsql.enable_pgaudit": "on"}


def secret(value):
    return {SIG_KEY: SECRET_SIG, "value": value}


# ---------------------------------------------------------------- compliant resources (typed Args, mocks)

def data_and_edge_program() -> None:
    """Compliant Cloud SQL, Redis, bucket, SSL policy, HTTPS/HTTP front end and secret version."""
    sql = gcp.sql
    sql.DatabaseInstance("db", sql.DatabaseInstanceArgs(
        name="netra-db-prod", project=PROJECT, region="us-central1", database_version="POSTGRES_16",
        deletion_protection=True,
        settings=sql.DatabaseInstanceSettingsArgs(
            tier="db-custom-2-7680", availability_type="REGIONAL", deletion_protection_enabled=True,
            user_labels={"env": "prod", "managed-by": "pulumi"},
            backup_configuration=sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                enabled=True, point_in_time_recovery_enabled=True),
            ip_configuration=sql.DatabaseInstanceSettingsIpConfigurationArgs(
                ipv4_enabled=False, private_network="projects/netra-production/global/networks/netra",
                ssl_mode="ENCRYPTED_ONLY"),
            database_flags=[sql.DatabaseInstanceSettingsDatabaseFlagArgs(name=k, value=v) for k, v in CIS_FLAGS.items()],
        )))
    gcp.redis.Instance("cache", gcp.redis.InstanceArgs(
        name="netra-cache-prod", project=PROJECT, region="us-central1", memory_size_gb=5, tier="STANDARD_HA",
        auth_enabled=True, transit_encryption_mode="SERVER_AUTHENTICATION", redis_version="REDIS_7_2", deletion_protection=True,
        labels={"env": "prod"}))
    gcp.storage.Bucket("backups", gcp.storage.BucketArgs(
        name="netra-prod-backups", project=PROJECT, location="US", uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        retention_policy=gcp.storage.BucketRetentionPolicyArgs(retention_period=str(30 * 86400)),
        logging=gcp.storage.BucketLoggingArgs(log_bucket="netra-prod-access-logs", log_object_prefix="backups")))
    compute = gcp.compute
    compute.Subnetwork("egress", compute.SubnetworkArgs(
        name="netra-egress", project=PROJECT, region="us-central1", network="netra", ip_cidr_range="10.8.0.0/22",
        log_config=compute.SubnetworkLogConfigArgs(aggregation_interval="INTERVAL_5_SEC", flow_sampling=0.5,
                                                   metadata="INCLUDE_ALL_METADATA")))
    compute.SecurityPolicy("armor", compute.SecurityPolicyArgs(name="netra-armor", project=PROJECT, rules=[
        compute.SecurityPolicyRuleArgs(priority=900, action="deny(403)", preview=False, match=compute.SecurityPolicyRuleMatchArgs(
            expr=compute.SecurityPolicyRuleMatchExprArgs(expression="evaluatePreconfiguredExpr('cve-canary')"))),
        compute.SecurityPolicyRuleArgs(priority=2147483647, action="allow", match=compute.SecurityPolicyRuleMatchArgs(
            versioned_expr="SRC_IPS_V1", config=compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"])))]))
    compute.BackendService("backend", compute.BackendServiceArgs(
        name="netra-backend", project=PROJECT, load_balancing_scheme="EXTERNAL_MANAGED", protocol="HTTPS",
        custom_response_headers=[HSTS]))
    compute.BackendBucket("static", compute.BackendBucketArgs(
        name="netra-static", project=PROJECT, bucket_name="netra-prod-static", custom_response_headers=[HSTS]))
    policy = compute.SSLPolicy("tls", compute.SSLPolicyArgs(name="netra-tls", project=PROJECT,
                                                           min_tls_version="TLS_1_2", profile="MODERN"))
    compute.URLMap("https-map", compute.URLMapArgs(name="netra-https", project=PROJECT,
                                                   default_service="projects/p/global/backendServices/frontend"))
    compute.TargetHttpsProxy("https", compute.TargetHttpsProxyArgs(
        name="netra-https", project=PROJECT, url_map="netra-https", ssl_certificates=["netra-cert"],
        ssl_policy=policy.name))
    compute.URLMap("http-redirect", compute.URLMapArgs(
        name="netra-http-redirect", project=PROJECT,
        default_url_redirect=compute.URLMapDefaultUrlRedirectArgs(
            https_redirect=True, strip_query=False, redirect_response_code="MOVED_PERMANENTLY_DEFAULT")))
    compute.TargetHttpProxy("http", compute.TargetHttpProxyArgs(name="netra-http", project=PROJECT,
                                                                url_map="netra-http-redirect"))
    gcp.secretmanager.SecretVersion("api-key", gcp.secretmanager.SecretVersionArgs(
        secret="projects/netra-production/secrets/openai-api-key", secret_data="sk-not-a-real-key-000000000000"))


def stack_program() -> None:
    """The observability resources the stack checks want: alerts, dashboards, budget, log retention."""
    from netra_policies.seed_catalog import CANARY_DASHBOARD, SEED_ALERTS, SEED_DASHBOARDS

    mon = gcp.monitoring
    channel = mon.NotificationChannel("oncall", mon.NotificationChannelArgs(
        type="email", display_name="on-call", labels={"email_address": "oncall@example.com"}, project=PROJECT))
    for alert_id, severity in SEED_ALERTS.items():
        mon.AlertPolicy(alert_id, mon.AlertPolicyArgs(
            display_name=alert_id, combiner="OR", project=PROJECT,
            user_labels={"netra_alert": alert_id, "severity": severity},
            notification_channels=[channel.name],
            conditions=[mon.AlertPolicyConditionArgs(
                display_name=alert_id,
                condition_threshold=mon.AlertPolicyConditionConditionThresholdArgs(
                    filter='resource.type = "cloud_run_revision"', comparison="COMPARISON_GT", duration="60s",
                    threshold_value=1))]))
    for title in (*SEED_DASHBOARDS, CANARY_DASHBOARD):
        mon.Dashboard(title.lower().replace(" ", "-"), mon.DashboardArgs(
            project=PROJECT, dashboard_json=json.dumps({"displayName": f"Netra {title}", "gridLayout": {}})))
    gcp.billing.Budget("budget", gcp.billing.BudgetArgs(
        billing_account="000000-000000-000000", display_name="netra-prod",
        amount=gcp.billing.BudgetAmountArgs(specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
            currency_code="USD", units="10000")),
        threshold_rules=[gcp.billing.BudgetThresholdRuleArgs(threshold_percent=p) for p in (0.5, 0.8, 1.0)]))
    gcp.logging.ProjectBucketConfig("default-logs", gcp.logging.ProjectBucketConfigArgs(
        project=PROJECT, location="global", bucket_id="_Default", retention_days=30))


def _by_type(resources: list[PlannedResource]) -> dict[str, list[PlannedResource]]:
    out: dict[str, list[PlannedResource]] = {}
    for r in resources:
        out.setdefault(r.type, []).append(r)
    return out


@pytest.fixture(scope="session")
def pack_path():
    import sys

    if str(PACK) not in sys.path:
        sys.path.insert(0, str(PACK))
    return PACK


@pytest.fixture(scope="session")
def built(prod_plan, pack_path) -> dict:
    """type -> [PlannedResource]: compliant examples of every resource type the pack checks."""
    data = run_program(data_and_edge_program, "netra", "prod", {}, ()).resources
    stack = run_program(stack_program, "netra", "prod", {}, ()).resources
    out = _by_type(data + stack)
    # the repo's own prod backend service, with the ingress the platform issue sets
    svc = next(r for r in prod_plan["resources"] if r["type"] == SERVICE and r["name"] == "backend")
    inputs = copy.deepcopy(svc["inputs"])
    inputs["ingress"] = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    out[SERVICE] = [PlannedResource(svc["urn"], SERVICE, "backend", svc["parent"], inputs, True)]
    # the repo's own ClickHouse node template and data disk (analytics)
    for type_token, name in ((TEMPLATE, "clickhouse"), (DISK, "s1-r1-data")):
        r = next(x for x in prod_plan["resources"] if x["type"] == type_token and x["name"] == name)
        out[type_token] = [PlannedResource(r["urn"], type_token, name, r["parent"], copy.deepcopy(r["inputs"]), True)]
    out["stack"] = stack
    return out


@pytest.fixture(scope="session")
def pack(pack_path):
    """The real pack over the analyzer protocol, every policy mandatory (the CLI's `"all": "mandatory"`)."""
    with PackSession(PACK, "netra", "prod") as session:
        session.configure_stack()
        session.analyzer_info()
        session.configure({"all": PolicyConfig("mandatory")})
        yield session


def policies_hit(pack: PackSession, resource: PlannedResource) -> set[str]:
    return {v.policy for v in pack.analyze(resource)}


def mutated(resource: PlannedResource, mutate) -> PlannedResource:
    inputs = copy.deepcopy(resource.inputs)
    mutate(inputs)
    return dataclasses.replace(resource, inputs=inputs)  # options (protect) kept


def c0(i):
    return i["template"]["containers"][0]


def add_env(name, value):
    return lambda i: c0(i)["envs"].append({"name": name, "value": value})


def set_traffic(stable, canary):
    def m(i):
        i["traffics"][0]["percent"], i["traffics"][1]["percent"] = stable, canary
    return m


# (policy, resource type, mutation): each mutation changes one property of the compliant resource
CASES = [
    ("cloudrun-prod-min-instances", SERVICE, lambda i: i["template"]["scaling"].update(minInstanceCount=1)),
    ("cloudrun-image-digest", SERVICE, lambda i: c0(i).update(image="us-docker.pkg.dev/p/r/backend:latest")),
    ("cloudrun-no-plain-secret-env", SERVICE, add_env("OPENAI_API_KEY", "x")),
    ("cloudrun-no-plain-secret-env", SERVICE, add_env("DB_PASSWORD", "hunter2")),
    ("cloudrun-no-plain-secret-env", SERVICE, add_env("LLM_SETTINGS", "sk-ant-api03-AbCdEfGhIjKlMnOpQrSt")),
    ("cloudrun-no-plain-secret-env", SERVICE, add_env("SIGNING", "-----BEGIN RSA PRIVATE KEY-----\nMIIE")),
    ("cloudrun-no-plain-secret-env", SERVICE, add_env("REDIS_URL", "redis://default:pa55word@10.0.0.3:6379")),
    ("cloudrun-no-plain-secret-env", SERVICE, add_env("SESSION_SALT", "q8Zr!x2Lp9#Vt4Wm7Ns1Kd6Hf3Jb0Yc5")),
    ("cloudrun-no-plain-secret-env", SERVICE, add_env("FEATURE_CONFIG", secret("plain-but-secret"))),
    ("cloudrun-ingress-restricted", SERVICE, lambda i: i.update(ingress="INGRESS_TRAFFIC_ALL")),
    ("cloudrun-probes", SERVICE, lambda i: c0(i).pop("livenessProbe")),
    ("cloudrun-probes", SERVICE, lambda i: c0(i).pop("startupProbe")),
    ("cloudrun-traffic-ladder", SERVICE, set_traffic(80, 20)),
    ("cloudrun-traffic-ladder", SERVICE, set_traffic(100, 10)),
    # a bake's `previous` revision given a share (90 + 0 + 10 sums to 100; the candidate's 0 is a stage)
    ("cloudrun-traffic-ladder", SERVICE, lambda i: i.update(traffics=[
        {**i["traffics"][0], "percent": 90}, {**i["traffics"][1], "percent": 0},
        {**i["traffics"][0], "revision": i["traffics"][0]["revision"][:-8] + "0badc0de", "percent": 10, "tag": "previous"}])),
    ("cloudrun-prod-ladder-stages", SERVICE, lambda i: i["annotations"].update({"netra.dev/stages": "0,100"})),
    ("cloudrun-prod-ladder-stages", SERVICE, lambda i: i["annotations"].update({"netra.dev/stages": "0,10,100"})),
    ("cloudrun-prod-ladder-stages", SERVICE, lambda i: i["annotations"].pop("netra.dev/stages")),
    ("cloudrun-revision-name-prefix", SERVICE, lambda i: i["traffics"][0].update(revision="backend-a41c9e07")),
    ("cloudrun-no-latest-traffic", SERVICE,
     lambda i: i["traffics"][1].update(type="TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", revision=None)),
    ("cloudrun-no-latest-traffic", SERVICE, lambda i: i.update(traffics=[])),
    ("cloudrun-required-labels", SERVICE, lambda i: i["labels"].pop("cost-center")),
    ("cloudrun-deletion-protection", SERVICE, lambda i: i.update(deletionProtection=False)),
    ("sql-postgres-version", SQL, lambda i: i.update(databaseVersion="POSTGRES_14")),
    ("sql-regional-ha", SQL, lambda i: i["settings"].update(availabilityType="ZONAL")),
    ("sql-backups-pitr", SQL, lambda i: i["settings"]["backupConfiguration"].update(pointInTimeRecoveryEnabled=False)),
    ("sql-backups-pitr", SQL, lambda i: i["settings"]["backupConfiguration"].update(enabled=False)),
    ("sql-no-public-ip", SQL, lambda i: i["settings"]["ipConfiguration"].update(ipv4Enabled=True)),
    ("sql-no-open-authorized-networks", SQL,
     lambda i: i["settings"]["ipConfiguration"].update(authorizedNetworks=[{"name": "any", "value": "0.0.0.0/0"}])),
    ("sql-ssl-enforced", SQL, lambda i: i["settings"]["ipConfiguration"].update(sslMode="ALLOW_UNENCRYPTED_AND_ENCRYPTED")),
    ("sql-deletion-protection", SQL, lambda i: i.update(deletionProtection=False)),
    ("sql-deletion-protection", SQL, lambda i: i["settings"].update(deletionProtectionEnabled=False)),
    ("sql-cis-logging-flags", SQL, lambda i: i["settings"]["databaseFlags"].pop(1)),
    ("sql-cis-logging-flags", SQL, lambda i: i["settings"]["databaseFlags"][7].update(value="info")),
    ("sql-cis-logging-flags", SQL, lambda i: i["settings"]["databaseFlags"][2].update(value="off")),  # log_hostname
    ("redis-standard-ha", REDIS, lambda i: i.update(tier="BASIC")),
    ("redis-auth", REDIS, lambda i: i.update(authEnabled=False)),
    ("redis-transit-encryption", REDIS, lambda i: i.update(transitEncryptionMode="DISABLED")),
    ("redis-version", REDIS, lambda i: i.update(redisVersion="REDIS_6_X")),
    ("bucket-uniform-access", BUCKET, lambda i: i.update(uniformBucketLevelAccess=False)),
    ("bucket-public-access-prevention", BUCKET, lambda i: i.update(publicAccessPrevention="inherited")),
    ("bucket-backup-protection", BUCKET, lambda i: i.pop("retentionPolicy")),
    ("bucket-backup-protection", BUCKET, lambda i: i.update(versioning={"enabled": True})),  # the API refuses both
    ("bucket-backup-protection", BUCKET, lambda i: i["retentionPolicy"].update(retentionPeriod="3600")),
    ("bucket-access-logging", BUCKET, lambda i: i.pop("logging")),
    ("network-subnet-flow-logs", SUBNET, lambda i: i.pop("logConfig")),
    ("network-subnet-flow-logs", SUBNET, lambda i: i["logConfig"].update(flowSampling=0)),
    ("armor-cve-rules", ARMOR, lambda i: i["rules"][0].update(preview=True)),
    ("armor-cve-rules", ARMOR, lambda i: i["rules"].pop(0)),
    ("lb-canary-token-secret", ARMOR, lambda i: i["rules"].insert(1, {
        "priority": 1000, "action": "allow", "match": {"expr": {
            "expression": "request.headers['x-netra-verify-token'] == 'plaintexttoken0123456789abcdef'"}}})),
    ("cloudrun-tls-verify-server", SERVICE, lambda i: [e.update(value="require") for e in c0(i)["envs"]
                                                        if e["name"] == "DB_SSLMODE"]),
    ("cloudrun-tls-verify-server", SERVICE, lambda i: [e.update(value="none") for e in c0(i)["envs"]
                                                        if e["name"] == "REDIS_SSL_CERT_REQS"]),
    ("lb-hsts", BACKEND_SERVICE, lambda i: i.pop("customResponseHeaders")),
    ("lb-hsts", BACKEND_BUCKET, lambda i: i.update(customResponseHeaders=["Strict-Transport-Security: max-age=300"])),
    ("tls-ssl-policy-min-tls12", SSL_POLICY, lambda i: i.update(minTlsVersion="TLS_1_0")),
    ("tls-ssl-policy-min-tls12", SSL_POLICY, lambda i: i.update(profile="COMPATIBLE")),
    ("tls-https-proxy-ssl-policy", HTTPS_PROXY, lambda i: i.pop("sslPolicy")),
    ("secret-version-payload-secret", SECRET_VERSION, lambda i: i.update(secretData=i["secretData"]["value"])),
    ("gce-no-external-ip", TEMPLATE, lambda i: i["networkInterfaces"][0].update(accessConfigs=[{"networkTier": "PREMIUM"}])),
    ("gce-shielded-vm", TEMPLATE, lambda i: i["shieldedInstanceConfig"].update(enableSecureBoot=False)),
    ("gce-shielded-vm", TEMPLATE, lambda i: i.pop("shieldedInstanceConfig")),
    ("gce-os-login", TEMPLATE, lambda i: i["metadata"].update({"enable-oslogin": "FALSE"})),
    ("gce-template-disk-encryption", TEMPLATE, lambda i: i["disks"][0]["labels"].pop("disk-encryption")),
    ("gce-disk-encryption", DISK, lambda i: i["labels"].pop("disk-encryption")),
    ("gce-disk-encryption", DISK, lambda i: i["labels"].update({"disk-encryption": "none"})),
]


def test_compliant_examples_pass_every_policy(pack, built):
    for type_token, resources in built.items():
        if type_token == "stack":
            continue
        for r in resources:
            assert pack.analyze(r) == [], f"{type_token} {r.name}"


@pytest.mark.parametrize("policy,type_token,mutate", CASES,
                         ids=[f"{p}-{n}" for n, (p, _, _) in enumerate(CASES)])
def test_one_property_mutation_violates_exactly_that_policy(pack, built, policy, type_token, mutate):
    base = built[type_token][0]
    assert policy not in policies_hit(pack, base)
    bad = mutated(base, mutate)
    violations = pack.analyze(bad)
    assert {v.policy for v in violations} == {policy}, [v.message for v in violations]
    assert all(v.level == "mandatory" and v.urn == base.urn and v.message for v in violations)


def test_secret_payload_detection_reads_the_wire(pack, built):
    """pulumi_gcp wraps secretData as a secret; the pack sees that on the wire although pulumi_policy
    unwraps `args.props` (see policies/netra_policies/_wire.py)."""
    version = built[SECRET_VERSION][0]
    assert version.inputs["secretData"][SIG_KEY] == SECRET_SIG
    plain = mutated(version, lambda i: i.update(secretData="hunter2"))
    [v] = pack.analyze(plain)
    assert "plaintext" in v.message and "hunter2" not in v.message


def test_every_policy_has_metadata_and_a_violating_case(pack):
    names = [p.name for p in pack.policies]
    assert len(names) == len(set(names))
    stack_cases = {"cloudrun-dedicated-service-account", "cloudrun-traffic-approved", "tls-http-redirects-to-https",
                   "stack-seed-alerts", "stack-seed-dashboards", "stack-billing-budget", "stack-log-retention",
                   "grafana-behind-auth", "lb-canary-route-private", "stateful-protected"}
    from .test_policy_iam import IAM_POLICIES  # cased in tests/test_policy_iam.py

    stack_cases |= IAM_POLICIES - {"iam-role-deny-list"} | {"network-private-google-access"}  # and this one
    assert set(names) == {c[0] for c in CASES} | stack_cases | IAM_POLICIES
    for p in pack.policies:
        assert p.description.endswith(".") and len(p.description) > 20, p.name
        assert p.remediation and len(p.remediation) > 20, p.name
        assert p.enforcement_level == "mandatory", p.name  # the pack default; stacks relax in config.<stack>.json
        assert p.kind == ("stack" if p.name in stack_cases else "resource"), p.name


def test_wire_numbers_and_unset_scaling():
    """Numbers arrive as doubles; unset minInstanceCount counts as 0."""
    from netra_policies._util import get

    assert get({"a": {"b": [1.0, {"c": 2.5}]}}, "a.b[0]") == 1 and isinstance(get({"a": 1.0}, "a"), int)
    assert get({"a": {"b": [1.0, {"c": 2.5}]}}, "a.b[1].c") == 2.5
    assert get({}, "template.scaling.minInstanceCount", 0) == 0


def test_secret_looking_values_spare_the_seed_settings(prod_plan, pack_path):
    from netra_policies.cloudrun import secret_looking

    svc = next(r for r in prod_plan["resources"] if r["type"] == SERVICE)
    for env in svc["inputs"]["template"]["containers"][0]["envs"]:
        if "value" not in env:  # a Secret Manager reference (valueSource), not a plain setting
            continue
        assert secret_looking(env["name"], str(env.get("value", ""))) is None, env
    assert secret_looking("GITHUB_TOKEN", "x") and secret_looking("X", "AKIAABCDEFGHIJKLMNOP")
    assert secret_looking("IMAGE_DIGEST", "sha256:" + "ab12" * 16) is None


def test_pack_converts_each_request_once_and_every_policy_still_gets_its_own_copy(pack_path):
    """_wire caches MessageToDict per request message (pulumi_policy converts it once per policy)."""
    from google.protobuf import struct_pb2
    from netra_policies import _wire
    from pulumi_policy import policy as pp
    from pulumi_policy.deserialize import deserialize_properties

    assert _wire.CONVERSION_CACHED and isinstance(pp.json_format, _wire._ConvertOncePerRequest)
    first, second = struct_pb2.Struct(), struct_pb2.Struct()
    first.update({"a": {"b": [1, 2]}})
    second.update({"a": {"b": [3]}})
    once = pp.json_format.MessageToDict(first)
    assert pp.json_format.MessageToDict(first) is once  # same request: converted once
    assert pp.json_format.MessageToDict(second) == {"a": {"b": [3.0]}}  # another request: converted anew
    copy1, copy2 = deserialize_properties(once), deserialize_properties(once)
    copy1["a"]["b"].append(99)
    assert copy2 == {"a": {"b": [1.0, 2.0]}} and once == {"a": {"b": [1.0, 2.0]}}
    assert pp.json_format.MessageToDict(first, preserving_proto_field_name=True) is not once  # other calls pass through
