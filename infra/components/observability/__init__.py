"""Observability of the Netra stack: channels, log metrics, seed alerts, SLOs, dashboards, uptime, budget, retention.

Each logical entity is its own component (type tokens `netra:observability:*`), built from its args by
infra/wiring.py. Nothing here depends on the traffic stage, so moving between stages stays a
traffic-only diff.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .alerts import SeedAlerts, SeedAlertsArgs
from .budget import Budget, BudgetArgs
from .channels import AlertRouting, NotificationChannels, NotificationChannelsArgs
from .clickhouse import ClickHouseAlerts, ClickHouseAlertsArgs
from .dashboards import Dashboards, DashboardsArgs
from .log_metrics import LogMetrics, LogMetricsArgs
from .metric_ready import MetricReady
from .retention import LogRetention, LogRetentionArgs
from .slos import Slos, SlosArgs
from .uptime import UptimeChecks, UptimeChecksArgs, UptimeTarget


@dataclass
class Observability:
    channels: NotificationChannels
    log_metrics: LogMetrics
    uptime: UptimeChecks
    alerts: SeedAlerts
    slos: Slos
    dashboards: Dashboards
    retention: LogRetention
    budget: Optional[Budget]
    clickhouse: Optional[ClickHouseAlerts] = None

    def summary(self) -> dict:
        return {
            "alertPolicies": len(self.alerts.policies) + len(self.slos.policies)
            + (len(self.clickhouse.policies) if self.clickhouse else 0),
            "seedAlerts": sorted(self.alerts.policies),
            "dashboards": sorted(self.dashboards.dashboards),
            "logMetrics": sorted(self.log_metrics.metrics),
            "slos": sorted(self.slos.slos),
            "uptimeChecks": sorted(self.uptime.checks),
        }


__all__ = [
    "AlertRouting", "Budget", "BudgetArgs", "ClickHouseAlerts", "ClickHouseAlertsArgs", "Dashboards", "DashboardsArgs", "LogMetrics", "LogMetricsArgs",
    "LogRetention", "LogRetentionArgs", "MetricReady", "NotificationChannels", "NotificationChannelsArgs", "Observability",
    "SeedAlerts", "SeedAlertsArgs", "Slos", "SlosArgs", "UptimeChecks", "UptimeChecksArgs", "UptimeTarget",
]
