"""netra:platform bad input: every problem names its key (and the numbers), exit 2, nothing registered."""
from __future__ import annotations

import json

import pytest

from infra.config import load_stack_config

from .conftest import cli, config_problems as problems, flat, stack_config


def platform(cfg: dict) -> dict:
    return cfg["netra:platform"]


def test_pools_are_pinned_per_service_and_fit():
    cfg = load_stack_config(flat(stack_config("prod")), "prod")
    from infra.config.platform import db_clients, pool_sizes

    assert db_clients(cfg.services) == {"backend": 100, "auth": 50}
    assert pool_sizes(cfg.platform.database, cfg.services) == {"backend": 6, "auth": 6}
    assert (100 + 50) * 6 + 50 <= 1000


def unpin(cfg: dict) -> dict:
    for svc in cfg["netra:services"].values():
        svc.pop("dbPoolSize", None)
    return cfg


def test_explicit_pool_overflow_names_the_pool_key_with_the_numbers():
    cfg = unpin(stack_config("prod"))
    platform(cfg)["database"]["poolSize"] = 10
    msg = problems(cfg)["netra:platform.database.poolSize"]
    assert msg.startswith("pool overflow: 150 database client instances (maxInstances backend 100 + auth 50) x poolSize 10")
    assert "+ poolReserve 50 = 1550 > maxConnections 1000" in msg and "lower poolSize to <= 6" in msg


def test_max_connections_too_small_for_one_connection_per_instance():
    cfg = unpin(stack_config("prod"))
    for var in ("DB_HOST", "DB_PASSWORD"):
        del cfg["netra:services"]["auth"]["secrets"][var]  # backend is then the only client: its pool is derived
    platform(cfg)["database"]["maxConnections"] = 140
    msg = problems(cfg)["netra:platform.database.maxConnections"]
    assert "maxConnections 140 - poolReserve 50 leaves less than one connection per instance for 100" in msg
    assert "raise maxConnections to >= 150" in msg


def test_more_instances_overflow_the_pool():
    cfg = stack_config("staging")
    cfg["netra:services"]["backend"]["maxInstances"] = 200
    msg = problems(cfg, "staging")["netra:platform.database.maxConnections"]
    assert msg.startswith("pool overflow: backend 200 x 11 + auth 3 x 11 (maxInstances x pool per database client)")
    assert "+ poolReserve 10 = 2243 > maxConnections 100" in msg and "lower dbPoolSize of backend, auth" in msg


def test_a_service_without_the_db_password_uses_no_connections():
    cfg = stack_config("prod")
    cfg["netra:services"]["frontend"]["maxInstances"] = 1000  # frontend does not read db-password
    platform(cfg)["network"]["subnetCidr"] = "10.8.0.0/20"
    load_stack_config(flat(cfg), "prod")


@pytest.mark.parametrize("path,value,expect", [
    ("cache.memorySizeGb", 0, "greater than or equal to 1"),
    ("cache.memorySizeGb", -5, "greater than or equal to 1"),
    ("database.diskSizeGb", 0, "greater than or equal to 10"),
    ("database.maxConnections", -1, "greater than or equal to 14"),
    ("database.poolSize", 0, "greater than or equal to 1"),
    ("storage.backups.retentionDays", 0, "greater than or equal to 1"),
    ("edge.rateLimit.requestsPerMinute", 0, "greater than or equal to 1"),
])
def test_zero_or_negative_sizes(path, value, expect):
    cfg = stack_config("prod")
    node = platform(cfg)
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    found = problems(cfg)
    assert expect in found[f"netra:platform.{path}"], found
    assert str(value) in found[f"netra:platform.{path}"]


@pytest.mark.parametrize("tier,expect", [
    ("db-n1-standard-4", "unknown tier 'db-n1-standard-4'; allowed: db-custom-<vCPU>-<MiB>"),
    ("db-custom-3-12288", "vCPUs must be 1 or an even number"),
    ("db-custom-2-1024", "memory must be a multiple of 256 MiB"),
    ("db-perf-optimized-N-3", "db-perf-optimized-N takes"),
])
def test_unknown_sql_tier(tier, expect):
    cfg = stack_config("prod")
    platform(cfg)["database"]["tier"] = tier
    assert expect in problems(cfg)["netra:platform.database.tier"]


def test_known_sql_tiers_pass():
    from infra.config.platform import tier_problem

    for tier in ("db-custom-1-3840", "db-custom-8-32768", "db-custom-96-638976", "db-perf-optimized-N-8", "db-g1-small"):
        assert tier_problem(tier) is None, tier


def test_unknown_redis_tier_and_version():
    cfg = stack_config("prod")
    platform(cfg)["cache"].update(tier="PREMIUM", redisVersion="6.x")
    found = problems(cfg)
    assert "'BASIC' or 'STANDARD_HA'" in found["netra:platform.cache.tier"]
    assert found["netra:platform.cache.redisVersion"] == "unknown Redis version '6.x'; allowed: 7.0, 7.2 (seed: Redis 7+)"
    platform(cfg)["cache"].update(tier="STANDARD_HA", redisVersion=7.0)  # YAML float is accepted
    load_stack_config(flat(cfg), "prod")


@pytest.mark.parametrize("domain", ["https://app.netra.ai", "*.netra.ai", "localhost", "app_netra.ai", "App.Netra.ai",
                                    "app.netra.ai/", "-app.netra.ai", "10.0.0.1", ""])
