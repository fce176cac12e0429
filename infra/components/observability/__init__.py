"""Observability of the Netra stack: channels, log metrics, seed alerts, SLOs, dashboards, uptime, budget, retention.

`build(cfg, services)` is the one call the program makes; each logical entity is its own component
(type tokens `netra:observability:*`). Nothing here depends on the traffic stage, so moving between
stages stays a traffic-only diff.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi

from infra import signals
from infra.config import StackConfig

from .alerts import SeedAlerts
from .budget import Budget
from .channels import NotificationChannels
from .dashboards import Dashboards
from .log_metrics import LogMetrics
from .metric_ready import MetricReady
from .retention import LogRetention
from .slos import Slos
from .uptime import UptimeChecks


@dataclass(frozen=True)
class PublicService:
    """What observability needs from a Cloud Run service."""

    url: pulumi.Input[str]
    candidate_revision: str


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

    def summary(self) -> dict:
        return {
            "alertPolicies": len(self.alerts.policies) + len(self.slos.policies),
            "seedAlerts": sorted(self.alerts.policies),
            "dashboards": sorted(self.dashboards.dashboards),
            "logMetrics": sorted(self.log_metrics.metrics),
            "slos": sorted(self.slos.slos),
        }


def build(cfg: StackConfig, services: Mapping[str, PublicService],
          budget_topic: Optional[pulumi.Input[str]] = None) -> Observability:
    channels = NotificationChannels("notifications", cfg)
    log_metrics = LogMetrics("log-metrics", cfg)
    uptime = UptimeChecks("uptime", cfg, {k: s.url for k, s in services.items()})
    # Policies that read a log-based metric are refused until the metric exists, and for minutes after
    # that until Cloud Monitoring knows it: alerts wait for MetricReady (which polls for the descriptors).
    after_metrics = pulumi.ResourceOptions(depends_on=[log_metrics])
    ready = MetricReady("log-metrics-ready", cfg.project, [m.metric_type for m in signals.ALL_SIGNALS],
                        opts=pulumi.ResourceOptions(parent=log_metrics, depends_on=list(log_metrics.metrics.values())))
    alerts = SeedAlerts("seed-alerts", cfg, channels,
                        {k: c.uptime_check_id for k, c in uptime.checks.items()},
                        opts=pulumi.ResourceOptions(depends_on=[log_metrics, ready]))
    slos = Slos("slos", cfg, channels)
    dashboards = Dashboards("dashboards", cfg, {k: s.candidate_revision for k, s in services.items()},
                            opts=after_metrics)
    retention = LogRetention("log-retention", cfg)
    budget = None
    if cfg.observability.budget is not None:
        budget = Budget("budget", cfg, [ch.name for ch in channels.by_kind["email"]], pubsub_topic=budget_topic)
    return Observability(channels, log_metrics, uptime, alerts, slos, dashboards, retention, budget)
