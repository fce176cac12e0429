"""Per-service config: `netra:services` is a map of any service names to their Cloud Run settings.

Routes, load-balancer backends, invoker bindings, uptime checks, alerts, SLOs and dashboard rows all
derive from this map (infra/wiring.py), so adding a service is a change to the stack file only.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Optional

from pydantic import Field, ValidationInfo, field_validator

from .base import DIGEST, Bool, ConfigModel, Distinct, Image, Int, ResourceName, Text, UrlPath, ordered_after, problems, text

SERVICE_KEY = re.compile(r"[a-z](?:[a-z0-9-]*[a-z0-9])?")
# Keys whose names a platform component already uses: a service keyed so would register the same URNs
# (the engine refuses the program) or the same service account / Cloud Run name (GCP refuses the create).
RESERVED_KEYS = {
    "migrate": "netra-migrate-<env> is the migration job and its service account",
    "grafana": "the Grafana component registers the Cloud Run service and service account netra-grafana-<env> and "
               "the load balancer's grafana-neg / grafana-backend / grafana-invoker",
    "loadtest": "netra-loadtest-<env> is the load-test job's service account",
    "budget-guard": "netra-budget-guard-<env> is the emergency budget function and its service account",
}
# GCP's limits on the names derived from a key (S = the Cloud Run service name netra-<key>-<env>):
SERVICE_NAME_MAX = 49  # Cloud Run service names
TAGGED_NAME_MAX = 46  # a traffic tag plus the service name (the tag's URL is one DNS label)
REVISION_NAME_MAX = 63  # Cloud Run revision names are DNS labels: S-<8 hex>
HASH_SUFFIX = 8
COMPUTE_NAME_MAX = 63  # Compute Engine names (RFC 1035): the load balancer's S-<suffix> per service
EDGE_SUFFIXES = ("-backend", "-neg", "-canary-backend", "-canary-neg")
CANARY_SUFFIX = "-canary"  # <key>-canary-neg / -backend are the canary route of <key> (infra.components.edge)
CPU_VALUES = ("1", "2", "4", "6", "8")
# Cloud Run accepts env names of letters, digits and underscores not starting with a digit.
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# Names that say "this is a credential": such values belong in Secret Manager, never in env. A name is
# refused when one of its `_`-separated words is a credential word, or its last word names a key or token
# (OPENAI_KEY, SIGNING_KEY, GITHUB_TOKEN, DB_PASS; not TOKEN_OPTIMIZATION_ENABLED or MAX_TOKENS).
CREDENTIAL_WORDS = frozenset({"PASSWORD", "PASSWD", "SECRET", "SECRETS", "CREDENTIAL", "CREDENTIALS", "APIKEY",
                              "PRIVATE"})
CREDENTIAL_LAST_WORDS = frozenset({"PASS", "PWD", "KEY", "TOKEN", "SALT", "PEPPER", "DSN"})
# Set by the platform, never by a service's `env`: what database / Redis clients get (DB_POOL_SIZE is what
# the pool check counted; DB_SSLMODE is what keeps TLS verified), and what Cloud Run itself sets.
PLATFORM_ENV = frozenset({"DB_NAME", "DB_USER", "DB_PORT", "DB_SSLMODE", "DB_SSLROOTCERT", "DB_POOL_SIZE",
                          "REDIS_PORT", "REDIS_TLS", "REDIS_CA_CERT_PATH", "REDIS_SSL_CERT_REQS",
                          # the budget guard's emergency limits file, mounted in every flags reader: an override
                          # would point the service away from the limits (docs/budget-guard.md)
                          "EMERGENCY_LIMITS"})
CLOUD_RUN_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})


def credential_name(name: str) -> bool:
    """True for env names that say "this is a credential"."""
    words = name.upper().split("_")
    return bool(CREDENTIAL_WORDS.intersection(words)) or words[-1] in CREDENTIAL_LAST_WORDS


def reserved_env(name: str) -> Optional[str]:
    """Who sets `name` if not the service's own `env`, or None."""
    from .app import AppSettings

    if name in PLATFORM_ENV:
        return "the platform (database / Redis client settings, the emergency limits file)"
    if name in CLOUD_RUN_ENV:
        return "Cloud Run"
    if name in AppSettings().environment():
        return "netra:app"
    return None
