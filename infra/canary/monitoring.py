"""Cloud Monitoring queries for the gate: one interval's counts per revision, server-side aggregated.

Four ListTimeSeries calls per interval, each ALIGN_DELTA over the whole window (one point per series),
REDUCE_SUM across series, grouped by `resource.label.revision_name` (plus the label that splits the
counts), restricted to the service and its two revisions:

* run.googleapis.com/request_count      by metric.label.response_code_class -> requests, 5xx
* run.googleapis.com/request_latencies  (distribution; REDUCE_SUM merges the bucket counts)
* logging.googleapis.com/user/netra_token_optimization  by metric.label.outcome
* logging.googleapis.com/user/netra_websocket_connection by metric.label.outcome

and the value signals (infra/canary/value.py), each optional ("no data" when absent): LLM cost and
tokens per request (distributions: the bucket counts), quality scores (count, mean, sum of squared
deviations), cache lookups, semantic-match and budget-tracking checks (by outcome), cache lookup
latency (distribution) and run.googleapis.com/container/memory/utilizations (the merged distribution's
mean per revision). A value metric whose bucket layout is not the one the judge shifts by is no data.

Transient errors are retried with google-api-core's Retry; what still fails, an empty answer, a
series without a revision label, a duplicated series, or a revision missing from the request or
latency series turns the interval into a fault (no evidence). Values are passed on as read (also
NaN, infinite or negative ones): the judge's data checks (`infra.canary.sanity`) name those.

Before the first interval, `history` reads the stable revision's request_count over the
calibration window, one point per interval (one more ListTimeSeries).
A log-based metric that does not exist (NOT_FOUND) or has no series is "no data", not a fault: not
every service logs token optimizations.
"""
from __future__ import annotations

from dataclasses import dataclass

from infra.canary.buckets import layout_from_proto
from infra.canary.judge import Interval
from infra.signals import (BUDGET_TRACKING, CACHE_LOOKUP, CACHE_LOOKUP_LATENCY, LLM_REQUEST_COST, LLM_REQUEST_TOKENS,
                           QUALITY_SCORE, RUN_MEMORY_UTILIZATIONS, SEMANTIC_MATCH, TOKEN_OPTIMIZATION,
                           WEBSOCKET_CONNECTION)

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MEMORY_UTILIZATIONS = RUN_MEMORY_UTILIZATIONS
RESOURCE_TYPE = "cloud_run_revision"
REVISION_LABEL = "resource.label.revision_name"


@dataclass(frozen=True)
class Target:
    """What the gate compares: two revisions of one Cloud Run service in one project."""

    project: str
    service_name: str
    stable: str
    candidate: str


def make_client(endpoint: str | None = None):
    """A MetricServiceClient; with `endpoint` (HOST:PORT) over an insecure channel with anonymous
    credentials (tests, emulators), otherwise with Application Default Credentials."""
    from google.cloud import monitoring_v3

    if endpoint:
        import grpc
        from google.cloud.monitoring_v3.services.metric_service.transports import (
            MetricServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(endpoint)
        return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
    return monitoring_v3.MetricServiceClient()


def default_retry(timeout_s: float = 30.0, initial_s: float = 0.5):
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type

    return Retry(
        predicate=if_exception_type(
            gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.TooManyRequests
        ),
        initial=initial_s,
        maximum=max(initial_s, 5.0),
        multiplier=2.0,
        timeout=timeout_s,
    )


def _ts(seconds: float):
    from google.protobuf import timestamp_pb2

    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(round(seconds * 1e9)))
    return t


class QueryError(Exception):
    pass


class DataFault(QueryError):
    """The answer is malformed (unlabelled or duplicated series): the interval is a fault."""


def _value(point) -> float:
    v = point.value
    pb = getattr(v, "_pb", v)
    which = pb.WhichOneof("value")
    if which == "int64_value":
        return float(pb.int64_value)
    if which == "double_value":
        return float(pb.double_value)
    return 0.0


