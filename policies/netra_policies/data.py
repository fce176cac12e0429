"""Cloud SQL (PostgreSQL), Memorystore (Redis) and Cloud Storage: the Checkov / Trivy / CIS GCP checks
for these types (ids in each policy's tags), plus the seeds' versions (PostgreSQL 15+, Redis 7+)."""
from __future__ import annotations

import re

from pulumi_policy import Severity

from ._util import CIS_GCP, get, items, peek, resource_policy, truthy

SQL = ("gcp:sql/databaseInstance:DatabaseInstance",)
REDIS = ("gcp:redis/instance:Instance",)
BUCKET = ("gcp:storage/bucket:Bucket",)
OPEN_NETWORKS = {"0.0.0.0/0", "::/0", "0.0.0.0", "::"}
SSL_MODES = ["ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"]

# CIS GCP 6.2.x / Checkov CKV_GCP_51-57,108-111 database flags for PostgreSQL: flag -> accepted values.
SEVERITY_AT_LEAST_WARNING = ["warning", "error", "log", "fatal", "panic"]
SEVERITY_AT_LEAST_ERROR = ["error", "log", "fatal", "panic"]
CIS_FLAGS = {
    "log_checkpoints": ["on"],
    "log_connections": ["on"],
    "log_hostname": ["on"],
    "log_disconnections": ["on"],
    "log_lock_waits": ["on"],
    "log_error_verbosity": ["default", "terse"],
    "log_statement": ["ddl", "mod", "all"],
    "log_min_messages": SEVERITY_AT_LEAST_WARNING,
    "log_min_error_statement": SEVERITY_AT_LEAST_ERROR,
    "log_min_duration_statement": ["-1"],
    "log_temp_files": ["0"],
    "cloudsql.enable_pgaudit": ["on"],
}


def _pg_major(version: str) -> int | None:
    m = re.fullmatch(r"POSTGRES_(\d+)", version or "")
    return int(m.group(1)) if m else None


def _pg_version(props, config, args):
    minimum = int(config.get("minMajorVersion", 15))
    version = get(props, "databaseVersion", "")
    major = _pg_major(version)
    if major is None:
        yield f"databaseVersion is {version or 'unset'}; the platform runs PostgreSQL {minimum}+"
    elif major < minimum:
        yield f"databaseVersion is {version}; PostgreSQL {minimum}+ is required (seed 000)"


def _regional(props, config, args):
    got = get(props, "settings.availabilityType", "ZONAL")
    if got != "REGIONAL":
        yield f"settings.availabilityType is {got}; production needs REGIONAL (HA, seed 001)"


def _backups(props, config, args):
    if not truthy(get(props, "settings.backupConfiguration.enabled")):
        yield "settings.backupConfiguration.enabled is not true"
    if not truthy(get(props, "settings.backupConfiguration.pointInTimeRecoveryEnabled")):
        yield "settings.backupConfiguration.pointInTimeRecoveryEnabled is not true"


def _no_public_ip(props, config, args):
    # The API's default is ipv4Enabled = true: it must be turned off explicitly.
    if get(props, "settings.ipConfiguration.ipv4Enabled", True) is not False:
        yield "settings.ipConfiguration.ipv4Enabled is not false: the instance gets a public IP"
    # the VPC's self link is unknown until the VPC exists: set (unknown) is a private network
    if not peek(props, "settings.ipConfiguration.privateNetwork") and not peek(
            props, "settings.ipConfiguration.pscConfigs"):
        yield "settings.ipConfiguration has no privateNetwork (private IP) or pscConfigs"


def _no_open_networks(props, config, args):
    for i, n in enumerate(items(props, "settings.ipConfiguration.authorizedNetworks")):
        if str(get(n, "value", "")).strip() in OPEN_NETWORKS:
            yield f"settings.ipConfiguration.authorizedNetworks[{i}] allows {get(n, 'value')} (the whole internet)"


def _ssl(props, config, args):
    mode = get(props, "settings.ipConfiguration.sslMode")
    if mode not in SSL_MODES:
        yield f"settings.ipConfiguration.sslMode is {mode or 'unset'}; use one of {', '.join(SSL_MODES)}"


def _sql_deletion(props, config, args):
    if get(props, "deletionProtection") is not True:
        yield "deletionProtection (Pulumi/Terraform-side) is not true"
    if get(props, "settings.deletionProtectionEnabled") is not True:
        yield "settings.deletionProtectionEnabled (GCP-side) is not true"


def _flags(props, config, args):
    if _pg_major(get(props, "databaseVersion", "")) is None:
        return
    required = config.get("flags", CIS_FLAGS)
    have = {get(f, "name"): str(get(f, "value", "")).lower() for f in items(props, "settings.databaseFlags")}
    for flag, accepted in required.items():
        if flag not in have:
            yield f"database flag {flag} is not set (want {' or '.join(accepted)})"
        elif have[flag] not in [str(a).lower() for a in accepted]:
            yield f"database flag {flag} is {have[flag]!r} (want {' or '.join(accepted)})"


def _redis_ha(props, config, args):
    if get(props, "tier", "BASIC") != "STANDARD_HA":
        yield f"tier is {get(props, 'tier', 'BASIC')}; production needs STANDARD_HA (seed 001)"


def _redis_auth(props, config, args):
    if get(props, "authEnabled") is not True:
        yield "authEnabled is not true"


def _redis_tls(props, config, args):
    mode = get(props, "transitEncryptionMode", "DISABLED")
    if mode != "SERVER_AUTHENTICATION":
        yield f"transitEncryptionMode is {mode}; use SERVER_AUTHENTICATION"


