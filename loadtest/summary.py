"""What a load run measured, per category, from every request Locust reports.

Three categories feed the verdict: `http` (every HTTP request), `ws_connect` (WebSocket handshakes)
and `ws_event` (a WebSocket message and the event answering it). Response times go into 1 ms buckets
(exact up to 10 s, then 100 ms buckets), so percentiles are computed from the whole distribution,
not from Locust's rounded per-endpoint figures. Standard library only: the load-test image, the
rollout and the tests all import it.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

CATEGORIES = ("http", "ws_connect", "ws_event")
WS_CONNECT = "WSCONNECT"  # Locust request_type of a WebSocket handshake
WS_EVENT = "WSEVENT"  # Locust request_type of a message -> event round trip


def category(request_type: str) -> str:
    if request_type == WS_CONNECT:
        return "ws_connect"
    if request_type == WS_EVENT:
        return "ws_event"
    return "http"


def _bucket(ms: float) -> int:
    ms = max(0.0, float(ms))
    return int(ms) if ms < 10_000 else 10_000 + int((ms - 10_000) // 100) * 100


@dataclass
class Tally:
    """Counts and a response-time histogram (bucket lower bound in ms -> count) of one category."""

    requests: int = 0
    failures: int = 0
    histogram: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # first line of each failure -> count (top few kept)

    def add(self, response_time_ms: float, exception: BaseException | str | None) -> None:
        self.requests += 1
        if exception is not None:
            self.failures += 1
            self.errors[str(exception).splitlines()[0][:120] if str(exception) else type(exception).__name__] += 1
        else:  # latency percentiles describe delivered responses; failures are counted, not timed
            self.histogram[_bucket(response_time_ms)] += 1

    def percentile(self, q: float) -> float | None:
        """Upper edge of the bucket holding the q-th percentile (ms) of successful responses, or None."""
        total = sum(self.histogram.values())
        if not total:
            return None
        rank = max(1, math.ceil(q / 100.0 * total))
        seen = 0
        for lower in sorted(self.histogram):
            seen += self.histogram[lower]
            if seen >= rank:
                return float(lower + (1 if lower < 10_000 else 100))
        return None  # unreachable

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "errorRatePercent": round(100.0 * self.failures / self.requests, 4) if self.requests else None,
            "p50Ms": self.percentile(50),
            "p95Ms": self.percentile(95),
            "p99Ms": self.percentile(99),
            "maxMs": self.percentile(100),
            "histogram": {str(k): v for k, v in sorted(self.histogram.items())},
            "topErrors": dict(self.errors.most_common(5)),
        }


def tally_from_dict(d: dict) -> Tally:
    return Tally(int(d["requests"]), int(d["failures"]),
                 Counter({int(k): int(v) for k, v in d.get("histogram", {}).items()}),
                 Counter(d.get("topErrors", {})))


@dataclass
class Summary:
    tallies: dict[str, Tally] = field(default_factory=lambda: {c: Tally() for c in CATEGORIES})
    started_at: float | None = None
    ended_at: float | None = None
    stopped_by: str = "duration"  # duration | max-requests

    def record(self, request_type: str, response_time_ms: float, exception) -> None:
        self.tallies[category(request_type)].add(response_time_ms, exception)

    @property
    def total_requests(self) -> int:
        return sum(t.requests for t in self.tallies.values())

    def as_dict(self) -> dict:
        return {"startedAt": self.started_at, "endedAt": self.ended_at, "stoppedBy": self.stopped_by,
                **{c: self.tallies[c].as_dict() for c in CATEGORIES}}


def summary_from_dict(d: dict) -> Summary:
    s = Summary({c: tally_from_dict(d[c]) for c in CATEGORIES})
    s.started_at, s.ended_at, s.stopped_by = d.get("startedAt"), d.get("endedAt"), d.get("stoppedBy", "duration")
    return s
