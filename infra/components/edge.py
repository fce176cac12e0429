"""Global external HTTPS load balancer (seed: GCP Load Balancer) in front of the public Cloud Run services.

    :443  ->  URL map:  each public service's routes -> its backend service  (Cloud Armor, logging)
                        static paths                 -> static-assets bucket (Cloud CDN)
                        everything else              -> the service with defaultRoute: true
    :80   ->  301 to https

The seed's map: /api/*, /ws/* -> backend; /auth/* -> auth; everything else -> frontend. Services
with `public: false` get no NEG, no backend service and no allUsers invoker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp
from infra.components.gcp_compute import compute

from infra.config import service_name
from infra.config.platform import EdgeConfig, StaticAssetsBucket

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
    certificate, a backend service with IAP on, and the members IAP lets in."""

    key: str
    service: pulumi.Input[str]
    service_name: str
    host: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class EdgeArgs:
    site: Site
    config: EdgeConfig
    static_assets: StaticAssetsBucket
    static_bucket: pulumi.Input[str]
    backends: tuple[EdgeBackend, ...]
    iap_hosts: tuple[IapHost, ...] = ()

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


def security_rules(edge: EdgeConfig) -> list[compute.SecurityPolicyRuleArgs]:
    rules = []
    if edge.waf.cve:
        # Log4Shell and its follow-ups: every signature of cve-canary, blocking even while the CRS rules
        # are in preview (a known exploit, not a tuning question).
        rules.append(compute.SecurityPolicyRuleArgs(
            priority=CVE_RULE_PRIORITY, action="deny(403)", preview=False,
            description="preconfigured cve-canary: Log4j JNDI lookups (CVE-2021-44228, CVE-2021-45046)",
            match=compute.SecurityPolicyRuleMatchArgs(expr=compute.SecurityPolicyRuleMatchExprArgs(
                expression=CVE_EXPRESSION))))
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
        for h in args.iap_hosts:
            self.negs[h.key] = compute.RegionNetworkEndpointGroup(
                f"{h.key}-neg", compute.RegionNetworkEndpointGroupArgs(
                    name=f"{h.service_name}-neg", project=project, region=region, network_endpoint_type="SERVERLESS",
                    cloud_run=compute.RegionNetworkEndpointGroupCloudRunArgs(service=h.service)),
                opts=child)
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
            # IAP authenticates at the load balancer and calls Cloud Run as its service agent: only that agent
            # may invoke, so a caller that reaches the run.app URL some other way (same-project VPC, Private
            # Google Access) is refused by Cloud Run itself before Grafana sees a forged or foreign token.
            self.invokers[h.key] = gcp.cloudrunv2.ServiceIamMember(
                f"{h.key}-invoker", gcp.cloudrunv2.ServiceIamMemberArgs(
                    name=h.service, project=project, location=region, role="roles/run.invoker",
                    member=iap_service_agent(project)),
                opts=child)
            self.iap_certificates[h.key] = compute.ManagedSslCertificate(
                f"{h.key}-cert", compute.ManagedSslCertificateArgs(
                    name=f"{h.service_name}-cert", project=project, type="MANAGED",
                    managed=compute.ManagedSslCertificateManagedArgs(domains=[h.host])),
                opts=child)

        default = next(b.key for b in args.backends if b.default)
        path_rules = [compute.URLMapPathMatcherPathRuleArgs(paths=list(b.routes), service=self.backends[b.key].id)
                      for b in args.backends if b.routes]
        path_rules.append(compute.URLMapPathMatcherPathRuleArgs(paths=list(edge.static_paths), service=self.static_backend.id))
        self.url_map = compute.URLMap(
            "https", compute.URLMapArgs(
                name=f"{prefix}-https", project=project, default_service=self.backends[default].id,
                host_rules=[compute.URLMapHostRuleArgs(hosts=list(edge.domains), path_matcher="netra")]
                + [compute.URLMapHostRuleArgs(hosts=[h.host], path_matcher=h.key) for h in args.iap_hosts],
                path_matchers=[compute.URLMapPathMatcherArgs(
                    name="netra", default_service=self.backends[default].id, path_rules=path_rules)]
                + [compute.URLMapPathMatcherArgs(name=h.key, default_service=self.backends[h.key].id)
                   for h in args.iap_hosts]),
            opts=child)
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
        self.register_outputs({"ip": self.ip, "domains": self.domains})

    def public_url(self, key: str) -> str:
        """Where the internet reaches a public service: the first domain plus its route prefix."""
        return f"https://{self.domains[0]}{route_prefix(self.routes[key])}"

    def summary(self) -> dict:
        """Point each domain's A record at `ip`; the managed certificate turns ACTIVE once DNS resolves."""
        return {"ip": self.ip, "domains": self.domains, "urls": [f"https://{d}" for d in self.domains]}
