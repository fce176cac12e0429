"""Engine and GCP rules the mocks do not enforce, enforced offline: duplicate URNs, service keys that
collide with platform components, GCP name limits, and the gcp provider's own config keys."""
from __future__ import annotations

import collections
import re

import pulumi
import pulumi_gcp as gcp
import pytest

from infra.config import load_stack_config, services as services_cfg
from infra.config.services import max_key_length, service_name
from infra.config.source import gcp_provider_keys
from infra.plan import run_stack
from infra.plan.engine import DuplicateUrnError, run_program

from .conftest import WORKER, cli, config_problems, flat, stack_config

ACCOUNT = "gcp:serviceaccount/account:Account"
RUN = "gcp:cloudrunv2/service:Service"
JOB = "gcp:cloudrunv2/job:Job"


def with_service(stack: str, key: str, **settings) -> dict:
    cfg = stack_config(stack)
    cfg["netra:services"][key] = {**WORKER, "maxInstances": 3, **settings}
    return cfg


def service_set(stack: str, key: str) -> str:
    """`--set` of a public service `key` behind the load balancer (its own route)."""
    return f"netra:services.{key}={{image: {WORKER['image']}, routes: [/{key[:8]}/*], minInstances: 1, maxInstances: 3}}"


# ---------------------------------------------------------------- duplicate URNs

def test_the_recorder_refuses_a_urn_registered_twice():
    def program():
        gcp.pubsub.Topic("t", gcp.pubsub.TopicArgs(name="a"))
        gcp.pubsub.Topic("t", gcp.pubsub.TopicArgs(name="b"))

    with pytest.raises(DuplicateUrnError) as e:
        run_program(program, "netra", "test", {})
    assert e.value.urns == ["urn:pulumi:test::netra::pulumi:pulumi:Stack$gcp:pubsub/topic:Topic::t"]
    assert "Duplicate resource URN 'urn:pulumi:test::netra::pulumi:pulumi:Stack$gcp:pubsub/topic:Topic::t'; try giving it a unique name" \
        in str(e.value)


def test_the_same_name_under_other_parents_or_types_is_not_a_duplicate():
    def program():
        parent = pulumi.ComponentResource("netra:test:Box", "box")
        gcp.pubsub.Topic("t", gcp.pubsub.TopicArgs(name="a"))
        gcp.pubsub.Topic("t", gcp.pubsub.TopicArgs(name="b"), opts=pulumi.ResourceOptions(parent=parent))
        gcp.pubsub.Subscription("t", gcp.pubsub.SubscriptionArgs(topic="a"))

    assert len(run_program(program, "netra", "test", {}).resources) == 4


def test_a_grafana_service_is_refused_by_the_engine_rule_when_config_lets_it_through(monkeypatch):
    monkeypatch.setattr(services_cfg, "RESERVED_KEYS", {})
    proc = cli("plan", "--stack", "staging", "--set", service_set("staging", "grafana"))
    assert proc.returncode == 2 and "registers a resource URN twice" in proc.stderr
    assert "Edge$gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup::grafana-neg\n" in proc.stderr


# ---------------------------------------------------------------- keys that collide with platform components

@pytest.mark.parametrize("key", sorted(services_cfg.RESERVED_KEYS))
def test_platform_keys_are_refused_naming_the_key(key):
    msg = config_problems(with_service("prod", key))[f"netra:services.{key}"]
    assert msg.startswith(f"{key!r} is reserved (") and "choose another name" in msg


@pytest.mark.parametrize("key", sorted(set(services_cfg.RESERVED_KEYS) - {"migrate"}))
def test_each_reserved_key_really_collides(key, monkeypatch):
    """Without the reservation, the key's service registers a URN or a GCP name the platform already has."""
    monkeypatch.setattr(services_cfg, "RESERVED_KEYS", {})
    stack = "prod" if key == "budget-guard" else "staging"  # the emergency budget runs in prod
    try:
        run = run_stack(stack, sets=[service_set(stack, key)])
    except DuplicateUrnError:
        return
    names = collections.Counter((r.type, r.inputs.get("accountId") or r.inputs.get("name"))
                                for r in run.resources if r.type in (ACCOUNT, RUN, JOB))
    assert [n for n, c in names.items() if c > 1], f"{key} collides with nothing: drop it from RESERVED_KEYS"


def test_a_key_that_is_another_services_canary_route_is_refused():
    cfg = with_service("prod", "frontend-canary")
    assert "collides with service 'frontend''s canary verification route" in \
        config_problems(cfg)["netra:services.frontend-canary"]
    load_stack_config(flat(with_service("prod", "search-canary")), "prod")  # no service `search`: fine


# ---------------------------------------------------------------- GCP name limits

