"""Alert-policy building blocks shared by the seed alerts and the SLO burn-rate alerts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
from pulumi_gcp import monitoring

from infra.seed_alerts import ALERT_LABEL, SEVERITY_LABEL

from ..site import Site
from .channels import AlertRouting
from .runbook import Runbook, render

Condition = monitoring.AlertPolicyConditionArgs


@dataclass
class AlertSpec:
    """One alert policy: what it watches, how bad is bad, who hears about it, what to do."""

    key: str  # resource name, unique in the stack
    title: str
    severity: str  # critical | warning
    rule: str  # the rule in words, with the configured threshold
    conditions: list[Condition]
    runbook: Runbook
    labels: dict[str, str] = field(default_factory=dict)
    combiner: str = "OR"


def threshold(display: str, filter: pulumi.Input[str], value: float, *, duration: str = "0s",
              comparison: str = "COMPARISON_GT", period: Optional[str] = None, aligner: Optional[str] = None,
              reducer: Optional[str] = None, group_by: Sequence[str] = ()) -> Condition:
    aggregations = None
    if period:
        aggregations = [monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
            alignment_period=period, per_series_aligner=aligner, cross_series_reducer=reducer,
            group_by_fields=list(group_by) or None)]
    return Condition(
        display_name=display,
        condition_threshold=monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=filter, comparison=comparison, threshold_value=value, duration=duration,
            aggregations=aggregations,
            trigger=monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
        ),
    )


def absent(display: str, filter: pulumi.Input[str], *, duration: str, period: str, aligner: str,
           reducer: Optional[str] = None, group_by: Sequence[str] = ()) -> Condition:
    """Fires when the filtered series stop reporting for `duration` (e.g. a service with no instance)."""
    return Condition(
        display_name=display,
        condition_absent=monitoring.AlertPolicyConditionConditionAbsentArgs(
            filter=filter, duration=duration,
            aggregations=[monitoring.AlertPolicyConditionConditionAbsentAggregationArgs(
                alignment_period=period, per_series_aligner=aligner, cross_series_reducer=reducer,
                group_by_fields=list(group_by) or None)],
            trigger=monitoring.AlertPolicyConditionConditionAbsentTriggerArgs(count=1),
        ),
    )


# PromQL name prefix of log-based metrics (logging.googleapis.com/user/...)
LOG_METRIC_PROMQL = "logging_googleapis_com:user_"


def promql(display: str, query: str, *, duration: str, rule: str, severity: str) -> Condition:
    return Condition(
        display_name=display,
        condition_prometheus_query_language=monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
            query=query, duration=duration, evaluation_interval="60s",
            alert_rule=rule.replace("-", "_"), rule_group="netra", labels={"severity": severity},
            # a log-based metric created in the same update is unknown to Monitoring for minutes: skip the
            # existence check for those queries only (promtool and the metric catalog check them offline)
            disable_metric_validation=True if LOG_METRIC_PROMQL in query else None,
        ),
    )


def declare(spec: AlertSpec, site: Site, routing: AlertRouting,
            opts: pulumi.ResourceOptions) -> monitoring.AlertPolicy:
    notifies = routing.text(spec.severity)
    return monitoring.AlertPolicy(
        spec.key,
        monitoring.AlertPolicyArgs(
            project=site.project,
            display_name=f"[{spec.severity.upper()}] {spec.title} ({site.environment})",
            combiner=spec.combiner,
            conditions=spec.conditions,
            severity=spec.severity.upper(),
            notification_channels=routing.for_severity(spec.severity),
            user_labels={**spec.labels, SEVERITY_LABEL: spec.severity, "env": site.environment},
            documentation=monitoring.AlertPolicyDocumentationArgs(
                mime_type="text/markdown",
                subject=f"[{spec.severity.upper()}] {spec.title} ({site.environment})",
                content=render(spec.title, spec.rule, spec.severity, notifies, spec.runbook, site.environment),
            ),
            alert_strategy=monitoring.AlertPolicyAlertStrategyArgs(auto_close="1800s"),
            enabled=True,
        ),
        opts=opts,
    )


__all__ = ["ALERT_LABEL", "AlertSpec", "Condition", "absent", "declare", "promql", "threshold"]
