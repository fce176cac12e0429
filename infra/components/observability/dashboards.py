"""The six dashboards the seeds name and the Canary dashboard, built from typed widgets.

Every widget reads a built-in metric (Cloud Run, Cloud SQL, Memorystore Redis, HTTPS load balancer,
uptime checks) or a log-based metric this stack declares (infra/signals.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
from pulumi_gcp import monitoring

from infra import signals
from infra.config import service_name
from infra.config.analytics import ClickHouseConfig
from infra.config.observability import Thresholds
from infra.seed_alerts import CANARY_DASHBOARD, SEED_DASHBOARDS

from ..site import Site

from . import queries as q
from infra.components.clickhouse import schema

from . import clickhouse
from .dashboard_model import (Aggregation, Dashboard, Filter, PromQL, Ratio, Scorecard, Section, Series, SqlPanel, Text,
                              Threshold, XyChart)

COMPONENT_TYPE = "netra:observability:Dashboards"
BY_SERVICE = ("resource.label.service_name",)
BY_REVISION = ("resource.label.service_name", "resource.label.revision_name")
BY_ARM = (f"metric.label.{signals.FLAG_ARM}",)


def _f(metric: str, resource: str = q.RUN_REVISION, *, services=(), aligner="ALIGN_RATE", reducer="REDUCE_SUM",
       group=(), period="60s", metric_labels=None, resource_labels=None, exclude=None) -> Filter:
    return Filter(q.metric_filter_of(metric, resource, services, metric_labels, resource_labels, exclude),
                  Aggregation(period, aligner, reducer, tuple(group)))


def _pct_dist(metric: str, pct: int, *, services=(), group=BY_SERVICE, resource_labels=None, exclude=None,
              period="60s") -> Filter:
    return _f(metric, services=services, aligner="ALIGN_DELTA", reducer=f"REDUCE_PERCENTILE_{pct:02d}", group=group,
              resource_labels=resource_labels, exclude=exclude, period=period)


def _outcome_ratio(signal: signals.OutcomeSignal, outcome: str, *, services=(), group=BY_SERVICE,
                   resource_labels=None, exclude=None, period="300s") -> Ratio:
    agg = Aggregation(period, "ALIGN_DELTA", "REDUCE_SUM", tuple(group))
    base = dict(services=services, resource_labels=resource_labels, exclude_resource_labels=exclude)
    return Ratio(Filter(q.metric_filter_of(signal.metric_type, q.RUN_REVISION, metric_labels={signal.outcome_label: outcome}, **base), agg),
                 Filter(q.metric_filter_of(signal.metric_type, q.RUN_REVISION, **base), agg))


def _error_ratio(*, services=(), group=BY_SERVICE, resource_labels=None, exclude=None) -> Ratio:
    agg = Aggregation("60s", "ALIGN_DELTA", "REDUCE_SUM", tuple(group))
    return Ratio(Filter(q.metric_filter_of(q.RUN_REQUEST_COUNT, q.RUN_REVISION, services, {"response_code_class": "5xx"},
                                           resource_labels, exclude), agg),
                 Filter(q.metric_filter_of(q.RUN_REQUEST_COUNT, q.RUN_REVISION, services, None, resource_labels, exclude), agg))


@dataclass(frozen=True)
class DashboardsArgs:
    """`candidates`: service key -> candidate revision, for every service of the map (in map order):
    the stack-wide charts cover these services and the canary dashboard has a row per service."""

    site: Site
    candidates: Mapping[str, str]
    thresholds: Thresholds = Thresholds()
    target_savings: float = 0.20  # netra:app.costOptimizationTargetSavings
    clickhouse: Optional[ClickHouseConfig] = None  # netra:platform.clickhouse: its System Health row and SQL panels


def build_dashboards(args: DashboardsArgs) -> list[Dashboard]:
    env, th = args.site.environment, args.thresholds
    S = tuple(service_name(k, env) for k in args.candidates)
    cost = q.Selector(signals.LLM_REQUEST_COST.metric_type, services=S)
    saved = q.Selector(signals.COST_SAVED.metric_type, services=S)
    latencies = q.Selector(q.RUN_REQUEST_LATENCIES, services=S)
    hourly_cost = PromQL(q.increase_sum(cost.part("_sum"), "1h"))
    hourly_saved = PromQL(q.increase_sum(saved.part("_sum"), "1h"))
    tokens_saved_hourly = PromQL(q.increase_sum(q.Selector(signals.TOKENS_SAVED.metric_type, services=S).part("_sum"), "1h"))
    cache_hit = _outcome_ratio(signals.CACHE_LOOKUP, signals.CACHE_LOOKUP.success, services=S,
                               group=("metric.label.cache",))
    tok_success = _outcome_ratio(signals.TOKEN_OPTIMIZATION, signals.TOKEN_OPTIMIZATION.success, services=S)
    ws_success = _outcome_ratio(signals.WEBSOCKET_CONNECTION, signals.WEBSOCKET_CONNECTION.success, services=S)
    accuracy = _outcome_ratio(signals.COST_CALCULATION, signals.COST_CALCULATION.success, services=S, group=())
    budget_p99 = _pct_dist(signals.BUDGET_UTILIZATION.metric_type, 99, services=S, group=(), period="300s")
    requests = _f(q.RUN_REQUEST_COUNT, services=S, group=BY_SERVICE)
    lb_requests = _f(q.LB_REQUESTS, q.LB_RULE, group=("metric.label.response_code_class",))
    red, yellow = "RED", "YELLOW"
    # ClickHouse analytics panels (Grafana runs them; Cloud Monitoring shows the query): seed 001's per-user
    # savings, monthly reduction and engagement, from the token_usage_tracking table.
    sql = schema.queries(args.clickhouse.database) if args.clickhouse else {}

    def analytics(*panels: tuple[str, str, str]) -> list:
        return [SqlPanel(title, sql[key], fmt) for title, key, fmt in panels if key in sql]

    cost_dashboard = Dashboard(SEED_DASHBOARDS[0], [
        Scorecard("LLM cost, last hour (USD)", hourly_cost),
        Scorecard("Cost avoided, last hour (USD)", hourly_saved),
        Scorecard("Tokens saved, last hour", tokens_saved_hourly),
        Scorecard("Cache hit rate (all caches)", _outcome_ratio(signals.CACHE_LOOKUP, signals.CACHE_LOOKUP.success, services=S, group=()),
                  [Threshold(th.cache_hit_rate_percent / 100, "seed: 50 %", red, "BELOW")]),
        XyChart("Hourly LLM cost vs a week earlier (USD)", [
            Series(hourly_cost, "now"), Series(PromQL(q.increase_sum(cost.part("_sum"), "1h", offset="1w")), "a week earlier")],
            "USD / h", [Threshold(th.cost_spike_factor, f"alert at {th.cost_spike_factor:g}x baseline", red)]),
        XyChart("Cost per LLM request (p50, p95)", [
            Series(_pct_dist(signals.LLM_REQUEST_COST.metric_type, 50, services=S, group=("metric.label.model",)), "p50 ${metric.labels.model}"),
            Series(_pct_dist(signals.LLM_REQUEST_COST.metric_type, 95, services=S, group=("metric.label.model",)), "p95 ${metric.labels.model}")],
            "USD"),
        XyChart("Tokens saved per optimization (p50, p95)", [
            Series(_pct_dist(signals.TOKENS_SAVED.metric_type, 50, services=S), "p50"),
            Series(_pct_dist(signals.TOKENS_SAVED.metric_type, 95, services=S), "p95")], "tokens"),
        XyChart("Cache hit rate by cache", [Series(cache_hit, "${metric.labels.cache}")], "hit ratio",
                [Threshold(th.cache_hit_rate_percent / 100, "alert below", red, "BELOW")]),
        XyChart("Tenant budget utilization (p99)", [Series(budget_p99, "p99")], "%",
                [Threshold(th.budget_utilization_percent, "warning", yellow)]),
        XyChart("Cost avoided per hour (USD)", [Series(hourly_saved)], "USD / h"),
        # the optimizations' success criteria (seed 000), per flag arm: what the flag-ramp gate judges
        XyChart("Tokens per LLM request by flag arm (p50)", [
            Series(_pct_dist(signals.LLM_REQUEST_TOKENS.metric_type, 50, services=S, group=BY_ARM), "${metric.labels.flag_arm}")],
            "tokens"),
        XyChart("Conversation quality score by flag arm (p50)", [
            Series(_pct_dist(signals.QUALITY_SCORE.metric_type, 50, services=S, group=BY_ARM), "${metric.labels.flag_arm}")],
            "score"),
        XyChart("Cache lookup latency p95 by cache (ms)", [
            Series(_pct_dist(signals.CACHE_LOOKUP_LATENCY.metric_type, 95, services=S, group=("metric.label.cache",)),
                   "${metric.labels.cache}")], "ms", [Threshold(50, "seed: cache response < 50 ms", yellow)]),
        XyChart("Semantic-match and budget-tracking accuracy by flag arm", [
            Series(_outcome_ratio(signals.SEMANTIC_MATCH, signals.SEMANTIC_MATCH.success, services=S, group=BY_ARM),
                   "semantic match ${metric.labels.flag_arm}"),
            Series(_outcome_ratio(signals.BUDGET_TRACKING, signals.BUDGET_TRACKING.success, services=S, group=BY_ARM),
                   "budget tracking ${metric.labels.flag_arm}")], "accuracy",
            [Threshold(0.90, "seed: semantic match > 90 %", yellow, "BELOW"),
             Threshold(0.98, "seed: tracking > 98 %", yellow, "BELOW")]),
    ])

    performance = Dashboard(SEED_DASHBOARDS[1], [
        XyChart("Request latency p50 / p95 / p99 by service (ms)", [
            Series(_pct_dist(q.RUN_REQUEST_LATENCIES, p, services=S), f"p{p} ${{resource.labels.service_name}}") for p in (50, 95, 99)],
            "ms", [Threshold(th.p95_latency_ms, "rollback trigger (p95)", red)]),
        XyChart("p95 latency vs a week earlier (ms)", [
            Series(PromQL(q.quantile(0.95, latencies, "10m", ("service_name",))), "now {{service_name}}"),
            Series(PromQL(q.quantile(0.95, latencies, "10m", ("service_name",), offset="1w")), "week earlier {{service_name}}")], "ms"),
        XyChart("Throughput by service (requests/s)", [Series(requests, "${resource.labels.service_name}")], "req/s"),
        XyChart("Instances by service", [Series(_f(q.RUN_INSTANCES, services=S, aligner="ALIGN_MAX", reducer="REDUCE_SUM", group=BY_SERVICE))], "instances"),
        XyChart("Cloud SQL connections (pool health)", [Series(_f(q.SQL_BACKENDS, q.SQL_DATABASE, aligner="ALIGN_MEAN", reducer="REDUCE_SUM",
                                                                  group=("resource.label.database_id",)))], "backends"),
        XyChart("Cloud SQL CPU utilization", [Series(_f(q.SQL_CPU, q.SQL_DATABASE, aligner="ALIGN_MEAN", reducer="REDUCE_MAX",
                                                        group=("resource.label.database_id",)))], "fraction"),
        XyChart("WebSocket event latency p95 (async delivery, ms)", [
            Series(_pct_dist(signals.WEBSOCKET_EVENT_LATENCY.metric_type, 95, services=S))], "ms",
            [Threshold(th.websocket_event_latency_ms, "warning", yellow)]),
        XyChart("Load balancer latency p95 (ms)", [Series(_f(q.LB_LATENCIES, q.LB_RULE, aligner="ALIGN_DELTA", reducer="REDUCE_PERCENTILE_95"))], "ms"),
    ])

    health = Dashboard(SEED_DASHBOARDS[2], [
        XyChart("Uptime checks passing by host", [Series(_f(q.UPTIME_PASSED, q.UPTIME_URL, aligner="ALIGN_FRACTION_TRUE",
                                                            reducer="REDUCE_MEAN", group=("resource.label.host",), period="300s"))], "fraction"),
        XyChart("Error rate (5xx) by service", [Series(_error_ratio(services=S), "${resource.labels.service_name}")], "5xx ratio",
                [Threshold(th.error_rate_percent / 100, "rollback trigger", red)]),
        XyChart("Memory utilization p99 by service", [Series(_pct_dist(q.RUN_MEMORY, 99, services=S))], "fraction",
                [Threshold(th.memory_usage_percent / 100, "warning", yellow)]),
        XyChart("CPU utilization p99 by service", [Series(_pct_dist(q.RUN_CPU, 99, services=S))], "fraction"),
        XyChart("Redis memory usage ratio", [Series(_f(q.REDIS_MEMORY, q.REDIS_INSTANCE, aligner="ALIGN_MEAN", reducer="REDUCE_MAX",
                                                       group=("resource.label.instance_id",)))], "fraction"),
        XyChart("Redis connected clients", [Series(_f(q.REDIS_CLIENTS, q.REDIS_INSTANCE, aligner="ALIGN_MEAN", reducer="REDUCE_SUM",
                                                      group=("resource.label.instance_id",)))], "clients"),
        XyChart("Cloud SQL up", [Series(_f(q.SQL_UP, q.SQL_DATABASE, aligner="ALIGN_MIN", reducer="REDUCE_MIN",
                                           group=("resource.label.database_id",)))], "up"),
        XyChart("Load balancer requests by response class", [Series(lb_requests, "${metric.labels.response_code_class}")], "req/s"),
        *(clickhouse.dashboard_row(args.clickhouse) if args.clickhouse else []),
    ])

    business = Dashboard(SEED_DASHBOARDS[3], [
        Scorecard("Cost avoided, last hour (USD)", hourly_saved),
        Scorecard("LLM cost, last hour (USD)", hourly_cost),
        Scorecard("Token optimization success", tok_success),
        Scorecard("Tokens saved, last hour", tokens_saved_hourly),
        XyChart("Cost avoided vs spent per hour (USD)", [Series(hourly_saved, "avoided"), Series(hourly_cost, "spent")], "USD / h"),
        XyChart("Savings share: avoided / (avoided + spent)", [Series(PromQL(
            f"{q.increase_sum(saved.part('_sum'), '1h')}\n/ ({q.increase_sum(saved.part('_sum'), '1h')}\n+ {q.increase_sum(cost.part('_sum'), '1h')})"))],
            "fraction", [Threshold(args.target_savings, "target savings", yellow, "BELOW")]),
        XyChart("LLM requests per second by model", [Series(PromQL(q.rate_sum(cost.part("_count"), "5m", ("model",))), "{{model}}")], "req/s"),
        XyChart("User traffic at the load balancer", [Series(lb_requests, "${metric.labels.response_code_class}")], "req/s"),
        *analytics(("Cost savings per user (top 20, USD)", "cost_savings_per_user", "table"),
                   ("Users with tracked LLM cost per day", "daily_active_cost_users", "time_series")),
    ])

    technical = Dashboard(SEED_DASHBOARDS[4], [
        XyChart("Token optimization success rate", [Series(tok_success, "${resource.labels.service_name}")], "success ratio",
                [Threshold(1 - th.token_optimization_failure_rate_percent / 100, "critical below", red, "BELOW")]),
        XyChart("Cost calculation accuracy", [Series(accuracy)], "accurate ratio",
                [Threshold(th.cost_calculation_accuracy_percent / 100, "critical below", red, "BELOW")]),
        XyChart("WebSocket event latency p50 / p95 (ms)", [
            Series(_pct_dist(signals.WEBSOCKET_EVENT_LATENCY.metric_type, p, services=S), f"p{p}") for p in (50, 95)], "ms",
            [Threshold(th.websocket_event_latency_ms, "warning", yellow)]),
        XyChart("WebSocket connection success rate", [Series(ws_success, "${resource.labels.service_name}")], "success ratio",
                [Threshold(1 - th.websocket_connection_failure_percent / 100, "rollback trigger", red, "BELOW")]),
        XyChart("Session isolation breaches (zero tolerance)", [Series(_f(signals.SESSION_ISOLATION_BREACH.metric_type, services=S,
                                                                         aligner="ALIGN_DELTA", reducer="REDUCE_SUM", group=BY_SERVICE))],
                "breaches", [Threshold(0.5, "any breach", red)]),
        *analytics(("Optimization share and tokens by agent", "optimized_share_by_agent", "table")),
        XyChart("Token optimizations per second by outcome", [Series(_f(signals.TOKEN_OPTIMIZATION.metric_type, services=S,
                                                                       group=("metric.label.outcome",)), "${metric.labels.outcome}")], "ops/s"),
    ])

    revenue = Dashboard(SEED_DASHBOARDS[5], [
        Text("Customer cost savings and platform value from the platform's own signals (log-based metrics "
             "netra_cost_saved and netra_llm_request_cost). Upsell opportunities, conversion and churn live in the "
             "billing warehouse, not in Cloud Monitoring.", "About this dashboard"),
        XyChart("Customer cost savings realized per hour (USD)", [Series(hourly_saved)], "USD / h"),
        XyChart("Cost savings per day (USD)", [Series(PromQL(q.increase_sum(saved.part("_sum"), "1d")))], "USD / day"),
        XyChart("Cost avoided per optimization (p50, p95, USD)", [
            Series(_pct_dist(signals.COST_SAVED.metric_type, p, services=S, group=()), f"p{p}") for p in (50, 95)], "USD"),
        XyChart("LLM spend per day (USD)", [Series(PromQL(q.increase_sum(cost.part("_sum"), "1d")))], "USD / day"),
        *analytics(("Monthly cost reduction realized", "monthly_cost_reduction", "table")),
    ])

    return [cost_dashboard, performance, health, business, technical, revenue, canary_dashboard(args)]


def canary_dashboard(args: DashboardsArgs) -> Dashboard:
    """Stable (left) and canary (right) of each service, side by side, metric by metric.

    The canary column reads the candidate revision; the stable column reads every other revision of
    the service, which is the stable one since traffic only ever names those two. The dashboard thus
    depends only on the candidate's name: stage changes and finalize leave it untouched.
    """
    th, env = args.thresholds, args.site.environment
    widgets: list = [Text(
        "Left: the stable revision (every revision but the candidate); right: the candidate (canary). "
        f"Rollback: `python -m infra rollback --stack {env}` or "
        "`pulumi config set netra:canaryPercent 0 && pulumi up`.", "Canary vs stable")]
    charts = (
        ("Requests/s", lambda name, sel: _f(q.RUN_REQUEST_COUNT, services=[name], group=BY_REVISION, **sel), "req/s", None),
        ("5xx ratio", lambda name, sel: _error_ratio(services=[name], group=BY_REVISION, **sel), "ratio",
         th.error_rate_percent / 100),
        ("p95 latency (ms)", lambda name, sel: _pct_dist(q.RUN_REQUEST_LATENCIES, 95, services=[name], group=BY_REVISION, **sel),
         "ms", th.p95_latency_ms),
        ("Token optimization failure ratio", lambda name, sel: _outcome_ratio(
            signals.TOKEN_OPTIMIZATION, signals.TOKEN_OPTIMIZATION.failure, services=[name], group=BY_REVISION,
            period="60s", **sel), "ratio", th.token_optimization_failure_percent / 100),
        ("WebSocket connection failure ratio", lambda name, sel: _outcome_ratio(
            signals.WEBSOCKET_CONNECTION, signals.WEBSOCKET_CONNECTION.failure, services=[name], group=BY_REVISION,
            period="60s", **sel), "ratio", th.websocket_connection_failure_percent / 100),
    )
    for key, candidate in args.candidates.items():
        name = service_name(key, env)
        widgets.append(Section(name, f"canary (candidate) revision {candidate}"))
        for title, make, y, limit in charts:
            marks = [Threshold(limit, "rollback trigger", "RED")] if limit is not None else []
            widgets.append(XyChart(f"{title}: stable", [Series(make(name, {"exclude": {"revision_name": candidate}}))], y, marks))
            widgets.append(XyChart(f"{title}: canary", [Series(make(name, {"resource_labels": {"revision_name": candidate}}))], y, marks))
    return Dashboard(CANARY_DASHBOARD, widgets)


class Dashboards(pulumi.ComponentResource):
    """Outputs: `models` (the typed dashboards) and `dashboards` (display name -> Dashboard)."""

    def __init__(self, name: str, args: DashboardsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.models = build_dashboards(args)
        self.dashboards = {
            d.display_name: monitoring.Dashboard(
                d.display_name.lower().replace(" ", "-"),
                monitoring.DashboardArgs(project=args.site.project, dashboard_json=d.dumps()),
                opts=pulumi.ResourceOptions(parent=self))
            for d in self.models
        }
        self.register_outputs({})
