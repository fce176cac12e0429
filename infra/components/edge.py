"""Global external HTTPS load balancer (seed: GCP Load Balancer) in front of the public Cloud Run services.

    :443  ->  URL map:  each public service's routes -> its backend service  (Cloud Armor, logging)
                        static paths                 -> static-assets bucket (Cloud CDN)
                        everything else              -> the service with defaultRoute: true
    :80   ->  301 to https

The seed's map: /api/*, /ws/* -> backend; /auth/* -> auth; everything else -> frontend. Services
with `public: false` get no NEG, no backend service and no allUsers invoker.

Canary verification route (issue 19): ingress INTERNAL_LOAD_BALANCER refuses a CI runner calling a
candidate's tagged run.app URL, so each public service also gets a serverless NEG on its `canary` traffic
tag and a backend service for it. A route rule sends requests carrying `X-Netra-Canary: <service key>`
there; that backend's own Cloud Armor policy denies everything except requests carrying
`X-Netra-Verify-Token: <token>` (the token a Pulumi secret, kept in Secret Manager for the verifier). The
token lives only in that small policy's rules, so the routing table stays readable in every preview.
Header matching needs route rules, so with the route on, the path matcher's path rules become route
rules in the order path rules match (most specific first). Policies `lb-canary-route-private` and
`lb-canary-token-secret` keep it that way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp
from infra.components.gcp_compute import compute

from infra.config import service_name
from infra.config.platform import EdgeConfig, StaticAssetsBucket, secret_id
from infra.verify import CANARY_SERVICE_HEADER, CANARY_TOKEN_HEADER, CANARY_TAG

from .site import Site

COMPONENT_TYPE = "netra:platform:Edge"
# Cloud Run ingress: only the load balancer (and VPC-internal callers) reach the public services.
INGRESS = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
DEFAULT_RULE_PRIORITY = 2147483647
CVE_RULE_PRIORITY = 900
CVE_EXPRESSION = "evaluatePreconfiguredExpr('cve-canary')"


def hsts_header(edge: EdgeConfig) -> str:
    """Browsers then refuse plain HTTP to every domain for max-age (the :80 redirect is only a first hop)."""
    return f"Strict-Transport-Security: max-age={edge.hsts_max_age_seconds}; includeSubDomains"


@dataclass(frozen=True)
class EdgeBackend:
    """A public service behind the load balancer. `service` is the Cloud Run service's name as an
    Output of it, so the NEG and the invoker wait for the service."""

    key: str
    service: pulumi.Input[str]
    routes: tuple[str, ...] = ()
    default: bool = False


@dataclass(frozen=True)
class IapHost:
    """A Cloud Run service on its own hostname behind Identity-Aware Proxy (Grafana): its own managed
    certificate, a backend service with IAP on, and the members IAP lets in. `service_name` is the plain
    name: a serverless NEG may name a service that does not exist yet, so the edge comes before the
    service, which then reads the audience IAP signs for (`Edge.iap_audiences`) and owns its invoker."""

    key: str
    service_name: str
    host: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class CanaryRoute:
    """The verifier's credentials: `token` (a Pulumi secret) and the Secret Manager secret id that holds it
    (`<env>-canary-verify-token`, read by the rollout at verification time)."""

    token: pulumi.Input[str]
    token_secret: str


@dataclass(frozen=True)
class IapAudience:
    """Where an IAP-fronted service finds the `aud` IAP puts in its signed header,
    `/projects/<project number>/global/backendServices/<backend service id>`: a Secret Manager secret (its
    id, plain, so the revision template names it and never changes with it), and what to wait for."""

    secret_id: str
    audience: pulumi.Output[str]
    resources: tuple[pulumi.Resource, ...]


def iap_audience_secret_id(environment: str, key: str) -> str:
    """`<env>-<key>-iap-audience` (the key `<key>-iap-audience` is reserved: STACK_SECRETS)."""
    return secret_id(environment, f"{key}-iap-audience")


@dataclass(frozen=True)
class EdgeArgs:
    site: Site
    config: EdgeConfig
    static_assets: StaticAssetsBucket
    static_bucket: pulumi.Input[str]
    backends: tuple[EdgeBackend, ...]
    iap_hosts: tuple[IapHost, ...] = ()
    canary: Optional[CanaryRoute] = None  # when set, the canary verification route exists

    def __post_init__(self) -> None:
        defaults = [b.key for b in self.backends if b.default]
        if len(defaults) != 1:
            raise ValueError(f"EdgeArgs.backends: exactly one backend takes the default route, got {defaults}")


def project_number(project: str) -> pulumi.Output[str]:
    """The project's number (looked up at preview/up time; needs resourcemanager.projects.get)."""
    return gcp.organizations.get_project_output(project_id=project).number


