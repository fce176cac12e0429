"""What Checkov checks and the rest of the pack did not: VPC flow logs, bucket access logs, Cloud Armor CVE
rules, HSTS on the load balancer, and backup protection that Cloud Storage accepts.
Checkov / CIS ids are in each policy's tags; `make scan` runs Checkov itself as the second opinion."""
from __future__ import annotations

import re

from pulumi_policy import Severity

from ._util import CIS_GCP, UNKNOWN, count, get, items, peek, points_to, resource_policy, sources, stack_policy

SUBNET = ("gcp:compute/subnetwork:Subnetwork",)
BUCKET = ("gcp:storage/bucket:Bucket",)
ARMOR = ("gcp:compute/securityPolicy:SecurityPolicy",)
LB_BACKENDS = ("gcp:compute/backendService:BackendService", "gcp:compute/backendBucket:BackendBucket")
# Subnets that cannot carry flow logs (proxy-only subnets), as Checkov exempts them.
NO_FLOW_LOG_PURPOSES = {"INTERNAL_HTTPS_LOAD_BALANCER", "REGIONAL_MANAGED_PROXY", "GLOBAL_MANAGED_PROXY"}
# The Cloud Armor rule set against Log4Shell-class CVEs (CVE-2021-44228, CVE-2021-45046).
CVE_RULE = re.compile(r"^evaluatePreconfigured(Expr|Waf)\('cve-canary'")
HSTS = re.compile(r"^\s*strict-transport-security\s*:\s*(.*)$", re.IGNORECASE)
MAX_AGE = re.compile(r"max-age=(\d+)", re.IGNORECASE)
DAY = 86400


def _flow_logs(props, config, args):
    if get(props, "purpose") in NO_FLOW_LOG_PURPOSES:
        return
    log = get(props, "logConfig")
    if not log:
        yield "no logConfig: VPC Flow Logs are off, so nothing records what this subnet's workloads reach"
    elif float(get(log, "flowSampling", 0.5)) <= 0:
        yield "logConfig.flowSampling is 0: flow logs are on but record nothing"


def _access_logs(props, config, args):
    exempt = config.get("logBucketPurpose", "access-logs")
    if (get(props, "labels", {}) or {}).get("purpose") == exempt:
        return  # the bucket the others log to
    if not get(props, "logging.logBucket"):
        yield f"no logging.logBucket: reads and writes of this bucket leave no usage log (label the log bucket purpose={exempt})"


def _backup_protection(props, config, args):
    pattern = re.compile(config.get("backupPattern", "backup"), re.IGNORECASE)
    labels = get(props, "labels", {}) or {}
    backup = bool(pattern.search(str(get(props, "name", ""))) or any(
        pattern.search(str(v)) for k, v in labels.items() if k in ("purpose", "role", "component")))
    period = get(props, "retentionPolicy.retentionPeriod")
    versioned = get(props, "versioning.enabled") is True
    if period is not None and versioned:
        # Any bucket: the API refuses this combination, so `pulumi up` would fail to create the bucket.
        yield "retentionPolicy and versioning.enabled together: Cloud Storage refuses a retention policy on a versioned bucket"
        return
    if not backup:
        return
    minimum = int(config.get("minRetentionDays", 1))
    if period is None and not versioned:
        yield "a backup bucket with neither a retentionPolicy nor versioning: an overwrite or delete loses the backup"
    elif period is not None and int(period) < minimum * DAY:
        yield f"retentionPolicy.retentionPeriod is {period} s; backups need at least {minimum} day(s)"


def _cve_rule(props, config, args):
    for rule in items(props, "rules"):
        expr = str(get(rule, "match.expr.expression", ""))
        if CVE_RULE.match(expr) and get(rule, "preview") is not True and str(get(rule, "action", "")).startswith("deny"):
            return
    yield ("no enforcing rule `evaluatePreconfiguredExpr('cve-canary')` with a deny action: Log4Shell-class "
           "exploits (CVE-2021-44228) reach the backends")


def _hsts(props, config, args):
    minimum = int(config.get("minMaxAgeSeconds", 31536000))
    for header in items(props, "customResponseHeaders"):
        m = HSTS.match(str(header))
        if m:
            age = MAX_AGE.search(m.group(1))
            if not age or int(age.group(1)) < minimum:
                yield f"Strict-Transport-Security max-age is {age.group(1) if age else 'missing'}; want >= {minimum} s"
            return
    yield "no Strict-Transport-Security in customResponseHeaders: browsers may still try plain HTTP first"


# env settings that decide whether a client verifies the server's certificate -> values that do
TLS_VERIFY_ENV = {"DB_SSLMODE": ("verify-ca", "verify-full"), "PGSSLMODE": ("verify-ca", "verify-full"),
                  "REDIS_SSL_CERT_REQS": ("required",)}


def _clients_verify(props, config, args):
    # a service's containers, or a job's (one template deeper)
    for c, container in enumerate(items(props, "template.containers") or items(props, "template.template.containers")):
        for env in items(container, "envs"):
            allowed = TLS_VERIFY_ENV.get(get(env, "name"))
            if allowed and get(env, "value") not in allowed:
                yield (f"template.containers[{c}] env {get(env, 'name')}={get(env, 'value')!r}: the client does not verify "
                       f"the server's certificate; use {' or '.join(allowed)} with the server CA mounted")


