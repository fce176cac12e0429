"""Verification of a candidate at 0 %: health and smoke requests through its `canary` tagged URL.

At stage 0 the gate has nothing to compare (no user traffic reaches the candidate), so what approves the
step to the first traffic stage (or, on a first deploy, to 100 %) is this check: the health path answers
2xx, and N smoke requests stay within the seed's absolute rollback triggers (5xx share <= errorRatePercent,
p95 latency <= p95LatencyMs from netra:observability.thresholds). The verdict names the revision, the
stage and the SHA-256 of the report, like the gate's.

Cloud Run serves a tagged revision at `https://<tag>---<service host>`. With ingress restricted to the
load balancer that URL answers only from inside the VPC: run the rollout there, or pass `--verify-url
KEY=URL` (e.g. a route of your load balancer to the tag).
"""
from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from infra.release.model import CANARY_TAG, Verdict, evidence_digest


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


def _get(url: str, timeout_s: float) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout_s) as resp:  # noqa: S310
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


def verify_candidate(key: str, revision: str, stage: int, base_url: str, health_path: str, settings: VerifySettings,
                     get: Callable[[str, float], int] = _get, clock: Callable[[], float] = time.monotonic) -> Verdict:
    """Promote when the candidate is healthy and within the absolute triggers, else rollback."""
    base = base_url.rstrip("/")
    health = get(base + health_path, settings.timeout_s)
    paths = settings.smoke_paths or (health_path,)
    results = []
    for i in range(settings.smoke_requests):
        path = paths[i % len(paths)]
        t0 = clock()
        code = get(base + path, settings.timeout_s)
        results.append((path, code, (clock() - t0) * 1000.0))
    errors = sum(1 for _, code, _ in results if code == 0 or code >= 500)
    error_pct = 100.0 * errors / len(results) if results else 0.0
    latency = p95([ms for _, _, ms in results])
    report = {
        "service": key, "revision": revision, "stage": stage, "url": base, "health": {"path": health_path, "status": health},
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
