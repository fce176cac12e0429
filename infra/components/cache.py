"""Memorystore for Redis 7 (seed: HA): AUTH, TLS with server authentication, private services access, RDB."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp

from infra.config.platform import CacheConfig

from .site import Site

COMPONENT_TYPE = "netra:platform:Cache"
INSTANCE_TYPE = "gcp:redis/instance:Instance"
TLS_PORT = 6378  # Memorystore serves TLS on 6378 when transit encryption is on
CA_MOUNT_PATH = "/secrets/redis"
CA_FILE = "server-ca.pem"


def client_env() -> tuple[tuple[str, str], ...]:
    """Plain settings a Redis client reads besides REDIS_HOST / REDIS_AUTH (which come from secrets)."""
    # REDIS_SSL_CERT_REQS=required: the client verifies the server's certificate against the mounted CA
    return (("REDIS_PORT", str(TLS_PORT)), ("REDIS_TLS", "true"), ("REDIS_CA_CERT_PATH", f"{CA_MOUNT_PATH}/{CA_FILE}"),
            ("REDIS_SSL_CERT_REQS", "required"))


@dataclass(frozen=True)
class CacheArgs:
    """`reserved_ip_range` should come from the peering (Network.peered_range), so the instance waits for it."""

    site: Site
    config: CacheConfig
    network_id: pulumi.Input[str]
    reserved_ip_range: pulumi.Input[str]


class Cache(pulumi.ComponentResource):
    """Outputs: `instance_name`, `instance`, `auth_string` (secret), `host`, `server_ca` (PEM)."""

    def __init__(self, name: str, args: CacheArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site, c = args.site, args.config
        self.instance_name = c.instance(site.environment)
        self.instance = gcp.redis.Instance(
            "redis",
            gcp.redis.InstanceArgs(
                name=self.instance_name, project=site.project, region=site.region,
                display_name=f"Netra {site.environment} cache",
                tier=c.tier, memory_size_gb=c.memory_size_gb, redis_version=c.version_enum,
                auth_enabled=True,
                transit_encryption_mode="SERVER_AUTHENTICATION",
                connect_mode="PRIVATE_SERVICE_ACCESS",
                authorized_network=args.network_id,
                reserved_ip_range=args.reserved_ip_range,
                redis_configs={"maxmemory-policy": c.maxmemory_policy},
                persistence_config=gcp.redis.InstancePersistenceConfigArgs(
                    persistence_mode="RDB", rdb_snapshot_period=c.rdb_snapshot_period),
                maintenance_policy=gcp.redis.InstanceMaintenancePolicyArgs(
                    weekly_maintenance_windows=[gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                        day=c.maintenance.day,
                        start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                            hours=c.maintenance.hour, minutes=0, seconds=0, nanos=0))]),
                deletion_protection=site.guards.kept(INSTANCE_TYPE, "redis"),  # in every stack
                labels=site.labels(),
            ),
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["authString"]),
        )
        # Secret in state and in the plan whatever the provider schema says.
        self.auth_string = pulumi.Output.secret(self.instance.auth_string)
        self.host = self.instance.host
        self.server_ca = self.instance.server_ca_certs.apply(lambda certs: "\n".join(c["cert"] if isinstance(c, dict) else c.cert for c in certs or []))
        self.register_outputs({"instance": self.instance_name})