RUN_TYPES = ("gcp:cloudrunv2/service:Service", "gcp:cloudrunv2/job:Job")
VM_TYPES = ("gcp:compute/instanceTemplate:InstanceTemplate", "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate",
            "gcp:compute/instance:Instance")


def _on_subnet(r, prop: str, list_path: str, subnet) -> list[bool]:
    """For each entry of the list at `list_path` (network interfaces): does its `subnetwork` name `subnet`?
    Unknown in a preview: resolved through the engine's sources of `prop`; an unknown list is one entry."""
    n = count(r.props, list_path)
    if n is UNKNOWN:
        return [any(s.urn == subnet.urn for s in sources(r, prop))]
    return [points_to(r, prop, peek(r.props, f"{list_path}[{i}].subnetwork"), subnet) for i in range(n)]


def _needs_google_access(r, subnet) -> bool:
    """A VM without an external IP on the subnet, or a Cloud Run service/job sending ALL_TRAFFIC into it
    (its Google-bound traffic then enters the VPC); PRIVATE_RANGES_ONLY egress reaches Google outside the VPC."""
    if r.resource_type in VM_TYPES:
        on = _on_subnet(r, "networkInterfaces", "networkInterfaces", subnet)
        return any(hit and count(r.props, f"networkInterfaces[{i}].accessConfigs") in (0, UNKNOWN)
                   for i, hit in enumerate(on))
    tpl = "template.template" if r.resource_type.endswith(":Job") else "template"
    return (peek(r.props, f"{tpl}.vpcAccess.egress") == "ALL_TRAFFIC"
            and any(_on_subnet(r, "template", f"{tpl}.vpcAccess.networkInterfaces", subnet)))


def _private_google_access(resources, config):
    users = [r for r in resources if r.resource_type in RUN_TYPES + VM_TYPES]
    for subnet in resources:
        if subnet.resource_type != SUBNET[0] or peek(subnet.props, "privateIpGoogleAccess") is not True:
            continue
        if not any(_needs_google_access(r, subnet) for r in users):
            yield (f"subnet {get(subnet.props, 'name')}: privateIpGoogleAccess is on but nothing on it needs it (no VM "
                   f"without an external IP, no Cloud Run egress ALL_TRAFFIC): every caller on it reaches run.app "
                   f"URLs as internal traffic"), subnet.urn


POLICIES = [
    resource_policy("network-subnet-flow-logs", "Every subnet records VPC Flow Logs.",
                    "Set logConfig on the Subnetwork (aggregationInterval, flowSampling > 0, metadata).", SUBNET,
                    _flow_logs, framework=CIS_GCP, severity=Severity.MEDIUM, tags=["CIS-3.8", "CKV_GCP_26"]),
    resource_policy("bucket-access-logging", "Buckets write usage logs to the access-logs bucket.",
                    "Set logging.logBucket to the stack's access-logs bucket (label that bucket purpose=access-logs).",
                    BUCKET, _access_logs, severity=Severity.MEDIUM,
                    schema={"logBucketPurpose": {"type": "string", "default": "access-logs"}}, tags=["CKV_GCP_62"]),
    resource_policy("bucket-backup-protection",
                    "Backup buckets have a retention policy or versioning, and no bucket has both.",
                    "Give backup buckets retentionPolicy.retentionPeriod (preferred: nobody can delete or overwrite a "
                    "backup before it) or versioning.enabled; never both (the API refuses the combination).",
                    BUCKET, _backup_protection,
                    schema={"backupPattern": {"type": "string", "default": "backup"},
                            "minRetentionDays": {"type": "integer", "minimum": 1, "default": 1}},
                    tags=["CKV_GCP_78"]),
    resource_policy("armor-cve-rules", "Cloud Armor blocks Log4Shell-class CVE exploits.",
                    "Add a rule matching evaluatePreconfiguredExpr('cve-canary') with action deny(403), preview off "
                    "(netra:platform.edge.waf.cve).", ARMOR, _cve_rule, severity=Severity.CRITICAL,
                    tags=["CKV_GCP_73"]),
    resource_policy("cloudrun-tls-verify-server", "Database and Redis clients verify the server's certificate.",
                    "Set DB_SSLMODE=verify-ca (or verify-full) with DB_SSLROOTCERT, and REDIS_SSL_CERT_REQS=required, "
                    "with the server CA from Secret Manager mounted as a file.",
                    ("gcp:cloudrunv2/service:Service", "gcp:cloudrunv2/job:Job"), _clients_verify),
    resource_policy("lb-hsts", "Load-balancer backends send Strict-Transport-Security.",
                    "Add 'Strict-Transport-Security: max-age=31536000; includeSubDomains' to customResponseHeaders of "
                    "every backend service and backend bucket.", LB_BACKENDS, _hsts,
                    schema={"minMaxAgeSeconds": {"type": "integer", "minimum": 0, "default": 31536000}}),
    stack_policy("network-private-google-access", "Private Google Access is on only for subnets whose workloads need it.",
                 "Set privateIpGoogleAccess false on subnets with no VM lacking an external IP and no Cloud Run "
                 "service/job with vpcAccess.egress ALL_TRAFFIC (docs/iam.md).", _private_google_access,
                 severity=Severity.MEDIUM),
]
