"""Issue 19 item 7: the 0 % verification reaches a public candidate from a CI runner through the load
balancer's canary verification route (a serverless NEG on the `canary` tag, a route rule on
X-Netra-Canary, a Cloud Armor policy admitting only the secret X-Netra-Verify-Token).

Covered: what the plan registers (NEG with `tag`, backend, armor, route rules in path-rule order, the
token a Pulumi secret in state and in Secret Manager, never in outputs); the pack keeping the route private
(`lb-canary-route-private`, `lb-canary-token-secret`); and the verifier itself against servers on 127.0.0.1:
the token read from a Secret Manager REST endpoint, the headers sent through a load balancer that
behaves like the route (right token -> candidate, anything else -> 403 or the stable revision)."""
from __future__ import annotations

import base64
import json
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from infra.components import edge
from infra.config import load_stack_config
from infra.config.services import route_owner
from infra.localhttp import LocalHTTPServer
from infra.plan.engine import SECRET_SIG, SIG_KEY, PlannedResource, redact
from infra.verify import (CANARY_SERVICE_HEADER, CANARY_TOKEN_HEADER, VerifyRouteError, VerifySettings, read_token,
                          route_for, verify_candidate)

from .conftest import flat, routes_of, run_of, stack_config
from .test_policy_rules import pack, pack_path  # noqa: F401  (fixtures)
from .test_policy_stack import replace, stack_hits

NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND = "gcp:compute/backendService:BackendService"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
URL_MAP = "gcp:compute/uRLMap:URLMap"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
REV = "netra-backend-prod-1a2b3c4d"
TOKEN = "Zq8w1Lk3Pm5Nb7Vc9Xz2As4Df6Gh8Jk0Qw2Er4Ty6Ui8Op0A"


def _one(run, type_token, name):
    return next(r for r in run.resources if r.type == type_token and r.name == name)


@pytest.fixture(scope="module")
def prod():
    return run_of("prod")


def test_plan_registers_a_tagged_neg_backend_and_armor_per_public_service(prod):
    public = sorted(k for k, s in load_stack_config(flat(stack_config("prod")), "prod").services.items() if s.public)
    assert public == ["auth", "backend", "frontend"]
    for key in public:
        neg = _one(prod, NEG, f"{key}-canary-neg").inputs
        assert neg["cloudRun"] == {"service": f"netra-{key}-prod", "tag": "canary"}
        backend = _one(prod, BACKEND, f"{key}-canary-backend").inputs
        assert backend["backends"] == [{"group": f"{key}-canary-neg-id"}] and backend["securityPolicy"] == "canary-armor-id"
    # the token sits only in the canary armor's rules, and there as a secret (encrypted in state)
    armor = _one(prod, ARMOR, "canary-armor").inputs
    assert armor["rules"][SIG_KEY] == SECRET_SIG
    rules = armor["rules"]["value"]
    assert [r["action"] for r in rules] == ["deny(403)", "allow", "deny(403)"]
    assert rules[1]["match"]["expr"]["expression"] == "request.headers['x-netra-verify-token'] == 'offline-plan-password'"
    assert redact(armor)["rules"] == "[secret]"
    version = _one(prod, SECRET_VERSION, "canary-verify-token").inputs
    assert version["secretData"][SIG_KEY] == SECRET_SIG
    assert "offline-plan-password" not in json.dumps(redact([r.inputs for r in prod.resources]))
    out = prod.outputs["platform"]["edge"]["canaryVerification"]
    assert out == {"url": "https://app.netra.ai", "services": public, "serviceHeader": CANARY_SERVICE_HEADER,
                   "tokenHeader": CANARY_TOKEN_HEADER, "tokenSecret": "prod-canary-verify-token"}


def test_route_rules_send_the_header_to_the_canary_and_paths_where_path_rules_did(prod):
    url_map = _one(prod, URL_MAP, "https").inputs
    matcher = url_map["pathMatchers"][0]
    assert "pathRules" not in matcher
    header_rules = [r for r in matcher["routeRules"] if r["matchRules"][0].get("headerMatches")]
    bs = "projects/netra-production/global/backendServices/"
    assert {r["service"]: r["matchRules"][0]["headerMatches"] for r in header_rules} == {
        f"{bs}netra-{k}-prod-canary-backend": [{"headerName": CANARY_SERVICE_HEADER, "exactMatch": k}]
        for k in ("auth", "backend", "frontend")}
    assert max(r["priority"] for r in header_rules) < min(r["priority"] for r in matcher["routeRules"] if r not in header_rules)
    static = "projects/netra-production/global/backendBuckets/netra-prod-static"
    assert routes_of(url_map) == {"/api/*": f"{bs}netra-backend-prod-backend", "/ws/*": f"{bs}netra-backend-prod-backend",
                                  "/auth/*": f"{bs}netra-auth-prod-backend", "/static/*": static, "/assets/*": static}


