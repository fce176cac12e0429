"""The one place that reads the whole StackConfig: it turns the typed config into each component's args
and builds the stack in dependency order.

    Network -> Storage -> Database, Cache -> Secrets -> Migrations -> services -> Edge -> observability

Every component takes `(name, args, opts)` with a small frozen args class and never sees StackConfig, so
each can be built (and tested) alone. Per-service resources (Cloud Run services, load-balancer
backends, invokers, uptime checks, alerts, SLOs, dashboard rows) all come from the `netra:services` map.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_random as random

from infra import signals
from infra.release import model as release
from infra.config import StackConfig, service_name
from infra.config.stack import resource_key
from infra.config.observability import slo_services
from infra.config.platform import (CONFIG_SECRETS, DB_CLIENT_SECRET, EMERGENCY_SECRET, db_clients, db_password_key, pool_sizes,
                                   secret_id)
from infra.config.services import probe_path

from infra.components import cache as cache_mod
from infra.components import database as database_mod
from infra.components import prometheus
from infra.components.cache import Cache, CacheArgs
from infra.components.clickhouse import topology as ch_topology
from infra.components.clickhouse.cluster import ClickHouseCluster, ClickHouseClusterArgs
from infra.components.clickhouse.credentials import ClickHouseCredentials, ClickHouseCredentialsArgs
from infra.components.clickhouse.network import AnalyticsNetwork, AnalyticsNetworkArgs, tags as analytics_tags
from infra.components.clickhouse.render import NODE_SECRETS, TLS_SECRETS, Cluster
from infra.components.database import Database, DatabaseArgs
from infra.components.emergency_budget import EmergencyBudget, EmergencyBudgetArgs
from infra.components.load_test import LoadTestJob, LoadTestJobArgs
from infra.components.edge import INGRESS, CanaryRoute, Edge, EdgeArgs, EdgeBackend, IapAudience, IapHost, iap_service_agent
from infra.components.grafana import Grafana, GrafanaArgs, service_name as grafana_service_name
from infra.components import apis as apis_mod
from infra.components import guards as guards_mod
from infra.components.migrations import SECRETS_READ, Migrations, MigrationsArgs
from infra.components.network import Network, NetworkArgs, network_name, subnet_name
from infra.components.observability import (
    Budget, BudgetArgs, ClickHouseAlerts, ClickHouseAlertsArgs, Dashboards, DashboardsArgs, LogMetrics, LogMetricsArgs, LogRetention, LogRetentionArgs, MetricReady,
    NotificationChannels, NotificationChannelsArgs, Observability, SeedAlerts, SeedAlertsArgs, Slos, SlosArgs,
    UptimeChecks, UptimeChecksArgs, UptimeTarget)
from infra.components.secrets import AppSecret, Secrets, SecretsArgs, config_payloads
from infra.components.service import (
    CloudRunService, CloudRunServiceArgs, SecretEnv, SecretVolume, ServiceWiring, revision_spec)
from infra.components.site import Site
from infra.components.storage import RELEASE_LEDGER, Storage, StorageArgs, bucket_name

REDIS_CLIENT_SECRET = "redis-auth"
# The token the rollout's 0 % verification sends to reach a candidate through the load balancer
# (infra.components.edge CanaryRoute); in Secret Manager for the verifier, a Pulumi secret everywhere.
VERIFY_TOKEN_SECRET = "canary-verify-token"
FLAGS_SECRET = "feature-flags"
FLAGS_MOUNT_PATH, FLAGS_FILE = "/secrets/feature-flags", "flags.json"
# mounted with the flags; its variable is fixed (the app contract, docs/budget-guard.md)
EMERGENCY_MOUNT_PATH, EMERGENCY_FILE, EMERGENCY_VAR = "/secrets/emergency-limits", "limits.json", "EMERGENCY_LIMITS"
# the seed version Pulumi adds once: the limits off until the guard (or an operator) adds a version
EMERGENCY_OFF = json.dumps({"enable_emergency_limits": False}, separators=(",", ":"))
# Services with `public: false` are reachable only from inside the project/VPC (Pub/Sub push, Cloud
# Tasks, Scheduler, other services), never through the load balancer.
WORKER_INGRESS = "INGRESS_TRAFFIC_INTERNAL_ONLY"


def data_guards(cfg: StackConfig) -> guards_mod.DataGuards:
    """What lifts data protection: the reasoned allowances, and a staging teardown (docs/data-safety.md)."""
    return guards_mod.DataGuards(frozenset(resource_key(a.resource) for a in cfg.allow_replace), cfg.teardown)


def site_of(cfg: StackConfig) -> Site:
    return Site(project=cfg.project, region=cfg.region, environment=cfg.environment, cost_center=cfg.cost_center,
                guards=data_guards(cfg))


@dataclass
class Analytics:
    """The ClickHouse cluster (netra:platform.clickhouse): network and credentials before the platform's
    Secrets (their values become secrets), the nodes after (their boot scripts read those secrets)."""

    network: AnalyticsNetwork
    credentials: ClickHouseCredentials
    cluster: Optional[ClickHouseCluster] = None

    def summary(self) -> dict:
        return self.cluster.summary() if self.cluster else {}


@dataclass
class Platform:
    network: Network
    storage: Storage
    database: Database
    cache: Cache
    secrets: Secrets
    migrations: Migrations
    analytics: Optional[Analytics] = None
    verify_token: Optional[random.RandomPassword] = None


CLICKHOUSE_SECRET_KEYS = tuple(dict.fromkeys((*NODE_SECRETS, *TLS_SECRETS, "clickhouse-host")))


def cluster_spec(cfg: StackConfig) -> Cluster:
    """The ClickHouse cluster as plain values: nodes, Keepers, who may connect, where backups go."""
    ch = cfg.platform.clickhouse
    if ch is None:
        raise ValueError("netra:platform.clickhouse is not set")
    return Cluster(
        name=ch.cluster_name, database=ch.database, app_user=ch.app_user,
        nodes=tuple(ch_topology.clickhouse_nodes(ch, cfg.project, cfg.region, cfg.environment)),
        keepers=tuple(ch_topology.keeper_nodes(ch, cfg.project, cfg.region, cfg.environment)),
        client_cidrs=(cfg.platform.network.subnet_cidr,), node_cidr=ch.subnet_cidr,
        backup_endpoint=f"https://storage.googleapis.com/{bucket_name(cfg.project, 'backups')}/clickhouse/",
        version=ch.version)


def analytics_labels(site: Site) -> dict[str, str]:
    return site.labels(app="analytics")


def analytics_network_args(cfg: StackConfig, vpc: pulumi.Input[str]) -> AnalyticsNetworkArgs:
    ch = cfg.platform.clickhouse
    return AnalyticsNetworkArgs(
        project=cfg.project, region=cfg.region, environment=cfg.environment, network=vpc,
        subnet_cidr=ch.subnet_cidr, service_cidr=cfg.platform.network.subnet_cidr,
        operator_ranges=tuple(ch.operator_ranges), labels=analytics_labels(site_of(cfg)))


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
        subnet=subnet, tags=analytics_tags(cfg.environment), address=address,
        secret_ids={key: secret_id(cfg.environment, key) for key in CLICKHOUSE_SECRET_KEYS},
        protect=not cfg.teardown, labels=analytics_labels(site_of(cfg)))


def build_platform(cfg: StackConfig, site: Site) -> Platform:
    p = cfg.platform
    # the load test job (egress ALL_TRAFFIC) reaches the candidate's run.app URL through the VPC as internal
    network = Network("network", NetworkArgs(site, p.network,
                                             private_google_access=cfg.verification.load_test is not None))
    storage = Storage("storage", StorageArgs(site, p.storage))
    database = Database("database", DatabaseArgs(
        site, p.database, network_id=network.vpc.id, allocated_ip_range=network.peered_range,
        backups_bucket=storage.backups.name, clients=tuple(db_clients(cfg.services))))
    cache = Cache("cache", CacheArgs(site, p.cache, network_id=network.vpc.id, reserved_ip_range=network.peered_range))
    payloads: dict[str, pulumi.Input[str]] = dict(config_payloads(cfg.app, p.feature_flags))
    # each database client's own password (<env>-<service>-db-password), never another service's
    payloads.update({db_password_key(key): pw.result for key, pw in database.passwords.items()})
    payloads.update({
        "db-migrate-password": database.migrate_password.result,
        "db-host": database.private_ip,
        "db-ca": database.server_ca,
        "redis-auth": cache.auth_string,
        "redis-host": cache.host,
        "redis-ca": cache.server_ca,
    })
    assert set(payloads) == set(CONFIG_SECRETS) | {"db-migrate-password", "db-host", "db-ca", "redis-auth", "redis-host",
                                                   "redis-ca"} | {db_password_key(k) for k in database.passwords}
    verify_token = random.RandomPassword(VERIFY_TOKEN_SECRET, random.RandomPasswordArgs(length=48, special=False))
    payloads[VERIFY_TOKEN_SECRET] = verify_token.result
    payloads[EMERGENCY_SECRET] = EMERGENCY_OFF
    if cfg.observability.prometheus.enabled:  # the Managed Prometheus sidecar's RunMonitoring config
        payloads[prometheus.CONFIG_KEY] = prometheus.run_monitoring_yaml(cfg.observability.prometheus)
    analytics = None
    if p.clickhouse is not None:
        a_net = AnalyticsNetwork("analytics-network", analytics_network_args(cfg, network.vpc.id))
        credentials = ClickHouseCredentials("clickhouse-credentials", clickhouse_credentials_args(
            cfg, a_net.subnet.id, storage.backups.name))
        payloads.update(credentials.secret_payloads())
        analytics = Analytics(a_net, credentials)
    secrets = Secrets("secrets", SecretsArgs(site, payloads, app_secrets(cfg), seeded=frozenset({EMERGENCY_SECRET})))
    if analytics is not None:
        analytics.cluster = ClickHouseCluster(
            "clickhouse", clickhouse_args(cfg, analytics.network.subnet.id, analytics.credentials.address.address),
            opts=pulumi.ResourceOptions(depends_on=[*secrets.resources(CLICKHOUSE_SECRET_KEYS),
                                                    *analytics.network.rules.values(), analytics.network.nat]))
    migrations = Migrations("migrations", MigrationsArgs(
        site, p.migrations, db_env=database_mod.migration_env(p.database, tuple(database.users)), network=network.name,
        subnetwork=network.subnet_name, bucket=storage.migrations.name,
        waits_for=(*secrets.resources(SECRETS_READ), network.subnet)))
    return Platform(network, storage, database, cache, secrets, migrations, analytics, verify_token)


def app_secrets(cfg: StackConfig) -> dict[str, AppSecret]:
    """netra:platform.appSecrets as the Secrets component takes them: each value a Pulumi secret."""
    return {key: AppSecret(s.description, None if s.value is None else pulumi.Output.secret(s.value.get_secret_value()))
            for key, s in cfg.platform.app_secrets.items()}


def unversioned_secret_warnings(cfg: StackConfig) -> dict[str, list[str]]:
    """Service key -> a warning per app secret it reads that has no version managed by Pulumi. Cloud Run
    refuses to deploy a revision whose secret has no enabled version, and only the user can tell whether
    one was added outside Pulumi, so this is a warning on every plan, not a refusal."""
    unversioned = {k for k, s in cfg.platform.app_secrets.items() if s.value is None}
    out: dict[str, list[str]] = {}
    for key, svc in cfg.services.items():
        for var, secret in sorted(svc.secrets.items()):
            if secret not in unversioned:
                continue
            sid = secret_id(cfg.environment, secret)
            out.setdefault(key, []).append(
                f"{service_name(key, cfg.environment)} reads {var} from Secret Manager secret {sid} "
                f"(netra:platform.appSecrets.{secret}), which has no value in config, so Pulumi manages no version "
                f"of it. Cloud Run refuses to deploy a revision whose secret has no version: unless you already "
                f"added one, add it (the secret exists once this stack has created it) with "
                f"`gcloud secrets versions add {sid} --data-file=- --project {cfg.project}` (the value on stdin), "
                f"then run `pulumi up` (again)")
    return out


def service_wiring(cfg: StackConfig, key: str, depends_on: tuple[pulumi.Resource, ...] = ()) -> ServiceWiring:
    """Ingress, Direct VPC egress, the secrets the service's config names and the settings that go with them.

    A service reading `db-password` is a database client with a user of its own (DB_USER, and DB_PASSWORD
    from its own secret `<env>-<service>-db-password`; DB_NAME, DB_PORT, DB_SSLMODE=verify-ca
    with the instance's server CA mounted at DB_SSLROOTCERT, and its own DB_POOL_SIZE); one reading `redis-auth` is a Redis client (REDIS_PORT, REDIS_TLS and the server
    CA mounted at REDIS_CA_CERT_PATH). Everything here depends on this service's config and the
    platform's, never on another service's. `depends_on`: the secrets read and the egress subnet.
    """
    site = site_of(cfg)
    svc = cfg.services[key]
    reads = secrets_read(cfg, key)
    env: list[tuple[str, str]] = []
    volumes: list[SecretVolume] = []
    if DB_CLIENT_SECRET in svc.secrets.values():
        db = cfg.platform.database
        env += database_mod.client_env(db, database_mod.client_user(db, key), pool_sizes(db, cfg.services)[key])
        volumes.append(SecretVolume("db-ca", secret_id(cfg.environment, "db-ca"),
                                    database_mod.CA_MOUNT_PATH, database_mod.CA_FILE))
    flag_vars = sorted(var for var, k in svc.secrets.items() if k == FLAGS_SECRET)
    if flag_vars:
        # a file, not an env value: Cloud Run serves the latest version to running instances, so a flag
        # change (a new secret version) needs no restart; the variable holds the file's path
        volumes.append(SecretVolume("feature-flags", secret_id(cfg.environment, FLAGS_SECRET), FLAGS_MOUNT_PATH, FLAGS_FILE))
        env += [(var, f"{FLAGS_MOUNT_PATH}/{FLAGS_FILE}") for var in flag_vars]
        # the emergency limits override the flags; the budget guard writes them, Pulumi never does
        volumes.append(SecretVolume(EMERGENCY_SECRET, secret_id(cfg.environment, EMERGENCY_SECRET), EMERGENCY_MOUNT_PATH,
                                    EMERGENCY_FILE))
        env.append((EMERGENCY_VAR, f"{EMERGENCY_MOUNT_PATH}/{EMERGENCY_FILE}"))
    if REDIS_CLIENT_SECRET in reads:
        env += cache_mod.client_env()
        volumes.append(SecretVolume("redis-ca", secret_id(cfg.environment, "redis-ca"),
                                    cache_mod.CA_MOUNT_PATH, cache_mod.CA_FILE))
    return ServiceWiring(
        ingress=INGRESS if svc.public else WORKER_INGRESS,
        vpc_network=network_name(site),
        vpc_subnetwork=subnet_name(site),
        secret_env=tuple(SecretEnv(var, secret_id(cfg.environment, db_password_key(key) if k == DB_CLIENT_SECRET else k))
                         for var, k in sorted(svc.secrets.items()) if k != FLAGS_SECRET),
        secret_volumes=tuple(volumes),
        env=tuple(env),
        depends_on=depends_on,
        metrics=prometheus.sidecar(cfg.observability.prometheus, cfg.environment),
    )


def secrets_read(cfg: StackConfig, key: str) -> set[str]:
    """Platform secret keys the service reads: its `secrets`, the server CA of the database / Redis it
    is a client of (mounted as a file, so the client verifies the server's certificate), and the Managed
    Prometheus sidecar's config when the sidecar is on. A database client's `db-password` is its own
    password's key (`<service>-db-password`)."""
    reads = set(cfg.services[key].secrets.values())
    db_client = DB_CLIENT_SECRET in reads
    reads = (reads - {DB_CLIENT_SECRET}) | ({db_password_key(key)} if db_client else set())
    return (reads | ({"db-ca"} if db_client else set())
            | ({EMERGENCY_SECRET} if FLAGS_SECRET in reads else set())
            | ({"redis-ca"} if REDIS_CLIENT_SECRET in reads else set())
            | ({prometheus.CONFIG_KEY} if cfg.observability.prometheus.enabled else set()))


def candidate_revisions(cfg: StackConfig) -> dict[str, str]:
    """Each service's candidate revision name from config alone: exactly what CloudRunService names it
    (the spec holds plain values only), so no-cascade checks need no Pulumi run."""
    return {key: release.candidate_revision(service_name(key, cfg.environment),
                                            revision_spec(key, service_args(cfg, key, service_wiring(cfg, key))))
            for key in cfg.services}


def share_problems(cfg: StackConfig) -> list[tuple[str, str]]:
    """(config key, message) for each service whose canaryPercent skips a stage of its approval. The
    candidate's name is a function of the config alone, so this runs before anything registers: under
    `pulumi up` a refusal after the first registration would leave a half-applied update."""
    found = []
    for key, candidate in candidate_revisions(cfg).items():
        share = release.decide_share(key, candidate, cfg.services[key].stable_revision, cfg.canary_percent_for(key),
                                     release_approval(cfg, key), tuple(cfg.stages))
        if share.problem:
            found.append((canary_percent_key(cfg, key), share.problem))
    return found


def flag_readers(cfg: StackConfig) -> list[str]:
    """Service keys that read the feature-flags secret: their request logs carry a ramping flag's arm."""
    return sorted(k for k, s in cfg.services.items() if FLAGS_SECRET in s.secrets.values())


def flag_problems(cfg: StackConfig) -> list[tuple[str, str]]:
    """(config key, message) for each ramp flag whose percent skips a stage of its recorded approval, or is
    above 0 after a rollback verdict (`rollout --flag`, infra/release/flag.py). The policy pack cannot see the
    flags secret's payload, so the program is where this is enforced."""
    from infra.config.platform import FlagRamp

    found = []
    revisions = {k: cfg.services[k].stable_revision for k in flag_readers(cfg)}
    journal = cfg.release.flag_ramp
    for name, value in cfg.platform.feature_flags.items():
        if not isinstance(value, FlagRamp) or value.kill_switch or value.percent <= 0:
            continue
        record = cfg.release.flag_approvals.get(name)
        bound = record is not None and dict(record.revisions) == revisions  # made on the code serving now
        ramp_live = journal.live if journal is not None and journal.flag == name else None
        allowed = release.allowed_flag_percent(tuple(cfg.stages), record.stage if bound else None,
                                               bound and record.rejected, ramp_live)
        if value.percent <= allowed:
            continue
        how = (f"run `python -m infra rollout --stack <stack> --flag {name}`, or approve a stage explicitly with "
               f"`python -m infra approve --stack <stack> --flag {name} --stage <stage> --note <why>`")
        if bound and record.rejected:
            why = f"{name} was rolled back (rejected at {record.stage:g} % by {record.by}) on the revisions serving now"
        elif bound:
            why = f"{name} is approved at {record.stage:g} % (by {record.by}), so the highest percent it may get is {allowed:g}"
        else:
            why = f"{name} is ramping (netra:release.flagRamp) with no approval yet, so the highest percent it may get is {allowed:g}"
        found.append((f"netra:platform.featureFlags.{name}.percent",
                      f"percent {value.percent:g} skips a stage: {why}; set {allowed:g} (or lower), or {how}"))
    return found


def release_approval(cfg: StackConfig, key: str) -> Optional[release.Approval]:
    record = cfg.release.approvals.get(key)
    if record is None:
        return None
    return release.Approval(record.revision, record.stage, record.by, record.evidence, record.rejected)


def bake_previous(cfg: StackConfig, key: str) -> Optional[str]:
    """The revision tagged `previous` while `key` bakes: only while the baked revision is still the
    service's stableRevision (a rollback or a new finalize makes the record stale)."""
    record = cfg.release.bake.get(key)
    if record is None or record.revision != cfg.services[key].stable_revision:
        return None
    return record.previous


def canary_percent_key(cfg: StackConfig, key: str) -> str:
    """The config key that set this service's stage (for error messages)."""
    return f"netra:services.{key}.canaryPercent" if cfg.services[key].canary_percent is not None else "netra:canaryPercent"


def service_args(cfg: StackConfig, key: str, wiring: ServiceWiring) -> CloudRunServiceArgs:
    return CloudRunServiceArgs(site=site_of(cfg), config=cfg.services[key], canary_percent=cfg.canary_percent_for(key),
                               app_env=tuple(cfg.app.environment().items()), wiring=wiring,
                               approval=release_approval(cfg, key), stages=tuple(cfg.stages),
                               canary_percent_key=canary_percent_key(cfg, key), previous_revision=bake_previous(cfg, key))


def edge_args(cfg: StackConfig, services: dict[str, CloudRunService], static_bucket: pulumi.Input[str],
              verify_token: Optional[pulumi.Input[str]] = None) -> EdgeArgs:
    """Only public services are behind the load balancer: a NEG, a backend service, an allUsers invoker
    and their routes each, and (given the verifier's token) the canary verification route. Grafana, when
    configured, on its own hostname behind IAP (built after the edge: it reads the audience of its IAP backend)."""
    g = cfg.observability.grafana
    return EdgeArgs(
        canary=CanaryRoute(verify_token, secret_id(cfg.environment, VERIFY_TOKEN_SECRET)) if verify_token is not None else None,
        site=site_of(cfg), config=cfg.platform.edge, static_assets=cfg.platform.storage.static_assets,
        static_bucket=static_bucket,
        backends=tuple(EdgeBackend(key, services[key].service.name, svc.routes, svc.default_route)
                       for key, svc in cfg.services.items() if svc.public),
        iap_hosts=(IapHost("grafana", grafana_service_name(cfg.environment), g.domain, tuple(g.viewers)),)
        if g is not None else ())


def grafana_args(cfg: StackConfig, candidates: dict[str, str], access_logs: pulumi.Input[str],
                 audience: IapAudience) -> GrafanaArgs:
    """Grafana provisioned with the same dashboards as Cloud Monitoring (one model, two renderers)."""
    from infra.components.observability.dashboards import build_dashboards

    g, ch = cfg.observability.grafana, cfg.platform.clickhouse
    return GrafanaArgs(
        project=cfg.project, region=cfg.region, environment=cfg.environment, image=g.image, domain=g.domain,
        cpu=g.cpu, memory=g.memory, min_instances=g.min_instances, max_instances=g.max_instances,
        dashboards=tuple(build_dashboards(dashboards_args(cfg, candidates))),
        secret_ids={key: secret_id(cfg.environment, key) for key in ("clickhouse-grafana-password", "clickhouse-host",
                                                                    "clickhouse-ca")},
        clickhouse_database=ch.database if ch else None,
        vpc_network=network_name(site_of(cfg)) if ch else None, vpc_subnetwork=subnet_name(site_of(cfg)) if ch else None,
        access_logs_bucket=access_logs, protect=not cfg.teardown, iap_audience_secret=audience.secret_id,
        iap_invoker=iap_service_agent(cfg.project), waits_for=audience.resources, labels=site_of(cfg).labels())


def uptime_targets(cfg: StackConfig) -> tuple[UptimeTarget, ...]:
    """Each public service's own health path as routed on the load balancer's first domain."""
    host = cfg.platform.edge.domains[0]
    return tuple(UptimeTarget(key, host, probe_path(svc)) for key, svc in cfg.services.items() if svc.public)


def dashboards_args(cfg: StackConfig, candidates: dict[str, str]) -> DashboardsArgs:
    """`candidates`: service key -> candidate revision, for every service of the map."""
    return DashboardsArgs(site_of(cfg), candidates, cfg.observability.thresholds, cfg.app.cost_optimization_target_savings,
                          cfg.platform.clickhouse)


def load_test_args(cfg: StackConfig, access_log_bucket: pulumi.Input[str]) -> Optional[LoadTestJobArgs]:
    """The job's args from the stack config; None when `netra:verification.loadTest` is not set."""
    lt = cfg.verification.load_test
    if lt is None:
        return None
    env = {
        "LOADTEST_USERS": str(lt.users),
        "LOADTEST_SPAWN_RATE": f"{lt.spawn_rate:g}",
        "LOADTEST_DURATION_S": str(lt.duration_seconds),
        "LOADTEST_MAX_REQUESTS": str(lt.max_requests),
        "LOADTEST_WAIT_MIN_S": f"{lt.think_time_seconds[0]:g}",
        "LOADTEST_WAIT_MAX_S": f"{lt.think_time_seconds[1]:g}",
        "LOADTEST_HTTP_SCENARIOS": json.dumps([s.model_dump(by_alias=True, exclude_none=True) for s in lt.http],
                                              sort_keys=True, separators=(",", ":")),
        "LOADTEST_WS_PATH": lt.websocket.path,
        "LOADTEST_WS_USER_PERCENT": str(lt.websocket.user_percent),
        "LOADTEST_WS_MESSAGE": json.dumps(lt.websocket.message, sort_keys=True, separators=(",", ":")),
        "LOADTEST_WS_TIMEOUT_S": f"{lt.websocket.timeout_seconds:g}",
        "LOADTEST_CRITERIA": json.dumps(lt.criteria.model_dump(by_alias=True), sort_keys=True, separators=(",", ":")),
        **lt.env,
    }
    return LoadTestJobArgs(
        project=cfg.project, region=cfg.region, job_name=f"netra-loadtest-{cfg.environment}", image=lt.image,
        env=tuple(sorted(env.items())), cpu=lt.cpu, memory=lt.memory,
        timeout_seconds=lt.duration_seconds + 600,  # start-up, spawn, stop and upload on top of the run
        target_service=service_name(lt.service, cfg.environment),
        results_bucket=f"{cfg.project}-loadtest-results", bucket_location=cfg.platform.storage.location,
        labels=(("cost-center", cfg.cost_center), ("env", cfg.environment), ("managed-by", "pulumi"),
                ("service", "loadtest")),
        vpc_network=network_name(site_of(cfg)), vpc_subnetwork=subnet_name(site_of(cfg)), deletion_protection=not cfg.teardown,
        access_log_bucket=access_log_bucket,
    )


def emergency_budget_args(cfg: StackConfig, emergency_resources: Sequence[pulumi.Resource],
                          access_log_bucket: pulumi.Input[str]) -> Optional[EmergencyBudgetArgs]:
    eb = cfg.verification.emergency_budget
    if eb is None or cfg.observability.budget is None:
        return None
    pd = cfg.observability.pagerduty
    return EmergencyBudgetArgs(
        project=cfg.project, region=cfg.region, environment=cfg.environment,
        labels=(("cost-center", cfg.cost_center), ("env", cfg.environment), ("managed-by", "pulumi")),
        emergency_secret_id=secret_id(cfg.environment, EMERGENCY_SECRET),
        max_hourly_cost_usd=eb.max_hourly_cost_usd, trigger_hourly_cost_usd=eb.trigger_rate,
        trigger_threshold_percent=eb.trigger_threshold_percent,
        bucket_location=cfg.platform.storage.location, deletion_protection=not cfg.teardown,
        access_log_bucket=access_log_bucket,
        pagerduty_key=pulumi.Output.secret(pd.service_key.get_secret_value()) if pd else None,
        depends_on=tuple(emergency_resources))


def build_observability(cfg: StackConfig, site: Site, candidates: dict[str, str],
                        budget_topic: Optional[pulumi.Input[str]] = None) -> Observability:
    obs = cfg.observability
    public = [k for k, s in cfg.services.items() if s.public]
    channels = NotificationChannels("notifications", NotificationChannelsArgs(
        site, emails=obs.emails, routing=obs.routing,
        pagerduty_key=obs.pagerduty.service_key.get_secret_value() if obs.pagerduty else None))
    log_metrics = LogMetrics("log-metrics", LogMetricsArgs(cfg.project))
    uptime = UptimeChecks("uptime", UptimeChecksArgs(site, uptime_targets(cfg), obs.uptime.period_seconds,
                                                     obs.uptime.timeout_seconds))
    # Policies that read a log-based metric are refused until the metric exists, and for minutes after
    # that until Cloud Monitoring knows it: alerts wait for MetricReady (which polls for the descriptors).
    after_metrics = pulumi.ResourceOptions(depends_on=[log_metrics])
    ready = MetricReady("log-metrics-ready", cfg.project, [m.metric_type for m in signals.ALL_SIGNALS],
                        opts=pulumi.ResourceOptions(parent=log_metrics, depends_on=list(log_metrics.metrics.values())))
    alerts = SeedAlerts("seed-alerts", SeedAlertsArgs(
        site, services=tuple(cfg.services), uptime_check_ids={k: c.uptime_check_id for k, c in uptime.checks.items()},
        thresholds=obs.thresholds, routing=channels.routing), opts=pulumi.ResourceOptions(depends_on=[log_metrics, ready]))
    slos = Slos("slos", SlosArgs(site, slo_services(obs, public), obs.slo, channels.routing))
    dashboards = Dashboards("dashboards", dashboards_args(cfg, candidates), opts=after_metrics)
    retention = LogRetention("log-retention", LogRetentionArgs(site, obs.log_retention_days))
    budget = None
    if obs.budget is not None:
        budget = Budget("budget", BudgetArgs(site, obs.budget, [ch.name for ch in channels.by_kind["email"]],
                                             pubsub_topic=budget_topic))
    clickhouse = None
    if cfg.platform.clickhouse is not None:
        clickhouse = ClickHouseAlerts("clickhouse-alerts", ClickHouseAlertsArgs(site, cfg.platform.clickhouse,
                                                                                channels.routing))
    return Observability(channels, log_metrics, uptime, alerts, slos, dashboards, retention, budget, clickhouse)


@dataclass
class Stack:
    cfg: StackConfig
    platform: Platform
    services: dict[str, CloudRunService]
    edge: Edge
    observability: Observability
    load_test: Optional[LoadTestJob] = None
    emergency_budget: Optional[EmergencyBudget] = None
    grafana: Optional[Grafana] = None

    def outputs(self) -> dict:
        cfg, p = self.cfg, self.platform
        db = cfg.platform.database
        return {
            "gcpProject": cfg.project,
            "region": cfg.region,
            "environment": cfg.environment,
            "canaryPercent": cfg.canary_percent,
            "stages": list(cfg.stages),
            "services": {key: svc.summary() for key, svc in self.services.items()},
            "platform": {
                "network": p.network.name,
                "subnetwork": p.network.subnet_name,
                "database": {
                    "instance": p.database.instance_name,
                    "connectionName": p.database.connection_name,
                    "database": db.database_name,
                    "users": dict(p.database.users),
                    "poolSizes": pool_sizes(db, cfg.services),
                    "maxConnections": db.max_connections,
                },
                "redis": {"instance": p.cache.instance_name, "port": cache_mod.TLS_PORT},
                "buckets": p.storage.summary(),
                "secrets": dict(p.secrets.ids),
                "edge": self.edge.summary(),
                **({"clickhouse": p.analytics.summary()} if p.analytics else {}),
            },
            "migrationJob": p.migrations.summary(),
            # where the release commands find the ledger (infra/release/backends.stack_ledger)
            "releaseLedger": f"gs://{bucket_name(cfg.project, RELEASE_LEDGER)}",
            "observability": self.observability.summary(),
            "loadTestJob": self.load_test.summary() if self.load_test else None,
            "emergencyBudget": self.emergency_budget.summary() if self.emergency_budget else None,
            "grafana": self.grafana.summary() if self.grafana else None,
        }


def build(cfg: StackConfig) -> Stack:
    site = site_of(cfg)
    # first: every resource registered after this waits for its API, and every stateful one is protected
    # unless config lifts its guard
    apis_mod.install(cfg.project)
    guards_mod.install(site.guards, [(a.resource, a.reason) for a in cfg.allow_replace])
    platform = build_platform(cfg, site)
    waits = {key: (*platform.secrets.resources(secrets_read(cfg, key)), platform.network.subnet) for key in cfg.services}
    services = {key: CloudRunService(key, service_args(cfg, key, service_wiring(cfg, key, waits[key])))
                for key in cfg.services}
    for key, warnings in unversioned_secret_warnings(cfg).items():
        for warning in warnings:
            pulumi.log.warn(warning, resource=services[key])
    edge = Edge("edge", edge_args(cfg, services, platform.storage.static_assets.name,
                                  platform.verify_token.result if platform.verify_token else None))
    grafana = None
    if cfg.observability.grafana is not None:
        grafana = Grafana("grafana", grafana_args(cfg, {k: s.candidate_revision for k, s in services.items()},
                                                  platform.storage.access_logs.name, edge.iap_audiences["grafana"]),
                          opts=pulumi.ResourceOptions(depends_on=[
                              *platform.secrets.resources(["clickhouse-grafana-password", "clickhouse-host", "clickhouse-ca"]
                                                          if cfg.platform.clickhouse else []), platform.network.subnet]))
    access_logs = platform.storage.access_logs.name
    eb_args = emergency_budget_args(cfg, platform.secrets.resources([EMERGENCY_SECRET]), access_logs)
    guard = EmergencyBudget("emergency-budget", eb_args) if eb_args else None
    obs = build_observability(cfg, site, {k: s.candidate_revision for k, s in services.items()},
                              budget_topic=guard.topic.id if guard else None)
    if guard is not None:  # the budget publishes to the guard's topic; the guard checks the budget's id
        guard.watch(obs.budget.budget.name)
    lt_args = load_test_args(cfg, access_logs)
    load_test = LoadTestJob("load-test", lt_args) if lt_args else None
    return Stack(cfg, platform, services, edge, obs, load_test, guard, grafana)
