"""The analytics data layer (seed 001: "ClickHouse (GCE) - Cluster configuration"), built in two steps
around the platform's Secrets: its network and credentials first (their values become secrets), the
nodes after (their boot scripts read those secrets).

    AnalyticsNetwork -> ClickHouseCredentials -> (platform Secrets) -> ClickHouseCluster
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from infra.config import StackConfig

from .clickhouse import args as ch_args
from .clickhouse.cluster import ClickHouseCluster
from .clickhouse.credentials import ClickHouseCredentials
from .clickhouse.network import AnalyticsNetwork


@dataclass
class Analytics:
    cfg: StackConfig
    network: AnalyticsNetwork
    credentials: ClickHouseCredentials
    cluster: Optional[ClickHouseCluster] = None

    def add_cluster(self, secrets) -> ClickHouseCluster:
        """The nodes, once the platform's Secrets hold the credentials their boot scripts read."""
        self.cluster = ClickHouseCluster(
            "clickhouse", ch_args.clickhouse_args(self.cfg, self.network.subnet.id, self.credentials.address.address),
            opts=pulumi.ResourceOptions(depends_on=[*secrets.resources(ch_args.SECRET_KEYS), *self.network.rules.values(),
                                                    self.network.nat]))
        return self.cluster

    def summary(self) -> dict:
        return self.cluster.summary() if self.cluster else {}


def build_analytics(cfg: StackConfig, vpc: pulumi.Input[str], backups_bucket: pulumi.Input[str]) -> Optional[Analytics]:
    """None when `netra:platform.clickhouse` is not set."""
    if cfg.platform.clickhouse is None:
        return None
    network = AnalyticsNetwork("analytics-network", ch_args.analytics_network_args(cfg, vpc))
    credentials = ClickHouseCredentials(
        "clickhouse-credentials", ch_args.clickhouse_credentials_args(cfg, network.subnet.id, backups_bucket))
    return Analytics(cfg, network, credentials)
