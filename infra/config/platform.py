"""`netra:platform`: network, Cloud SQL, Memorystore, buckets, secrets, migrations and the edge.

Seed 001's data layer (Cloud SQL PostgreSQL HA with connection pooling, Memorystore Redis HA, Cloud
Storage for static assets and backups), its secrets (prod-token-optimization-config,
prod-pricing-config, prod-feature-flags) and its load balancer, as typed config. Both stacks carry
the same shape; staging is smaller. Every check names its key and the numbers involved.
"""
from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any, Iterable, Literal, Optional, Union, get_args

from pydantic import AllowInfNan, Field, SecretStr, Strict, StrictBool, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ErrorType as ErrorTypeLiteral

from .analytics import ClickHouseConfig
from .base import (DIGEST, Distinct, MAX_FLOAT, MAX_INT, PROBLEMS_ERROR, Bool, ConfigModel, Float, Hostname, Image, Int,
                   hostname_problem, ordered_after, problems, text)

# Secret keys a service may read through `netra:services.<svc>.secrets` (ENV_NAME: key). Each is a
# Secret Manager secret named `<environment>-<key>` (prod-feature-flags, as the seed names them).
CONFIG_SECRETS = ("token-optimization-config", "pricing-config", "feature-flags")
DB_SECRETS = ("db-password", "db-host", "db-ca")
# The migration user's password: read by the migration job only, never a service's `secrets`.
MIGRATION_SECRETS = ("db-migrate-password",)
CACHE_SECRETS = ("redis-auth", "redis-host", "redis-ca")
# What a ClickHouse client reads (when netra:platform.clickhouse is set): host (the internal load
# balancer's address), the app user's password and the CA that signed the nodes' TLS certificate.
CLICKHOUSE_SECRETS = ("clickhouse-host", "clickhouse-password", "clickhouse-ca")
SECRET_KEYS: frozenset[str] = frozenset(CONFIG_SECRETS + DB_SECRETS + CACHE_SECRETS + CLICKHOUSE_SECRETS)
# Every other Secret Manager secret the stack itself creates as `<environment>-<key>`: the migration
# password, the Managed Prometheus config, ClickHouse's node and TLS secrets, Grafana's admin password and
# the emergency budget's PagerDuty key, the rollout verifier's load-balancer token. An app secret (netra:platform.appSecrets) may take none of these.
STACK_SECRETS = ("prometheus-config", "clickhouse-interserver-password", "clickhouse-admin-password",
                 "clickhouse-grafana-password", "clickhouse-backup-hmac-id", "clickhouse-backup-hmac-secret",
                 "clickhouse-tls-cert", "clickhouse-tls-key", "grafana-admin-password", "grafana-iap-audience",
                 "pagerduty-key",
                 "canary-verify-token", "emergency-limits")
# The emergency budget limits (seed 000 severity 3) live in a secret of their own that only the budget guard
# writes (Pulumi adds its first, "off" version once and never updates it): a flags change made through
# Pulumi can never turn them off. Every service that reads feature-flags also gets this file mounted, and
# the flags may not carry its keys.
EMERGENCY_SECRET = "emergency-limits"
EMERGENCY_KEYS = ("enable_emergency_limits", "max_hourly_cost")
RESERVED_SECRET_KEYS: frozenset[str] = SECRET_KEYS | frozenset(MIGRATION_SECRETS + STACK_SECRETS)
# Secret Manager keys a user declares (an LLM provider's API key, ...): the same naming rule as the
# platform keys, and short enough that `<environment>-<key>` and the grant names stay readable.
SECRET_KEY_PATTERN = r"[a-z](?:[a-z0-9-]*[a-z0-9])?"
APP_SECRETS_KEY = "netra:platform.appSecrets"
# Secret Manager's payload limit
SECRET_PAYLOAD_MAX_BYTES = 65536
# A service that reads this secret is a database client: it gets a pool and counts against max_connections,
# and its own database user, whose password is the secret `<env>-<service>-db-password` (db_password_key).
DB_CLIENT_SECRET = "db-password"
DB_PASSWORD_SUFFIX = "-db-password"


def db_password_key(service: str) -> str:
    """The platform secret key of a database client's own password: `<service>-db-password`."""
    return f"{service}{DB_PASSWORD_SUFFIX}"

DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
REDIS_VERSIONS = {"7.0": "REDIS_7_0", "7.2": "REDIS_7_2"}
SHARED_CORE_TIERS = ("db-f1-micro", "db-g1-small")
PERF_OPTIMIZED_CPUS = (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)
PG_IDENT = r"[a-z_][a-z0-9_]*"
# Direct VPC egress takes up to two subnet addresses per instance (Cloud Run docs, "IP address allocation").
ADDRESSES_PER_INSTANCE = 2


def secret_id(environment: str, key: str) -> str:
    """The Secret Manager secret id of a platform secret key, e.g. prod-feature-flags."""
    return f"{environment}-{key}"


