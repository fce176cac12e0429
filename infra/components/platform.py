"""The platform around the services: built before them, handing each its wiring, and the edge after them.

    Network -> Storage -> Database, Cache -> Secrets -> Migrations -> (services) -> Edge
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pulumi

from infra.config import StackConfig
from infra.config.platform import CONFIG_SECRETS, DB_CLIENT_SECRET, db_clients, pool_size, secret_id

from . import cache as cache_mod
from . import database as database_mod
from .analytics import Analytics, build_analytics
from .cache import Cache
from .database import Database
from .edge import INGRESS, Edge
from .migrations import Migrations
from .network import Network
from .secrets import Secrets, config_payloads
from .service import SecretEnv, SecretVolume, ServiceWiring
from .storage import Storage

REDIS_CLIENT_SECRET = "redis-auth"


@dataclass
class Platform:
    cfg: StackConfig
    network: Network
    storage: Storage
    database: Database
    cache: Cache
    secrets: Secrets
    migrations: Migrations
    analytics: Analytics | None = None
    edge: Edge | None = None

    def wiring(self, key: str) -> ServiceWiring:
        """Ingress, Direct VPC egress, the secrets the service's config names and the settings that go with them.

        A service reading `db-password` is a database client (DB_NAME, DB_USER, DB_PORT, DB_SSLMODE,
        DB_POOL_SIZE); one reading `redis-auth` is a Redis client (REDIS_PORT, REDIS_TLS and the server
        CA mounted at REDIS_CA_CERT_PATH).
        """
        cfg = self.cfg
        svc = getattr(cfg.services, key)
        reads = set(svc.secrets.values())
        env: list[tuple[str, str]] = []
        volumes: list[SecretVolume] = []
        if DB_CLIENT_SECRET in reads:
            env += database_mod.client_env(cfg)
        if REDIS_CLIENT_SECRET in reads:
            env += cache_mod.client_env(cfg)
            volumes.append(SecretVolume("redis-ca", secret_id(cfg.environment, "redis-ca"),
                                        cache_mod.CA_MOUNT_PATH, cache_mod.CA_FILE))
            reads.add("redis-ca")
        return ServiceWiring(
            ingress=INGRESS,
            vpc_network=self.network.name,
            vpc_subnetwork=self.network.subnet_name,
            secret_env=tuple(SecretEnv(var, secret_id(cfg.environment, k)) for var, k in sorted(svc.secrets.items())),
            secret_volumes=tuple(volumes),
            env=tuple(env),
            depends_on=(*self.secrets.resources(reads), self.network.subnet),
        )

    def add_edge(self, services: Mapping[str, pulumi.Resource]) -> Edge:
        self.edge = Edge(self.cfg, services, self.storage.static_assets)
        return self.edge

    def summary(self) -> dict:
        cfg = self.cfg
        out = {
            "network": self.network.name,
            "subnetwork": self.network.subnet_name,
            "database": {
                "instance": self.database.instance_name,
                "connectionName": self.database.instance.connection_name,
                "database": cfg.platform.database.database_name,
                "user": cfg.platform.database.user_name,
                "poolSize": pool_size(cfg.platform.database, db_clients(cfg.services)),
                "maxConnections": cfg.platform.database.max_connections,
            },
            "redis": {"instance": self.cache.instance_name, "port": cache_mod.TLS_PORT},
            "buckets": self.storage.summary(),
            "secrets": dict(self.secrets.ids),
        }
        if self.analytics is not None:
            out["clickhouse"] = self.analytics.summary()
        if self.edge is not None:
            out["edge"] = self.edge.summary()
        return out


def build_platform(cfg: StackConfig) -> Platform:
    network = Network(cfg)
    storage = Storage(cfg)
    database = Database(cfg, network, storage.backups)
    cache = Cache(cfg, network)
    payloads: dict[str, pulumi.Input[str]] = dict(config_payloads(cfg))
    payloads.update({
        "db-password": database.password.result,
        "db-host": database.private_ip,
        "redis-auth": cache.auth_string,
        "redis-host": cache.host,
        "redis-ca": cache.server_ca,
    })
    assert set(payloads) == set(CONFIG_SECRETS) | {"db-password", "db-host", "redis-auth", "redis-host", "redis-ca"}
    analytics = build_analytics(cfg, network.vpc.id, storage.backups.name)
    if analytics is not None:
        payloads.update(analytics.credentials.secret_payloads())
    secrets = Secrets(cfg, payloads)
    if analytics is not None:
        analytics.add_cluster(secrets)
    migrations = Migrations(cfg, network, storage, secrets)
    return Platform(cfg, network, storage, database, cache, secrets, migrations, analytics)