def _redis_version(props, config, args):
    minimum = int(config.get("minMajorVersion", 7))
    version = get(props, "redisVersion", "")
    m = re.fullmatch(r"REDIS_(\d+)(_\w+)?", version or "")
    if not m:
        yield f"redisVersion is {version or 'unset (the API picks one)'}; pin REDIS_{minimum}_x or later"
    elif int(m.group(1)) < minimum:
        yield f"redisVersion is {version}; Redis {minimum}+ is required (seed 000)"


def _uniform(props, config, args):
    if get(props, "uniformBucketLevelAccess") is not True:
        yield "uniformBucketLevelAccess is not true (object ACLs stay possible)"


def _pap(props, config, args):
    got = get(props, "publicAccessPrevention", "inherited")
    label = config.get("publicByDesignLabel", "public-by-design")
    if got != "enforced" and (get(props, "labels", {}) or {}).get(label) != "true":
        yield f"publicAccessPrevention is {got}; set enforced, or label the bucket {label}=true if it is public by design"


POLICIES = [
    resource_policy("sql-postgres-version", "Cloud SQL runs PostgreSQL 15 or later.",
                    "Set databaseVersion to POSTGRES_15 or later (POSTGRES_16 preferred).", SQL, _pg_version,
                    schema={"minMajorVersion": {"type": "integer", "minimum": 9, "default": 15}},
                    tags=["CKV_GCP_79"]),
    resource_policy("sql-regional-ha", "Production Cloud SQL is REGIONAL (high availability).",
                    "Set settings.availabilityType = REGIONAL.", SQL, _regional, tags=["seed-001"]),
    resource_policy("sql-backups-pitr", "Cloud SQL has automated backups and point-in-time recovery.",
                    "Set settings.backupConfiguration.enabled and pointInTimeRecoveryEnabled to true.", SQL, _backups,
                    framework=CIS_GCP, tags=["CIS-6.7", "CKV_GCP_14"]),
    resource_policy("sql-no-public-ip", "Cloud SQL has no public IP; it is reached over a private network.",
                    "Set settings.ipConfiguration.ipv4Enabled = false and privateNetwork to the VPC.", SQL,
                    _no_public_ip, framework=CIS_GCP, tags=["CIS-6.6", "CKV_GCP_60"]),
    resource_policy("sql-no-open-authorized-networks", "Cloud SQL authorized networks never include 0.0.0.0/0.",
                    "Remove 0.0.0.0/0 from settings.ipConfiguration.authorizedNetworks; use private IP.", SQL,
                    _no_open_networks, framework=CIS_GCP, severity=Severity.CRITICAL,
                    tags=["CIS-6.5", "CKV_GCP_11"]),
    resource_policy("sql-ssl-enforced", "Cloud SQL accepts only encrypted connections.",
                    "Set settings.ipConfiguration.sslMode = ENCRYPTED_ONLY (or TRUSTED_CLIENT_CERTIFICATE_REQUIRED).",
                    SQL, _ssl, framework=CIS_GCP, tags=["CIS-6.4", "CKV_GCP_6"]),
    resource_policy("sql-deletion-protection", "Cloud SQL has both deletion protections on.",
                    "Set deletionProtection = true and settings.deletionProtectionEnabled = true.", SQL,
                    _sql_deletion),
    resource_policy("sql-cis-logging-flags", "Cloud SQL PostgreSQL sets the CIS logging database flags.",
                    "Add settings.databaseFlags: " + ", ".join(f"{k}={v[0]}" for k, v in CIS_FLAGS.items()) + ".",
                    SQL, _flags, framework=CIS_GCP, severity=Severity.MEDIUM,
                    schema={"flags": {"type": "object", "default": CIS_FLAGS}},
                    tags=["CIS-6.2.1..6.2.8", "CKV_GCP_51..57", "CKV_GCP_108..111"]),
    resource_policy("redis-standard-ha", "Production Memorystore Redis is STANDARD_HA.",
                    "Set tier = STANDARD_HA (seed 001: Redis HA configuration).", REDIS, _redis_ha),
    resource_policy("redis-auth", "Memorystore Redis requires AUTH.", "Set authEnabled = true and read the AUTH "
                    "string from Secret Manager.", REDIS, _redis_auth, tags=["CKV_GCP_95"]),
    resource_policy("redis-transit-encryption", "Memorystore Redis encrypts traffic in transit (TLS).",
                    "Set transitEncryptionMode = SERVER_AUTHENTICATION.", REDIS, _redis_tls, tags=["CKV_GCP_97"]),
    resource_policy("redis-version", "Memorystore runs Redis 7 or later.", "Set redisVersion = REDIS_7_2 (or later).",
                    REDIS, _redis_version,
                    schema={"minMajorVersion": {"type": "integer", "minimum": 3, "default": 7}}),
    resource_policy("bucket-uniform-access", "Buckets use uniform bucket-level access.",
                    "Set uniformBucketLevelAccess = true.", BUCKET, _uniform, framework=CIS_GCP,
                    tags=["CIS-5.2", "CKV_GCP_29"]),
    resource_policy("bucket-public-access-prevention", "Buckets enforce public access prevention.",
                    "Set publicAccessPrevention = enforced; a bucket public by design (served to browsers) "
                    "carries the label public-by-design=true instead.", BUCKET, _pap,
                    schema={"publicByDesignLabel": {"type": "string", "default": "public-by-design"}},
                    framework=CIS_GCP, severity=Severity.CRITICAL,
                    tags=["CIS-5.1", "CKV_GCP_114"]),
]
