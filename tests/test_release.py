"""Revision names and traffic tables (pure functions)."""
from __future__ import annotations

import dataclasses

import pytest

from infra.release import model as release
from infra.components.prometheus import MetricsSidecar
from infra.components.service import RevisionSpec, SecretEnv, SecretVolume

SPEC = RevisionSpec(
    service_account="netra-backend-prod@netra-production.iam.gserviceaccount.com",
    image="us-central1-docker.pkg.dev/p/r/backend@sha256:" + "a" * 64,
    port=8080, cpu="2", memory="4Gi", min_instances=2, max_instances=100, concurrency=80,
    timeout_seconds=3600, session_affinity=True, health_check_path="/health",
    labels=(("env", "prod"),), env=(("A", "1"),), secret_env=(SecretEnv("DB_PASSWORD", "db-password"),),
    secret_volumes=(SecretVolume("redis-ca", "prod-redis-ca", "/secrets/redis", "server-ca.pem"),),
    vpc_network=None, vpc_subnetwork=None,
)
NAME = "netra-backend-prod"
STABLE = "netra-backend-prod-00042-abc"


def test_candidate_name_is_service_name_plus_8_hex_and_stable():
    name = release.candidate_revision(NAME, SPEC)
    assert name.startswith(NAME + "-")
    suffix = name[len(NAME) + 1:]
    assert len(suffix) == 8 and int(suffix, 16) >= 0
    assert release.candidate_revision(NAME, dataclasses.replace(SPEC)) == name  # equal spec, equal name


ALTERED = {
    "service_account": "other@p.iam.gserviceaccount.com", "image": SPEC.image.replace("a" * 64, "b" * 64),
    "port": 8081, "cpu": "4", "memory": "8Gi", "min_instances": 3, "max_instances": 99, "concurrency": 81,
    "timeout_seconds": 300, "session_affinity": False, "health_check_path": "/healthz",
    "labels": (("env", "staging"),), "env": (("A", "2"),),
    "secret_env": (SecretEnv("DB_PASSWORD", "db-password", "3"),),
    "secret_volumes": (SecretVolume("redis-ca", "prod-redis-ca", "/secrets/redis", "server-ca.pem", "2"),),
    "vpc_network": "net", "vpc_subnetwork": "sub",
    "metrics": MetricsSidecar("us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.3.0",
                              "prod-prometheus-config", 8080, "/metrics", 30),
}


def test_every_template_field_changes_the_revision_name():
    assert set(ALTERED) == {f.name for f in dataclasses.fields(RevisionSpec)}, "a new spec field needs a case here"
    base = release.candidate_revision(NAME, SPEC)
    for field, value in ALTERED.items():
        assert release.candidate_revision(NAME, dataclasses.replace(SPEC, **{field: value})) != base, field


@pytest.mark.parametrize("percent", [0, 10, 50, 100])
def test_stage_table_with_stable(percent):
    plan = release.traffic_plan(NAME, "cand", STABLE, percent)
    assert plan.targets == (
        release.TrafficTarget(STABLE, 100 - percent, "stable"),
        release.TrafficTarget("cand", percent, "canary"),
    )
    assert sum(t.percent for t in plan.targets) == 100
    assert plan.candidate_percent == percent and not plan.warnings


@pytest.mark.parametrize("percent", [0, 10, 50])
def test_first_deploy_gives_candidate_everything_with_a_warning(percent):
    plan = release.traffic_plan(NAME, "cand", None, percent)
    assert plan.targets == (release.TrafficTarget("cand", 100, "canary"),)
    assert len(plan.warnings) == 1 and "first deploy" in plan.warnings[0] and "cand" in plan.warnings[0]


def test_first_deploy_at_100_takes_the_stable_tag():
    """Cloud Run sends a new service's requests to its only revision: the stage shows as the tag."""
    plan = release.traffic_plan(NAME, "cand", None, 100)
    assert plan.targets == (release.TrafficTarget("cand", 100, "stable"),)


def test_finalized_stable_takes_everything_under_stable_tag():
    plan = release.traffic_plan(NAME, STABLE, STABLE, 100)
    assert plan.targets == (release.TrafficTarget(STABLE, 100, "stable"),)


def test_percent_out_of_range_is_refused():
    with pytest.raises(ValueError, match="canary_percent"):
        release.traffic_plan(NAME, "cand", STABLE, 101)
