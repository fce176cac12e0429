"""Verification of a candidate at 0 %: health and smoke requests through its `canary` tagged URL.

At stage 0 the gate has nothing to compare (no user traffic reaches the candidate), so what approves the
step to the first traffic stage (or, on a first deploy, to 100 %) is this check: the health path answers
2xx, and N smoke requests stay within the seed's absolute rollback triggers (5xx share <= errorRatePercent,
p95 latency <= p95LatencyMs from netra:observability.thresholds). The verdict names the revision, the
stage and the SHA-256 of the report, like the gate's.

Where the requests go (`route_for`): a public service's candidate is reached through the load balancer's
canary verification route (infra.components.edge: a serverless NEG on the `canary` tag behind a route
rule matching `X-Netra-Canary: <key>` and the secret `X-Netra-Verify-Token`), which works from a CI
runner. The token comes from Secret Manager (`read_token`, as the deploy identity), never from config or
the command line, and never appears in a report. A service not behind the load balancer (`public:
false`) is reached on its tagged run.app URL `https://<tag>---<service host>`, which answers only from
inside the VPC; `--verify-url KEY=URL` overrides either.
"""
from __future__ import annotations

import base64
import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional
from urllib.parse import quote, urlsplit

from infra.release.model import CANARY_TAG, Verdict, evidence_digest

# The load balancer's canary verification route matches on these two headers (infra.components.edge).
CANARY_SERVICE_HEADER = "X-Netra-Canary"
CANARY_TOKEN_HEADER = "X-Netra-Verify-Token"
SECRET_MANAGER = "https://secretmanager.googleapis.com"


class VerifyRouteError(Exception):
    """The verification route cannot be used (token unreadable, stack outputs without the route)."""


@dataclass(frozen=True)
class VerifyRoute:
    """Where verification requests for one candidate go and the headers they carry. `describe` is what
    the report records (never the token)."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    describe: str = ""


def tagged_route(service_url: str) -> VerifyRoute:
    url = tagged_url(service_url)
    return VerifyRoute(url, {}, f"tagged URL {url} (reachable from inside the VPC only)")


def lb_route(verification: Mapping[str, Any], key: str, token: str) -> VerifyRoute:
    """The load balancer's route to `key`'s canary tag (stack output platform.edge.canaryVerification)."""
    url = verification["url"]
    return VerifyRoute(url, {verification.get("serviceHeader", CANARY_SERVICE_HEADER): key,
                             verification.get("tokenHeader", CANARY_TOKEN_HEADER): token},
                       f"load balancer {url} ({verification.get('serviceHeader', CANARY_SERVICE_HEADER)}: {key}, "
                       f"with the verify token)")


def read_token(session, project: str, secret_id: str, endpoint: str = SECRET_MANAGER) -> str:
    """The latest version of Secret Manager secret `secret_id` (REST `versions/latest:access`), as the
    caller's identity (`session`: a google.auth AuthorizedSession or anything with its `get`)."""
    url = (f"{endpoint.rstrip('/')}/v1/projects/{quote(project, safe='')}/secrets/{quote(secret_id, safe='')}"
           f"/versions/latest:access")
    try:
        resp = session.get(url, timeout=30)
    except Exception as exc:  # transport errors of any client
        raise VerifyRouteError(f"reading Secret Manager secret {secret_id}: {exc}") from None
    if resp.status_code != 200:
        raise VerifyRouteError(f"reading Secret Manager secret {secret_id} in {project}: HTTP {resp.status_code} "
                               f"(the deploy identity needs roles/secretmanager.secretAccessor on it)")
    try:
        data = base64.b64decode(json.loads(resp.text)["payload"]["data"]).decode()
    except (ValueError, KeyError, TypeError) as exc:
        raise VerifyRouteError(f"Secret Manager secret {secret_id}: unreadable answer ({exc})") from None
    if not data:
        raise VerifyRouteError(f"Secret Manager secret {secret_id} is empty")
    return data


