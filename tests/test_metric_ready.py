"""MetricReady: alerts on log-based metrics wait until Cloud Monitoring knows the metrics.

The wait loop runs against a real gRPC MetricService on 127.0.0.1 that answers NOT_FOUND for a
metric's first lookups, as Cloud Monitoring does for minutes after a log-based metric is created.
"""
from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from google.cloud import monitoring_v3

from infra import signals
from infra.components.observability import metric_ready

SERVICE = "google.monitoring.v3.MetricService"
LOG_METRIC = "gcp:logging/metric:Metric"


class Descriptors:
    """GetMetricDescriptor: NOT_FOUND for the first `unknown_for` lookups of each metric."""

    def __init__(self, unknown_for: dict[str, int]):
        self.unknown_for, self.calls = dict(unknown_for), []

    def get(self, request: monitoring_v3.GetMetricDescriptorRequest, context):
        self.calls.append(request.name)
        metric = request.name.split("/metricDescriptors/", 1)[1]
        if self.calls.count(request.name) <= self.unknown_for.get(metric, 0):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Cannot find metric(s) that match type = {metric}")
        from google.api import metric_pb2

        return metric_pb2.MetricDescriptor(name=request.name, type=metric)


@pytest.fixture
def monitoring():
    servers = []

    def start(fake: Descriptors) -> str:
        from google.api import metric_pb2

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "GetMetricDescriptor": grpc.unary_unary_rpc_method_handler(
                fake.get, request_deserializer=monitoring_v3.GetMetricDescriptorRequest.deserialize,
                response_serializer=metric_pb2.MetricDescriptor.SerializeToString)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0)


class FakeClock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def sleep(self, s):
        self.slept.append(s)
        self.now += s


def test_waits_until_every_metric_is_known(monitoring):
    a, b = "logging.googleapis.com/user/netra_a", "logging.googleapis.com/user/netra_b"
    fake = Descriptors({a: 2, b: 4})
    exists = metric_ready._descriptor_lookup("netra-production", monitoring(fake))
    clock = FakeClock()
    polls = metric_ready.wait_for_metrics("netra-production", [a, b], 900, exists=exists, sleep=clock.sleep,
                                          clock=lambda: clock.now)
    assert polls == 5 and clock.slept == [15] * 4
    assert fake.calls.count(f"projects/netra-production/metricDescriptors/{b}") == 5
    assert fake.calls.count(f"projects/netra-production/metricDescriptors/{a}") == 3  # known ones are not asked again


def test_gives_up_naming_the_missing_metric(monitoring):
    a = "logging.googleapis.com/user/netra_a"
    exists = metric_ready._descriptor_lookup("p1", monitoring(Descriptors({a: 10**6})))
    clock = FakeClock()
    with pytest.raises(TimeoutError, match="netra_a in project p1; run `pulumi up` again"):
        metric_ready.wait_for_metrics("p1", [a], 60, exists=exists, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.now <= 60


def test_alerts_wait_for_every_log_metric(prod_run):
    """Every log-based metric of the stack is in MetricReady, which waits for them all, and the seed alerts
    (threshold and PromQL alike) depend on it; PromQL on log metrics skips metric validation."""
    ready = [r for r in prod_run.resources if r.type == "pulumi-python:dynamic:Resource" and r.name == "log-metrics-ready"]
    assert len(ready) == 1
    metrics = {f"logging.googleapis.com/user/{r.inputs['name']}" for r in prod_run.resources if r.type == LOG_METRIC}
    assert set(ready[0].inputs["metricTypes"]) == metrics and len(metrics) == len(signals.ALL_SIGNALS) >= 10
    assert ready[0].inputs["timeoutSeconds"] == 900
    promql = [c["conditionPrometheusQueryLanguage"] for r in prod_run.resources
              if r.type == "gcp:monitoring/alertPolicy:AlertPolicy" for c in r.inputs["conditions"]
              if "conditionPrometheusQueryLanguage" in c]
    on_log = [c for c in promql if "logging_googleapis_com:user_" in c["query"]]
    assert on_log and all(c.get("disableMetricValidation") is True for c in on_log)
    assert all("disableMetricValidation" not in c for c in promql if c not in on_log)  # built-ins stay validated


def test_alerts_component_depends_on_metric_ready():
    """The dependency itself (the mock monitor does not record depends_on): built through the real program."""
    import pulumi

    from infra.components import observability

    captured = {}
    original = observability.SeedAlerts.__init__

    def spy(self, name, *args, opts=None, **kwargs):
        captured["depends_on"] = list(opts.depends_on or [])
        original(self, name, *args, opts=opts, **kwargs)

    from infra.plan import run_stack

    observability.SeedAlerts.__init__ = spy
    try:
        run_stack("staging")
    finally:
        observability.SeedAlerts.__init__ = original
    assert any(isinstance(d, metric_ready.MetricReady) for d in captured["depends_on"])
    assert any(isinstance(d, pulumi.ComponentResource) and type(d).__name__ == "LogMetrics" for d in captured["depends_on"])