def iap_service_agent(project: str) -> pulumi.Output[str]:
    """IAP's service agent, the identity IAP invokes a Cloud Run backend as."""
    return pulumi.Output.concat("serviceAccount:service-", project_number(project), "@gcp-sa-iap.iam.gserviceaccount.com")


def route_prefix(routes: tuple[str, ...]) -> str:
    """The first prefix route without its `/*` (/api/*, /ws/* -> /api), or "" for the default service."""
    return next((r[:-2] for r in routes if r.endswith("/*")), "")


def path_order(path: str) -> tuple[int, int]:
    """Sort key that puts the rule a URL map's path rules would pick first: longer (more specific) paths
    first, an exact path before a prefix of the same length."""
    return (-len(path.rstrip("*")), path.endswith("*"))


def path_matches(path: str) -> list[compute.URLMapPathMatcherRouteRuleMatchRuleArgs]:
    """A path rule's path as route rule matches: `/api/*` is the prefix `/api/` and the path `/api` (as
    path rules match it; infra.config.services.route_owner), anything else the exact path."""
    if path.endswith("/*"):
        return [compute.URLMapPathMatcherRouteRuleMatchRuleArgs(prefix_match=path[:-1]),
                compute.URLMapPathMatcherRouteRuleMatchRuleArgs(full_path_match=path[:-2] or "/")]
    if path.endswith("*"):
        return [compute.URLMapPathMatcherRouteRuleMatchRuleArgs(prefix_match=path[:-1])]
    return [compute.URLMapPathMatcherRouteRuleMatchRuleArgs(full_path_match=path)]


VERIFY_PRIORITY, ROUTE_PRIORITY = 1, 1000
CANARY_SUFFIX = "/canary"  # a key that no service key can be (keys are lowercase letters, digits and -)


def backend_ref(project: str, kind: str, name: str) -> str:
    """`projects/P/global/backendServices/NAME`: the backend's relative URL, which is also its provider id."""
    return f"projects/{project}/global/{kind}/{name}"
CANARY_ALLOW_PRIORITY = 1000


def canary_rules(canary: dict[str, pulumi.Input[str]]) -> list[compute.URLMapPathMatcherRouteRuleArgs]:
    """Per service key, the header-matched route to its canary backend (every path, as the tagged URL
    serves it). Who may use it is the canary backend's armor (`canary_armor_rules`)."""
    return [compute.URLMapPathMatcherRouteRuleArgs(
        priority=VERIFY_PRIORITY + i, service=backend,
        match_rules=[compute.URLMapPathMatcherRouteRuleMatchRuleArgs(prefix_match="/", header_matches=[
            compute.URLMapPathMatcherRouteRuleMatchRuleHeaderMatchArgs(header_name=CANARY_SERVICE_HEADER, exact_match=key)])])
        for i, (key, backend) in enumerate(sorted(canary.items()))]


