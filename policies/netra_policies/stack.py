"""Stack-level go-live checks: seed 000's "Monitoring and alerting fully configured" made executable."""
from __future__ import annotations

import json

from pulumi_policy import Severity

from ._util import CIS_GCP, UNKNOWN, count, get, of_type, stack_policy
from .seed_catalog import ALERT_LABEL, CANARY_DASHBOARD, LOG_RETENTION_DAYS, SEED_ALERTS, SEED_DASHBOARDS, SEVERITY_LABEL

ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
BUDGET = "gcp:billing/budget:Budget"
LOG_BUCKET = "gcp:logging/projectBucketConfig:ProjectBucketConfig"


def _alerts(resources, config):
    declared: dict[str, list] = {}
    for r in of_type(resources, ALERT_POLICY):
        alert_id = get(r.props, f"userLabels.{ALERT_LABEL}")
        if alert_id:
            declared.setdefault(alert_id, []).append(r)
    missing = [alert_id for alert_id in SEED_ALERTS if alert_id not in declared]
    if missing:
        yield (f"{len(missing)} of {len(SEED_ALERTS)} seed alerts have no alert policy labelled {ALERT_LABEL}=<id>: "
               f"{', '.join(missing)}"), None
    for alert_id, severity in SEED_ALERTS.items():
        found = declared.get(alert_id) or []
        for r in found:
            if get(r.props, f"userLabels.{SEVERITY_LABEL}") != severity:
                yield (f"alert {alert_id}: userLabels.{SEVERITY_LABEL} is {get(r.props, f'userLabels.{SEVERITY_LABEL}')!r}, "
                       f"the seed says {severity!r}"), r.urn
            # the channels' names are unknown until the channels exist; how many there are is known
            channels = count(r.props, "notificationChannels")
            if channels is UNKNOWN:
                yield (f"fails closed: alert {alert_id}'s notificationChannels list is unknown until created, so "
                       f"whether it notifies anyone cannot be checked"), r.urn
            elif not channels:
                yield f"alert {alert_id} has no notificationChannels: it would fire and tell no one", r.urn
            if get(r.props, "enabled") is False:
                yield f"alert {alert_id} is disabled", r.urn


def _title(r) -> str:
    raw = get(r.props, "dashboardJson", "")
    try:
        doc = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        return ""
    return str(doc.get("displayName", ""))


def _dashboards(resources, config):
    titles = [_title(r).lower() for r in of_type(resources, DASHBOARD)]
    missing = [w for w in (*SEED_DASHBOARDS, CANARY_DASHBOARD) if not any(w.lower() in t for t in titles)]
    if missing:
        yield f"no dashboard titled (dashboardJson displayName): {', '.join(repr(m) for m in missing)}", None


def _budget(resources, config):
    budgets = of_type(resources, BUDGET)
    if not budgets:
        yield "no billing budget (gcp.billing.Budget) in the stack: seed 000 cost-spike / emergency budget", None
    for r in budgets:
        if not list(get(r.props, "thresholdRules", []) or []):
            yield f"budget {r.name} has no thresholdRules, so it never alerts", r.urn


def _retention(resources, config):
    minimum = int(config.get("minRetentionDays", LOG_RETENTION_DAYS))
    defaults = [r for r in of_type(resources, LOG_BUCKET) if get(r.props, "bucketId") == "_Default"]
    if not defaults:
        yield (f"the _Default log bucket's retention is not managed (ProjectBucketConfig bucketId _Default); "
               f"seed 000 wants {minimum} days"), None
    for r in defaults:
        days = get(r.props, "retentionDays", 30)
        if days < minimum:
            yield f"log bucket _Default keeps logs {days} days; at least {minimum} required", r.urn


POLICIES = [
    stack_policy("stack-seed-alerts",
                 "Every seed alert and rollback trigger has an alert policy with its severity and a notification channel.",
                 "Declare a gcp.monitoring.AlertPolicy per id in infra/seed_alerts.py with userLabels netra_alert=<id>, "
                 "severity=<critical|warning>, and notificationChannels.", _alerts, severity=Severity.CRITICAL),
    stack_policy("stack-seed-dashboards", "The seed dashboards and the canary dashboard exist.",
                 "Declare a gcp.monitoring.Dashboard per title in infra/seed_alerts.py (SEED_DASHBOARDS, CANARY_DASHBOARD).",
                 _dashboards, severity=Severity.MEDIUM),
    stack_policy("stack-billing-budget", "Production has a billing budget with alert thresholds.",
                 "Declare a gcp.billing.Budget with thresholdRules (e.g. 0.5, 0.8, 1.0) and notification channels.",
                 _budget),
    stack_policy("stack-log-retention", "Logs are kept at least 30 days (seed 000 log_retention_days).",
                 "Declare gcp.logging.ProjectBucketConfig for bucket _Default with retentionDays >= 30.", _retention,
                 framework=CIS_GCP, severity=Severity.MEDIUM,
                 schema={"minRetentionDays": {"type": "integer", "minimum": 1, "default": LOG_RETENTION_DAYS}}),
]
