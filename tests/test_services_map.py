"""`netra:services` is data: any service names; routes, LB backends, invokers, uptime checks, alerts,
SLOs and dashboards derive from the map; a change to one service never renames another's revision."""
from __future__ import annotations

import copy

import pytest

from infra import wiring
from infra.config import load_stack_config
from infra.config.services import max_key_length

from .conftest import SEARCH, WORKER, config_problems as problems, flat, one, resources_of, routes_of, stack_config

RUN = "gcp:cloudrunv2/service:Service"
NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND = "gcp:compute/backendService:BackendService"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
UPTIME = "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
URL_MAP = "gcp:compute/uRLMap:URLMap"


def with_services(stack: str = "prod", **added) -> dict:
    cfg = stack_config(stack)
    added = copy.deepcopy(added)
    if stack == "staging":  # staging's /26 egress subnet holds 2 x 30 instances
        for svc in added.values():
            svc["maxInstances"] = 3
    cfg["netra:services"].update(added)
    return cfg


def load(cfg: dict, stack: str = "prod"):
    return load_stack_config(flat(cfg), stack)


def revisions(cfg: dict, stack: str = "prod") -> dict[str, str]:
    return wiring.candidate_revisions(load(cfg, stack))


# ---------------------------------------------------------------- no silent cascade


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_adding_services_renames_no_other_revision(stack):
    before = revisions(stack_config(stack), stack)
    after = revisions(with_services(stack, worker=WORKER, search=SEARCH), stack)
    assert set(after) == set(before) | {"worker", "search"}
    assert {k: after[k] for k in before} == before


def test_editing_one_service_renames_only_that_one():
    cfg = stack_config("prod")
    before = revisions(cfg)
    cfg["netra:services"]["auth"]["maxInstances"] = 40  # auth is a database client: its pool is its own
    after = revisions(cfg)
    assert after["auth"] != before["auth"] and {k: after[k] for k in ("frontend", "backend")} == {
        k: before[k] for k in ("frontend", "backend")}


def test_a_database_reading_service_without_its_own_pool_is_refused_naming_the_key():
    worker = {**WORKER, "secrets": {"DB_HOST": "db-host", "DB_PASSWORD": "db-password"}}
    msg = problems(with_services(worker=worker))["netra:services.worker.dbPoolSize"]
    assert msg.startswith("required: 3 services read the database (backend, auth, worker)")
    assert "set dbPoolSize on worker" in msg and "netra:platform.database.poolSize" in msg


def test_a_database_reading_service_with_its_own_pool_keeps_every_other_pool():
    base = load(stack_config("prod"))
    worker = {**WORKER, "dbPoolSize": 2, "secrets": {"DB_HOST": "db-host", "DB_PASSWORD": "db-password"}}
    cfg = with_services(worker=worker)
    loaded = load(cfg)
    env = dict(wiring.service_wiring(loaded, "worker").env)
    assert env["DB_POOL_SIZE"] == "2"
    for key in ("backend", "auth"):
        assert wiring.service_wiring(loaded, key).env == wiring.service_wiring(base, key).env
    assert {k: v for k, v in revisions(cfg).items() if k != "worker"} == revisions(stack_config("prod"))


def test_a_pool_that_overflows_names_every_client():
    worker = {**WORKER, "dbPoolSize": 10, "secrets": {"DB_PASSWORD": "db-password"}}
    msg = problems(with_services(worker=worker))["netra:platform.database.maxConnections"]
    assert "backend 100 x 6 + auth 50 x 6 + worker 10 x 10" in msg and "= 1050 > maxConnections 1000" in msg


def test_only_database_clients_may_pin_a_pool():
    cfg = stack_config("prod")
    cfg["netra:services"]["frontend"]["dbPoolSize"] = 4
    assert "does not read the database password" in problems(cfg)["netra:services.frontend.dbPoolSize"]


# ---------------------------------------------------------------- the map's shape


def test_routes_public_and_default_route_are_checked_across_the_map():
    cfg = stack_config("prod")
    svcs = cfg["netra:services"]
    svcs["auth"]["defaultRoute"] = True                    # a second default
    svcs["backend"]["routes"] = ["/api/*", "/auth/*"]      # a route auth already has
    cfg["netra:services"]["worker"] = {**WORKER, "routes": ["/jobs/*"]}  # not public, yet routed
    found = problems(cfg)
    assert "exactly one public service takes the default route, got 2 (frontend, auth)" in found["netra:services.auth.defaultRoute"]
    assert "/auth/* is already routed to backend" in found["netra:services.auth.routes"]
    assert "public: false is not behind the load balancer" in found["netra:services.worker.routes"]


def test_routes_stay_clear_of_the_static_paths():
    cfg = with_services(search={**SEARCH, "routes": ["/static/*"]})
    assert "/static/* is already routed to netra:platform.edge.staticPaths" in problems(cfg)["netra:services.search.routes"]