class MaintenanceWindow(ConfigModel):
    """A weekly window (UTC) in which Google may restart the instance."""

    day: Literal[DAYS] = Field("SUNDAY", description="the weekly window's day (UTC)")  # type: ignore[valid-type]
    hour: Int = Field(4, ge=0, le=23, description="UTC hour the window starts")

    @property
    def day_number(self) -> int:
        """Cloud SQL numbers days 1 (Monday) to 7 (Sunday)."""
        return DAYS.index(self.day) + 1


class NetworkConfig(ConfigModel):
    subnet_cidr: text(43) = Field("10.8.0.0/22", description="subnet for Cloud Run Direct VPC egress (/26 or larger)")
    private_services_cidr: text(43) = Field(
        "10.60.0.0/16", description="range allocated to private services access (Cloud SQL, Memorystore), /24 or larger")
    flow_log_sampling: Float = Field(
        0.5, gt=0, le=1, description="share of the egress subnet's flows recorded by VPC Flow Logs (CIS 3.8)")

    @field_validator("subnet_cidr")
    @classmethod
    def _subnet(cls, v: str) -> str:
        return _cidr(v, largest_prefix=26, what="Direct VPC egress needs a /26 or larger subnet")

    @field_validator("private_services_cidr")
    @classmethod
    def _psa(cls, v: str, info: ValidationInfo) -> str:
        v = _cidr(v, largest_prefix=24, what="private services access needs a /24 or larger range")
        subnet = info.data.get("subnet_cidr")
        if subnet and ipaddress.ip_network(subnet).overlaps(ipaddress.ip_network(v)):
            raise ValueError(f"overlaps subnetCidr {subnet}, got {v!r}")
        return v

    @property
    def psa_address(self) -> str:
        return str(ipaddress.ip_network(self.private_services_cidr).network_address)

    @property
    def psa_prefix(self) -> int:
        return ipaddress.ip_network(self.private_services_cidr).prefixlen

    @property
    def subnet_capacity(self) -> int:
        # GCP reserves four addresses in every subnet
        return ipaddress.ip_network(self.subnet_cidr).num_addresses - 4


class SqlBackups(ConfigModel):
    start_time: text(5, r"([01][0-9]|2[0-3]):00", "HH:00 (UTC)") = Field(
        "03:00", description="UTC start of the daily backup, HH:00")
    retained_backups: Int = Field(14, ge=1, le=365, description="automated backups kept")
    transaction_log_retention_days: Int = Field(
        7, ge=1, le=35, description="point-in-time recovery window (ENTERPRISE: at most 7 days)")


class DatabaseConfig(ConfigModel):
    instance_name: Optional[text(98, r"[a-z][a-z0-9-]*[a-z0-9]", "a Cloud SQL instance name (lowercase letters, digits, -)")] = Field(
        None, description="immutable: a change replaces the instance and drops its databases (netra:allowReplace, docs/data-safety.md); Cloud SQL instance name; default netra-<environment>-db")
    tier: text(64) = Field("db-custom-2-7680", description="db-custom-<vCPU>-<MiB>, db-perf-optimized-N-<vCPU>, db-f1-micro, db-g1-small")
    availability_type: Literal["REGIONAL", "ZONAL"] = Field("REGIONAL", description="REGIONAL = HA with standby in another zone")
    disk_size_gb: Int = Field(20, ge=10, le=65536, description="SSD size in GB (autoresize on; it never shrinks)")
    database_name: text(63, PG_IDENT, "a PostgreSQL identifier (lowercase letters, digits, _)") = Field("netra",
        description="immutable: a change replaces the database (netra:allowReplace, docs/data-safety.md); the application database")
    user_name: text(48, PG_IDENT, "a PostgreSQL identifier (lowercase letters, digits, _)") = Field(
        "netra_app", description="immutable: a change replaces the users (netra:allowReplace, docs/data-safety.md); "
                                 "prefix of the services' users: each database client connects as "
                                 "<userName>_<service>, rows only (the migration job restricts them after every run)")
    migration_user_name: text(63, PG_IDENT, "a PostgreSQL identifier (lowercase letters, digits, _)") = Field(
        "netra_migrate", description="immutable: a change replaces the user (netra:allowReplace, docs/data-safety.md); the migration job's user: owns the schema")
    ssl_mode: Literal["ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"] = Field("ENCRYPTED_ONLY",
        description="ENCRYPTED_ONLY: TLS required; TRUSTED_CLIENT_CERTIFICATE_REQUIRED: client certificates too")
    max_connections: Int = Field(200, ge=14, le=262143, description="PostgreSQL max_connections flag")
    pool_reserve: Int = Field(
        20, ge=1, le=10000, description="connections kept out of the pools: migrations, admin, Cloud SQL's own")
    pool_size: Optional[Int] = Field(
        None, ge=1, le=1000,
        description="connections per instance of every database client without its own dbPoolSize")
    pgaudit_log: text(256, r"-?[a-z]+(,-?[a-z]+)*", "pgaudit classes like ddl,role") = Field(
        "ddl,role", description="pgaudit.log classes")
    backups: SqlBackups = SqlBackups()
    maintenance: MaintenanceWindow = MaintenanceWindow()

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str) -> str:
        problem = tier_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("migration_user_name")
    @classmethod
    def _own_user(cls, v: str, info: ValidationInfo) -> str:
        if v == info.data.get("user_name"):
            raise ValueError(f"must differ from userName ({v}): the services' user must not own the schema")
        return v

    @model_validator(mode="after")
    def _pitr_window(self) -> "DatabaseConfig":
        if self.edition == "ENTERPRISE" and self.backups.transaction_log_retention_days > 7:
            raise problems(("backups.transactionLogRetentionDays",
                            f"must be <= 7 on ENTERPRISE edition tiers ({self.tier}), got {self.backups.transaction_log_retention_days}"))
        return self

    @property
    def edition(self) -> str:
        return "ENTERPRISE_PLUS" if self.tier.startswith("db-perf-optimized-") else "ENTERPRISE"

    def instance(self, environment: str) -> str:
        return self.instance_name or f"netra-{environment}-db"