RFC1035 = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
ACCOUNT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
# type -> (input holding its GCP name, max length); compute names are RFC 1035 labels
LIMITS = {
    RUN: ("name", 49), JOB: ("name", 63), ACCOUNT: ("accountId", 30),
    "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup": ("name", 63),
    "gcp:compute/backendService:BackendService": ("name", 63), "gcp:compute/uRLMap:URLMap": ("name", 63),
    "gcp:compute/securityPolicy:SecurityPolicy": ("name", 63), "gcp:compute/network:Network": ("name", 63),
    "gcp:compute/subnetwork:Subnetwork": ("name", 63), "gcp:compute/instanceTemplate:InstanceTemplate": ("namePrefix", 37),
    "gcp:compute/instanceGroupManager:InstanceGroupManager": ("name", 63), "gcp:compute/disk:Disk": ("name", 63),
    "gcp:storage/bucket:Bucket": ("name", 63), "gcp:secretmanager/secret:Secret": ("secretId", 255),
    "gcp:redis/instance:Instance": ("name", 40), "gcp:sql/databaseInstance:DatabaseInstance": ("name", 98),
    "gcp:cloudfunctionsv2/function:Function": ("name", 63), "gcp:pubsub/topic:Topic": ("name", 255),
}


def name_problems(run) -> list[str]:
    found = []
    for r in run.resources:
        if r.type not in LIMITS:
            continue
        prop, limit = LIMITS[r.type]
        name = r.inputs.get(prop)
        if not isinstance(name, str):
            continue
        if len(name) > limit:
            found.append(f"{r.type} {r.name}: {prop} {name!r} is {len(name)} > {limit}")
        if r.type == ACCOUNT and not ACCOUNT_ID.fullmatch(name):
            found.append(f"{r.name}: accountId {name!r} is not 6-30 of [a-z0-9-] starting with a letter")
        # a prefix (instance templates' namePrefix) gets a generated suffix: it may end with "-"
        if r.type.startswith("gcp:compute/") and not RFC1035.fullmatch(name + ("a" if prop == "namePrefix" else "")):
            found.append(f"{r.type} {r.name}: {name!r} is not an RFC 1035 name")
        if r.type == RUN:
            for t in r.inputs.get("traffics") or ():
                if t.get("tag") and len(t["tag"]) + len(name) > 46:
                    found.append(f"{name}: tag {t['tag']!r} + service name is {len(t['tag']) + len(name)} > 46")
            revision = (r.inputs.get("template") or {}).get("revision", "")
            if len(revision) > 63:
                found.append(f"{name}: revision {revision!r} is {len(revision)} > 63")
    return found


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_name_in_the_plan_fits_gcp_limits(stack, request):
    assert name_problems(request.getfixturevalue(f"{stack}_run")) == []


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_the_longest_key_config_accepts_plans_within_every_limit(stack):
    longest = "w" * max_key_length(stack)
    run = run_stack(stack, sets=[service_set(stack, longest)])
    assert name_problems(run) == []
    assert len(service_name(longest, stack)) + len("previous") == 46  # the binding limit is the tag's
    msg = config_problems(with_service(stack, longest + "x"), stack)[f"netra:services.{longest}x"]
    assert msg == (f"service name is {len(longest) + 1} characters; at most {len(longest)} in {stack}: the traffic tag "
                   f"'previous' plus the service name {service_name(longest + 'x', stack)} would be 47 characters, "
                   f"GCP allows 46")


# ---------------------------------------------------------------- the gcp provider's own config keys

def test_provider_keys_come_from_the_installed_provider_schema():
    keys = gcp_provider_keys()
    assert len(keys) > 200 and keys["zone"] == "string" and keys["impersonateServiceAccount"] == "string"
    assert keys["userProjectOverride"] == "boolean" and "project" in keys and "region" in keys


def test_the_provider_keys_are_accepted_and_typed():
    cfg = stack_config("prod")
    cfg.update({"gcp:zone": "us-central1-a", "gcp:impersonateServiceAccount": "deployer@netra-production.iam.gserviceaccount.com",
                "gcp:userProjectOverride": "true", "gcp:defaultLabels": {"team": "platform"}})
    loaded = load_stack_config(flat(cfg), "prod")
    assert loaded.project == "netra-production"
    cfg["gcp:userProjectOverride"] = "sometimes"
    cfg["gcp:zonee"] = "us-central1-a"
    found = config_problems(cfg)
    assert found["gcp:userProjectOverride"] == ("the gcp provider reads gcp:userProjectOverride as a boolean: true or "
                                                "false, got 'sometimes'")
    assert found["gcp:zonee"].startswith("unknown key; did you mean 'gcp:zone'?")


def test_plan_accepts_provider_keys_on_the_command_line(reuse_plans):
    from infra.plan.stackfile import read_stack

    stack_file = read_stack("staging", sets=["gcp:zone=us-central1-b", "gcp:impersonateServiceAccount=ci@x.iam.gserviceaccount.com"])
    assert stack_file.config["gcp:zone"] == "us-central1-b"