class MonitoringSource:
    """Fetches one interval of per-revision counts for a Target."""

    def __init__(self, client, target: Target, retry=None, rpc_timeout_s: float = 20.0):
        self.client = client
        self.target = target
        self.retry = retry if retry is not None else default_retry()
        self.rpc_timeout_s = rpc_timeout_s

    # ---- requests ------------------------------------------------------------------------------
    def filter_for(self, metric_type: str) -> str:
        t = self.target
        revisions = ", ".join(f'"{r}"' for r in dict.fromkeys((t.stable, t.candidate)))  # one revision when watching
        return (
            f'metric.type = "{metric_type}" AND resource.type = "{RESOURCE_TYPE}" '
            f'AND resource.labels.service_name = "{t.service_name}" '
            f'AND resource.labels.revision_name = one_of({revisions})'
        )

    def request_for(self, metric_type: str, start: float, end: float, split_label: str | None,
                    step: float | None = None):
        from google.cloud import monitoring_v3
        from google.protobuf import duration_pb2

        group_by = [REVISION_LABEL] + ([f"metric.label.{split_label}"] if split_label else [])
        period = duration_pb2.Duration()
        span = max(step or (end - start), 1.0)
        period.seconds = int(span)
        period.nanos = int(round((span - int(span)) * 1e9))
        return monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.target.project}",
            filter=self.filter_for(metric_type),
            interval=monitoring_v3.TimeInterval(start_time=_ts(start), end_time=_ts(end)),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=period,
                per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
                cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
                group_by_fields=group_by,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )

    def _list(self, metric_type, start, end, split_label, step=None):
        from google.api_core import exceptions as gexc

        req = self.request_for(metric_type, start, end, split_label, step)
        try:
            return list(self.client.list_time_series(request=req, retry=self.retry, timeout=self.rpc_timeout_s))
        except gexc.RetryError as exc:
            cause = exc.cause if exc.cause is not None else exc
            raise QueryError(f"{_short(metric_type)}: retries exhausted ({_describe(cause)})") from None
        except gexc.GoogleAPICallError as exc:
            raise QueryError(f"{_short(metric_type)}: {_describe(exc)}") from exc

    # ---- one interval --------------------------------------------------------------------------
    def fetch(self, start: float, end: float) -> Interval:
        iv = Interval(duration_s=end - start)
        t = self.target
        try:
            counts = self._counts(REQUEST_COUNT, start, end, "response_code_class")
            hists, layout = self._latencies(start, end)
        except QueryError as exc:
            iv.fault = str(exc)
            return iv
        missing = []
        for role, rev in (("stable", t.stable), ("canary", t.candidate)):
            if rev not in counts:
                missing.append(f"request_count has no series for the {role} revision {rev}")
            elif rev not in hists:
                missing.append(f"request_latencies has no series for the {role} revision {rev}")
        if not counts:
            iv.fault = "request_count: empty series"
            return iv
        if missing:
            iv.fault = "; ".join(missing)
            return iv
        if layout is None:
            iv.fault = "request_latencies: revisions report different or no bucket layouts"
            return iv
        iv.layout = layout
        iv.unlabelled_requests = 0
        iv.stable_requests = sum(counts[t.stable].values())
        iv.canary_requests = sum(counts[t.candidate].values())
        iv.stable_errors = counts[t.stable].get("5xx", 0)
        iv.canary_errors = counts[t.candidate].get("5xx", 0)
        iv.stable_latency = hists[t.stable]
        iv.canary_latency = hists[t.candidate]

        for signal, field in ((TOKEN_OPTIMIZATION, "token"), (WEBSOCKET_CONNECTION, "websocket")):
            try:
                outcome = self._counts(signal.metric_type, start, end, signal.outcome_label, optional=True)
            except QueryError as exc:
                iv.fault = str(exc)
                return iv
            if outcome is None:
                iv.notes.append(f"{signal.metric}: metric not found (no data)")
                continue
            for role, rev in (("stable", t.stable), ("canary", t.candidate)):
                if rev in outcome:
                    c = outcome[rev]
                    setattr(iv, f"{role}_{field}", (c.get(signal.success, 0), c.get(signal.failure, 0)))
        try:
            iv.value = self.value(start, end, iv.notes)
        except QueryError as exc:
            iv.fault = str(exc)
        return iv

    # ---- value signals ---------------------------------------------------------------------------
    def value(self, start: float, end: float, notes: list[str]):
        """The interval's ValueData (arrays of one run), or None when no value signal has data."""
        import numpy as np

        from infra.canary.value import CACHE_LAYOUT, COST_LAYOUT, TOKENS_LAYOUT, ValueData

        t = self.target
        v = ValueData()
        found = False
        for signal, key, layout in ((LLM_REQUEST_COST, "cost", COST_LAYOUT), (LLM_REQUEST_TOKENS, "tokens", TOKENS_LAYOUT)):
            d = self._distributions(signal.metric_type, start, end, notes)
            if d and t.stable in d and t.candidate in d:
                if any(d[r]["layout"] != layout for r in (t.stable, t.candidate)):
                    notes.append(f"{signal.metric}: bucket layout is not the exponential one the gate shifts by (no data)")
                    continue
                setattr(v, f"{key}_s", _hist(d[t.stable], layout))
                setattr(v, f"{key}_c", _hist(d[t.candidate], layout))
                found = True
        d = self._distributions(QUALITY_SCORE.metric_type, start, end, notes)
        if d and t.stable in d and t.candidate in d:
            v.quality_s, v.quality_c = (tuple(np.array([d[r][k]]) for k in ("sum", "count", "ssd"))
                                        for r in (t.stable, t.candidate))
            found = True
        for signal, key in ((CACHE_LOOKUP, "cache"), (SEMANTIC_MATCH, "match"), (BUDGET_TRACKING, "tracking")):
            counts = self._counts(signal.metric_type, start, end, signal.outcome_label, optional=True)
            if counts and t.candidate in counts:
                c = counts[t.candidate]
                ok, bad = c.get(signal.success, 0.0), c.get(signal.failure, 0.0)
                setattr(v, f"{key}_c", (np.array([ok + bad]), np.array([ok])))
                found = True
        d = self._distributions(CACHE_LOOKUP_LATENCY.metric_type, start, end, notes)
        if d and t.candidate in d and d[t.candidate]["layout"] == CACHE_LAYOUT:
            v.cache_latency_c = _hist(d[t.candidate], CACHE_LAYOUT)
            found = True
        d = self._distributions(MEMORY_UTILIZATIONS, start, end, notes)
        if d and t.stable in d and t.candidate in d and d[t.stable]["count"] and d[t.candidate]["count"]:
            v.memory_s, v.memory_c = (np.array([100.0 * d[r]["mean"]]) for r in (t.stable, t.candidate))
            found = True
        return v if found else None

    def _distributions(self, metric_type, start, end, notes, step=None):
        """{revision: {count, mean, sum, ssd, buckets, layout}} merged over the window's points (None:
        the metric does not exist)."""
        from google.api_core import exceptions as gexc

        try:
            series = self._list(metric_type, start, end, None, step)
        except QueryError as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                notes.append(f"{_short(metric_type)}: metric not found (no data)")
                return None
            raise
        out: dict[str, dict] = {}
        for s in series:
            rev = _revision_of(s, metric_type, out)
            acc = out[rev] = {"count": 0.0, "sum": 0.0, "ssd": 0.0, "buckets": [], "layout": None, "points": []}
            for p in s.points:
                dist = p.value.distribution_value
                n, mean = float(dist.count), float(dist.mean)
                if n <= 0:
                    continue
                total = acc["count"] + n
                old_mean = acc["sum"] / acc["count"] if acc["count"] else 0.0
                acc["ssd"] += float(dist.sum_of_squared_deviation) + (acc["count"] * n / total) * (mean - old_mean) ** 2
                acc["count"], acc["sum"] = total, acc["sum"] + n * mean
                acc["layout"] = layout_from_proto(dist.bucket_options) or acc["layout"]
                b = acc["buckets"]
                for i, c in enumerate(dist.bucket_counts):
                    if i >= len(b):
                        b.append(0.0)
                    b[i] += float(c)
                acc["points"].append((p.interval.end_time.timestamp(), mean))
            acc["mean"] = acc["sum"] / acc["count"] if acc["count"] else float("nan")
        return out

    def memory_history(self, start: float, end: float, step: float):
        """Stable's mean memory utilization (percent) per `step` over [start, end), in time order."""
        d = self._distributions(MEMORY_UTILIZATIONS, start, end, [], step)
        points = sorted((d or {}).get(self.target.stable, {}).get("points", []))
        return [100.0 * m for _, m in points]

    def _counts(self, metric_type, start, end, label, optional=False):
        """{revision: {label value: count}} (None when an optional metric does not exist)."""
        from google.api_core import exceptions as gexc

        try:
            series = self._list(metric_type, start, end, label)
        except QueryError as exc:
            if optional and isinstance(exc.__cause__, gexc.NotFound):
                return None
            raise
        out: dict[str, dict[str, float]] = {}
        for s in series:
            rev = s.resource.labels.get("revision_name") or s.metric.labels.get("revision_name")
            if not rev:
                raise DataFault(f"{_short(metric_type)}: a series without a revision label")
            key = s.metric.labels.get(label, "")
            bucket = out.setdefault(rev, {})
            if key in bucket:
                raise DataFault(f"{_short(metric_type)}: duplicated series for {rev} ({label}={key or '-'})")
            bucket[key] = sum(_value(p) for p in s.points)
        return out

    def history(self, start: float, end: float, step: float):
        """Stable's (requests, 5xx) per `step` over [start, end): arrays in time order."""
        import numpy as np

        series = self._list(REQUEST_COUNT, start, end, "response_code_class", step)
        by_time: dict[float, list[float]] = {}
        for s in series:
            if s.resource.labels.get("revision_name") != self.target.stable:
                continue
            is_5xx = s.metric.labels.get("response_code_class") == "5xx"
            for p in s.points:
                row = by_time.setdefault(p.interval.end_time.timestamp(), [0.0, 0.0])
                v = _value(p)
                row[0] += v
                row[1] += v if is_5xx else 0.0
        times = sorted(by_time)
        return np.array([by_time[t][0] for t in times]), np.array([by_time[t][1] for t in times])

    def _latencies(self, start, end):
        series = self._list(REQUEST_LATENCIES, start, end, None)
        hists: dict[str, list[float]] = {}
        layouts = set()
        for s in series:
            rev = _revision_of(s, REQUEST_LATENCIES, hists)
            for p in s.points:
                d = p.value.distribution_value
                layout = layout_from_proto(d.bucket_options)
                if layout is None:
                    continue
                layouts.add(layout)
                h = hists.setdefault(rev, [0] * layout.num_buckets)
                if len(h) < layout.num_buckets:
                    h.extend([0] * (layout.num_buckets - len(h)))
                for i, c in enumerate(d.bucket_counts):  # trailing zero buckets may be omitted
                    if i < len(h):
                        h[i] += float(c)
        layout = layouts.pop() if len(layouts) == 1 else None
        return hists, layout


def _revision_of(series, metric_type: str, seen) -> str:
    """The revision of a distribution series; an unlabelled or repeated one makes the interval a fault."""
    rev = series.resource.labels.get("revision_name")
    if not rev:
        raise DataFault(f"{_short(metric_type)}: a series without a revision label")
    if rev in seen:
        raise DataFault(f"{_short(metric_type)}: duplicated series for {rev}")
    return rev


def _hist(d: dict, layout):
    """(1, B) bucket counts of a merged distribution (missing trailing buckets are zero)."""
    import numpy as np

    h = np.zeros((1, layout.num_buckets))
    b = d["buckets"][: layout.num_buckets]
    h[0, : len(b)] = b
    return h


def _short(metric_type: str) -> str:
    return metric_type.rsplit("/", 1)[-1]


def _describe(exc) -> str:
    code = getattr(exc, "grpc_status_code", None)
    name = code.name if code is not None else type(exc).__name__
    msg = getattr(exc, "message", None) or str(exc)
    return f"{name}: {msg}"[:300]
