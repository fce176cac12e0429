"""Load-balancer TLS (CIS GCP 3.9) and HTTP -> HTTPS redirects; Secret Manager payloads."""
from __future__ import annotations

from pulumi_policy import Severity

from . import _wire
from ._util import CIS_GCP, UNKNOWN, get, items, of_type, peek, points_to, refers_to, resource_policy, serves, sources, stack_policy

SSL_POLICY = ("gcp:compute/sSLPolicy:SSLPolicy",)
HTTPS_PROXY = ("gcp:compute/targetHttpsProxy:TargetHttpsProxy",)
HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
URL_MAP = "gcp:compute/uRLMap:URLMap"
SECRET_VERSION = ("gcp:secretmanager/secretVersion:SecretVersion",)
GOOD_TLS = ["TLS_1_2", "TLS_1_3"]
PAYLOADS = ("secretData", "secretDataWo")
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND_SERVICE = "gcp:compute/backendService:BackendService"
# The rollout verifier's load-balancer route (infra.components.edge, infra.verify): a copy, as the pack
# cannot import infra (tests/test_canary_route.py pins them equal).
CANARY_SERVICE_HEADER = "X-Netra-Canary"
CANARY_TOKEN_HEADER = "X-Netra-Verify-Token"
DEFAULT_RULE_PRIORITY = 2147483647


def _ssl_policy(props, config, args):
    tls = get(props, "minTlsVersion", "TLS_1_0")
    if tls not in GOOD_TLS:
        yield f"minTlsVersion is {tls}; use TLS_1_2 or later"
    profile = get(props, "profile", "COMPATIBLE")
    if profile == "COMPATIBLE":
        yield "profile COMPATIBLE allows weak cipher suites; use MODERN or RESTRICTED (or CUSTOM without them)"


def _https_proxy_policy(props, config, args):
    # a reference to the stack's SSL policy is unknown until that policy exists: set is what matters here
    # (tls-ssl-policy-min-tls12 checks the policy itself)
    if not peek(props, "sslPolicy"):
        yield "no sslPolicy: Google's default allows TLS 1.0 and weak ciphers"


def _redirects(props) -> bool:
    # an unknown defaultService is a backend the map serves: not a redirect-only map
    return get(props, "defaultUrlRedirect.httpsRedirect") is True and not peek(props, "defaultService")


def _http_redirect(resources, config):
    proxies = of_type(resources, HTTP_PROXY)
    if not proxies:
        return
    maps = of_type(resources, URL_MAP)
    for proxy in proxies:
        # The engine sends which resource each property came from (also while its value is unknown, in
        # a preview); when the map is a literal, match the value against the maps' names / ids / self links.
        targets = [r for r in sources(proxy, "urlMap") if r.resource_type == URL_MAP]
        ref = None if targets else peek(proxy.props, "urlMap")
        if ref is UNKNOWN:
            yield (f"fails closed: the HTTP proxy {proxy.name}'s urlMap is unknown until created and the engine names "
                   f"no URL map it comes from, so its redirect cannot be checked"), proxy.urn
            continue
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
    # presence only: in a preview a generated payload is unknown, but whether it arrived wrapped as a
    # secret is known (the engine keeps the secret marker around an unknown)
    present = [p for p in PAYLOADS if peek(props, p) is not None]
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


def _token_rules(props) -> list[int]:
    # an expression unknown in a preview is computed from a generated value: it may hold the token
    return [i for i, r in enumerate(items(props, "rules"))
            if (e := peek(r, "match.expr.expression", "")) is UNKNOWN or CANARY_TOKEN_HEADER.lower() in str(e).lower()]


def _canary_token_secret(props, config, args):
    """An armor rule that compares the verifier's token carries it as a Pulumi secret on the wire."""
    rules = _token_rules(props)
    if not rules:
        return
    secret = _wire.secret_paths(args)
    if secret is None:
        yield "cannot tell whether the verify-token rule reached the engine as a secret (treat it as plaintext)"
        return
    for i in rules:
        path = f"rules[{i}].match.expr.expression"
        if not any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in secret):
            yield (f"rules[{i}] compares {CANARY_TOKEN_HEADER} with a plaintext token: pass it as a Pulumi secret "
                   f"(it would be stored unencrypted in state and shown in previews)")


def _tagged_backends(resources) -> list:
    """Backend services in front of a serverless NEG on a Cloud Run traffic tag (a revision not every user gets)."""
    tagged = [n for n in of_type(resources, NEG) if get(n.props, "cloudRun.tag")]
    return [b for b in of_type(resources, BACKEND_SERVICE) if any(serves(b, n) for n in tagged)]


