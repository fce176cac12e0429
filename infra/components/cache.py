"""Memorystore for Redis 7 (seed: HA): AUTH, TLS with server authentication, private services access, RDB."""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig

COMPONENT_TYPE = "netra:platform:Cache"
TLS_PORT = 6378  # Memorystore serves TLS on 6378 when transit encryption is on
CA_MOUNT_PATH = "/secrets/redis"
CA_FILE = "server-ca.pem"


def client_env(cfg: StackConfig) -> tuple[tuple[str, str], ...]:
    """Plain settings a Redis client reads besides REDIS_HOST / REDIS_AUTH (which come from secrets)."""
    return (("REDIS_PORT", str(TLS_PORT)), ("REDIS_TLS", "true"), ("REDIS_CA_CERT_PATH", f"{CA_MOUNT_PATH}/{CA_FILE}"))


class Cache(pulumi.ComponentResource):
    def __init__(self, cfg: StackConfig, network, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, "cache", None, opts)
        c = cfg.platform.cache
        self.instance_name = c.instance(cfg.environment)
        self.instance = gcp.redis.Instance(
            "redis",
            gcp.redis.InstanceArgs(
                name=self.instance_name, project=cfg.project, region=cfg.region,
                display_name=f"Netra {cfg.environment} cache",
                tier=c.tier, memory_size_gb=c.memory_size_gb, redis_version=c.version_enum,
                auth_enabled=True,
                transit_encryption_mode="SERVER_AUTHENTICATION",
                connect_mode="PRIVATE_SERVICE_ACCESS",
                authorized_network=network.vpc.id,
                reserved_ip_range=network.psa_range.name,
                redis_configs={"maxmemory-policy": c.maxmemory_policy},
                persistence_config=gcp.redis.InstancePersistenceConfigArgs(
                    persistence_mode="RDB", rdb_snapshot_period=c.rdb_snapshot_period),
                maintenance_policy=gcp.redis.InstanceMaintenancePolicyArgs(
                    weekly_maintenance_windows=[gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                        day=c.maintenance.day,
                        start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                            hours=c.maintenance.hour, minutes=0, seconds=0, nanos=0))]),
                deletion_protection=cfg.is_prod,
                labels={"env": cfg.environment, "cost-center": cfg.cost_center, "managed-by": "pulumi"},
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[network.connection],
                                        additional_secret_outputs=["authString"]),
        )
        # Secret in state and in the plan whatever the provider schema says.
        self.auth_string = pulumi.Output.secret(self.instance.auth_string)
        self.host = self.instance.host
        self.server_ca = self.instance.server_ca_certs.apply(lambda certs: "\n".join(c["cert"] if isinstance(c, dict) else c.cert for c in certs or []))
        self.register_outputs({"instance": self.instance_name})
