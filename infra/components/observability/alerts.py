"""Every alert the seeds name (infra/seed_alerts.py), with thresholds from `netra:observability.thresholds`.

How each condition is expressed, and why:
- single-metric thresholds (p95 latency, memory, WebSocket event latency, budget utilization, session
  isolation breaches, uptime) are `condition_threshold` on a metric filter with server-side aggregation:
  typed, validated by the API, and readable in the console;
- ratios (error rate, failure rates, cache hit rate, cost calculation accuracy) and comparisons with a
  baseline (cost spike, response time) are PromQL (`condition_prometheus_query_language`): one query
  divides two series or compares a window with the same window a week earlier (`offset 1w`, which
  keeps weekly seasonality out of the alert); MQL would do it too but is deprecated.
The rollback triggers group by revision, so a bad canary alerts on its own even at 10 % of traffic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi

from infra import signals
from infra.config import service_name
from infra.config.observability import Thresholds
from infra.seed_alerts import ALERT_LABEL, SEED_ALERTS

from ..site import Site
from . import queries as q
from .channels import AlertRouting
from .policy import AlertSpec, absent, declare, promql, threshold
from .runbook import Runbook

COMPONENT_TYPE = "netra:observability:Alerts"
SEVERITY = {a.id: a.severity for a in SEED_ALERTS}
PER_REVISION = ("service_name", "revision_name")
PER_SERVICE = ("service_name",)
GROUP_REVISION = ["resource.label.service_name", "resource.label.revision_name"]
GROUP_SERVICE = ["resource.label.service_name"]


def _pct(x: float) -> str:
    return f"{x:g} %"


def _outcome_ratio(signal: signals.OutcomeSignal, outcome: str, services: tuple[str, ...], window: str,
                   group: tuple[str, ...]) -> str:
    total = q.Selector(signal.metric_type, services=services)
    return q.ratio(total.where(**{signal.outcome_label: outcome}), total, window, group)


@dataclass(frozen=True)
class SeedAlertsArgs:
    """Every service of the map is watched: public ones by their uptime check, the others (workers, no
    uptime check reaches them) by their running instances."""

    site: Site
    services: tuple[str, ...]  # service keys, every one of netra:services
    uptime_check_ids: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # public service key -> id
    thresholds: Thresholds = Thresholds()
    routing: AlertRouting = AlertRouting()

    @property
    def workers(self) -> tuple[str, ...]:
        return tuple(k for k in self.services if k not in self.uptime_check_ids)


# A worker with no instance reporting for this long is down (Cloud Run writes instance_count every minute).
NO_INSTANCE_FOR = "300s"


def seed_alert_specs(args: SeedAlertsArgs) -> list[AlertSpec]:
    th, env = args.thresholds, args.site.environment
    services = tuple(service_name(k, env) for k in args.services)
    uptime_check_ids, workers = args.uptime_check_ids, args.workers
    requests = q.Selector(q.RUN_REQUEST_COUNT, services=services)
    latencies = q.Selector(q.RUN_REQUEST_LATENCIES, services=services)
    cost = q.Selector(signals.LLM_REQUEST_COST.metric_type, services=services).part("_sum")

    def spec(id: str, title: str, rule: str, conditions, runbook: Runbook) -> AlertSpec:
        return AlertSpec(key=id, title=title, severity=SEVERITY[id], rule=rule, conditions=conditions,
                         runbook=runbook, labels={ALERT_LABEL: id})

    def pq(id: str, display: str, query: str, duration: str):
        return [promql(display, query, duration=duration, rule=id, severity=SEVERITY[id])]

    tok, ws = signals.TOKEN_OPTIMIZATION, signals.WEBSOCKET_CONNECTION
    out = [
        # ---- seed 001 rollback triggers: per revision, short windows ----
        spec("rollback-error-rate", "Error rate above rollback trigger",
             f"5xx share of requests > {_pct(th.error_rate_percent)} over 5 min, per revision",
             pq("rollback-error-rate", "5xx ratio per revision",
                f"({q.ratio(requests.where(response_code_class='5xx'), requests, '5m', PER_REVISION)})\n"
                f"> {th.error_rate_percent / 100:g}", "60s"),
             Runbook("A revision answers more than the allowed share of requests with 5xx. If it is the canary "
                     "revision, the release is bad: this is a seed 001 rollback trigger.",
                     ("Canary dashboard: is the error rate high on the canary revision only, or on stable too?",
                      "Cloud Run logs of the revision: `resource.labels.revision_name=\"<revision>\" severity>=ERROR`.",
                      "System Health dashboard: Cloud SQL and Redis up and not saturated?"))),
        spec("rollback-p95-latency", "p95 latency above rollback trigger",
             f"p95 request latency > {th.p95_latency_ms:g} ms over 5 min, per revision",
             [threshold("p95 request latency per revision", q.metric_filter(q.RUN_REQUEST_LATENCIES, q.RUN_REVISION, services),
                        th.p95_latency_ms, duration="60s", period="300s", aligner="ALIGN_DELTA",
                        reducer="REDUCE_PERCENTILE_95", group_by=GROUP_REVISION)],
             Runbook("Requests of a revision are slow at the 95th percentile (seed 001 rollback trigger).",
                     ("Canary dashboard: canary p95 vs stable p95.",
                      "Performance Monitoring dashboard: Cloud SQL connections and CPU, instance count at max?",
                      "LLM provider latency in the logs (`jsonPayload.event=\"llm_request\"`)."))),
        spec("rollback-token-optimization-failure", "Token optimization failures above rollback trigger",
             f"failed / all token optimizations > {_pct(th.token_optimization_failure_percent)} over 5 min, per revision",
             pq("rollback-token-optimization-failure", "token optimization failure ratio per revision",
                f"({_outcome_ratio(tok, tok.failure, services, '5m', PER_REVISION)})\n"
                f"> {th.token_optimization_failure_percent / 100:g}", "60s"),
             Runbook("Token optimization fails for too many requests of a revision (seed 001 rollback trigger); "
                     "requests fall back to unoptimized prompts and cost more.",
                     ("Canary dashboard: failures on canary only?",
                      "Logs: `jsonPayload.event=\"token_optimization\" jsonPayload.outcome=\"failure\"` for the error.",
                      "TOKEN_OPTIMIZATION_* settings of the revision (netra:app.tokenOptimization)."))),
        spec("rollback-websocket-connection-failures", "WebSocket connection failures above rollback trigger",
             f"failed / all WebSocket connections > {_pct(th.websocket_connection_failure_percent)} over 5 min, per revision",
             pq("rollback-websocket-connection-failures", "WebSocket connection failure ratio per revision",
                f"({_outcome_ratio(ws, ws.failure, services, '5m', PER_REVISION)})\n"
                f"> {th.websocket_connection_failure_percent / 100:g}", "60s"),
             Runbook("Clients cannot open WebSocket connections to a revision (seed 001 rollback trigger).",
                     ("Canary dashboard: failures on canary only?",
                      "Backend timeout (3600 s) and session affinity still set on the revision?",
                      "Logs: `jsonPayload.event=\"websocket_connection\" jsonPayload.outcome=\"failure\"`."))),
        # ---- seed 001 alert thresholds ----
        spec("token-optimization-failure-rate", "Token optimization failure rate",
             f"failed / all token optimizations > {_pct(th.token_optimization_failure_rate_percent)} over 10 min, per service",
             pq("token-optimization-failure-rate", "token optimization failure ratio per service",
                f"({_outcome_ratio(tok, tok.failure, services, '10m', PER_SERVICE)})\n"
                f"> {th.token_optimization_failure_rate_percent / 100:g}", "300s"),
             Runbook("Token optimization fails more often than the seed allows; savings drop and costs rise.",
                     ("Technical Performance dashboard: when did the success rate drop, which service?",
                      "Logs of the failures for the error class (provider errors, timeouts, parse errors).",
                      "Did a release start at the same time? Then roll back."))),
        spec("cost-calculation-accuracy", "Cost calculation accuracy",
             f"accurate / all cost calculations < {_pct(th.cost_calculation_accuracy_percent)} over 15 min",
             pq("cost-calculation-accuracy", "cost calculation accuracy",
                f"({_outcome_ratio(signals.COST_CALCULATION, signals.COST_CALCULATION.success, services, '15m', ())})\n"
                f"< {th.cost_calculation_accuracy_percent / 100:g}", "300s"),
             Runbook("Costs shown to customers disagree with the provider's usage too often: billing and "
                     "cost reports are wrong.",
                     ("Logs: `jsonPayload.event=\"cost_calculation_check\" jsonPayload.outcome=\"failure\"`: which model?",
                      "LLM_PRICING_* values (netra:app.llmPricing) against the provider's current price list.",
                      "Did a release or a pricing change start at the same time?"))),
        spec("websocket-event-latency", "WebSocket event latency",
             f"p95 WebSocket event latency > {th.websocket_event_latency_ms:g} ms over 5 min, per service",
             [threshold("p95 WebSocket event latency", q.metric_filter(signals.WEBSOCKET_EVENT_LATENCY.metric_type, q.RUN_REVISION, services),
                        th.websocket_event_latency_ms, duration="300s", period="300s", aligner="ALIGN_DELTA",
                        reducer="REDUCE_PERCENTILE_95", group_by=GROUP_SERVICE)],
             Runbook("Real-time events reach clients late (seed 001: deliver in < 100 ms, warn at 200 ms).",
                     ("Technical Performance dashboard: latency by service; instance count at max?",
                      "Redis latency and memory (System Health): events are fanned out through Redis.",
                      "Backend CPU utilization: is the event loop saturated?"),
                     rollback=False)),
        spec("session-isolation-breach", "User session isolation breach",
             f"session isolation breaches > {th.session_isolation_breaches} in 5 min (zero tolerance)",
             [threshold("session isolation breaches", q.metric_filter(signals.SESSION_ISOLATION_BREACH.metric_type, q.RUN_REVISION, services),
                        th.session_isolation_breaches, duration="0s", period="300s", aligner="ALIGN_DELTA",
                        reducer="REDUCE_SUM", group_by=GROUP_REVISION)],
             Runbook("One user's session data was reachable from another session. This is a security incident.",
                     ("Logs: `jsonPayload.event=\"session_isolation_breach\"`: sessions, tenants and revision involved.",
                      "Start the security incident process; preserve logs (the _Default bucket keeps 30 days).",
                      "If the breach came with a new revision, roll back now, investigate after."))),
        # ---- seed 000 critical ----
        spec("service-down", "Service down",
             "uptime check of a public service fails from more than one region"
             + (f"; or a service without uptime check ({', '.join(workers)}) reports no running instance "
                f"for {NO_INSTANCE_FOR}" if workers else ""),
             [threshold(f"{service_name(key, env)} uptime check failing",
                        pulumi.Output.from_input(check_id).apply(
                            lambda cid: q.metric_filter(q.UPTIME_PASSED, q.UPTIME_URL, metric_labels={"check_id": cid})),
                        1, duration="60s", period="1200s", aligner="ALIGN_NEXT_OLDER",
                        reducer="REDUCE_COUNT_FALSE", group_by=["resource.label.host"])
              for key, check_id in uptime_check_ids.items()]
             + [absent(f"{service_name(key, env)} has no running instance",
                       q.metric_filter(q.RUN_INSTANCES, q.RUN_REVISION, [service_name(key, env)]),
                       duration=NO_INSTANCE_FOR, period="60s", aligner="ALIGN_MAX", reducer="REDUCE_SUM",
                       group_by=["resource.label.service_name"])
                for key in workers],
             Runbook("A public endpoint does not answer its health check (seed 000: service_health == down).",
                     ("System Health dashboard: which service, since when; instance count zero?",
                      "Cloud Run revision status and the latest deploy (`pulumi stack history`).",
                      "Cloud SQL and Redis up? The health check depends on them."))),
        spec("cost-spike", "LLM cost spike",
             f"LLM cost over the last hour > {th.cost_spike_factor:g} x the same hour a week earlier "
             "(sum of the netra_llm_request_cost log metric; there is no built-in hourly cost metric)",
             pq("cost-spike", "hourly LLM cost vs a week earlier",
                f"{q.increase_sum(cost, '1h')}\n> {th.cost_spike_factor:g} *\n{q.increase_sum(cost, '1h', offset='1w')}", "600s"),
             Runbook("The platform spends much more on LLM calls than at the same time last week (seed 000: "
                     "hourly_cost > baseline x 1.5). Baseline = same hour one week earlier.",
                     ("Cost Optimization dashboard: cost per request up, or request volume up?",
                      "Cache hit rate dropped? Token optimization failing? Both raise cost.",
                      "One tenant or model dominating (`jsonPayload.model` in llm_request logs)?"))),
        spec("cache-hit-rate-drop", "Cache hit rate drop",
             f"hits / lookups < {_pct(th.cache_hit_rate_percent)} over 15 min, per cache (prompt, semantic)",
             pq("cache-hit-rate-drop", "cache hit rate per cache",
                f"({_outcome_ratio(signals.CACHE_LOOKUP, signals.CACHE_LOOKUP.success, services, '15m', ('cache',))})\n"
                f"< {th.cache_hit_rate_percent / 100:g}", "600s"),
             Runbook("The prompt or semantic cache serves less than half of lookups; cost rises.",
                     ("Cost Optimization dashboard: which cache; did it drop suddenly (flush, eviction) or slowly?",
                      "Redis memory usage ratio and evictions (System Health).",
                      "Did a release change prompts or the embedding model? Then roll back."))),
        # ---- seed 000 warning ----
        spec("performance-degradation", "Response time degradation",
             f"p95 request latency > {th.response_time_factor:g} x the same time a week earlier, per service",
             pq("performance-degradation", "p95 latency vs a week earlier",
                f"{q.quantile(0.95, latencies, '10m', PER_SERVICE)}\n> {th.response_time_factor:g} *\n"
                f"{q.quantile(0.95, latencies, '10m', PER_SERVICE, offset='1w')}", "900s"),
             Runbook("Responses are slower than at the same time last week (seed 000: response_time > baseline x 1.2).",
                     ("Performance Monitoring dashboard: which service, which percentile.",
                      "Cloud SQL CPU and connections, Redis latency.",
                      "Did a release start at the same time? Then roll back."))),
        spec("budget-utilization-high", "Tenant budget utilization high",
             f"p99 of tenants' token-budget utilization > {_pct(th.budget_utilization_percent)} over 5 min",
             [threshold("p99 tenant budget utilization", q.metric_filter(signals.BUDGET_UTILIZATION.metric_type, q.RUN_REVISION, services),
                        th.budget_utilization_percent, duration="300s", period="300s", aligner="ALIGN_DELTA",
                        reducer="REDUCE_PERCENTILE_99")],
             Runbook("Tenants approach their token budget (seed 000: budget_utilization > 80 %); requests will be "
                     "refused when they reach it.",
                     ("Cost Optimization dashboard: budget utilization over time.",
                      "Logs: `jsonPayload.event=\"budget_check\" jsonPayload.utilization_percent>80` for the tenants.",
                      "Tell the account owners; raise budgets only with their approval."),
                     rollback=False)),
        spec("memory-usage-high", "Memory usage high",
             f"p99 container memory utilization > {_pct(th.memory_usage_percent)} over 5 min, per service",
             [threshold("p99 container memory utilization", q.metric_filter(q.RUN_MEMORY, q.RUN_REVISION, services),
                        th.memory_usage_percent / 100, duration="300s", period="300s", aligner="ALIGN_DELTA",
                        reducer="REDUCE_PERCENTILE_99", group_by=GROUP_SERVICE)],
             Runbook("Containers run close to their memory limit and will be OOM-killed (seed 000: memory_usage > 85 %).",
                     ("System Health dashboard: memory by service; growing steadily (leak) or with load?",
                      "Semantic cache embeddings in memory (seed 000 asks for 4 GB headroom).",
                      "Raise netra:services.<svc>.memory if it is load, roll back if it came with a release."))),
    ]
    assert [s.key for s in out] == [a.id for a in SEED_ALERTS], "every seed alert, in the seeds' order"
    return out


class SeedAlerts(pulumi.ComponentResource):
    """One alert policy per seed alert id, labelled `netra_alert: <id>` and `severity: <severity>`.

    Outputs: `specs` (what each policy watches, in words too) and `policies` (alert id -> AlertPolicy)."""

    def __init__(self, name: str, args: SeedAlertsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.specs = seed_alert_specs(args)
        self.policies = {s.key: declare(s, args.site, args.routing, child) for s in self.specs}
        self.register_outputs({})