def route_for(key: str, service_url: str, outputs: Mapping[str, Any], overrides: Mapping[str, str],
              token: Callable[[str], str]) -> VerifyRoute:
    """The verification route of service `key`: `--verify-url` first, then the load balancer's canary
    route when the service is behind it, else the tagged run.app URL. `token(secret_id)` reads the token
    only when the load-balancer route is used."""
    if key in overrides:
        return VerifyRoute(overrides[key], {}, f"--verify-url {overrides[key]}")
    verification = ((outputs.get("platform") or {}).get("edge") or {}).get("canaryVerification") or {}
    if key in (verification.get("services") or ()):
        return lb_route(verification, key, token(verification["tokenSecret"]))
    return tagged_route(service_url)


@dataclass(frozen=True)
class VerifySettings:
    smoke_requests: int = 20
    smoke_paths: tuple[str, ...] = ()  # default: the health check path
    error_rate_percent: float = 1.0
    p95_latency_ms: float = 2000.0
    timeout_s: float = 10.0


def tagged_url(service_url: str, tag: str = CANARY_TAG) -> str:
    """`https://svc-abc-uc.a.run.app` -> `https://canary---svc-abc-uc.a.run.app` (Cloud Run tag URLs)."""
    parts = urlsplit(service_url)
    return f"{parts.scheme}://{tag}---{parts.netloc}"


def _get(url: str, timeout_s: float, headers: Mapping[str, str]) -> int:
    try:
        request = urllib.request.Request(url, method="GET", headers=dict(headers))
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
            resp.read(65536)
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0  # no answer counts as a server error


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0.0


def verify_candidate(key: str, revision: str, stage: int, route: "str | VerifyRoute", health_path: str,
                     settings: VerifySettings, get: Callable[[str, float, Mapping[str, str]], int] = _get,
                     clock: Callable[[], float] = time.monotonic) -> Verdict:
    """Promote when the candidate is healthy and within the absolute triggers, else rollback. `route`: a
    VerifyRoute, or a base URL needing no headers."""
    if isinstance(route, str):
        route = VerifyRoute(route, {}, route)
    base, headers = route.base_url.rstrip("/"), route.headers
    health = get(base + health_path, settings.timeout_s, headers)
    paths = settings.smoke_paths or (health_path,)
    results = []
    for i in range(settings.smoke_requests):
        path = paths[i % len(paths)]
        t0 = clock()
        code = get(base + path, settings.timeout_s, headers)
        results.append((path, code, (clock() - t0) * 1000.0))
    errors = sum(1 for _, code, _ in results if code == 0 or code >= 500)
    error_pct = 100.0 * errors / len(results) if results else 0.0
    latency = p95([ms for _, _, ms in results])
    report = {
        "service": key, "revision": revision, "stage": stage, "url": base, "route": route.describe, "health": {"path": health_path, "status": health},
        "smoke": {"requests": len(results), "errors": errors, "errorPercent": round(error_pct, 3),
                  "p95Ms": round(latency, 1), "paths": list(paths)},
        "triggers": {"errorRatePercent": settings.error_rate_percent, "p95LatencyMs": settings.p95_latency_ms},
    }
    problems = []
    if not 200 <= health < 300:
        problems.append(f"health {health_path} answered {health or 'nothing'}")
    if error_pct > settings.error_rate_percent:
        problems.append(f"{errors}/{len(results)} smoke requests failed ({error_pct:.1f} % > {settings.error_rate_percent:g} %)")
    if latency > settings.p95_latency_ms:
        problems.append(f"smoke p95 {latency:.0f} ms > {settings.p95_latency_ms:g} ms")
    decision = "rollback" if problems else "promote"
    reason = "; ".join(problems) if problems else (
        f"healthy: {len(results)} smoke requests, {errors} errors, p95 {latency:.0f} ms")
    report["decision"], report["reason"] = decision, reason
    return Verdict(decision, revision, stage, evidence_digest(report), reason, by="verify")
