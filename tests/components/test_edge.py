import pytest

from infra.components.edge import Edge, EdgeArgs, EdgeBackend
from infra.config.platform import EdgeConfig, StaticAssetsBucket

from .conftest import PROD, register

NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND = "gcp:compute/backendService:BackendService"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
URL_MAP = "gcp:compute/uRLMap:URLMap"
BACKENDS = (EdgeBackend("web", "netra-web-prod", default=True),
            EdgeBackend("api", "netra-api-prod", routes=("/api/*", "/ws/*")),
            EdgeBackend("auth", "netra-auth-prod", routes=("/auth/*",)))


def edge_args(backends=BACKENDS) -> EdgeArgs:
    return EdgeArgs(PROD, EdgeConfig(domains=["app.example.com"]), StaticAssetsBucket(), "netra-test-static-assets",
                    backends)


def build(backends=BACKENDS):
    holder = {}

    def go():
        holder["edge"] = Edge("edge", edge_args(backends))
        return {"ip": holder["edge"].ip}

    return register(go), holder["edge"]


def test_one_neg_backend_and_invoker_per_backend_and_nothing_else():
    reg, _ = build()
    assert reg.names(NEG) == ["api-neg", "auth-neg", "web-neg"]
    assert reg.names(BACKEND) == ["api-backend", "auth-backend", "web-backend"]
    assert reg.one(NEG, "api-neg")["cloudRun"] == {"service": "netra-api-prod"}
    inv = reg.one(INVOKER, "api-invoker")
    assert (inv["name"], inv["member"], inv["role"]) == ("netra-api-prod", "allUsers", "roles/run.invoker")


def test_routes_and_default_service_come_from_the_backends():
    reg, edge = build()
    m = reg.one(URL_MAP, "https")
    bs = "projects/netra-test/global/backendServices/"
    assert m["defaultService"] == f"{bs}netra-web-prod-backend" == m["pathMatchers"][0]["defaultService"]
    rules = {tuple(r["paths"]): r["service"] for r in m["pathMatchers"][0]["pathRules"]}
    assert rules == {("/api/*", "/ws/*"): f"{bs}netra-api-prod-backend", ("/auth/*",): f"{bs}netra-auth-prod-backend",
                     ("/static/*", "/assets/*"): "projects/netra-test/global/backendBuckets/netra-prod-static"}
    assert edge.public_url("api") == "https://app.example.com/api" and edge.public_url("web") == "https://app.example.com"


def test_a_fifth_backend_is_one_more_route():
    reg, _ = build(BACKENDS + (EdgeBackend("search", "netra-search-prod", routes=("/search/*",)),))
    rules = {tuple(r["paths"]): r["service"] for r in reg.one(URL_MAP, "https")["pathMatchers"][0]["pathRules"]}
    assert rules[("/search/*",)] == "projects/netra-test/global/backendServices/netra-search-prod-backend"
    assert len(reg.of(INVOKER)) == 4


@pytest.mark.parametrize("backends", [BACKENDS[1:], BACKENDS + (EdgeBackend("x", "netra-x-prod", default=True),)])
def test_exactly_one_default_backend(backends):
    with pytest.raises(ValueError, match="exactly one backend takes the default route"):
        edge_args(backends)


def test_tls_policy_armor_and_http_redirect():
    reg, _ = build()
    ssl = reg.one("gcp:compute/sSLPolicy:SSLPolicy")
    assert (ssl["minTlsVersion"], ssl["profile"]) == ("TLS_1_2", "MODERN")
    assert all(reg.one(BACKEND, n)["securityPolicy"] == "armor-id" for n in reg.names(BACKEND))
    assert reg.one(URL_MAP, "http-redirect")["defaultUrlRedirect"]["httpsRedirect"] is True
