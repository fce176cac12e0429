"""`secure:` config values: a Pulumi secret end to end where a field takes a secret, refused elsewhere."""
from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ConfigError, StackConfig, load_stack_config
from infra.config.secure import ENV_HINT, PLAIN_HINT, secret_problems, secure_paths, stack_file_secure_paths
from infra.plan.engine import is_secret
from infra.plan.stackfile import OFFLINE_SECRET

from .conftest import flat, stack_config

ROOT = Path(__file__).resolve().parents[1]


def test_secure_leaves_are_found_in_the_stack_files():
    assert stack_file_secure_paths("prod", ROOT) == ["netra:observability.pagerduty.serviceKey"]
    assert secure_paths({"netra:services": {"backend": {"env": {"A": "x", "B": {"secure": "v1:abc"}}}},
                         "netra:platform": {"edge": {"domains": [{"secure": "v1:d"}]}}}) == [
        "netra:services.backend.env.B", "netra:platform.edge.domains.0"]


@pytest.mark.parametrize("key,hint", [
    ("netra:services.backend.env.FEATURE_MODE", ENV_HINT),
    ("netra:platform.edge.domains.0", PLAIN_HINT),
    ("netra:costCenter", PLAIN_HINT),
    ("netra:observability.budget.billingAccount", PLAIN_HINT),
])
def test_a_secret_where_none_belongs_is_refused_naming_its_key(key, hint):
    with pytest.raises(ConfigError) as e:
        load_stack_config(flat(stack_config("prod")), "prod", secret_paths=[key])
    assert [(p.key, p.message) for p in e.value.problems] == [(key, hint)]


def test_secret_fields_accept_secure_values():
    assert secret_problems(["netra:observability.pagerduty.serviceKey", "gcp:project"], StackConfig) == []
    # an unknown key is the loader's business (reported as unknown), not a second problem here
    assert secret_problems(["netra:services.backend.nope"], StackConfig) == []


def test_the_secret_is_wrapped_wherever_it_reaches_the_engine(prod_run):
    """The stack file's secure value (offline: OFFLINE_SECRET) reaches resources and outputs only as a
    Pulumi secret: never as a plain string anywhere in the wire inputs or the stack outputs."""
    plain, wrapped = [], []

    def walk(value, where, inside=False):
        if is_secret(value):
            walk(value.get("value"), where, True)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}", inside)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", inside)
        elif isinstance(value, str) and OFFLINE_SECRET in value:
            (wrapped if inside else plain).append(where)

    for r in prod_run.resources:
        walk(r.inputs, f"{r.type} {r.name}")
    walk(prod_run.outputs, "outputs")
    assert plain == []
    assert wrapped  # it does reach a resource (the PagerDuty channel), as a secret


@pytest.mark.parametrize("name,expect", [
    ("DB_PASS", "looks like a credential"), ("OPENAI_KEY", "looks like a credential"),
    ("SIGNING_KEY", "looks like a credential"), ("GITHUB_TOKEN", "looks like a credential"),
    ("STRIPE_SECRET_HOOK", "looks like a credential"), ("SENTRY_DSN", "looks like a credential"),
    ("DB_SSLMODE", "is set by the platform"), ("DB_POOL_SIZE", "is set by the platform"),
    ("REDIS_CA_CERT_PATH", "is set by the platform"), ("PORT", "is set by Cloud Run"),
    ("TOKEN_OPTIMIZATION_MAX_RETRIES", "is set by netra:app"),
])
def test_service_env_refuses_credentials_and_platform_settings(name, expect):
    from .conftest import config_problems

    cfg = stack_config("prod")
    cfg["netra:services"]["auth"]["env"] = {name: "x", "CACHE_KEY_PREFIX": "n", "MAX_TOKENS": "8", "LOG_LEVEL": "info"}
    found = config_problems(cfg)
    assert list(found) == [f"netra:services.auth.env.{name}"] and expect in found[f"netra:services.auth.env.{name}"]


def test_platform_env_covers_what_the_platform_sets(prod_plan):
    """Every env value the platform derives for a service is in PLATFORM_ENV (so no service may override it)."""
    from infra.config.app import AppSettings
    from infra.config.services import PLATFORM_ENV

    app = set(AppSettings().environment())
    for r in prod_plan["resources"]:
        if r["type"] == "gcp:cloudrunv2/service:Service" and r["name"] != "grafana":  # Grafana: not of the map
            derived = {e["name"] for e in r["inputs"]["template"]["containers"][0]["envs"] if "value" in e} - app
            # a variable named in the service's own `secrets` (the mounted flags file's path) is the service's
            own = set((stack_config("prod")["netra:services"][r["name"]].get("secrets") or {}))
            assert derived - own <= PLATFORM_ENV, (r["name"], derived - own - PLATFORM_ENV)
