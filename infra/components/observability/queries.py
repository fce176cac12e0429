"""Metric filters and PromQL, built from metric types so every query names a metric this stack knows.

Cloud Monitoring filters (`metric.type="..." AND resource.type="..."`) feed threshold conditions, SLOs
and dashboard widgets. Ratios and comparisons with a week-earlier baseline are PromQL: one query
expresses numerator / denominator or `x > 1.5 * x offset 1w`, and PromQL is what Google recommends for
new alerting queries (MQL is deprecated).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from infra import signals

# Built-in metrics this stack reads (exact names).
RUN_REQUEST_COUNT = "run.googleapis.com/request_count"
RUN_REQUEST_LATENCIES = "run.googleapis.com/request_latencies"  # ms
RUN_MEMORY = signals.RUN_MEMORY_UTILIZATIONS  # fraction
RUN_CPU = "run.googleapis.com/container/cpu/utilizations"  # fraction
RUN_INSTANCES = "run.googleapis.com/container/instance_count"
UPTIME_PASSED = "monitoring.googleapis.com/uptime_check/check_passed"
UPTIME_LATENCY = "monitoring.googleapis.com/uptime_check/request_latency"
SQL_CPU = "cloudsql.googleapis.com/database/cpu/utilization"
SQL_BACKENDS = "cloudsql.googleapis.com/database/postgresql/num_backends"
SQL_UP = "cloudsql.googleapis.com/database/up"
REDIS_MEMORY = "redis.googleapis.com/stats/memory/usage_ratio"
REDIS_CLIENTS = "redis.googleapis.com/clients/connected"
LB_REQUESTS = "loadbalancing.googleapis.com/https/request_count"
LB_LATENCIES = "loadbalancing.googleapis.com/https/total_latencies"

# Ops Agent on the ClickHouse and Keeper VMs (infra/components/clickhouse/render.py installs it)
AGENT_DISK_USED = "agent.googleapis.com/disk/percent_used"
AGENT_UPTIME = "agent.googleapis.com/agent/uptime"
GCE_INSTANCE = "gce_instance"

RUN_REVISION = "cloud_run_revision"
UPTIME_URL = "uptime_url"
SQL_DATABASE = "cloudsql_database"
REDIS_INSTANCE = "redis_instance"
LB_RULE = "https_lb_rule"


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class MetricFilter:
    """A Cloud Monitoring filter as clauses, so each renderer writes it in its own syntax: the
    Monitoring API's filter string (`str()`), or Grafana's Cloud Monitoring data source tokens."""

    metric_type: str
    resource_type: str
    services: tuple[str, ...] = ()
    metric_labels: tuple[tuple[str, str], ...] = ()
    resource_labels: tuple[tuple[str, str], ...] = ()
    exclude_resource_labels: tuple[tuple[str, str], ...] = ()
    metadata_labels: tuple[tuple[str, str], ...] = ()  # the VM's own labels (metadata.user_labels.<k>)

    def clauses(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(key, "=" or "!=", values): one value is equality, several are one_of."""
        out = [("metric.type", "=", (self.metric_type,)), ("resource.type", "=", (self.resource_type,))]
        if self.services:
            out.append(("resource.label.service_name", "=", tuple(self.services)))
        out += [(f"resource.label.{k}", "=", (v,)) for k, v in self.resource_labels]
        out += [(f"resource.label.{k}", "!=", (v,)) for k, v in self.exclude_resource_labels]
        out += [(f"metric.label.{k}", "=", (v,)) for k, v in self.metric_labels]
        out += [(f"metadata.user_labels.{k}", "=", (v,)) for k, v in self.metadata_labels]
        return out

    def __str__(self) -> str:
        return " AND ".join(
            f"{key}{op}{quote(values[0])}" if len(values) == 1 else f"{key}{op}one_of({','.join(quote(v) for v in values)})"
            for key, op, values in self.clauses())


def metric_filter_of(metric_type: str, resource_type: str, services: Iterable[str] = (),
                     metric_labels: dict[str, str] | None = None, resource_labels: dict[str, str] | None = None,
                     exclude_resource_labels: dict[str, str] | None = None) -> MetricFilter:
    return MetricFilter(metric_type, resource_type, tuple(services), tuple((metric_labels or {}).items()),
                        tuple((resource_labels or {}).items()), tuple((exclude_resource_labels or {}).items()))


def metric_filter(metric_type: str, resource_type: str, services: Iterable[str] = (),
                  metric_labels: dict[str, str] | None = None, resource_labels: dict[str, str] | None = None,
                  exclude_resource_labels: dict[str, str] | None = None) -> str:
    """`metric.type="m" AND resource.type="r" [AND resource.label.service_name=one_of(...)] [AND ...label.k="v"]`."""
    return str(metric_filter_of(metric_type, resource_type, services, metric_labels, resource_labels,
                                exclude_resource_labels))


def promql_name(metric_type: str) -> str:
    """Cloud Monitoring's PromQL name of a metric type: run.googleapis.com/request_count ->
    run_googleapis_com:request_count (first `/` becomes `:`, other `.` and `/` become `_`)."""
    domain, _, path = metric_type.partition("/")
    return domain.replace(".", "_") + ":" + path.replace(".", "_").replace("/", "_")


@dataclass(frozen=True)
class Selector:
    """PromQL series selector of one metric on one monitored-resource type."""

    metric_type: str
    resource_type: str = RUN_REVISION
    services: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    suffix: str = ""  # "_sum", "_count", "_bucket" for distributions

    def where(self, **labels: str) -> "Selector":
        return Selector(self.metric_type, self.resource_type, self.services, self.labels + tuple(labels.items()), self.suffix)

    def part(self, suffix: str) -> "Selector":
        return Selector(self.metric_type, self.resource_type, self.services, self.labels, suffix)

    def __str__(self) -> str:
        matchers = [f"monitored_resource={quote(self.resource_type)}"]
        if self.services:
            matchers.append("service_name=~" + quote("|".join(self.services)))
        matchers += [f"{k}={quote(v)}" for k, v in self.labels]
        return promql_name(self.metric_type) + self.suffix + "{" + ",".join(matchers) + "}"


def by(group: Iterable[str]) -> str:
    group = list(group)
    return f" by ({', '.join(group)})" if group else ""


def rate_sum(sel: Selector, window: str, group: Iterable[str] = (), offset: str = "") -> str:
    off = f" offset {offset}" if offset else ""
    return f"sum{by(group)} (rate({sel}[{window}]{off}))"


def increase_sum(sel: Selector, window: str, group: Iterable[str] = (), offset: str = "") -> str:
    off = f" offset {offset}" if offset else ""
    return f"sum{by(group)} (increase({sel}[{window}]{off}))"


def ratio(numerator: Selector, denominator: Selector, window: str, group: Iterable[str]) -> str:
    group = list(group)
    return f"{rate_sum(numerator, window, group)}\n  /\n{rate_sum(denominator, window, group)}"


def quantile(q: float, sel: Selector, window: str, group: Iterable[str], offset: str = "") -> str:
    """The q-quantile of a distribution metric from its buckets."""
    off = f" offset {offset}" if offset else ""
    return f"histogram_quantile({q}, sum{by([*group, 'le'])} (rate({sel.part('_bucket')}[{window}]{off})))"