def test_domain_must_be_a_hostname(domain):
    cfg = stack_config("prod")
    platform(cfg)["edge"]["domains"] = ["app.netra.ai", domain]
    msg = problems(cfg)["netra:platform.edge.domains.1"]
    assert "must be a fully qualified hostname" in msg and repr(domain) in msg


def test_domains_required_and_not_repeated():
    cfg = stack_config("prod")
    platform(cfg)["edge"]["domains"] = []
    assert "at least 1 item" in problems(cfg)["netra:platform.edge.domains"]
    platform(cfg)["edge"]["domains"] = ["app.netra.ai", "app.netra.ai"]
    assert "repeats 'app.netra.ai'" in problems(cfg)["netra:platform.edge.domains.1"]


def test_prod_requires_ha_and_a_pinned_runner_staging_does_not():
    cfg = stack_config("prod")
    platform(cfg)["database"]["availabilityType"] = "ZONAL"
    platform(cfg)["cache"]["tier"] = "BASIC"
    platform(cfg)["migrations"]["image"] = "us-central1-docker.pkg.dev/netra-production/netra/migrate:latest"
    found = problems(cfg)
    assert "must be REGIONAL in prod" in found["netra:platform.database.availabilityType"]
    assert "must be STANDARD_HA in prod" in found["netra:platform.cache.tier"]
    assert "pinned by digest" in found["netra:platform.migrations.image"]
    load_stack_config(flat(stack_config("staging")), "staging")  # ZONAL, BASIC and a tag are fine there


def test_network_ranges():
    cfg = stack_config("prod")
    platform(cfg)["network"].update(subnetCidr="10.8.0.0/27", privateServicesCidr="10.8.0.0/16")
    found = problems(cfg)
    assert "/26 or larger" in found["netra:platform.network.subnetCidr"]
    cfg = stack_config("prod")
    platform(cfg)["network"].update(subnetCidr="10.8.0.0/24", privateServicesCidr="10.8.0.0/16")
    found = problems(cfg)
    assert "overlaps subnetCidr 10.8.0.0/24" in found["netra:platform.network.privateServicesCidr"]
    cfg = stack_config("prod")
    platform(cfg)["network"]["subnetCidr"] = "10.8.0.0/24"
    assert "252 usable addresses" in problems(cfg)["netra:platform.network.subnetCidr"]
    platform(cfg)["network"]["subnetCidr"] = "8.8.8.0/24"
    assert "private IPv4 range" in problems(cfg)["netra:platform.network.subnetCidr"]


def test_backups_lifecycle_order_and_pitr_window():
    cfg = stack_config("prod")
    platform(cfg)["storage"]["backups"].update(coldlineAfterDays=20)
    platform(cfg)["database"]["backups"]["transactionLogRetentionDays"] = 14
    found = problems(cfg)
    assert found["netra:platform.storage.backups.coldlineAfterDays"] == "must be > nearlineAfterDays (30), got 20"
    assert "must be <= 7 on ENTERPRISE" in found["netra:platform.database.backups.transactionLogRetentionDays"]


def test_unknown_platform_keys_get_did_you_mean():
    cfg = stack_config("prod")
    platform(cfg)["databse"] = {}
    platform(cfg)["edge"]["waf"]["sqlInjection"] = True
    found = problems(cfg)
    assert "did you mean 'database'" in found["netra:platform.databse"]
    assert "allowed:" in found["netra:platform.edge.waf.sqlInjection"] and "sqli" in found["netra:platform.edge.waf.sqlInjection"]


def test_services_may_only_read_platform_secrets():
    cfg = stack_config("prod")
    cfg["netra:services"]["frontend"]["secrets"]["API_KEY"] = "openai-key"
    msg = problems(cfg)["netra:services.frontend.secrets.API_KEY"]
    assert "unknown secret 'openai-key'" in msg and "db-password" in msg and "feature-flags" in msg


def test_platform_section_is_required():
    cfg = stack_config("prod")
    del cfg["netra:platform"]
    assert "required key is missing" in problems(cfg)["netra:platform"]


def test_cli_exit_2_names_each_key_and_registers_nothing():
    """Pool overflow is reported together with the other platform problems, not after they are fixed."""
    proc = cli("plan", "--stack", "prod", "--json",
               "--set", "netra:services.backend.dbPoolSize=10", "--set", "netra:platform.cache.memorySizeGb=0",
               "--set", "netra:platform.cache.redisVersion=8.0",
               "--set", "netra:platform.edge.domains=[not a host]")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["problems"]  # --json: one object listing the problems, no plan
    for key in ("netra:platform.database.maxConnections: pool overflow", "netra:platform.cache.memorySizeGb:",
                "netra:platform.cache.redisVersion: unknown Redis version",
                "netra:platform.edge.domains.0: must be a fully qualified hostname"):
        assert key in proc.stderr, proc.stderr


def test_program_refuses_platform_errors_before_registering_anything():
    from infra import program
    from infra.plan import engine
    from infra.plan.stackfile import read_stack

    seen = []
    original = engine._RecordingMonitor.RegisterResource

    def register(self, request):
        seen.append(request.type)
        return original(self, request)

    stack = read_stack("prod", overrides={"netra:platform.cache.memorySizeGb": 0})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine._RecordingMonitor, "RegisterResource", register)
        with pytest.raises(Exception) as e:
            engine.run_program(program.main, stack.project, "prod", stack.config)
    assert "netra:platform.cache.memorySizeGb" in str(e.value)
    assert [t for t in seen if t != "pulumi:pulumi:Stack"] == []