def tier_problem(tier: str) -> Optional[str]:
    """Why `tier` is not a Cloud SQL PostgreSQL machine type, or None."""
    allowed = "db-custom-<vCPU>-<MiB> (e.g. db-custom-4-16384), db-perf-optimized-N-<vCPU>, db-f1-micro or db-g1-small"
    if tier in SHARED_CORE_TIERS:
        return None
    m = re.fullmatch(r"db-perf-optimized-N-(\d+)", tier)
    if m:
        return None if int(m.group(1)) in PERF_OPTIMIZED_CPUS else (
            f"unknown tier {tier!r}: db-perf-optimized-N takes {', '.join(map(str, PERF_OPTIMIZED_CPUS))} vCPUs")
    m = re.fullmatch(r"db-custom-(\d+)-(\d+)", tier)
    if not m:
        return f"unknown tier {tier!r}; allowed: {allowed}"
    cpus, mib = int(m.group(1)), int(m.group(2))
    if not (cpus == 1 or (cpus % 2 == 0 and 2 <= cpus <= 96)):
        return f"unknown tier {tier!r}: vCPUs must be 1 or an even number 2-96, got {cpus}"
    if mib % 256 or not (max(3840, 922 * cpus) <= mib <= 6656 * cpus):
        return (f"unknown tier {tier!r}: memory must be a multiple of 256 MiB, 0.9-6.5 GiB per vCPU and at least "
                f"3840 MiB, got {mib} MiB for {cpus} vCPU")
    return None