def token_expression(token: str) -> str:
    """Cloud Armor CEL: the request carries the verifier's token (header names arrive lowercased)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token or ""):
        raise ValueError("the canary verify token must be letters, digits, - and _ (it is quoted into a CEL expression)")
    return f"request.headers['{CANARY_TOKEN_HEADER.lower()}'] == '{token}'"


def canary_armor_rules(token: pulumi.Input[str]) -> list[compute.SecurityPolicyRuleArgs]:
    """Allow the verifier's token, deny everything else (the default rule); Log4Shell signatures are denied
    even with the token."""
    return [
        cve_rule(),
        compute.SecurityPolicyRuleArgs(
            priority=CANARY_ALLOW_PRIORITY, action="allow", description="the rollout verifier (X-Netra-Verify-Token)",
            match=compute.SecurityPolicyRuleMatchArgs(expr=compute.SecurityPolicyRuleMatchExprArgs(
                expression=pulumi.Output.secret(token).apply(token_expression)))),
        compute.SecurityPolicyRuleArgs(
            priority=DEFAULT_RULE_PRIORITY, action="deny(403)", description="default: deny (verification only)",
            match=compute.SecurityPolicyRuleMatchArgs(
                versioned_expr="SRC_IPS_V1", config=compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"]))),
    ]


def path_route_rules(paths: list[tuple[str, pulumi.Input[str]]]) -> list[compute.URLMapPathMatcherRouteRuleArgs]:
    """(path, backend) pairs as route rules matching exactly what the equivalent path rules match."""
    ordered = sorted(paths, key=lambda p: path_order(p[0]))
    return [compute.URLMapPathMatcherRouteRuleArgs(priority=ROUTE_PRIORITY + i, service=backend, match_rules=path_matches(path))
            for i, (path, backend) in enumerate(ordered)]


def cve_rule() -> compute.SecurityPolicyRuleArgs:
    """Log4Shell and its follow-ups: every signature of cve-canary, blocking even while the CRS rules are
    in preview (a known exploit, not a tuning question)."""
    return compute.SecurityPolicyRuleArgs(
        priority=CVE_RULE_PRIORITY, action="deny(403)", preview=False,
        description="preconfigured cve-canary: Log4j JNDI lookups (CVE-2021-44228, CVE-2021-45046)",
        match=compute.SecurityPolicyRuleMatchArgs(expr=compute.SecurityPolicyRuleMatchExprArgs(expression=CVE_EXPRESSION)))


def security_rules(edge: EdgeConfig) -> list[compute.SecurityPolicyRuleArgs]:
    rules = [cve_rule()] if edge.waf.cve else []
    for i, rule_set in enumerate(edge.waf.enabled()):
        rules.append(compute.SecurityPolicyRuleArgs(
            priority=1000 + 10 * i, action="deny(403)", preview=edge.waf.preview,
            description=f"preconfigured WAF {rule_set}",
            match=compute.SecurityPolicyRuleMatchArgs(expr=compute.SecurityPolicyRuleMatchExprArgs(
                expression=f"evaluatePreconfiguredWaf('{rule_set}', {{'sensitivity': {edge.waf.sensitivity}}})"))))
    rl = edge.rate_limit
    ban = rl.ban_seconds > 0
    rules.append(compute.SecurityPolicyRuleArgs(
        priority=2000, action="rate_based_ban" if ban else "throttle",
        description=f"{rl.requests_per_minute} requests per minute per client IP",
        match=compute.SecurityPolicyRuleMatchArgs(
            versioned_expr="SRC_IPS_V1", config=compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"])),
        rate_limit_options=compute.SecurityPolicyRuleRateLimitOptionsArgs(
            conform_action="allow", exceed_action="deny(429)", enforce_on_key="IP",
            rate_limit_threshold=compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
                count=rl.requests_per_minute, interval_sec=60),
            ban_duration_sec=rl.ban_seconds if ban else None)))
    rules.append(compute.SecurityPolicyRuleArgs(
        priority=DEFAULT_RULE_PRIORITY, action="allow", description="default: allow",
        match=compute.SecurityPolicyRuleMatchArgs(
            versioned_expr="SRC_IPS_V1", config=compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"]))))
    return rules


class Edge(pulumi.ComponentResource):
    """Outputs: `ip`, `domains`, `backends` / `negs` / `invokers` (by service key), `url_map`, `armor`."""

    def __init__(self, name: str, args: EdgeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site, edge = args.site, args.config
        project, region = site.project, site.region
        child = pulumi.ResourceOptions(parent=self)
        prefix = site.prefix
        labels = site.labels()

        self.address = compute.GlobalAddress(
            "lb-ip", compute.GlobalAddressArgs(name=f"{prefix}-lb-ip", project=project, address_type="EXTERNAL",
                                               ip_version="IPV4", description="global IP of the HTTPS load balancer"),
            opts=child)
        self.certificate = compute.ManagedSslCertificate(
            "cert", compute.ManagedSslCertificateArgs(
                name=f"{prefix}-cert", project=project, type="MANAGED",
                managed=compute.ManagedSslCertificateManagedArgs(domains=list(edge.domains))),
            opts=child)
        self.ssl_policy = compute.SSLPolicy(
            "ssl-policy", compute.SSLPolicyArgs(name=f"{prefix}-ssl-policy", project=project, profile="MODERN",
                                                min_tls_version="TLS_1_2"),
            opts=child)
        self.armor = compute.SecurityPolicy(
            "armor", compute.SecurityPolicyArgs(
                name=f"{prefix}-armor", project=project, type="CLOUD_ARMOR", labels=labels,
                description="WAF and per-IP rate limiting in front of every Cloud Run backend",
                advanced_options_config=compute.SecurityPolicyAdvancedOptionsConfigArgs(json_parsing="STANDARD", log_level="NORMAL"),
                rules=security_rules(edge)),
            opts=child)

        self.negs: dict[str, compute.RegionNetworkEndpointGroup] = {}
        self.backends: dict[str, compute.BackendService] = {}
        self._backend_names: dict[str, str] = {}  # key (canary: key + CANARY_SUFFIX) -> backend service name
        self.invokers: dict[str, pulumi.Resource] = {}
        self.routes = {b.key: b.routes for b in args.backends}
        for b in args.backends:
            key = b.key
            name = service_name(key, site.environment)
            self.negs[key] = compute.RegionNetworkEndpointGroup(
                f"{key}-neg", compute.RegionNetworkEndpointGroupArgs(
                    name=f"{name}-neg", project=project, region=region,
                    network_endpoint_type="SERVERLESS",
                    cloud_run=compute.RegionNetworkEndpointGroupCloudRunArgs(service=b.service)),
                opts=child)
            self._backend_names[key] = f"{name}-backend"
            self.backends[key] = compute.BackendService(
                f"{key}-backend", compute.BackendServiceArgs(
                    name=f"{name}-backend", project=project,
                    load_balancing_scheme="EXTERNAL_MANAGED",
                    protocol="HTTPS", security_policy=self.armor.id,
                    custom_response_headers=[hsts_header(edge)],
                    backends=[compute.BackendServiceBackendArgs(group=self.negs[key].id)],
                    log_config=compute.BackendServiceLogConfigArgs(enable=True, sample_rate=edge.log_sample_rate)),
                opts=child)
            # The external load balancer forwards browsers' requests unauthenticated, so the invoker is
            # allUsers; ingress INTERNAL_LOAD_BALANCER keeps the run.app URLs closed to the internet, and
            # Cloud Armor + the application's own auth service guard what comes through the LB.
            self.invokers[key] = gcp.cloudrunv2.ServiceIamMember(
                f"{key}-invoker", gcp.cloudrunv2.ServiceIamMemberArgs(
                    name=b.service, project=project, location=region, role="roles/run.invoker", member="allUsers"),
                opts=child)

        # The verifier's route to each public candidate: a NEG on the `canary` tag (the revision the
        # rollout verifies at 0 %), its own backend service behind an armor that admits only the token.
        self.canary_negs: dict[str, compute.RegionNetworkEndpointGroup] = {}
        self.canary_backends: dict[str, compute.BackendService] = {}
        self.canary_armor = compute.SecurityPolicy(
            "canary-armor", compute.SecurityPolicyArgs(
                name=f"{prefix}-canary-armor", project=project, type="CLOUD_ARMOR", labels=labels,
                description="canary verification route: only the rollout verifier's token passes",
                rules=canary_armor_rules(args.canary.token)),
            opts=child) if args.canary is not None else None
        for b in args.backends if args.canary is not None else ():
            key, name = b.key, service_name(b.key, site.environment)
            self.canary_negs[key] = compute.RegionNetworkEndpointGroup(
                f"{key}-canary-neg", compute.RegionNetworkEndpointGroupArgs(
                    name=f"{name}-canary-neg", project=project, region=region, network_endpoint_type="SERVERLESS",
                    cloud_run=compute.RegionNetworkEndpointGroupCloudRunArgs(service=b.service, tag=CANARY_TAG)),
                opts=child)
            self._backend_names[f"{key}{CANARY_SUFFIX}"] = f"{name}-canary-backend"
            self.canary_backends[key] = compute.BackendService(
                f"{key}-canary-backend", compute.BackendServiceArgs(
                    name=f"{name}-canary-backend", project=project, load_balancing_scheme="EXTERNAL_MANAGED",
                    protocol="HTTPS", security_policy=self.canary_armor.id, custom_response_headers=[hsts_header(edge)],
                    description=f"{key}'s canary-tagged revision, for the rollout's 0 % verification only",
                    backends=[compute.BackendServiceBackendArgs(group=self.canary_negs[key].id)],
                    log_config=compute.BackendServiceLogConfigArgs(enable=True, sample_rate=1.0)),
                opts=child)

        st = args.static_assets
        self.static_backend = compute.BackendBucket(
            "static-backend", compute.BackendBucketArgs(
                name=f"{prefix}-static", project=project, bucket_name=args.static_bucket, enable_cdn=True,
                description="static assets through Cloud CDN", custom_response_headers=[hsts_header(edge)],
                cdn_policy=compute.BackendBucketCdnPolicyArgs(
                    cache_mode="CACHE_ALL_STATIC", default_ttl=st.cdn_default_ttl_seconds,
                    client_ttl=st.cdn_default_ttl_seconds, max_ttl=st.cdn_max_ttl_seconds,
                    negative_caching=True, serve_while_stale=86400, request_coalescing=True)),
            opts=child)

        # Hosts behind IAP (Grafana): every request carries a Google identity IAP checked, or never arrives.
        self.iap_certificates: dict[str, compute.ManagedSslCertificate] = {}
        self.iap_audiences: dict[str, IapAudience] = {}
        for h in args.iap_hosts:
            self.negs[h.key] = compute.RegionNetworkEndpointGroup(
                f"{h.key}-neg", compute.RegionNetworkEndpointGroupArgs(
                    name=f"{h.service_name}-neg", project=project, region=region, network_endpoint_type="SERVERLESS",
                    cloud_run=compute.RegionNetworkEndpointGroupCloudRunArgs(service=h.service_name)),
                opts=child)
            self._backend_names[h.key] = f"{h.service_name}-backend"
            self.backends[h.key] = compute.BackendService(
                f"{h.key}-backend", compute.BackendServiceArgs(
                    name=f"{h.service_name}-backend", project=project, load_balancing_scheme="EXTERNAL_MANAGED",
                    protocol="HTTPS", security_policy=self.armor.id, custom_response_headers=[hsts_header(edge)],
                    iap=compute.BackendServiceIapArgs(enabled=True),
                    backends=[compute.BackendServiceBackendArgs(group=self.negs[h.key].id)],
                    log_config=compute.BackendServiceLogConfigArgs(enable=True, sample_rate=1.0)),
                opts=child)
            for member in h.members:
                gcp.iap.WebBackendServiceIamMember(
                    f"{h.key}-iap-{member.split(':', 1)[-1]}", gcp.iap.WebBackendServiceIamMemberArgs(
                        project=project, web_backend_service=self.backends[h.key].name,
                        role="roles/iap.httpsResourceAccessor", member=member),
                    opts=child)
            self.iap_audiences[h.key] = self._audience(h, site)
            self.iap_certificates[h.key] = compute.ManagedSslCertificate(
                f"{h.key}-cert", compute.ManagedSslCertificateArgs(
                    name=f"{h.service_name}-cert", project=project, type="MANAGED",
                    managed=compute.ManagedSslCertificateManagedArgs(domains=[h.host])),
                opts=child)

        default = next(b.key for b in args.backends if b.default)
        # The URL map names its backends by their relative URLs (= the provider's ids), known before they
        # exist, so a first preview's policies can tell a guarded canary route from a user route.
        ref = {k: backend_ref(project, "backendServices", be_name) for k, be_name in self._backend_names.items()}
        static_ref = backend_ref(project, "backendBuckets", f"{prefix}-static")
        if args.canary is None:
            path_rules = [compute.URLMapPathMatcherPathRuleArgs(paths=list(b.routes), service=ref[b.key])
                          for b in args.backends if b.routes]
            path_rules.append(compute.URLMapPathMatcherPathRuleArgs(paths=list(edge.static_paths), service=static_ref))
            route_rules = None
        else:
            path_rules = None
            route_rules = canary_rules({k: ref[f"{k}{CANARY_SUFFIX}"] for k in self.canary_backends}) + path_route_rules(
                [(path, ref[b.key]) for b in args.backends for path in b.routes]
                + [(path, static_ref) for path in edge.static_paths])
        self.url_map = compute.URLMap(
            "https", compute.URLMapArgs(
                name=f"{prefix}-https", project=project, default_service=ref[default],
                host_rules=[compute.URLMapHostRuleArgs(hosts=list(edge.domains), path_matcher="netra")]
                + [compute.URLMapHostRuleArgs(hosts=[h.host], path_matcher=h.key) for h in args.iap_hosts],
                path_matchers=[compute.URLMapPathMatcherArgs(
                    name="netra", default_service=ref[default], path_rules=path_rules,
                    route_rules=route_rules)]
                + [compute.URLMapPathMatcherArgs(name=h.key, default_service=ref[h.key])
                   for h in args.iap_hosts]),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[
                *self.backends.values(), *self.canary_backends.values(), self.static_backend]))
        self.https_proxy = compute.TargetHttpsProxy(
            "https", compute.TargetHttpsProxyArgs(
                name=f"{prefix}-https", project=project, url_map=self.url_map.id,
                ssl_certificates=[self.certificate.id, *(c.id for c in self.iap_certificates.values())],
                ssl_policy=self.ssl_policy.id),
            opts=child)
        self.https_rule = compute.GlobalForwardingRule(
            "https", compute.GlobalForwardingRuleArgs(
                name=f"{prefix}-https", project=project, target=self.https_proxy.id, ip_address=self.address.id,
                port_range="443", ip_protocol="TCP", load_balancing_scheme="EXTERNAL_MANAGED", labels=labels),
            opts=child)

        self.redirect_map = compute.URLMap(
            "http-redirect", compute.URLMapArgs(
                name=f"{prefix}-http-redirect", project=project,
                default_url_redirect=compute.URLMapDefaultUrlRedirectArgs(
                    https_redirect=True, strip_query=False, redirect_response_code="MOVED_PERMANENTLY_DEFAULT")),
            opts=child)
        self.http_proxy = compute.TargetHttpProxy(
            "http-redirect", compute.TargetHttpProxyArgs(name=f"{prefix}-http-redirect", project=project,
                                                         url_map=self.redirect_map.id),
            opts=child)
        self.http_rule = compute.GlobalForwardingRule(
            "http-redirect", compute.GlobalForwardingRuleArgs(
                name=f"{prefix}-http-redirect", project=project, target=self.http_proxy.id,
                ip_address=self.address.id, port_range="80", ip_protocol="TCP",
                load_balancing_scheme="EXTERNAL_MANAGED", labels=labels),
            opts=child)
        self.ip = self.address.address
        self.domains = list(edge.domains)
        self.canary_keys = tuple(sorted(self.canary_backends))
        self.canary_token_secret = args.canary.token_secret if args.canary else None
        self.register_outputs({"ip": self.ip, "domains": self.domains})

    def _audience(self, h: IapHost, site: Site) -> IapAudience:
        """The audience IAP signs for this backend service, kept in Secret Manager: the service reads version
        `latest` at start, so the backend's id never enters its revision template (a replaced backend service
        is a new secret version; instances started before it refuse every token until they restart)."""
        audience = pulumi.Output.concat("/projects/", project_number(site.project), "/global/backendServices/",
                                        self.backends[h.key].generated_id.apply(str))
        secret = gcp.secretmanager.Secret(
            f"{h.key}-iap-audience", gcp.secretmanager.SecretArgs(
                secret_id=iap_audience_secret_id(site.environment, h.key), project=site.project, labels=site.labels(),
                replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs())),
            opts=pulumi.ResourceOptions(parent=self))
        version = gcp.secretmanager.SecretVersion(
            f"{h.key}-iap-audience", gcp.secretmanager.SecretVersionArgs(
                secret=secret.id, secret_data=pulumi.Output.secret(audience), deletion_policy="DISABLE"),
            opts=pulumi.ResourceOptions(parent=self))
        return IapAudience(iap_audience_secret_id(site.environment, h.key), audience, (secret, version))

    def public_url(self, key: str) -> str:
        """Where the internet reaches a public service: the first domain plus its route prefix."""
        return f"https://{self.domains[0]}{route_prefix(self.routes[key])}"

    def summary(self) -> dict:
        """Point each domain's A record at `ip`; the managed certificate turns ACTIVE once DNS resolves.
        `canaryVerification`: where and how the rollout reaches a public candidate (never the token)."""
        out = {"ip": self.ip, "domains": self.domains, "urls": [f"https://{d}" for d in self.domains]}
        if self.canary_keys:
            out["canaryVerification"] = {"url": f"https://{self.domains[0]}", "services": list(self.canary_keys),
                                         "serviceHeader": CANARY_SERVICE_HEADER, "tokenHeader": CANARY_TOKEN_HEADER,
                                         "tokenSecret": self.canary_token_secret}
        return out
