"""A local Cloud Monitoring MetricService (ListTimeSeries only) serving synthetic Cloud Run series.

For tests and demos of the gate over the real client and the real gRPC wire protocol:

    python -m infra.canary.emulator --service netra-backend-prod \\
        --stable netra-backend-prod-00007-xyz --candidate netra-backend-prod-1a2b3c4d \\
        --canary-error-rate 0.01
    python -m infra gate --stack prod --service backend --monitoring-endpoint 127.0.0.1:PORT ...

google-cloud-monitoring ships proto-plus types but no servicer, so this registers a generic handler
for google.monitoring.v3.MetricService/ListTimeSeries. It interprets what the gate sends: the filter
(metric.type, resource.type, service_name, revision_name one_of(...)), the aggregation (ALIGN_DELTA +
REDUCE_SUM required; group-by revision and optionally response_code_class / outcome), the interval
(counts are drawn for exactly that window, reproducibly from a seed), and paging. Faults are injected
per test through `fault`, a callable (metric_type, call_number) -> Fault | None.

Flag arms: when the filter selects `metric.labels.flag_arm = one_of(...)` (the gate's queries as
infra/flag_gate.ArmClient rewrites them), the keys of `revisions` are arms ("<flag>=on" / "<flag>=off")
and the series are the application's log-based metrics (`netra_request` by outcome,
`netra_request_latency` with its explicit buckets, token/WebSocket outcomes), labelled `flag_arm`.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.cloud import monitoring_v3
from scipy import stats

from infra.canary.buckets import CLOUD_RUN_LATENCY, BucketLayout
from infra.canary.monitoring import REQUEST_COUNT, REQUEST_LATENCIES, RESOURCE_TYPE
from infra.signals import (BUDGET_TRACKING, CACHE_LOOKUP, CACHE_LOOKUP_LATENCY, FLAG_ARM, LLM_REQUEST_COST,
                           LLM_REQUEST_TOKENS, QUALITY_SCORE, REQUEST, REQUEST_LATENCY, RUN_MEMORY_UTILIZATIONS,
                           SEMANTIC_MATCH,
                           TOKEN_OPTIMIZATION, WEBSOCKET_CONNECTION)

MEMORY = RUN_MEMORY_UTILIZATIONS
OUTCOMES = ((TOKEN_OPTIMIZATION, "token"), (WEBSOCKET_CONNECTION, "websocket"), (REQUEST, "request"),
            (CACHE_LOOKUP, "cache"), (SEMANTIC_MATCH, "semantic"), (BUDGET_TRACKING, "tracking"))
DISTRIBUTIONS = {LLM_REQUEST_COST.metric_type: "cost", LLM_REQUEST_TOKENS.metric_type: "tokens",
                 QUALITY_SCORE.metric_type: "quality", CACHE_LOOKUP_LATENCY.metric_type: "cache_latency",
                 MEMORY: "memory"}

SERVICE = "google.monitoring.v3.MetricService"
QUALITY_LAYOUT = BucketLayout.explicit(QUALITY_SCORE.bounds)
MEMORY_LAYOUT = BucketLayout.explicit([0.5, 0.85])


@dataclass
class Profile:
    """Synthetic traffic of one revision."""

    rps: float = 50.0
    error_rate: float = 0.002
    latency_median_ms: float = 120.0
    latency_p95_ms: float = 450.0
    token_rps: float | None = None  # token optimizations per second (None: metric absent)
    token_failure: float = 0.02
    websocket_rps: float | None = None
    websocket_failure: float = 0.01
    # value signals (infra/canary/value.py); None: the metric has no series for this revision
    cost_usd: float | None = None  # mean LLM cost per request (one LLM request per request), gamma
    cost_cv: float = 2.0
    tokens: float | None = None  # mean tokens per request, gamma
    tokens_cv: float = 0.5
    quality: float | None = None  # mean quality score of the scored responses (normal, clipped to [0, 1])
    quality_sd: float = 0.1
    quality_per_request: float = 0.2
    cache_hit_rate: float | None = None  # one cache lookup per request
    cache_median_ms: float = 4.0
    cache_p95_ms: float = 20.0
    semantic_accuracy: float | None = None  # semantic-match checks: 0.1 per request
    tracking_accuracy: float | None = None  # budget-tracking checks: 0.1 per request
    memory_percent: float | None = None  # container memory utilization, mean over the window
    memory_growth_per_hour: float = 0.0  # since `memory_t0`
    memory_sd: float = 1.0
    memory_t0: float = 0.0


@dataclass
class Fault:
    """What to do to one call: fail with a status, answer late, answer empty, drop a revision, or
    corrupt the answer (duplicate every series, strip a revision's label, overwrite its values)."""

    code: grpc.StatusCode | None = None
    delay_s: float = 0.0
    empty: bool = False
    drop_revision: str | None = None
    duplicate: bool = False
    unlabel_revision: str | None = None
    value_revision: str | None = None  # with `value`: every int series of this revision reads `value`
    value: float | None = None


@dataclass
class FakeMetricService:
    service_name: str
    revisions: dict[str, Profile]
    seed: int = 0
    page_size: int = 2  # small, so the client's pager follows next_page_token
    fault: object = None  # callable(metric_type, call_number) -> Fault | None
    calls: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _drawn: dict = field(default_factory=dict)

    # ---- gRPC method -----------------------------------------------------------------------------
    def list_time_series(self, request: monitoring_v3.ListTimeSeriesRequest, context):
        metric_type = _match(r'metric\.type\s*=\s*"([^"]+)"', request.filter)
        with self._lock:
            self.calls.append(request)
            n = sum(1 for r in self.calls if _match(r'metric\.type\s*=\s*"([^"]+)"', r.filter) == metric_type)
        f = self.fault(metric_type, n) if callable(self.fault) else None
        if f is not None and f.delay_s:
            time.sleep(f.delay_s)
        if f is not None and f.code is not None:
            context.abort(f.code, f"injected fault on {metric_type}")
        problem = self._check(request)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        series = [] if (f is not None and f.empty) else self._series(request, metric_type)
        if f is not None and f.drop_revision:
            series = [s for s in series if s.resource.labels["revision_name"] != f.drop_revision]
        if f is not None:
            series = _corrupt(series, f)
        start = int(request.page_token or 0)
        size = request.page_size or self.page_size
        page = series[start : start + size]
        token = str(start + size) if start + size < len(series) else ""
        return monitoring_v3.ListTimeSeriesResponse(time_series=page, next_page_token=token)

    def _check(self, request) -> str | None:
        agg = request.aggregation
        A = monitoring_v3.Aggregation
        if not request.name.startswith("projects/"):
            return "name must be projects/PROJECT"
        if _match(r'resource\.type\s*=\s*"([^"]+)"', request.filter) != RESOURCE_TYPE:
            return f"filter must select resource.type = {RESOURCE_TYPE}"
        if agg.per_series_aligner != A.Aligner.ALIGN_DELTA or agg.cross_series_reducer != A.Reducer.REDUCE_SUM:
            return "expected ALIGN_DELTA and REDUCE_SUM"
        split = f"metric.label.{FLAG_ARM}" if _arms(request) else "resource.label.revision_name"
        if not any(g.replace("labels", "label") == split for g in agg.group_by_fields):
            return f"expected group_by {split}"
        if agg.alignment_period.seconds <= 0 and agg.alignment_period.nanos <= 0:
            return "alignment_period must be positive"
        return None

    # ---- synthetic data --------------------------------------------------------------------------
    def _series(self, request, metric_type):
        """One series per (revision, split label) with one point per alignment period of the interval."""
        if _match(r'resource\.labels?\.service_name\s*=\s*"([^"]+)"', request.filter) != self.service_name:
            return []
        arms = _arms(request)
        one_of = arms or _match(r"revision_name\s*=\s*one_of\(([^)]*)\)", request.filter)
        wanted = list(dict.fromkeys(re.findall(r'"([^"]+)"', one_of))) if one_of else list(self.revisions)
        start = request.interval.start_time.timestamp()
        end = request.interval.end_time.timestamp()
        period = request.aggregation.alignment_period.total_seconds()
        steps = max(1, int(round((end - start) / period))) if period > 0 else 1
        groups = [g.replace("labels", "label") for g in request.aggregation.group_by_fields]
        points: dict[tuple, list] = {}  # (rev, labels) -> [(window start, window end, value)]
        for k in range(steps):
            w0 = start + k * (end - start) / steps
            w1 = start + (k + 1) * (end - start) / steps
            for rev in wanted:
                prof = self.revisions.get(rev)
                if prof is None:
                    continue
                for labels, value in self._values(metric_type, self._draw(rev, prof, w0, w1, bool(arms)), groups):
                    points.setdefault((rev, labels), []).append((w0, w1, value))
        out = []
        for (rev, labels), pts in points.items():
            if isinstance(pts[0][2], Dist):
                out.append(_value_series(metric_type, rev, dict(labels), pts, bool(arms)))
            elif arms:
                out.append(_arm_series(metric_type, rev, dict(labels), pts))
            elif metric_type == REQUEST_LATENCIES:
                out.append(_dist_series(rev, pts))
            else:
                out.append(_int_series(metric_type, rev, dict(labels), pts))
        return out

    @staticmethod
    def _values(metric_type, data, groups):
        """[(labels tuple, value)] of one revision in one window (zero values omitted, as the API does)."""
        if metric_type == REQUEST_COUNT:
            if data["requests"] == 0:
                return []
            if "metric.label.response_code_class" in groups:
                by_class = {"2xx": data["requests"] - data["errors"], "5xx": data["errors"]}
                return [((("response_code_class", c),), v) for c, v in by_class.items() if v]
            return [((), data["requests"])]
        if metric_type == REQUEST_LATENCIES:
            return [((), data["hist"])] if data["requests"] else []
        if metric_type == REQUEST_LATENCY.metric_type:  # an arm's request latency, explicit buckets
            return [((), data["arm_hist"])] if data["requests"] else []
        if metric_type in DISTRIBUTIONS:
            dist = data.get(DISTRIBUTIONS[metric_type])
            return [((), dist)] if dist is not None and dist.count else []
        for sig, key in OUTCOMES:
            if metric_type == sig.metric_type and data.get(key) is not None:
                ok, fail = data[key]
                if f"metric.label.{sig.outcome_label}" in groups:
                    return [(((sig.outcome_label, o),), v) for o, v in ((sig.success, ok), (sig.failure, fail)) if v]
                return [((), ok + fail)] if ok + fail else []
        return []

    def _draw(self, rev, prof: Profile, start, end, arms: bool = False) -> dict:
        """One revision's window, drawn once per (profile, window) and reused by every metric's query."""
        memo = (rev, repr(prof), round(start, 3), round(end, 3), arms)
        with self._lock:
            if memo in self._drawn:
                return self._drawn[memo]
        d = self._draw_once(rev, prof, start, end, arms)
        with self._lock:
            self._drawn[memo] = d
        return d

    def _draw_once(self, rev, prof: Profile, start, end, arms: bool = False) -> dict:
        key = f"{self.seed}|{rev}|{start:.3f}|{end:.3f}".encode()
        rng = np.random.default_rng(zlib.crc32(key))
        span = max(end - start, 0.0)
        n = int(rng.poisson(prof.rps * span))
        e = int(rng.binomial(n, prof.error_rate))
        hist = rng.multinomial(n, _bucket_probs(prof.latency_median_ms, prof.latency_p95_ms))
        d = {"requests": n, "errors": e, "hist": hist}
        for key_, rate, fail in (("token", prof.token_rps, prof.token_failure),
                                 ("websocket", prof.websocket_rps, prof.websocket_failure)):
            if rate is not None:
                m = int(rng.poisson(rate * span))
                f = int(rng.binomial(m, fail))
                d[key_] = (m - f, f)
        if arms:  # drawn after the rest, so a revision's series stay what they always were
            d["request"] = (n - e, e)
            d["arm_hist"] = rng.multinomial(n, _bucket_probs(prof.latency_median_ms, prof.latency_p95_ms,
                                                             REQUEST_LATENCY.bounds))
        _draw_value(d, rng, n, prof, start, end)
        return d


@dataclass
class Dist:
    """One window's distribution value: bucket counts in `layout` (exponential or explicit bounds),
    the mean and the sum of squared deviations (what Cloud Monitoring returns)."""

    counts: list
    layout: object
    mean: float = 0.0
    ssd: float = 0.0

    @property
    def count(self) -> int:
        return int(sum(self.counts))


def _draw_value(d: dict, rng, n: int, prof: Profile, start: float, end: float) -> None:
    """The value signals of one revision in one window (drawn last: older series stay as they were)."""
    from infra.canary.value import CACHE_LAYOUT, COST_LAYOUT, TOKENS_LAYOUT

    for key, mean, cv, layout in (("cost", prof.cost_usd, prof.cost_cv, COST_LAYOUT),
                                  ("tokens", prof.tokens, prof.tokens_cv, TOKENS_LAYOUT)):
        if mean is not None:
            x = rng.gamma(1 / cv**2, mean * cv**2, size=n)
            d[key] = _dist_of(x, layout)
    if prof.quality is not None:
        k = int(rng.binomial(n, prof.quality_per_request))
        x = np.clip(rng.normal(prof.quality, prof.quality_sd, size=k), 0, 1)
        d["quality"] = _dist_of(x, QUALITY_LAYOUT)
    if prof.cache_hit_rate is not None:
        hits = int(rng.binomial(n, prof.cache_hit_rate))
        d["cache"] = (hits, n - hits)
        lat = np.exp(rng.normal(math.log(prof.cache_median_ms),
                                (math.log(prof.cache_p95_ms) - math.log(prof.cache_median_ms)) / stats.norm.ppf(0.95), n))
        d["cache_latency"] = _dist_of(lat, CACHE_LAYOUT)
    for key, acc in (("semantic", prof.semantic_accuracy), ("tracking", prof.tracking_accuracy)):
        if acc is not None:
            m = int(rng.poisson(0.1 * n))
            ok = int(rng.binomial(m, acc))
            d[key] = (ok, m - ok)
    if prof.memory_percent is not None and n > 0:
        hours = max(0.0, (start + end) / 2 - prof.memory_t0) / 3600
        level = (prof.memory_percent + prof.memory_growth_per_hour * hours + rng.normal(0, prof.memory_sd)) / 100
        samples = max(1, int(round((end - start) / 10)))  # one utilization sample per instance every 10 s
        d["memory"] = Dist([samples], MEMORY_LAYOUT, float(level), 0.0)


def _dist_of(x: np.ndarray, layout) -> Dist:
    bounds = np.asarray(layout.bounds)
    counts = np.bincount(np.searchsorted(bounds, x, side="right"), minlength=len(bounds) + 1)
    mean = float(x.mean()) if len(x) else 0.0
    return Dist([int(c) for c in counts], layout, mean, float(((x - mean) ** 2).sum()) if len(x) else 0.0)


def _bucket_probs(median, p95, bounds=CLOUD_RUN_LATENCY.bounds):
    mu, sigma = math.log(median), (math.log(p95) - math.log(median)) / stats.norm.ppf(0.95)
    cdf = stats.norm.cdf((np.log(np.asarray(bounds)) - mu) / sigma)
    p = np.clip(np.diff(np.concatenate([[0.0], cdf, [1.0]])), 0, None)
    return p / p.sum()


def _arms(request) -> str | None:
    """The arms a flag-arm query selects (the text inside one_of), or None for a per-revision query."""
    return _match(rf"metric\.labels?\.{FLAG_ARM}\s*=\s*one_of\(([^)]*)\)", request.filter)


def _arm_series(metric_type, arm, labels, pts):
    """One arm's series of a log-based metric: the arm in the metric labels, buckets explicit."""
    from google.api import distribution_pb2, metric_pb2

    labels = {**labels, FLAG_ARM: arm}
    if metric_type != REQUEST_LATENCY.metric_type:
        return _int_series(metric_type, "", labels, pts)
    options = distribution_pb2.Distribution.BucketOptions(
        explicit_buckets=distribution_pb2.Distribution.BucketOptions.Explicit(bounds=list(REQUEST_LATENCY.bounds)))
    points = [_point(w0, w1, monitoring_v3.TypedValue(distribution_value=distribution_pb2.Distribution(
        count=int(sum(hist)), bucket_options=options, bucket_counts=[int(c) for c in hist]))) for w0, w1, hist in pts]
    return monitoring_v3.TimeSeries(
        metric=metric_pb2.Metric(type=metric_type, labels=labels), resource=_resource(""),
        metric_kind=metric_pb2.MetricDescriptor.MetricKind.DELTA,
        value_type=metric_pb2.MetricDescriptor.ValueType.DISTRIBUTION, points=points)


def _value_series(metric_type, rev, labels, pts, arms: bool):
    """A distribution series of a value signal (per revision, or per arm with `flag_arm` in the labels)."""
    from google.api import distribution_pb2, metric_pb2

    O = distribution_pb2.Distribution.BucketOptions
    points = []
    for w0, w1, dist in pts:
        layout = dist.layout
        if layout.kind == "exponential":
            nb, g, sc = layout.params
            options = O(exponential_buckets=O.Exponential(num_finite_buckets=int(nb), growth_factor=g, scale=sc))
        else:
            options = O(explicit_buckets=O.Explicit(bounds=list(layout.bounds)))
        counts = list(dist.counts)
        while counts and counts[-1] == 0:  # the API omits trailing zero buckets
            counts.pop()
        points.append(_point(w0, w1, monitoring_v3.TypedValue(distribution_value=distribution_pb2.Distribution(
            count=dist.count, mean=dist.mean, sum_of_squared_deviation=dist.ssd, bucket_options=options,
            bucket_counts=counts))))
    return monitoring_v3.TimeSeries(
        metric=metric_pb2.Metric(type=metric_type, labels={**labels, FLAG_ARM: rev} if arms else labels),
        resource=_resource("" if arms else rev),
        metric_kind=metric_pb2.MetricDescriptor.MetricKind.DELTA,
        value_type=metric_pb2.MetricDescriptor.ValueType.DISTRIBUTION, points=points)


def _match(pattern, text):
    m = re.search(pattern, text)
    return m.group(1) if m else None


def _point(w0: float, w1: float, value):
    from google.protobuf import timestamp_pb2

    def ts(t):
        x = timestamp_pb2.Timestamp()
        x.FromNanoseconds(int(round(t * 1e9)))
        return x

    return monitoring_v3.Point(interval=monitoring_v3.TimeInterval(start_time=ts(w0), end_time=ts(w1)), value=value)


def _corrupt(series, f: Fault):
    out = []
    for s in series:
        rev = s.resource.labels["revision_name"]
        if f.unlabel_revision == rev:
            s = monitoring_v3.TimeSeries(metric=s.metric, resource=_resource(""), metric_kind=s.metric_kind,
                                         value_type=s.value_type, points=s.points)
        if f.value_revision == rev and f.value is not None and s.value_type == 2:  # INT64 -> DOUBLE with the value
            pts = [monitoring_v3.Point(interval=p.interval, value=monitoring_v3.TypedValue(double_value=f.value))
                   for p in s.points]
            s = monitoring_v3.TimeSeries(metric=s.metric, resource=s.resource, metric_kind=s.metric_kind,
                                         value_type=3, points=pts)
        out.append(s)
        if f.duplicate:
            out.append(s)
    return out


def _resource(rev):
    from google.api import monitored_resource_pb2

    labels = {"revision_name": rev} if rev else {}
    return monitored_resource_pb2.MonitoredResource(type=RESOURCE_TYPE, labels=labels)


def _int_series(metric_type, rev, labels, pts):
    from google.api import metric_pb2

    return monitoring_v3.TimeSeries(
        metric=metric_pb2.Metric(type=metric_type, labels=labels),
        resource=_resource(rev),
        metric_kind=metric_pb2.MetricDescriptor.MetricKind.DELTA,
        value_type=metric_pb2.MetricDescriptor.ValueType.INT64,
        points=[_point(w0, w1, monitoring_v3.TypedValue(int64_value=int(v))) for w0, w1, v in pts],
    )


def _dist_series(rev, pts):
    from google.api import distribution_pb2, metric_pb2

    nb, g, s = CLOUD_RUN_LATENCY.params
    points = []
    for w0, w1, hist in pts:
        counts = [int(c) for c in hist]
        while counts and counts[-1] == 0:  # the API omits trailing zero buckets
            counts.pop()
        dist = distribution_pb2.Distribution(
            count=int(sum(counts)),
            bucket_options=distribution_pb2.Distribution.BucketOptions(
                exponential_buckets=distribution_pb2.Distribution.BucketOptions.Exponential(
                    num_finite_buckets=int(nb), growth_factor=g, scale=s
                )
            ),
            bucket_counts=counts,
        )
        points.append(_point(w0, w1, monitoring_v3.TypedValue(distribution_value=dist)))
    return monitoring_v3.TimeSeries(
        metric=metric_pb2.Metric(type=REQUEST_LATENCIES),
        resource=_resource(rev),
        metric_kind=metric_pb2.MetricDescriptor.MetricKind.DELTA,
        value_type=metric_pb2.MetricDescriptor.ValueType.DISTRIBUTION,
        points=points,
    )


def serve(fake: FakeMetricService, host: str = "127.0.0.1", port: int = 0):
    """Start a gRPC server for `fake`; returns (server, "HOST:PORT")."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                fake.list_time_series,
                request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
                response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, f"{host}:{bound}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.canary.emulator", description=__doc__.split("\n")[0])
    ap.add_argument("--service", required=True, help="Cloud Run service name")
    ap.add_argument("--stable", required=True, help="stable revision name")
    ap.add_argument("--candidate", required=True, help="candidate revision name")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rps", type=float, default=50.0, help="total requests per second")
    ap.add_argument("--canary-percent", type=float, default=10.0)
    ap.add_argument("--error-rate", type=float, default=0.002, help="stable 5xx rate")
    ap.add_argument("--canary-error-rate", type=float, help="candidate 5xx rate (default: stable's)")
    ap.add_argument("--p95-ms", type=float, default=450.0)
    ap.add_argument("--canary-p95-ms", type=float)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    share = a.canary_percent / 100.0
    fake = FakeMetricService(
        a.service,
        {
            a.stable: Profile(rps=a.rps * (1 - share), error_rate=a.error_rate, latency_p95_ms=a.p95_ms),
            a.candidate: Profile(
                rps=a.rps * share,
                error_rate=a.error_rate if a.canary_error_rate is None else a.canary_error_rate,
                latency_p95_ms=a.p95_ms if a.canary_p95_ms is None else a.canary_p95_ms,
            ),
        },
        seed=a.seed,
    )
    server, addr = serve(fake, port=a.port)
    print(f"fake Cloud Monitoring listening on {addr}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
