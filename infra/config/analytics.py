"""`netra:platform.clickhouse`, `netra:observability.prometheus` and `netra:observability.grafana`.

Seed 001's data layer names a "ClickHouse (GCE) cluster" for token-usage analytics and its monitoring
box "Prometheus + Grafana". Both stacks carry the same shape; staging is smaller. Every check names its
key and what is allowed.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

from pydantic import Field, StringConstraints, field_validator, model_validator

from .base import Bool, ConfigModel, Float, Int, iam_member, image_problem, problems, text

# ClickHouse releases are four numbers (year.month.patch.build); the apt package is pinned to exactly this.
CLICKHOUSE_VERSION = r"^[0-9]{2}\.[0-9]{1,2}\.[0-9]+\.[0-9]+$"
MACHINE_TYPE = r"^[a-z][a-z0-9]*-[a-z0-9]+(-[0-9]+)?(-[0-9]+)?$"
KMS_KEY = r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/keyRings/[A-Za-z0-9_-]+/cryptoKeys/[A-Za-z0-9_-]+$"
IDENT = r"^[a-z][a-z0-9_]{0,62}$"
KEEPER_NODES = 3
GMP_SIDECAR = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar"


# A specific Debian 12 image (docs/supply-chain.md: where it comes from, and that it was not verified offline).
DEFAULT_IMAGE = "projects/debian-cloud/global/images/debian-12-bookworm-v20251209"


def _pinned(v: str, what: str) -> str:
    """An image reference with a tag or digest that is not `latest`."""
    if image_problem(v):
        raise ValueError(image_problem(v))
    name = v.split("@")[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else None
    if "@sha256:" not in v and (tag is None or tag == "latest"):
        raise ValueError(f"{what} must be pinned to a version tag or digest (not latest), got {v!r}")
    return v


class KeeperConfig(ConfigModel):
    """ClickHouse Keeper: three dedicated nodes, one per zone (see README "Analytics" for why dedicated)."""

    machine_type: Annotated[str, StringConstraints(pattern=MACHINE_TYPE)] = Field(
        "e2-standard-2", description="Compute Engine machine type of each Keeper node")
    disk_size_gb: Int = Field(20, ge=10, le=1000, description="immutable: shrinking replaces the disks (netra:allowReplace, docs/data-safety.md); Keeper log + snapshot disk per node (GB)")
    disk_type: Literal["pd-ssd", "pd-balanced"] = Field("pd-ssd", description="immutable: a change replaces the disks (netra:allowReplace, docs/data-safety.md); Keeper fsyncs its log: SSD recommended")


class ClickHouseBackups(ConfigModel):
    """`BACKUP DATABASE ... TO Disk('backups', ...)`: an S3 disk on the GCS backups bucket, HMAC keys in Secret Manager."""

    start_time: Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = Field(
        "02:30", description="UTC time of the daily backup, HH:MM (systemd timer on the first replica of each shard)")
    full_every_days: Int = Field(7, ge=1, le=31, description="a full backup every N days; incremental on the others")


class ClickHouseConfig(ConfigModel):
    version: Annotated[str, StringConstraints(pattern=CLICKHOUSE_VERSION)] = Field(
        description="clickhouse-server / clickhouse-keeper package version, pinned exactly (e.g. 25.8.2.29)")
    shards: Int = Field(1, ge=1, le=16, description="immutable: fewer deletes nodes and their disks (netra:allowReplace, docs/data-safety.md); shards of the `cluster` topology")
    replicas: Int = Field(2, ge=1, le=4, description="immutable: fewer deletes nodes and their disks (netra:allowReplace, docs/data-safety.md); replicas per shard, each in its own zone")
    zones: tuple[Annotated[str, StringConstraints(pattern=r"^[a-z]$")], ...] = Field(
        ("a", "b", "c"), description="immutable: a change moves (replaces) the disks (netra:allowReplace, docs/data-safety.md); zone letters of the region used in order (replica i in zone i, Keeper in the first 3)")
    machine_type: Annotated[str, StringConstraints(pattern=MACHINE_TYPE)] = Field(
        "n2-highmem-4", description="Compute Engine machine type of each ClickHouse node")
    disk_size_gb: Int = Field(200, ge=10, le=65536, description="immutable: shrinking replaces the disks (netra:allowReplace, docs/data-safety.md); data disk per node (GB); survives instance replacement")
    disk_type: Literal["pd-ssd", "pd-balanced", "hyperdisk-balanced"] = Field("pd-ssd",
        description="immutable: a change replaces the disks (netra:allowReplace, docs/data-safety.md); data disk type of the ClickHouse nodes")
    boot_disk_size_gb: Int = Field(30, ge=10, le=1000, description="boot disk of each node, GB")
    image: text(200) = Field(
        DEFAULT_IMAGE, description="boot image, a specific image (projects/<p>/global/images/<name>), never a family: "
                                   "a family boots whatever image it points to when a VM is created (Debian 12: the "
                                   "ClickHouse and Ops Agent apt repositories)")

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, v: str) -> str:
        if "/images/family/" in v:
            raise ValueError(f"a family boots whatever image it points to when a VM is (re)created: pin a specific image "
                             f"(`gcloud compute images describe-from-family debian-12 --project debian-cloud "
                             f"--format='value(name)'`), e.g. {DEFAULT_IMAGE}, got {v!r}")
        if not re.fullmatch(r"projects/[a-z0-9-]+/global/images/[a-z0-9-]+", v):
            raise ValueError(f"must be projects/<project>/global/images/<image name>, got {v!r}")
        return v
    kms_key: Optional[Annotated[str, StringConstraints(pattern=KMS_KEY)]] = Field(
        None, description="immutable: a change replaces the disks (netra:allowReplace, docs/data-safety.md); Cloud KMS key for the disks (CMEK); unset: Google-managed encryption, declared explicitly")
    cluster_name: Annotated[str, StringConstraints(pattern=IDENT)] = Field("netra", description="name in remote_servers")
    database: Annotated[str, StringConstraints(pattern=IDENT)] = Field("analytics",
        description="the analytics database ClickHouse creates")
    app_user: Annotated[str, StringConstraints(pattern=IDENT)] = Field("netra_app", description="user the services connect as")
    subnet_cidr: text(43) = Field("10.20.0.0/24", description="subnet of the ClickHouse and Keeper nodes (private, /28 or larger)")
    replica_lag_seconds: Int = Field(300, ge=10, le=86400, description="alert when a replica is this far behind")
    disk_used_percent: Float = Field(80, gt=0, lt=100, description="alert when a node's disk is fuller than this")
    operator_ranges: tuple[text(43), ...] = Field(
        ("35.235.240.0/20",), description="source ranges allowed to SSH (IAP TCP forwarding's range by default)")
    keeper: KeeperConfig = KeeperConfig()
    backups: ClickHouseBackups = ClickHouseBackups()

    @field_validator("subnet_cidr")
    @classmethod
    def _subnet(cls, v: str) -> str:
        from .platform import _cidr

        return _cidr(v, largest_prefix=28, what="the ClickHouse subnet needs a /28 or larger range")

    @field_validator("zones")
    @classmethod
    def _zones(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) < KEEPER_NODES or len(set(v)) != len(v):
            raise ValueError(f"must list at least {KEEPER_NODES} different zone letters (Keeper needs a quorum across zones), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _one_zone_per_replica(self) -> "ClickHouseConfig":
        if self.replicas > len(self.zones):
            raise problems(("replicas", f"must be <= the number of zones ({len(self.zones)}: one zone per replica), got {self.replicas}"))
        return self

    def zone(self, region: str, replica: int) -> str:
        return f"{region}-{self.zones[replica]}"

    def keeper_zone(self, region: str, index: int) -> str:
        return f"{region}-{self.zones[index]}"


class PrometheusConfig(ConfigModel):
    """Managed Service for Prometheus on Cloud Run: the GMP sidecar in every service's revision."""

    enabled: Bool = Field(True, description="add the sidecar to every service (a one-time new revision name)")
    sidecar_image: text(1024) = Field(f"{GMP_SIDECAR}:1.3.0", description="cloud-run-gmp-sidecar image, pinned")
    scrape_port: Int = Field(8080, ge=1, le=65535, description="port the application serves metrics on")
    scrape_path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~\-/]*$")] = Field("/metrics",
        description="the path Managed Prometheus scrapes on each ClickHouse node")
    scrape_interval_seconds: Int = Field(30, ge=5, le=300, description="seconds between scrapes")

    @field_validator("sidecar_image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _pinned(v, "the GMP sidecar image")


class GrafanaConfig(ConfigModel):
    """Grafana on Cloud Run behind the load balancer and IAP; stateless, everything provisioned from code."""

    image: text(1024) = Field("docker.io/grafana/grafana-oss:12.1.1", description="Grafana image, pinned")
    domain: text(253) = Field(description="hostname Grafana is served on (added to the certificate), e.g. grafana.netra.ai")
    viewers: tuple[iam_member("user", "group", "domain"), ...] = Field(
        min_length=1, description="IAP members allowed in (group:sre@netra.ai, domain:netra.ai)")
    cpu: Literal["1", "2"] = Field("1", description="Grafana's vCPUs per instance")
    memory: Literal["512Mi", "1Gi", "2Gi"] = Field("1Gi", description="Grafana's memory per instance")
    min_instances: Int = Field(0, ge=0, le=10, description="instances kept warm (the prod policy asks for 2)")
    max_instances: Int = Field(2, ge=1, le=10, description="Grafana's autoscaling ceiling")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _pinned(v, "the Grafana image")

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        from .platform import hostname_problem

        problem = hostname_problem(v)
        if problem:
            raise ValueError(problem)
        return v