EnvName = text(255, ENV_NAME, "an environment variable name (letters, digits, _; not starting with a digit)")
# A URL-map path: /exact or /prefix/* (the `*` only at the end, after a `/`).
RoutePath = text(1024, r"/(?:[A-Za-z0-9._~-]+/)*(?:[A-Za-z0-9._~-]+|\*)?", "a URL-map path like /api/* or /exact")


def service_name(key: str, environment: str) -> str:
    """The Cloud Run service name, e.g. netra-backend-prod (as the seed names them)."""
    return f"netra-{key}-{environment}"


def unknown_service(key: str, services) -> str:
    """The message for a reference to a service key that netra:services does not have."""
    import difflib

    close = difflib.get_close_matches(key, list(services), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown service {key!r}; {hint}allowed: {', '.join(sorted(services))}"


def traffic_tags() -> tuple[str, ...]:
    from infra.release.model import CANARY_TAG, PREVIOUS_TAG, STABLE_TAG

    return STABLE_TAG, CANARY_TAG, PREVIOUS_TAG


def name_limits(key: str, environment: str) -> list[tuple[str, int, int]]:
    """(what, its length, GCP's limit) of every name derived from `key` that has a limit."""
    name = service_name(key, environment)
    tag = max(traffic_tags(), key=len)
    return [(f"the Cloud Run service name {name}", len(name), SERVICE_NAME_MAX),
            (f"the traffic tag {tag!r} plus the service name {name}", len(tag) + len(name), TAGGED_NAME_MAX),
            (f"the revision name {name}-<{HASH_SUFFIX} hex>", len(name) + 1 + HASH_SUFFIX, REVISION_NAME_MAX),
            *((f"the load balancer's {name}{s}", len(name) + len(s), COMPUTE_NAME_MAX) for s in EDGE_SUFFIXES)]


def max_key_length(environment: str) -> int:
    """The longest service key whose derived names all fit GCP's limits (`name_limits`)."""
    return min(limit - (length - len("k")) for _, length, limit in name_limits("k", environment))


def key_problem(key: str, environment: str | None) -> str | None:
    """Why `key` cannot name a service under netra:services, or None."""
    if not SERVICE_KEY.fullmatch(key):
        return ("service name must be lowercase letters, digits and '-', start with a letter and not end with '-' "
                f"(it becomes the Cloud Run service netra-<name>-<env>), got {key!r}")
    if key in RESERVED_KEYS:
        return f"{key!r} is reserved ({RESERVED_KEYS[key]}); choose another name"
    if environment:
        for what, length, limit in name_limits(key, environment):
            if length > limit:
                return (f"service name is {len(key)} characters; at most {max_key_length(environment)} in {environment}: "
                        f"{what} would be {length} characters, GCP allows {limit}")
    return None


def collision_problems(keys) -> list[tuple[str, str]]:
    """(key, message) for keys whose names another service already derives: <key>-canary is <key>'s canary route."""
    keys = {str(k) for k in keys}
    return [(k, f"{k!r} collides with service {k[:-len(CANARY_SUFFIX)]!r}'s canary verification route "
                f"({k}-neg / {k}-backend are its names); choose another name")
            for k in sorted(keys) if k.endswith(CANARY_SUFFIX) and k[:-len(CANARY_SUFFIX)] in keys]


class ServiceConfig(ConfigModel):
    image: Image = Field(description="container image; in prod pinned by digest (…@sha256:<64 hex>)")
    stable_revision: Optional[ResourceName] = Field(
        None, description="the revision serving today; absent on first deploy"
    )
    canary_percent: Optional[Int] = Field(
        None, description="per-service override of netra:canaryPercent (used by `rollout --service`)"
    )
    # maxInstances first, so the minInstances check can see it even when other keys are broken
    max_instances: Int = Field(10, ge=1, le=1000,
        description="autoscaling ceiling; also sizes the database pool and subnet checks")
    min_instances: Int = Field(1, ge=0, le=1000,
        description="instances kept warm; a worker (public: false) needs at least 1")
    cpu: str = Field("1", description="vCPUs per instance: \"1\", \"2\", \"4\", \"6\" or \"8\"")
    memory: text(16, r"[1-9][0-9]{0,5}(Mi|Gi)", "a size like 512Mi or 4Gi") = Field("512Mi",
        description="memory per instance")
    concurrency: Int = Field(80, ge=1, le=1000, description="concurrent requests per instance")
    port: Int = Field(8080, ge=1, le=65535, description="the container port Cloud Run sends requests to")
    timeout_seconds: Int = Field(300, ge=1, le=3600, description="request timeout; 3600 for WebSockets")
    session_affinity: Bool = Field(False, description="route a client's requests to the same instance when possible")
    health_check_path: UrlPath = Field(
        "/health", description="probed by the startup/liveness probes and, under the first route, by the uptime check")
    public: Bool = Field(True, description="served through the load balancer; false for workers (no route, no allUsers)")
    routes: Annotated[tuple[RoutePath, ...], Distinct] = Field(
        (), max_length=100, description="path prefixes the load balancer sends here, like /api/*; unique across services")
    default_route: Bool = Field(False, description="receives every path no route claims; exactly one public service")
    db_pool_size: Optional[Int] = Field(
        None, ge=1, le=1000, description="database connections per instance (database clients only); pins the pool")
    env: dict[EnvName, text(32768)] = Field(default_factory=dict, max_length=1000,
        description="plain environment variables NAME: value; credential-looking names, platform-derived settings (DB_*, REDIS_*), Cloud Run's own and netra:app's are refused: use secrets")
    secrets: dict[EnvName, Text] = Field(
        default_factory=dict, max_length=1000, description="env var name -> platform secret key it is read from"
    )

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: object) -> object:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
            v = str(int(v))
        if v not in CPU_VALUES:
            raise ValueError(f"must be one of {', '.join(CPU_VALUES)} (Cloud Run gen2 CPUs), got {v!r}")
        return v

    @field_validator("min_instances")
    @classmethod
    def _min_le_max(cls, v: int, info: ValidationInfo) -> int:
        return ordered_after(v, info, "max_instances", "<=")

    @field_validator("env")
    @classmethod
    def _no_credentials_in_env(cls, env: dict[str, str]) -> dict[str, str]:
        found = [
            (name, "looks like a credential; read it from Secret Manager through `secrets` instead")
            for name in env if credential_name(name)
        ]
        found += [(name, f"is set by {who}; a service cannot override it") for name in env
                  if (who := reserved_env(name))]
        if found:
            raise problems(*found)
        return env

    @field_validator("secrets")
    @classmethod
    def _one_source_per_variable(cls, secrets: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        env = info.data.get("env") or {}
        known = (info.context or {}).get("known_secrets")
        found = [(name, "is also set in `env`; a variable comes from one place") for name in secrets if name in env]
        found += [(name, f"is set by {who}; a service cannot override it") for name in secrets
                  if (who := reserved_env(name))]
        if known is not None:
            allowed = ", ".join(sorted(known)) or "none declared"
            found += [(name, f"unknown secret {key!r}; allowed: {allowed}") for name, key in secrets.items() if key not in known]
        if found:
            raise problems(*found)
        return secrets

    @property
    def pinned(self) -> bool:
        return bool(DIGEST.search(self.image))


Services = dict[str, ServiceConfig]


STATIC_OWNER = "netra:platform.edge.staticPaths"


def route_owner(path: str, routes: dict[str, tuple[str, ...]]) -> Optional[str]:
    """Who serves `path` on the load balancer: the owner of the longest matching route (URL maps pick the
    most specific path rule), or None when only the default route would."""
    best, owner = -1, None
    for key, paths in routes.items():
        for rule in paths:
            if rule.endswith("/*"):
                prefix = rule[:-1]
                hit = path.startswith(prefix) or path == prefix[:-1]
            else:
                hit = path == rule
            if hit and len(rule) > best:
                best, owner = len(rule), key
    return owner


def probe_path(svc: ServiceConfig) -> Optional[str]:
    """The path the uptime check requests on the load balancer: the health path under the service's first
    prefix route (/api/* + /health -> /api/health), or the health path itself for the default service."""
    for rule in svc.routes:
        if rule.endswith("/*"):
            return rule[:-2] + svc.health_check_path
    return svc.health_check_path if svc.default_route else None


def routing_problems(services: dict[str, ServiceConfig], static_paths: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The load balancer's routing over the whole map: (key under netra:services, message)."""
    found: list[tuple[str, str]] = []
    public = [k for k, s in services.items() if s.public]
    defaults = [k for k in public if services[k].default_route]
    for key, svc in services.items():
        if not svc.public and (svc.routes or svc.default_route):
            found.append((f"{key}.routes" if svc.routes else f"{key}.defaultRoute",
                          "a service with public: false is not behind the load balancer; remove routes/defaultRoute "
                          "or set public: true"))
        if svc.public and not svc.routes and not svc.default_route:
            found.append((f"{key}.routes", "a public service needs routes (like /api/*) or defaultRoute: true; "
                                           "set public: false for a worker the load balancer does not serve"))
    if public and len(defaults) != 1:
        found.append((f"{defaults[1]}.defaultRoute" if defaults else f"{public[0]}.defaultRoute",
                      f"exactly one public service takes the default route, got {len(defaults)}"
                      + (f" ({', '.join(defaults)})" if defaults else f"; set defaultRoute: true on one of {', '.join(public)}")))
    owners: dict[str, str] = {p: STATIC_OWNER for p in static_paths}
    for key in public:
        for rule in services[key].routes:
            if rule in owners:
                found.append((f"{key}.routes", f"{rule} is already routed to {owners[rule]}"))
            owners.setdefault(rule, key)
    routes = {k: services[k].routes for k in public}
    routes[STATIC_OWNER] = tuple(static_paths)
    for key in public:
        svc = services[key]
        if not svc.routes and not svc.default_route:
            continue  # reported above
        path = probe_path(svc)
        if path is None:
            found.append((f"{key}.routes", "no prefix route (like /x/*) carries the uptime check of healthCheckPath "
                                           f"{svc.health_check_path}; add one"))
            continue
        owner = route_owner(path, routes)
        if owner != (key if any(r.endswith("/*") for r in svc.routes) else None):
            found.append((f"{key}.healthCheckPath", f"the uptime check requests {path} on the load balancer, which "
                                                    f"routes it to {owner or 'the default service'}, not {key}"))
    return found


def liveness_problems(services: dict[str, ServiceConfig]) -> list[tuple[str, str]]:
    """A worker (public: false) has no uptime check: it is watched through its running instances."""
    return [(f"{key}.minInstances", "a service with public: false is watched by its running instances (no uptime "
                                    "check reaches it), so it needs minInstances >= 1")
            for key, svc in services.items() if not svc.public and svc.min_instances < 1]


def environment_problems(raw_services: Any, environment: str) -> list[tuple[str, str]]:
    """Checks that need the service's name and environment, run on the raw map so they report
    alongside type errors of the same service: (key under netra:services, message)."""
    if not isinstance(raw_services, dict):
        return []
    found = collision_problems(raw_services)
    for key, svc in raw_services.items():
        if (problem := key_problem(str(key), environment)):
            found.append((str(key), problem))
            continue
        if not isinstance(svc, dict):
            continue
        name = service_name(key, environment)
        stable, image = svc.get("stableRevision"), svc.get("image")
        if isinstance(stable, str) and not stable.startswith(name + "-"):
            found.append((f"{key}.stableRevision", f"must start with the service name '{name}-' (Cloud Run names revisions <service>-<suffix>), got {stable!r}"))
        if environment == "prod" and isinstance(image, str) and not DIGEST.search(image):
            found.append((f"{key}.image", f"must be pinned by digest in prod (…@sha256:<64 hex>), got {image!r}"))
    return found
