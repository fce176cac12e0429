"""Who is where: ClickHouse nodes (shard x replica, one zone per replica) and the three Keeper nodes.

Pure functions of config, no Pulumi: names are stable (an instance replaced by autohealing comes
back under the same name, so the same internal DNS name and the same `{replica}` macro), and every
port the rendered XML listens on is a constant here, so firewall rules and XML cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

from infra.config.analytics import KEEPER_NODES, ClickHouseConfig

# ClickHouse server: TLS only (the plaintext native 9000 and HTTP 8123 ports are removed).
NATIVE_TLS_PORT = 9440
HTTPS_PORT = 8443
INTERSERVER_HTTPS_PORT = 9010
# Keeper: client port (TLS) and Raft between Keeper nodes (TLS).
KEEPER_CLIENT_PORT = 9281
KEEPER_RAFT_PORT = 9234
# Prometheus endpoint of both, scraped by the Ops Agent on the same VM only (not opened in the firewall).
PROMETHEUS_PORT = 9363
DATA_DEVICE = "data"  # /dev/disk/by-id/google-data


@dataclass(frozen=True)
class Node:
    role: str  # "clickhouse" | "keeper"
    name: str  # instance name == hostname
    zone: str
    project: str
    shard: int = 0  # 1-based for ClickHouse nodes
    replica: int = 0  # 1-based for ClickHouse nodes
    keeper_id: int = 0  # 1-based Raft server id for Keeper nodes

    @property
    def fqdn(self) -> str:
        """Compute Engine's zonal internal DNS name: stable across instance replacement."""
        return f"{self.name}.{self.zone}.c.{self.project}.internal"

    @property
    def key(self) -> str:
        """The short resource-name suffix: s1-r2, keeper-1."""
        return f"s{self.shard}-r{self.replica}" if self.role == "clickhouse" else f"keeper-{self.keeper_id}"


def prefix(environment: str) -> str:
    return f"netra-{environment}"


def clickhouse_nodes(ch: ClickHouseConfig, project: str, region: str, environment: str) -> list[Node]:
    """Shard-major order; replica r of every shard sits in zone r."""
    return [Node("clickhouse", f"{prefix(environment)}-ch-s{s}-r{r}", ch.zone(region, r - 1), project, shard=s, replica=r)
            for s in range(1, ch.shards + 1) for r in range(1, ch.replicas + 1)]


def keeper_nodes(ch: ClickHouseConfig, project: str, region: str, environment: str) -> list[Node]:
    return [Node("keeper", f"{prefix(environment)}-keeper-{i}", ch.keeper_zone(region, i - 1), project, keeper_id=i)
            for i in range(1, KEEPER_NODES + 1)]


def shards(nodes: list[Node]) -> dict[int, list[Node]]:
    out: dict[int, list[Node]] = {}
    for n in nodes:
        out.setdefault(n.shard, []).append(n)
    return out
