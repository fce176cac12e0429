"""The alerts the seeds require, by id: the contract between observability (which declares an alert
policy per id, labelled `netra_alert: <id>` and `severity: <critical|warning>`) and the go-live policy
pack (which checks that every id is declared with a notification channel).

Thresholds here are the seeds' values, the prod defaults; stack config may tighten them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ALERT_LABEL = "netra_alert"
SEVERITY_LABEL = "severity"


@dataclass(frozen=True)
class SeedAlert:
    id: str
    severity: Literal["critical", "warning"]
    rule: str  # the seed's words
    source: str  # which seed


SEED_ALERTS: tuple[SeedAlert, ...] = (
    # seed 001, "Rollback Triggers" of the canary phase
    SeedAlert("rollback-error-rate", "critical", "error rate > 1 %", "001 rollback trigger"),
    SeedAlert("rollback-p95-latency", "critical", "P95 latency > 2 seconds", "001 rollback trigger"),
    SeedAlert("rollback-token-optimization-failure", "critical", "token optimization failure > 10 %", "001 rollback trigger"),
    SeedAlert("rollback-websocket-connection-failures", "critical", "WebSocket connection failures > 5 %", "001 rollback trigger"),
    # seed 001, "Alert Thresholds"
    SeedAlert("token-optimization-failure-rate", "critical", "token optimization failure rate 5 %", "001 alert thresholds"),
    SeedAlert("cost-calculation-accuracy", "critical", "cost calculation accuracy below 95 %", "001 alert thresholds"),
    SeedAlert("websocket-event-latency", "warning", "WebSocket event latency > 200 ms", "001 alert thresholds"),
    SeedAlert("session-isolation-breach", "critical", "user session isolation breach > 0", "001 alert thresholds"),
    # seed 000, "Alerting Configuration"
    SeedAlert("service-down", "critical", "service_health == down", "000 critical alerts"),
    SeedAlert("cost-spike", "critical", "hourly_cost > baseline * 1.5", "000 critical alerts"),
    SeedAlert("cache-hit-rate-drop", "critical", "cache_hit_rate < 50 %", "000 critical alerts"),
    SeedAlert("performance-degradation", "warning", "response_time > baseline * 1.2", "000 warning alerts"),
    SeedAlert("budget-utilization-high", "warning", "budget_utilization > 80 %", "000 warning alerts"),
    SeedAlert("memory-usage-high", "warning", "memory_usage > 85 %", "000 warning alerts"),
)

# Dashboards the seeds name (000: three; 001: three), plus the canary view.
SEED_DASHBOARDS = (
    "Cost Optimization", "Performance Monitoring", "System Health",
    "Business Metrics", "Technical Performance", "Revenue Impact",
)
CANARY_DASHBOARD = "Canary"
LOG_RETENTION_DAYS = 30  # seed 000 log_retention_days