def test_a_public_service_needs_a_route_and_one_service_the_default():
    cfg = stack_config("prod")
    del cfg["netra:services"]["frontend"]["defaultRoute"]
    cfg["netra:services"]["search"] = {k: v for k, v in SEARCH.items() if k != "routes"}
    found = problems(cfg)
    assert "needs routes (like /api/*) or defaultRoute: true" in found["netra:services.search.routes"]
    assert "got 0; set defaultRoute: true on one of frontend, backend, auth, search" in found["netra:services.frontend.defaultRoute"]


def test_the_uptime_check_must_reach_the_service_it_watches():
    cfg = stack_config("prod")
    cfg["netra:services"]["frontend"]["healthCheckPath"] = "/api/health"  # the LB sends that to backend
    assert "routes it to backend, not frontend" in problems(cfg)["netra:services.frontend.healthCheckPath"]


def test_a_worker_must_keep_an_instance_to_be_watched():
    msg = problems(with_services(worker={**WORKER, "minInstances": 0}))["netra:services.worker.minInstances"]
    assert "needs minInstances >= 1" in msg


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_service_names_fit_the_revision_name(stack):
    longest = "w" * max_key_length(stack)
    assert max(len(r) for r in revisions(with_services(stack, **{longest: WORKER}), stack).values()) <= 63
    assert "the traffic tag 'previous' plus the service name" in problems(
        with_services(stack, **{longest + "x": WORKER}), stack)[f"netra:services.{longest}x"]


@pytest.mark.parametrize("name,message", [("Worker", "lowercase letters"), ("9lives", "start with a letter"),
                                          ("migrate", "reserved"), ("jobs-", "not end with '-'")])
def test_bad_service_names(name, message):
    assert message in problems(with_services(**{name: WORKER}))[f"netra:services.{name}"]


def test_slo_services_default_to_the_public_ones_and_must_exist():
    loaded = load(with_services(worker=WORKER))
    from infra.config.observability import slo_services
    assert slo_services(loaded.observability, [k for k, s in loaded.services.items() if s.public]) == (
        "frontend", "backend", "auth")
    cfg = stack_config("prod")
    cfg["netra:observability"]["slo"] = {"services": ["backend", "billing"]}
    assert "unknown service 'billing'" in problems(cfg)["netra:observability.slo.services.1"]


def test_wiring_puts_only_public_services_behind_the_load_balancer():
    loaded = load(with_services(worker=WORKER, search=SEARCH))
    assert [t.key for t in wiring.uptime_targets(loaded)] == ["frontend", "backend", "auth", "search"]
    assert {t.key: t.path for t in wiring.uptime_targets(loaded)} == {
        "frontend": "/health", "backend": "/api/health", "auth": "/auth/health", "search": "/search/health"}
    assert wiring.service_wiring(loaded, "worker").ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert wiring.service_wiring(loaded, "search").ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"


# ---------------------------------------------------------------- the whole stack with six services


def test_six_services_plan_and_pass_the_policy_pack(prod_plan_with_more_services, prod_plan):
    plan = prod_plan_with_more_services
    assert plan["policy"]["violations"] == []
    assert {r["name"] for r in resources_of(plan, RUN)} - {"grafana"} == {"frontend", "backend", "auth", "worker", "search"}
    for key in ("frontend", "backend", "auth"):
        assert plan["outputs"]["services"][key]["candidateRevision"] == prod_plan["outputs"]["services"][key]["candidateRevision"]


def test_the_worker_has_no_load_balancer_presence_and_its_own_liveness_alert(prod_plan_with_more_services):
    plan = prod_plan_with_more_services
    assert one(plan, RUN, "worker")["inputs"]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    for type_token in (NEG, BACKEND, INVOKER, UPTIME):
        names = {r["name"] for r in resources_of(plan, type_token)}
        assert not any(n.startswith("worker") for n in names), (type_token, names)
        assert any(n.startswith("search") for n in names), (type_token, names)
    down = one(plan, POLICY, "service-down")["inputs"]["conditions"]
    assert [c["displayName"] for c in down if "conditionAbsent" in c] == ["netra-worker-prod has no running instance"]
    assert len([c for c in down if "conditionThreshold" in c]) == 4  # frontend, backend, auth, search uptime
    search = one(plan, UPTIME, "search")["inputs"]["httpCheck"]["path"]
    assert search == "/search/health"
    assert routes_of(one(plan, URL_MAP, "https")["inputs"])["/search/*"] == \
        "projects/netra-production/global/backendServices/netra-search-prod-backend"


def test_the_gate_and_the_rollout_find_every_service_in_the_plan(prod_plan_with_more_services):
    from infra.canary.stack import service_info, service_keys

    outputs = prod_plan_with_more_services["outputs"]
    assert service_keys(outputs) == ["auth", "backend", "frontend", "search", "worker"]
    worker = service_info(outputs, "netra-worker-prod")  # by Cloud Run name, as the gate's --service takes it
    assert (worker.key, worker.candidate) == ("worker", outputs["services"]["worker"]["candidateRevision"])
    assert worker.stable is None and worker.canary_percent == 0
