"""The cluster as plain values, from the typed stack config (what the renderers and the component read)."""
from __future__ import annotations

from infra.config import StackConfig

from . import topology
from .render import Cluster


def backups_bucket(cfg: StackConfig) -> str:
    """The platform's backups bucket (infra/components/storage.py names it `<project>-backups`)."""
    from infra.components.storage import bucket_name

    return bucket_name(cfg, "backups")


def cluster_spec(cfg: StackConfig) -> Cluster:
    ch = cfg.platform.clickhouse
    if ch is None:
        raise ValueError("netra:platform.clickhouse is not set")
    return Cluster(
        name=ch.cluster_name,
        database=ch.database,
        app_user=ch.app_user,
        nodes=tuple(topology.clickhouse_nodes(ch, cfg.project, cfg.region, cfg.environment)),
        keepers=tuple(topology.keeper_nodes(ch, cfg.project, cfg.region, cfg.environment)),
        client_cidrs=(cfg.platform.network.subnet_cidr,),
        node_cidr=ch.subnet_cidr,
        backup_endpoint=f"https://storage.googleapis.com/{backups_bucket(cfg)}/clickhouse/",
        version=ch.version,
    )