class CacheConfig(ConfigModel):
    instance_name: Optional[text(40, r"[a-z][a-z0-9-]*[a-z0-9]", "a Memorystore instance id (lowercase letters, digits, -)")] = Field(
        None, description="immutable: a change replaces the instance (netra:allowReplace, docs/data-safety.md); Memorystore instance name; default netra-<environment>-redis")
    tier: Literal["BASIC", "STANDARD_HA"] = Field("STANDARD_HA", description="immutable: a change replaces the instance (netra:allowReplace, docs/data-safety.md); STANDARD_HA = replica with automatic failover")
    memory_size_gb: Int = Field(5, ge=1, le=300, description="Redis memory in GB")
    redis_version: str = Field("7.2", description="immutable: a downgrade replaces the instance (netra:allowReplace, docs/data-safety.md); one of " + ", ".join(REDIS_VERSIONS))
    rdb_snapshot_period: Literal["ONE_HOUR", "SIX_HOURS", "TWELVE_HOURS", "TWENTY_FOUR_HOURS"] = Field("ONE_HOUR",
        description="how often Redis writes an RDB snapshot (persistence)")
    maxmemory_policy: Literal["noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu",
                              "allkeys-random", "volatile-random", "volatile-ttl"] = Field(
        "allkeys-lru", description="Redis eviction policy when memory is full")
    maintenance: MaintenanceWindow = MaintenanceWindow()

    @field_validator("redis_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v):
            v = f"{v:.1f}"
        if not isinstance(v, str) or v not in REDIS_VERSIONS:
            raise ValueError(f"unknown Redis version {v!r}; allowed: {', '.join(REDIS_VERSIONS)} (seed: Redis 7+)")
        return v

    @property
    def version_enum(self) -> str:
        return REDIS_VERSIONS[self.redis_version]

    def instance(self, environment: str) -> str:
        return self.instance_name or f"netra-{environment}-redis"


class StaticAssetsBucket(ConfigModel):
    public: Bool = Field(False, description="public by design: objects readable by allUsers (served through the CDN)")
    cdn_default_ttl_seconds: Int = Field(3600, ge=0, le=31536000, description="Cloud CDN default TTL of static assets")
    cdn_max_ttl_seconds: Int = Field(86400, ge=0, le=31536000, description="Cloud CDN maximum TTL of static assets")


class BackupsBucket(ConfigModel):
    """Protected by a retention policy, not by Object Versioning: Cloud Storage refuses a retention policy on
    a versioned bucket, and the retention policy is the stronger guard (nobody, not even a compromised
    writer, deletes or overwrites a backup younger than `retentionDays`; versions can be deleted)."""

    retention_days: Int = Field(30, ge=1, le=3650, description="objects cannot be deleted or replaced before this age")
    nearline_after_days: Int = Field(30, ge=1, description="backups move to NEARLINE at this age (< coldlineAfterDays)")
    coldline_after_days: Int = Field(90, ge=1, description="backups move to COLDLINE at this age (< archiveAfterDays)")
    archive_after_days: Int = Field(365, ge=1, description="backups move to ARCHIVE at this age")

    @field_validator("coldline_after_days")
    @classmethod
    def _after_nearline(cls, v: int, info: ValidationInfo) -> int:
        return ordered_after(v, info, "nearline_after_days", ">")

    @field_validator("archive_after_days")
    @classmethod
    def _after_coldline(cls, v: int, info: ValidationInfo) -> int:
        return ordered_after(v, info, "coldline_after_days", ">")


class AccessLogsBucket(ConfigModel):
    retention_days: Int = Field(90, ge=1, le=3650, description="usage logs of the other buckets are deleted at this age")


class ReleaseLedgerBucket(ConfigModel):
    """The bucket of the release ledger (docs/release-ledger.md)."""

    writers: tuple[text(200, r"serviceAccount:[a-z0-9-]+@[a-z0-9-]+\.iam\.gserviceaccount\.com",
                        "serviceAccount:<name>@<project>.iam.gserviceaccount.com"), ...] = Field(
        (), description="the deploy and gate identities: the only members granted to write the ledger "
                        "(roles/storage.objectUser on the bucket)")
    soft_delete_days: Int = Field(30, ge=7, le=90, description="deleted or overwritten generations stay "
                                                               "restorable this long (soft delete)")
    noncurrent_days: Int = Field(365, ge=30, le=3650, description="old generations (the audit trail) are "
                                                                  "deleted this many days after they were replaced")


class StorageConfig(ConfigModel):
    location: text(32, r"[A-Z0-9-]+", "a bucket location like US or US-CENTRAL1") = Field(
        "US", description="immutable: a change replaces every bucket (netra:allowReplace, docs/data-safety.md); bucket location (multi-region like US, or a region like US-CENTRAL1)")
    static_assets: StaticAssetsBucket = StaticAssetsBucket()
    backups: BackupsBucket = BackupsBucket()
    access_logs: AccessLogsBucket = AccessLogsBucket()
    release_ledger: ReleaseLedgerBucket = ReleaseLedgerBucket()


class WafRules(ConfigModel):
    """Cloud Armor preconfigured WAF rules (OWASP CRS 3.3), each on or off."""

    sqli: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: SQL injection")
    xss: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: cross-site scripting")
    lfi: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: local file inclusion")
    rfi: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: remote file inclusion")
    rce: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: remote code execution")
    scanner_detection: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: scanner detection")
    protocol_attack: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: protocol attacks")
    session_fixation: Bool = Field(True, description="Cloud Armor preconfigured OWASP CRS 3.3 rule: session fixation")
    method_enforcement: Bool = Field(False,
        description="Cloud Armor preconfigured OWASP CRS 3.3 rule: HTTP method enforcement (off by default)")
    cve: Bool = Field(True, description="Cloud Armor cve-canary rule: Log4Shell (CVE-2021-44228, CVE-2021-45046), "
                                        "all signatures, always blocking (not subject to `preview`)")
    sensitivity: Int = Field(1, ge=1, le=4, description="CRS paranoia level")
    preview: Bool = Field(False, description="log matches without blocking (roll out new rules in preview first)")

    def enabled(self) -> list[str]:
        """OWASP CRS rule set names, e.g. sqli-v33-stable, in declaration order."""
        names = {"scanner_detection": "scannerdetection", "protocol_attack": "protocolattack",
                 "session_fixation": "sessionfixation", "method_enforcement": "methodenforcement"}
        return [f"{names.get(f, f)}-v33-stable" for f in type(self).model_fields
                if f not in ("sensitivity", "preview", "cve") and getattr(self, f)]


class RateLimit(ConfigModel):
    requests_per_minute: Int = Field(600, ge=1, le=100000, description="per client IP, across all paths")
    ban_seconds: Int = Field(300, ge=0, le=86400, description="0: throttle only; >0: ban offenders this long")


class EdgeConfig(ConfigModel):
    domains: list[Hostname] = Field(min_length=1, max_length=100, description="hostnames of the managed certificate")
    static_paths: Annotated[list[text(1024, r"/[A-Za-z0-9._~\-/]*\*?", "a URL path, optionally ending in *")], Distinct] = Field(
        default_factory=lambda: ["/static/*", "/assets/*"], max_length=50, description="paths served from the static-assets bucket")
    log_sample_rate: Float = Field(1.0, ge=0, le=1, description="share of requests logged by the backend services")
    hsts_max_age_seconds: Int = Field(
        31536000, ge=86400, le=63072000,
        description="Strict-Transport-Security max-age the load balancer adds to every response (includeSubDomains)")
    rate_limit: RateLimit = RateLimit()
    waf: WafRules = WafRules()

    @field_validator("domains")
    @classmethod
    def _hostnames(cls, domains: list[str]) -> list[str]:
        found = [(str(i), f"repeats {d!r}") for i, d in enumerate(domains) if d in domains[:i]]
        if found:
            raise problems(*found)
        return domains


class MigrationsConfig(ConfigModel):
    image: Image = Field(description="runner image built from migrations/Dockerfile; in prod pinned by digest")
    timeout_seconds: Int = Field(600, ge=30, le=86400, description="the migration job's task timeout")
    max_retries: Int = Field(0, ge=0, le=10, description="a failed migration is looked at, not retried blindly")


# The seed's success criteria (000, "Success Criteria" per optimization), the defaults of a flag whose
# `criteria.optimization` (or, without one, whose name) is one of these. Errors and latency are the gate's
# guardrails for every flag; memory is per revision, not per flag arm (both arms share the containers), so
# "memory usage increase < 5 %" is judged on revision canaries. Prompt caching's "cost reduction 70-90 % on
# cached queries" is read per request of the on arm (hits and misses), a stricter reading.
SEED_CRITERIA: dict[str, dict[str, Any]] = {
    "conversation_pruning": {"tokens_change": (-0.60, -0.40), "quality_min_ratio": 0.95},
    "prompt_caching": {"cache_hit_rate_min": 0.85, "cost_change": (-0.90, -0.70), "cache_p95_max_ms": 50.0},
    "semantic_caching": {"cache_hit_rate_min": 0.85, "match_accuracy_min": 0.90, "cost_change": (-0.40, -0.20)},
    "token_budget_enforcement": {"tracking_accuracy_min": 0.98},
}
Change = Annotated[tuple[Float, Float], Field(description="[lo, hi] as fractions of the off arm, -1 < lo <= hi < 1")]
Share = Annotated[Float, Field(gt=0, lt=1)]


class FlagCriteria(ConfigModel):
    """What an optimization must deliver (its on arm against its off arm) before its ramp climbs
    (infra/canary/value.py). Keys left out take the seed's value for `optimization`."""

    optimization: Optional[Literal["conversation_pruning", "prompt_caching", "semantic_caching",
                                   "token_budget_enforcement", "none"]] = Field(
        None, description="whose seed defaults apply (default: the flag's name if it is one of these; none: no defaults)")
    tokens_change: Optional[Change] = Field(None, description="tokens per request, e.g. [-0.60, -0.40]")
    cost_change: Optional[Change] = Field(None, description="LLM cost per request, e.g. [-0.90, -0.70]")
    quality_min_ratio: Optional[Float] = Field(None, gt=0, le=1, description="quality score >= this x the off arm's")
    cache_hit_rate_min: Optional[Share] = Field(None, description="hit rate of the on arm's cache lookups above this")
    cache_p95_max_ms: Optional[Float] = Field(None, gt=0, le=60000, description="cache lookup p95 below this (ms)")
    match_accuracy_min: Optional[Share] = Field(None, description="semantic-match accuracy above this")
    tracking_accuracy_min: Optional[Share] = Field(None, description="budget-tracking accuracy above this")
    on_miss: Literal["hold", "rollback"] = Field("hold", description="a target confidently missed: hold or roll back")

    @field_validator("tokens_change", "cost_change")
    @classmethod
    def _band(cls, v):
        if v is not None and not (-1 < v[0] <= v[1] < 1):
            raise ValueError(f"must be [lo, hi] with -1 < lo <= hi < 1 (fractions of the off arm), got {list(v)}")
        return v


def flag_criteria(flag: str, ramp: Any) -> Optional[dict[str, Any]]:
    """The success criteria of a flag (seed defaults overlaid with its own keys), as
    infra.canary.value.Criteria keyword arguments; None when it has none."""
    c = ramp.criteria if isinstance(ramp, FlagRamp) else None
    name = (c.optimization if c is not None and c.optimization else flag)
    out = dict(SEED_CRITERIA.get(name, {}))
    if c is not None:
        out.update({k: v for k, v in c.model_dump(exclude={"optimization"}).items() if v is not None})
    return out if set(out) - {"on_miss"} else None


class FlagRamp(ConfigModel):
    """A flag on for `percent` of requests (bucketed on a stable caller key, infra/flags.py); killSwitch: off for all."""

    percent: Float = Field(ge=0, le=100, description="share of requests with the flag on (ramp 10 -> 50 -> 100)")
    kill_switch: Bool = Field(False, description="off for everyone at once, whatever percent says")
    criteria: Optional[FlagCriteria] = Field(
        None, description="what the optimization must deliver before its ramp climbs (the gate's, not in the flags secret)")


# A flag's JSON value: exactly a boolean, a whole number, a finite number, a short clean string, or a ramp
FlagValue = Union[StrictBool, Annotated[int, Strict(), Field(ge=-MAX_INT, le=MAX_INT)],
                  Annotated[float, Strict(), AllowInfNan(False), Field(ge=-MAX_FLOAT, le=MAX_FLOAT)], text(1024),
                  FlagRamp]


AppSecretKey = text(63, SECRET_KEY_PATTERN, "a secret key (lowercase letters, digits and -, starting with a letter, "
                                            "not ending with -), like anthropic-api-key")


class AppSecret(ConfigModel):
    """A user-defined secret: Secret Manager secret `<environment>-<key>`, readable only by the services
    that list it in their `secrets`. Its value is a Pulumi secret (`secure:`) or is added outside Pulumi."""

    description: Optional[text(256)] = Field(None, description="what it is (Secret Manager annotation `description`)")
    # SecretStr: never in a repr, a log line or an error message; the loader refuses it unless `secure:`
    value: Optional[SecretStr] = Field(
        None, description="the payload, only as a secret (`pulumi config set --secret --path`); "
                          "absent: versions are added with `gcloud secrets versions add`")

    @field_validator("value", mode="before")
    @classmethod
    def _string(cls, v: object) -> object:
        # Never echo the value back: pydantic's own type errors would print it.
        if not isinstance(v, (str, SecretStr)):
            raise ValueError("must be a string (set it with `pulumi config set --secret --path ...`; the value is not shown)")
        plain = v.get_secret_value() if isinstance(v, SecretStr) else v
        if not plain:
            raise ValueError("must not be empty (Secret Manager refuses an empty version); leave `value` out to add "
                             "versions with gcloud")
        if len(plain.encode()) > SECRET_PAYLOAD_MAX_BYTES:
            raise ValueError(f"must be at most {SECRET_PAYLOAD_MAX_BYTES} bytes (Secret Manager's limit; the value is "
                             "not shown)")
        return v


def app_secret_problems(app_secrets: Any) -> list[tuple[str, str]]:
    """App secret keys that would take a Secret Manager secret the stack itself creates."""
    return [(key, f"collides with the platform secret key {key!r} (both would be the Secret Manager secret "
                  f"<env>-{key}); choose another key, like app-{key}")
            for key in app_secrets if key in RESERVED_SECRET_KEYS] + [
        (key, f"ends in {DB_PASSWORD_SUFFIX!r}, which names a database client's own password (<env>-<service>"
              f"{DB_PASSWORD_SUFFIX}); choose another key, like app-{key}")
        for key in app_secrets if key.endswith(DB_PASSWORD_SUFFIX) and key not in RESERVED_SECRET_KEYS]


def app_secret_keys(raw_platform: Any) -> frozenset[str]:
    """The keys declared under netra:platform.appSecrets in the raw (not yet validated) platform config."""
    apps = raw_platform.get("appSecrets") if isinstance(raw_platform, dict) else None
    return frozenset(k for k in apps if isinstance(k, str)) if isinstance(apps, dict) else frozenset()


def plaintext_secret_problems(raw_platform: Any, secret_paths: Iterable[str]) -> list[tuple[str, str]]:
    """(full key, message) for every app secret `value` that was not a `secure:` value in the stack file:
    a plaintext credential in Pulumi.<stack>.yaml is readable by anyone who can read the repository."""
    apps = raw_platform.get("appSecrets") if isinstance(raw_platform, dict) else None
    if not isinstance(apps, dict):
        return []
    secure = set(secret_paths)
    found = []
    for key, secret in apps.items():
        path = f"{APP_SECRETS_KEY}.{key}.value"
        if isinstance(secret, dict) and secret.get("value") is not None and path not in secure:
            found.append((path, f"must be a secret, never plain text in the stack file: pulumi config set --secret "
                                f"--path '{path}' (reads the value from stdin; it is not shown here)"))
    return found


class PlatformConfig(ConfigModel):
    network: NetworkConfig = NetworkConfig()
    database: DatabaseConfig = DatabaseConfig()
    cache: CacheConfig = CacheConfig()
    storage: StorageConfig = StorageConfig()
    edge: EdgeConfig
    migrations: MigrationsConfig
    feature_flags: dict[text(63, r"[a-z][a-z0-9_]*", "a flag name (lowercase letters, digits, _)"), FlagValue] = Field(
        default_factory=dict, max_length=200, description="payload of the <env>-feature-flags secret; a flip is a new secret version. Not "
                                    "enable_emergency_limits / max_hourly_cost: the budget guard's own secret <env>-emergency-limits "
                                    "(docs/budget-guard.md)")

    @field_validator("feature_flags", mode="before")
    @classmethod
    def _flag_shapes(cls, flags: Any) -> Any:
        """A ramp object becomes a FlagRamp here, so each problem names flag and key (no union noise)."""
        if not isinstance(flags, dict):
            return flags
        out, found = {}, []
        for name, value in flags.items():
            if name in EMERGENCY_KEYS:
                found.append((str(name), f"belongs to the emergency budget guard's secret <env>-{EMERGENCY_SECRET}, "
                                         "not the feature flags (a flags update must never turn the limits off); "
                                         "docs/budget-guard.md says how to turn them on or off by hand"))
                continue
            if isinstance(value, dict):
                try:
                    value = FlagRamp.model_validate(value)
                except ValidationError as e:
                    found += [(".".join([str(name), *map(str, err["loc"])]), f"{err['msg']}, got {err['input']!r}")
                              for err in e.errors()]
            elif not isinstance(value, (bool, int, float, str)):
                found.append((str(name), f"must be a bool, number, string or {{percent, killSwitch}}, got {value!r}"))
            out[name] = value
        if found:
            raise problems(*found)
        return out

    @field_validator("feature_flags")
    @classmethod
    def _one_ramp_at_a_time(cls, flags: dict) -> dict:
        # the gate compares the flag's two arms; a second flag ramping at the same time would confound them
        ramping = [k for k, v in flags.items() if isinstance(v, FlagRamp) and not v.kill_switch and 0 < v.percent < 100]
        if len(ramping) > 1:
            raise problems(*[(k, f"only one flag may ramp at a time (0 < percent < 100), got {', '.join(ramping)}")
                             for k in ramping[1:]])
        return flags
    clickhouse: Optional[ClickHouseConfig] = Field(
        None, description="ClickHouse cluster on Compute Engine with ClickHouse Keeper (token-usage analytics)")
    app_secrets: dict[AppSecretKey, AppSecret] = Field(
        default_factory=dict, max_length=100,
        description="secret key -> user-defined secret (an LLM provider's API key, ...), read by the services that "
                    "list the key in their `secrets`")

    @field_validator("app_secrets")
    @classmethod
    def _no_platform_key(cls, apps: dict) -> dict:
        found = app_secret_problems(apps)
        if found:
            raise problems(*found)
        return apps


def platform_problems(platform: Any, environment: Optional[str], services: Any) -> list[tuple[str, str]]:
    """Checks across netra:platform, the environment and netra:services: (key under netra:platform, message).

    `platform` is a PlatformConfig, or the raw mapping when some other platform key is broken: then
    each section that is valid on its own is still checked, so every problem is listed at once.
    """
    database = _section(platform, "database", DatabaseConfig)
    cache = _section(platform, "cache", CacheConfig)
    network = _section(platform, "network", NetworkConfig)
    migrations = _section(platform, "migrations", MigrationsConfig)
    clickhouse = _section(platform, "clickhouse", ClickHouseConfig)
    found: list[tuple[str, str]] = []
    if clickhouse and network:
        for key, cidr in (("network.subnetCidr", network.subnet_cidr), ("network.privateServicesCidr", network.private_services_cidr)):
            if ipaddress.ip_network(clickhouse.subnet_cidr).overlaps(ipaddress.ip_network(cidr)):
                found.append(("clickhouse.subnetCidr", f"{clickhouse.subnet_cidr} overlaps {key} {cidr}"))
    if environment == "prod":
        if database and database.availability_type != "REGIONAL":
            found.append(("database.availabilityType", "must be REGIONAL in prod (seed: Cloud SQL HA), got "
                          f"{database.availability_type!r}"))
        if cache and cache.tier != "STANDARD_HA":
            found.append(("cache.tier", f"must be STANDARD_HA in prod (seed: Memorystore HA), got {cache.tier!r}"))
        if migrations and not DIGEST.search(migrations.image):
            found.append(("migrations.image", f"must be pinned by digest in prod (…@sha256:<64 hex>), got {migrations.image!r}"))
        if clickhouse and clickhouse.replicas < 2:
            found.append(("clickhouse.replicas", f"must be >= 2 in prod (a replica per zone survives a zone outage), got {clickhouse.replicas}"))
    if services is None:
        return found
    instances = {key: svc.max_instances for key, svc in services.items()}
    need = ADDRESSES_PER_INSTANCE * (sum(instances.values()) + 1)  # + the migration job's task
    if network and need > network.subnet_capacity:
        found.append(("network.subnetCidr", f"{network.subnet_cidr} has {network.subnet_capacity} usable "
                      f"addresses; Direct VPC egress needs {ADDRESSES_PER_INSTANCE} per instance: "
                      f"{ADDRESSES_PER_INSTANCE} x ({' + '.join(f'{k} {n}' for k, n in instances.items())} + job 1) = {need}"))
    if database:
        found += pool_problems(database, services)
    return found


def _section(platform: Any, key: str, model: type[ConfigModel]) -> Optional[Any]:
    """A section of the platform config, validated on its own; None when it is itself broken."""
    if isinstance(platform, PlatformConfig):
        return getattr(platform, key)
    if not isinstance(platform, dict):
        return None
    field = PlatformConfig.model_fields[key]
    raw = platform.get(field.alias or key)
    if raw is None:
        return None if field.is_required() else field.get_default(call_default_factory=True)
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def check_platform(value: Any, handler: Any, info: ValidationInfo) -> PlatformConfig:
    """StackConfig's wrap validator of `platform`: the model's own errors plus the cross checks, together."""
    environment, services = info.data.get("environment"), info.data.get("services")
    try:
        platform = handler(value)
    except ValidationError as e:
        cross = platform_problems(value, environment, services)
        if not cross:
            raise
        raise ValidationError.from_exception_data(e.title, [*map(_line_error, e.errors()), _line_error({
            "type": PROBLEMS_ERROR, "loc": (), "input": value,
            "ctx": {"summary": "; ".join(f"{k}: {m}" for k, m in cross), "problems": cross}})]) from None
    cross = platform_problems(platform, environment, services)
    if cross:
        raise problems(*cross)
    return platform


def _line_error(err: dict) -> dict:
    """An error of a caught ValidationError, as a line error to raise again."""
    kind, ctx = err["type"], err.get("ctx")
    if kind == PROBLEMS_ERROR:
        error: Any = PydanticCustomError(PROBLEMS_ERROR, "{summary}", ctx)
    elif kind == "value_error" or kind not in _KNOWN_ERRORS:
        error = PydanticCustomError(kind, "{message}", {"message": err["msg"]})
    else:
        return {"type": kind, "loc": err["loc"], "input": err["input"], **({"ctx": ctx} if ctx else {})}
    return {"type": error, "loc": err["loc"], "input": err["input"]}


_KNOWN_ERRORS = frozenset(get_args(ErrorTypeLiteral))


def db_clients(services: Any) -> dict[str, int]:
    """Services that read the database password -> their maxInstances. Only these count towards
    max_connections; a service reading nothing of the database has no pool."""
    return {key: svc.max_instances for key, svc in services.items() if DB_CLIENT_SECRET in svc.secrets.values()}


def pool_sizes(db: DatabaseConfig, services: Any) -> dict[str, int]:
    """Connections per instance of each database client: its own `dbPoolSize`, else `database.poolSize`,
    else, when it is the only client, the most that fits max_connections over its instances.

    A pool never derives from another service's config, so a change to one service never changes
    another's DB_POOL_SIZE (and revision). Clients that would need such a derivation are left out;
    `pool_problems` names them.
    """
    clients = db_clients(services)
    out = {}
    for key, instances in clients.items():
        own = services[key].db_pool_size
        if own is not None:
            out[key] = own
        elif db.pool_size is not None:
            out[key] = db.pool_size
        elif len(clients) == 1:
            out[key] = (db.max_connections - db.pool_reserve) // instances
    return out


def pool_problems(db: DatabaseConfig, services: Any) -> list[tuple[str, str]]:
    """Pools that are missing or overflow max_connections. Keys under netra:platform, or absolute
    (netra:services.<svc>.dbPoolSize) where the fix is a service's own key."""
    clients = db_clients(services)
    found: list[tuple[str, str]] = [
        (f"netra:services.{key}.dbPoolSize",
         f"{key} does not read the database password (db-password), so it has no pool; remove dbPoolSize")
        for key, svc in services.items() if svc.db_pool_size is not None and key not in clients]
    total = sum(clients.values())
    if not total:
        return found
    sizes = pool_sizes(db, services)
    spare = db.max_connections - db.pool_reserve
    unpinned = [k for k in clients if k not in sizes]
    if unpinned:
        even = spare // total
        found += [(f"netra:services.{key}.dbPoolSize",
                   f"required: {len(clients)} services read the database ({', '.join(clients)}) and a pool derived "
                   f"from all of them would change every other client's DB_POOL_SIZE (and revision) whenever one of "
                   f"them changes; set dbPoolSize on {', '.join(unpinned)} (an even split: (maxConnections "
                   f"{db.max_connections} - poolReserve {db.pool_reserve}) // {total} instances = {even}) or pin "
                   f"netra:platform.database.poolSize")
                  for key in unpinned]
        return found
    who = " + ".join(f"{k} {n}" for k, n in clients.items())
    if len(clients) == 1 and db.pool_size is None and not any(services[k].db_pool_size for k in clients) and spare // total < 1:
        found.append(("database.maxConnections",
                      f"maxConnections {db.max_connections} - poolReserve {db.pool_reserve} leaves less than one "
                      f"connection per instance for {total} database client instances (maxInstances {who}); "
                      f"raise maxConnections to >= {total + db.pool_reserve} or lower maxInstances"))
        return found
    used = sum(clients[k] * sizes[k] for k in clients) + db.pool_reserve
    if used <= db.max_connections:
        return found
    own = [k for k in clients if services[k].db_pool_size is not None]
    if len(set(sizes.values())) == 1 and not own:
        size = next(iter(sizes.values()))
        key = "database.poolSize" if db.pool_size is not None else "database.maxConnections"
        found.append((key, f"pool overflow: {total} database client instances (maxInstances {who}) x poolSize {size} "
                           f"+ poolReserve {db.pool_reserve} = {used} > maxConnections {db.max_connections}; "
                           f"lower poolSize to <= {spare // total} or raise maxConnections"))
    else:
        terms = " + ".join(f"{k} {clients[k]} x {sizes[k]}" for k in clients)
        found.append(("database.maxConnections",
                      f"pool overflow: {terms} (maxInstances x pool per database client) + poolReserve "
                      f"{db.pool_reserve} = {used} > maxConnections {db.max_connections}; lower dbPoolSize of "
                      f"{', '.join(own) or 'the clients'} (netra:services.<svc>.dbPoolSize) or raise maxConnections"))
    return found


def _cidr(v: str, largest_prefix: int, what: str) -> str:
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        raise ValueError(f"must be an IPv4 network like 10.8.0.0/22 (host bits zero), got {v!r}") from None
    if net.version != 4 or not net.is_private:
        raise ValueError(f"must be a private IPv4 range (RFC 1918), got {v!r}")
    if net.prefixlen > largest_prefix:
        raise ValueError(f"{what}, got {v!r}")
    return v
