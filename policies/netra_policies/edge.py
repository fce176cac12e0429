"""Load-balancer TLS (CIS GCP 3.9) and HTTP -> HTTPS redirects; Secret Manager payloads."""
from __future__ import annotations

from pulumi_policy import Severity

from . import _wire
from ._util import CIS_GCP, get, of_type, resource_policy, stack_policy

SSL_POLICY = ("gcp:compute/sSLPolicy:SSLPolicy",)
HTTPS_PROXY = ("gcp:compute/targetHttpsProxy:TargetHttpsProxy",)
HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
URL_MAP = "gcp:compute/uRLMap:URLMap"
SECRET_VERSION = ("gcp:secretmanager/secretVersion:SecretVersion",)
GOOD_TLS = ["TLS_1_2", "TLS_1_3"]
PAYLOADS = ("secretData", "secretDataWo")


def _ssl_policy(props, config, args):
    tls = get(props, "minTlsVersion", "TLS_1_0")
    if tls not in GOOD_TLS:
        yield f"minTlsVersion is {tls}; use TLS_1_2 or later"
    profile = get(props, "profile", "COMPATIBLE")
    if profile == "COMPATIBLE":
        yield "profile COMPATIBLE allows weak cipher suites; use MODERN or RESTRICTED (or CUSTOM without them)"


def _https_proxy_policy(props, config, args):
    if not get(props, "sslPolicy"):
        yield "no sslPolicy: Google's default allows TLS 1.0 and weak ciphers"


def _redirects(props) -> bool:
    return get(props, "defaultUrlRedirect.httpsRedirect") is True and not get(props, "defaultService")


def _http_redirect(resources, config):
    proxies = of_type(resources, HTTP_PROXY)
    if not proxies:
        return
    maps = of_type(resources, URL_MAP)
    for proxy in proxies:
        # The engine sends which resource each property came from; offline or when the map is a
        # literal, match the value against the maps' names / ids / self links.
        targets = [r for r in proxy.property_dependencies.get("urlMap", []) if r.resource_type == URL_MAP]
        ref = get(proxy.props, "urlMap")
        if not targets and ref:
            targets = [m for m in maps if ref in (m.name, get(m.props, "name"), get(m.props, "selfLink"),
                                                  get(m.props, "id")) or str(ref).endswith("/" + str(get(m.props, "name")))]
        if targets:
            for m in targets:
                if not _redirects(m.props):
                    yield (f"the HTTP proxy {proxy.name} serves URL map {m.name}, which does not redirect to HTTPS "
                           f"(defaultUrlRedirect.httpsRedirect)"), proxy.urn
        elif not any(_redirects(m.props) for m in maps):
            yield (f"the HTTP proxy {proxy.name} is in a stack with no URL map that redirects to HTTPS "
                   f"(defaultUrlRedirect.httpsRedirect: true)"), proxy.urn


def _secret_payload(props, config, args):
    present = [p for p in PAYLOADS if get(props, p) is not None]
    if not present:
        return
    secret = _wire.secret_paths(args)
    if secret is not None:  # what the engine sent: the real question
        for p in present:
            if p not in secret:
                yield f"{p} reached the engine as plaintext: pass it as a Pulumi secret (Output.secret / --secret config)"
        return
    # The wire view is unavailable (another pulumi_policy version): the public API only shows the option
    # that makes the engine treat the property as secret.
    marked = set(args.opts.additional_secret_outputs or [])
    for p in present:
        if p not in marked:
            yield f"{p} is not marked secret (additionalSecretOutputs): it would be stored unencrypted"


POLICIES = [
    resource_policy("tls-ssl-policy-min-tls12", "Load-balancer SSL policies require TLS 1.2+ and no weak ciphers.",
                    "Set minTlsVersion = TLS_1_2 and profile = MODERN (or RESTRICTED).", SSL_POLICY, _ssl_policy,
                    framework=CIS_GCP, tags=["CIS-3.9"]),
    resource_policy("tls-https-proxy-ssl-policy", "HTTPS proxies name an SSL policy (the default allows TLS 1.0).",
                    "Set sslPolicy on the TargetHttpsProxy to a TLS 1.2+ SSL policy.", HTTPS_PROXY,
                    _https_proxy_policy, framework=CIS_GCP, tags=["CIS-3.9"]),
    stack_policy("tls-http-redirects-to-https", "Plain-HTTP front ends only redirect to HTTPS.",
                 "Give the TargetHttpProxy a URL map with defaultUrlRedirect {httpsRedirect: true, "
                 "redirectResponseCode: MOVED_PERMANENTLY_DEFAULT} and no backend.", _http_redirect),
    resource_policy("secret-version-payload-secret", "Secret Manager payloads are Pulumi secrets end to end.",
                    "Pass secretData as a Pulumi secret (pulumi config set --secret / pulumi.Output.secret) and keep "
                    "additionalSecretOutputs (pulumi_gcp sets it).", SECRET_VERSION, _secret_payload,
                    severity=Severity.CRITICAL),
]
