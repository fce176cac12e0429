"""Stack config -> the analytics components' args (folded into infra/wiring.py's shape: one function per component)."""
from __future__ import annotations

from typing import Mapping

import pulumi

from infra.config import StackConfig
from infra.config.platform import secret_id

from .cluster import ClickHouseClusterArgs
from .credentials import ClickHouseCredentialsArgs
from .network import AnalyticsNetworkArgs, tags
from .render import NODE_SECRETS, TLS_SECRETS
from .spec import cluster_spec

SECRET_KEYS = tuple(dict.fromkeys((*NODE_SECRETS, *TLS_SECRETS, "clickhouse-host")))


def labels(cfg: StackConfig) -> dict[str, str]:
    return {"env": cfg.environment, "cost-center": cfg.cost_center, "managed-by": "pulumi", "app": "analytics"}


def analytics_network_args(cfg: StackConfig, vpc: pulumi.Input[str]) -> AnalyticsNetworkArgs:
    ch = cfg.platform.clickhouse
    return AnalyticsNetworkArgs(
        project=cfg.project, region=cfg.region, environment=cfg.environment, network=vpc,
        subnet_cidr=ch.subnet_cidr, service_cidr=cfg.platform.network.subnet_cidr,
        operator_ranges=tuple(ch.operator_ranges), labels=labels(cfg))


def clickhouse_credentials_args(cfg: StackConfig, subnet: pulumi.Input[str],
                                backups_bucket: pulumi.Input[str]) -> ClickHouseCredentialsArgs:
    return ClickHouseCredentialsArgs(project=cfg.project, region=cfg.region, environment=cfg.environment,
                                     cluster=cluster_spec(cfg), subnet=subnet, backups_bucket=backups_bucket)


def clickhouse_args(cfg: StackConfig, subnet: pulumi.Input[str], address: pulumi.Input[str]) -> ClickHouseClusterArgs:
    ch = cfg.platform.clickhouse
    return ClickHouseClusterArgs(
        project=cfg.project, region=cfg.region, environment=cfg.environment, cluster=cluster_spec(cfg),
        machine_type=ch.machine_type, disk_size_gb=ch.disk_size_gb, disk_type=ch.disk_type,
        boot_disk_size_gb=ch.boot_disk_size_gb, keeper_machine_type=ch.keeper.machine_type,
        keeper_disk_size_gb=ch.keeper.disk_size_gb, keeper_disk_type=ch.keeper.disk_type, image=ch.image,
        kms_key=ch.kms_key, backup_time=ch.backups.start_time, full_backup_every_days=ch.backups.full_every_days,
        subnet=subnet, tags=tags(cfg.environment), address=address,
        secret_ids=secret_ids(cfg), protect=cfg.is_prod, labels=labels(cfg))


def secret_ids(cfg: StackConfig) -> Mapping[str, str]:
    return {key: secret_id(cfg.environment, key) for key in SECRET_KEYS}
