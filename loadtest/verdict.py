"""The load test's verdict: pass or fail against the stack's criteria, with every figure it used.

Like the canary gate's verdict (decision, reasons, figures), so the rollout records both the same way.
Criteria (`netra:loadTest.criteria`, the seeds' values by default):

* error rate of HTTP requests, of WebSocket connections and of WebSocket events, each <= errorRatePercent
  (seed 001: error rates < 0.1 %);
* HTTP p95 <= p95LatencyMs (seed 001: p95 < 500 ms);
* WebSocket event latency at websocketEventPercentile <= websocketEventLatencyMs (seed 001 phase 1:
  events delivered in < 100 ms; the 200 ms alert is a separate warning);
* growth of the candidate's memory utilization over the run <= memoryGrowthPercent (seed 000: memory
  increase < 5 %; seed 001: no memory leaks during the 1-hour load test), from Cloud Monitoring;
* at least minRequests requests, and minWebsocketEvents events when WebSocket users run: too little
  traffic proves nothing, so it fails rather than passes.

Standard library only (the load-test image runs it too).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from loadtest.summary import InconsistentSummary, Summary

EXIT_PASS, EXIT_FAIL = 0, 1


@dataclass(frozen=True)
class Criteria:
    error_rate_percent: float = 0.1
    p95_latency_ms: float = 500.0
    websocket_event_latency_ms: float = 100.0
    websocket_event_percentile: float = 95.0
    memory_growth_percent: Optional[float] = 5.0  # None: not judged (no Cloud Monitoring, e.g. local runs)
    min_requests: int = 1000
    min_websocket_events: int = 100

    @classmethod
    def from_dict(cls, d: dict) -> "Criteria":
        camel = {"errorRatePercent": "error_rate_percent", "p95LatencyMs": "p95_latency_ms",
                 "websocketEventLatencyMs": "websocket_event_latency_ms",
                 "websocketEventPercentile": "websocket_event_percentile",
                 "memoryGrowthPercent": "memory_growth_percent", "minRequests": "min_requests",
                 "minWebsocketEvents": "min_websocket_events"}
        return cls(**{camel.get(k, k): v for k, v in d.items()})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MemoryGrowth:
    """Memory utilization of the candidate at the start and the end of the run (fractions 0-1)."""

    first: float
    last: float
    points: int

    @property
    def growth_percent(self) -> float:
        return 100.0 * (self.last - self.first) / self.first if self.first > 0 else 0.0

    def as_dict(self) -> dict:
        return {"firstPercent": round(100 * self.first, 3), "lastPercent": round(100 * self.last, 3),
                "growthPercent": round(self.growth_percent, 3), "points": self.points}


def memory_growth(points: Sequence[tuple[float, float]], warmup_fraction: float = 0.1) -> Optional[MemoryGrowth]:
    """(time, utilization) points of the run -> mean of the first quarter against the last quarter,
    after dropping the warm-up (instances filling caches are not a leak). None with fewer than 4 points."""
    bad = [(t, v) for t, v in points
           if not (math.isfinite(t) and math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:  # a NaN would poison both means and compare False against the limit: a leak passed as no growth
        raise InconsistentSummary(f"memory utilization points must be finite times and fractions 0-1; "
                                  f"{len(bad)} of {len(points)} are not, e.g. {bad[0]!r}")
    pts = sorted(points)
    pts = pts[int(len(pts) * warmup_fraction):]
    if len(pts) < 4:
        return None
    q = max(1, len(pts) // 4)
    head, tail = [v for _, v in pts[:q]], [v for _, v in pts[-q:]]
    return MemoryGrowth(sum(head) / len(head), sum(tail) / len(tail), len(pts))


def judge(summary: Summary, criteria: Criteria, memory: Optional[MemoryGrowth] = None,
          memory_error: Optional[str] = None, websocket_expected: bool = True) -> dict:
    """The verdict dict. `memory` None with criteria.memory_growth_percent set is a failure (a leak
    cannot be ruled out); `memory_error` says why it is missing. InconsistentSummary when the summary
    holds figures no run can produce (negative counts, failures > requests, a histogram that does not
    hold every success, ...)."""
    summary.check()  # InconsistentSummary: impossible figures are an error, never a pass or a fail
    if memory is not None and not all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in (memory.first, memory.last)):
        raise InconsistentSummary(f"memory utilization must be fractions 0-1, got {memory.first!r} -> {memory.last!r}")
    t = summary.tallies
    reasons: list[str] = []
    total = summary.total_requests
    if total < criteria.min_requests:
        reasons.append(f"too little traffic to judge: {total} requests < minRequests {criteria.min_requests}")
    if websocket_expected and t["ws_event"].requests < criteria.min_websocket_events:
        reasons.append(f"too few WebSocket events to judge: {t['ws_event'].requests} < minWebsocketEvents "
                       f"{criteria.min_websocket_events}")
    for cat, what in (("http", "HTTP requests"), ("ws_connect", "WebSocket connections"), ("ws_event", "WebSocket events")):
        tally = t[cat]
        if tally.requests and 100.0 * tally.failures / tally.requests > criteria.error_rate_percent:
            top = "; ".join(f"{k} x{v}" for k, v in tally.errors.most_common(2))
            reasons.append(f"{what}: error rate {100.0 * tally.failures / tally.requests:.3g} % > "
                           f"{criteria.error_rate_percent:g} % ({tally.failures}/{tally.requests}{': ' + top if top else ''})")
    p95 = t["http"].percentile(95)
    if p95 is not None and p95 > criteria.p95_latency_ms:
        reasons.append(f"HTTP p95 {p95:g} ms > {criteria.p95_latency_ms:g} ms")
    q = criteria.websocket_event_percentile
    ws = t["ws_event"].percentile(q)
    if ws is not None and ws > criteria.websocket_event_latency_ms:
        reasons.append(f"WebSocket event latency p{q:g} {ws:g} ms > {criteria.websocket_event_latency_ms:g} ms")
    if criteria.memory_growth_percent is not None:
        if memory is None:
            reasons.append(f"memory growth not measured ({memory_error or 'no memory data for the candidate'}): "
                           "a leak cannot be ruled out")
        elif memory.growth_percent > criteria.memory_growth_percent:
            reasons.append(f"memory grew {memory.growth_percent:.3g} % over the run "
                           f"({100 * memory.first:.3g} % -> {100 * memory.last:.3g} %) > {criteria.memory_growth_percent:g} %")
    decision = "fail" if reasons else "pass"
    figures = {
        "requests": total,
        "stoppedBy": summary.stopped_by,
        "http": t["http"].as_dict(),
        "websocketConnections": t["ws_connect"].as_dict(),
        "websocketEvents": {**t["ws_event"].as_dict(), f"p{q:g}Ms": ws},
        "memory": memory.as_dict() if memory else None,
    }
    for f in ("http", "websocketConnections", "websocketEvents"):
        figures[f].pop("histogram")
    return {
        "decision": decision,
        "exit_code": EXIT_PASS if decision == "pass" else EXIT_FAIL,
        "reason": "; ".join(reasons) if reasons else "every load-test criterion met",
        "reasons": reasons,
        "window": {"start": summary.started_at, "end": summary.ended_at},
        "figures": figures,
        "criteria": criteria.as_dict(),
    }