GENERATED = "random:index/randomPassword:RandomPassword"


def _compares_token(expression, token: str, generated: bool) -> bool:
    return generated if expression is UNKNOWN else token in str(expression)


def _token_only(armor) -> str | None:
    """Why this armor policy lets more than the verifier through, or None."""
    rules = items(armor.props, "rules")
    default = next((r for r in rules if get(r, "priority") == DEFAULT_RULE_PRIORITY), None)
    if default is None or not str(get(default, "action", "")).startswith("deny"):
        return "its default rule does not deny"
    token = f"request.headers['{CANARY_TOKEN_HEADER.lower()}'] =="
    # In a preview the token rule's expression is unknown: it is computed from the generated token. A rule
    # that admits without a token is a literal (known); an unknown one computed only from generated
    # passwords is the comparison with one.
    generated = bool(sources(armor, "rules")) and all(s.resource_type == GENERATED for s in sources(armor, "rules"))
    loose = [get(r, "priority") for r in rules if get(r, "action") == "allow" and get(r, "priority") != DEFAULT_RULE_PRIORITY
             and not _compares_token(peek(r, "match.expr.expression", ""), token, generated)]
    if loose:
        return f"rules at priority {', '.join(map(str, loose))} allow requests without the verify token"
    return None


def _canary_route_private(resources, config):
    """A tagged backend (the canary verification route) answers only the verifier: its own armor admits
    only the token, and the URL map reaches it only by a route rule on the X-Netra-Canary header."""
    armors = of_type(resources, ARMOR)
    maps = of_type(resources, URL_MAP)
    for b in _tagged_backends(resources):
        name = get(b.props, "name", b.name)
        ref = peek(b.props, "securityPolicy")
        armor = next((a for a in armors if points_to(b, "securityPolicy", ref, a)), None)
        why = "it has no Cloud Armor policy" if not ref else (
            "its Cloud Armor policy is not in the stack" if armor is None else _token_only(armor))
        if why:
            yield f"backend service {name} serves a tagged (canary) revision but {why}", b.urn
        for m in maps:
            refs = [("defaultService", peek(m.props, "defaultService"))]
            for i, pm in enumerate(items(m.props, "pathMatchers")):
                refs.append((f"pathMatchers[{i}].defaultService", peek(pm, "defaultService")))
                refs += [(f"pathMatchers[{i}].pathRules[{j}]", peek(r, "service"))
                         for j, r in enumerate(items(pm, "pathRules"))]
                for j, r in enumerate(items(pm, "routeRules")):
                    guarded = items(r, "matchRules") and all(
                        any(get(h, "headerName", "").lower() == CANARY_SERVICE_HEADER.lower() and get(h, "exactMatch")
                            for h in items(mr, "headerMatches")) for mr in items(r, "matchRules"))
                    if not guarded:
                        refs.append((f"pathMatchers[{i}].routeRules[{j}]", peek(r, "service")))
            unseen = [where for where, value in refs if value is UNKNOWN and where != "defaultService"
                      and any(s.urn == b.urn for s in sources(m, "pathMatchers"))]
            if unseen:  # the engine names sources per top-level input only: pathMatchers also holds the guarded rule
                yield (f"fails closed: URL map {get(m.props, 'name', m.name)} {', '.join(unseen)} unknown until created "
                       f"while {name} (a tagged backend) is among pathMatchers' sources, so whether they send users "
                       f"to it cannot be seen"), m.urn
            for where, value in refs:
                if (points_to(m, "defaultService", value, b) if where == "defaultService"
                        else value is not UNKNOWN and refers_to(value, b)):
                    yield (f"URL map {get(m.props, 'name', m.name)} {where} sends users to {name}, a tagged "
                           f"(canary) revision: only a route rule matching {CANARY_SERVICE_HEADER} may"), m.urn


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
    resource_policy("lb-canary-token-secret", "The canary verification token in a Cloud Armor rule is a Pulumi secret.",
                    "Build the rule's expression from the token Output (pulumi.Output.secret); the token lives in "
                    "Secret Manager (<env>-canary-verify-token) for the verifier.", (ARMOR,), _canary_token_secret,
                    severity=Severity.CRITICAL),
    stack_policy("lb-canary-route-private",
                 "A load-balancer backend on a Cloud Run traffic tag answers only the rollout verifier.",
                 "Give the tagged backend its own Cloud Armor policy (allow only the X-Netra-Verify-Token rule, default "
                 "deny) and reach it only by a URL-map route rule matching X-Netra-Canary.", _canary_route_private,
                 severity=Severity.CRITICAL),
]
