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
STOPPED_BY = ("duration", "max-requests")
MAX_BUCKET_MS = 7 * 24 * 3600 * 1000  # a response slower than the longest run is not a measurement


class InconsistentSummary(ValueError):
    """A summary (or memory series) no real run can produce: the verdict refuses it instead of judging it."""
WS_CONNECT = "WSCONNECT"  # Locust request_type of a WebSocket handshake
WS_EVENT = "WSEVENT"  # Locust request_type of a message -> event round trip


def category(request_type: str) -> str:
    if request_type == WS_CONNECT:
        return "ws_connect"
    if request_type == WS_EVENT:
        return "ws_event"
    return "http"


def _count(where: str, value) -> list[str]:
    """Problems of a count: a non-negative integer (JSON may carry it as 3.0, never as 3.5, true or NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        return [f"{where}: must be a non-negative integer, got {value!r}"]
    return [f"{where}: must be a non-negative integer, got {value!r}"] if value < 0 else []


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

    def problems(self, cat: str) -> list[str]:
        """Why these figures cannot come from Tally.add: every success is timed, every failure counted."""
        found = _count(f"{cat}.requests", self.requests) + _count(f"{cat}.failures", self.failures)
        for lower, n in self.histogram.items():
            found += _count(f"{cat}.histogram[{lower!r}]", n)
            if isinstance(lower, bool) or not isinstance(lower, int) or not 0 <= lower <= MAX_BUCKET_MS \
                    or (lower >= 10_000 and lower % 100):
                found.append(f"{cat}.histogram: bucket {lower!r} is not a bucket lower bound (whole ms below 10 000, "
                             f"then multiples of 100, at most {MAX_BUCKET_MS})")
        for err, n in self.errors.items():
            found += _count(f"{cat}.topErrors[{err!r}]", n)
        if found:
            return found
        if self.failures > self.requests:
            found.append(f"{cat}: {self.failures} failures > {self.requests} requests")
        timed = sum(self.histogram.values())
        if timed != self.requests - self.failures:
            found.append(f"{cat}: the histogram holds {timed} responses, but {self.requests} requests - "
                         f"{self.failures} failures = {self.requests - self.failures} succeeded")
        if sum(self.errors.values()) > self.failures:
            found.append(f"{cat}: topErrors count {sum(self.errors.values())} failures > failures {self.failures}")
        return found

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


def _bucket_key(key: str):
    """A histogram key as written by as_dict ("123"); anything else is kept as it is, for problems() to name."""
    return int(key) if isinstance(key, str) and key.isdigit() else key


def tally_from_dict(d: dict) -> Tally:
    # counts stay as read (not int()-coerced: int(-3.7) or int(True) would hide what problems() must refuse)
    return Tally(d["requests"], d["failures"],
                 Counter({_bucket_key(k): v for k, v in (d.get("histogram") or {}).items()}),
                 Counter(d.get("topErrors") or {}))


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

    def problems(self) -> list[str]:
        found = [p for c in CATEGORIES for p in self.tallies[c].problems(c)]
        times = {"startedAt": self.started_at, "endedAt": self.ended_at}
        for key, t in times.items():
            if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0):
                found.append(f"{key}: must be a finite epoch time in seconds, got {t!r}")
        if not found and None not in times.values() and self.ended_at < self.started_at:
            found.append(f"endedAt {self.ended_at} is before startedAt {self.started_at}")
        if self.stopped_by not in STOPPED_BY:
            found.append(f"stoppedBy: must be one of {', '.join(STOPPED_BY)}, got {self.stopped_by!r}")
        return found

    def check(self) -> "Summary":
        """The summary itself, or InconsistentSummary naming every impossible figure."""
        found = self.problems()
        if found:
            raise InconsistentSummary("inconsistent load-test summary: " + "; ".join(found))
        return self

    def as_dict(self) -> dict:
        return {"startedAt": self.started_at, "endedAt": self.ended_at, "stoppedBy": self.stopped_by,
                **{c: self.tallies[c].as_dict() for c in CATEGORIES}}


def summary_from_dict(d: dict) -> Summary:
    """The summary a run wrote (Summary.as_dict), checked: InconsistentSummary when it is missing parts or
    holds figures no run can produce."""
    if not isinstance(d, dict):
        raise InconsistentSummary(f"inconsistent load-test summary: not a JSON object, got {type(d).__name__}")
    missing = [f"{c}.{k}" for c in CATEGORIES for k in ("requests", "failures")
               if not isinstance(d.get(c), dict) or k not in d[c]]
    if missing:
        raise InconsistentSummary(f"inconsistent load-test summary: missing {', '.join(missing)}")
    if not all(isinstance(d[c].get(k) or {}, dict) for c in CATEGORIES for k in ("histogram", "topErrors")):
        raise InconsistentSummary("inconsistent load-test summary: histogram and topErrors must be JSON objects")
    s = Summary({c: tally_from_dict(d[c]) for c in CATEGORIES})
    s.started_at, s.ended_at, s.stopped_by = d.get("startedAt"), d.get("endedAt"), d.get("stoppedBy", "duration")
    return s.check()