@pytest.mark.parametrize("path", ["/api/v1/x", "/api/", "/api", "/apix", "/ws/chat", "/auth/login", "/static/a.js",
                                  "/assets/", "/", "/health", "/api/health/deep", "/exact", "/exact/more"])
def test_route_rule_order_picks_what_the_longest_path_rule_picks(path):
    """First matching route rule (by priority) == the owner a URL map's path rules pick (infra.config's
    route_owner), including an exact path beside a prefix."""
    routes = {"backend": ("/api/*", "/ws/*", "/api/health/*"), "auth": ("/auth/*",), "exact": ("/exact",),
              "static": ("/static/*", "/assets/*")}
    rules = edge.path_route_rules([(p, k) for k, paths in routes.items() for p in paths])

    def matches(rule):
        return any(path.startswith(m.prefix_match) if m.prefix_match is not None else path == m.full_path_match
                   for m in rule.match_rules)

    first = next((r.service for r in sorted(rules, key=lambda r: r.priority) if matches(r)), None)
    assert first == route_owner(path, routes)


def test_token_expression_refuses_quotes():
    assert edge.token_expression("abc-DEF_123") == "request.headers['x-netra-verify-token'] == 'abc-DEF_123'"
    with pytest.raises(ValueError, match="letters, digits"):
        edge.token_expression("x' || true || '")


# ---------------------------------------------------------------- the pack keeps the route private

def _planned(run) -> list[PlannedResource]:
    return list(run.resources)


def _is(type_token, name):
    return lambda r: r.type == type_token and r.name == name


def test_the_repo_route_passes_the_pack(pack, prod):
    hits = stack_hits(pack, _planned(prod))
    assert "lb-canary-route-private" not in hits, hits
    assert pack.analyze(_one(prod, ARMOR, "canary-armor")) == []


def _armor_rules(mutate):
    def m(i):
        rules = i["rules"]["value"]
        mutate(rules)
    return m


@pytest.mark.parametrize("pick,mutate,expect", [
    (_is(ARMOR, "canary-armor"), _armor_rules(lambda rules: rules[-1].update(action="allow")), "default rule does not deny"),
    (_is(ARMOR, "canary-armor"), _armor_rules(lambda rules: rules.insert(1, {
        "priority": 500, "action": "allow", "match": {"expr": {"expression": "true"}}})),
     "priority 500 allow requests without the verify token"),
    (_is(BACKEND, "backend-canary-backend"), lambda i: i.update(securityPolicy="armor-id"), "default rule does not deny"),
    (_is(BACKEND, "backend-canary-backend"), lambda i: i.pop("securityPolicy"), "has no Cloud Armor policy"),
    (_is(URL_MAP, "https"), lambda i: i.update(
        defaultService="projects/netra-production/global/backendServices/netra-frontend-prod-canary-backend"),
     "defaultService sends users"),
    (_is(URL_MAP, "https"), lambda i: i["pathMatchers"][0]["routeRules"][-1].update(
        service="projects/netra-production/global/backendServices/netra-backend-prod-canary-backend"),
     "routeRules[7] sends users"),
])
def test_each_leak_of_the_route_violates_lb_canary_route_private(pack, prod, pick, mutate, expect):
    hits = stack_hits(pack, replace(_planned(prod), pick, mutate))
    assert "lb-canary-route-private" in hits, hits
    assert any(expect in m for m in hits["lb-canary-route-private"]), hits["lb-canary-route-private"]


def test_a_plaintext_token_violates_lb_canary_token_secret(pack, prod):
    armor = _one(prod, ARMOR, "canary-armor")
    plain = PlannedResource(armor.urn, armor.type, armor.name, armor.parent, {**armor.inputs, "rules": armor.inputs["rules"]["value"]},
                            armor.custom)
    [v] = pack.analyze(plain)
    assert v.policy == "lb-canary-token-secret" and "plaintext token" in v.message and "offline-plan-password" not in v.message


def test_the_pack_copy_of_the_headers_matches_infra(pack_path):
    from netra_policies import edge as pack_edge

    assert (pack_edge.CANARY_SERVICE_HEADER, pack_edge.CANARY_TOKEN_HEADER) == (CANARY_SERVICE_HEADER, CANARY_TOKEN_HEADER)


# ---------------------------------------------------------------- the verifier sends the header

class Server(LocalHTTPServer):
    """A 127.0.0.1 HTTP server whose GET answers `handle(path, headers) -> (status, body)`."""

    def __init__(self, handle):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = handle(self.path, {k.lower(): v for k, v in self.headers.items()})
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        super().__init__(Handler)
        self.start()


@pytest.fixture
def load_balancer():
    """The route as the load balancer applies it: X-Netra-Canary picks the canary backend, whose armor
    admits only the token; every other request goes to the stable revision."""
    seen = {"canary": [], "stable": [], "denied": []}

    def handle(path, headers):
        if headers.get(CANARY_SERVICE_HEADER.lower()) == "backend":
            if headers.get(CANARY_TOKEN_HEADER.lower()) != TOKEN:
                seen["denied"].append(path)
                return 403, "denied"
            seen["canary"].append(path)
            return 200, "candidate"
        seen["stable"].append(path)
        return 200, "stable"

    server = Server(handle)
    yield server, seen
    server.close()


@pytest.fixture
def secret_manager():
    """Secret Manager's REST `versions/latest:access`, for one secret and one caller."""
    calls = []

    def handle(path, headers):
        calls.append(path)
        if path == "/v1/projects/netra-production/secrets/prod-canary-verify-token/versions/latest:access":
            return 200, json.dumps({"name": path, "payload": {"data": base64.b64encode(TOKEN.encode()).decode()}})
        return 403, json.dumps({"error": {"code": 403, "message": "Permission denied"}})

    server = Server(handle)
    yield server, calls
    server.close()


def _outputs(url):
    return {"platform": {"edge": {"canaryVerification": {
        "url": url, "services": ["backend"], "serviceHeader": CANARY_SERVICE_HEADER, "tokenHeader": CANARY_TOKEN_HEADER,
        "tokenSecret": "prod-canary-verify-token"}}}}


def test_the_verifier_reaches_the_candidate_through_the_route_with_the_token(load_balancer, secret_manager):
    lb, seen = load_balancer
    sm, calls = secret_manager
    with requests.Session() as session:
        route = route_for("backend", "https://netra-backend-prod-uc.a.run.app", _outputs(lb.url), {},
                          lambda secret: read_token(session, "netra-production", secret, endpoint=sm.url))
    assert len(calls) == 1
    verdict = verify_candidate("backend", REV, 0, route, "/health", VerifySettings(smoke_requests=4))
    assert verdict.decision == "promote", verdict.reason
    assert seen == {"canary": ["/health"] * 5, "stable": [], "denied": []}
    assert TOKEN not in route.describe and "load balancer" in route.describe
    # without the token the armor answers 403: the verification fails instead of judging the stable revision
    blind = verify_candidate("backend", REV, 0, route.__class__(route.base_url, {CANARY_SERVICE_HEADER: "backend"}),
                             "/health", VerifySettings(smoke_requests=2))
    assert blind.decision == "rollback" and "health /health answered 403" in blind.reason


def test_route_choice_override_private_service_and_token_errors(secret_manager):
    sm, _ = secret_manager
    unreadable = []
    route = route_for("backend", "https://x", _outputs("https://lb"), {"backend": "http://127.0.0.1:9"}, unreadable.append)
    assert (route.base_url, route.headers, unreadable) == ("http://127.0.0.1:9", {}, [])
    worker = route_for("worker", "https://netra-worker-prod-uc.a.run.app", _outputs("https://lb"), {}, unreadable.append)
    assert worker.base_url == "https://canary---netra-worker-prod-uc.a.run.app" and "inside the VPC" in worker.describe
    with requests.Session() as session, pytest.raises(VerifyRouteError, match="HTTP 403 .*secretAccessor"):
        read_token(session, "netra-production", "prod-other-secret", endpoint=sm.url)
    with requests.Session() as session, pytest.raises(VerifyRouteError, match="reading Secret Manager secret"):
        read_token(session, "netra-production", "prod-canary-verify-token", endpoint="http://127.0.0.1:9")


def test_the_rollout_verify_step_uses_the_route_and_fails_closed_without_the_token(load_balancer, secret_manager):
    """infra.release.effects.make_verify as the rollout builds it: one token read per run, the route from
    the plan outputs; an unreadable token is OperationFailed (exit 4), never a verdict."""
    from infra.release.effects import make_verify
    from infra.release.state import OperationFailed, Target

    lb, seen = load_balancer
    sm, calls = secret_manager
    target = Target("backend", "netra-backend-prod", REV, "netra-backend-prod-a41c9e07",
                    "https://netra-backend-prod-uc.a.run.app", "/health")
    with requests.Session() as session:
        verify = make_verify(VerifySettings(smoke_requests=3), {}, _outputs(lb.url), "netra-production", session, sm.url)
        assert verify(target, 0).decision == "promote" and verify(target, 0).decision == "promote"
        assert len(calls) == 1 and len(seen["canary"]) == 8 and seen["stable"] == seen["denied"] == []
        denied = make_verify(VerifySettings(smoke_requests=3), {}, _outputs(lb.url), "other-project", session, sm.url)
        with pytest.raises(OperationFailed, match="verification of backend: .*HTTP 403"):
            denied(target, 0)
