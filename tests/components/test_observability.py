"""The observability components one at a time: channels, log metrics, uptime, seed alerts, SLOs,
dashboards, log retention, budget."""
import json

import pytest

from infra import signals
from infra.components.observability import (
    AlertRouting, Budget, BudgetArgs, Dashboards, DashboardsArgs, LogMetrics, LogMetricsArgs, LogRetention,
    LogRetentionArgs, NotificationChannels, NotificationChannelsArgs, SeedAlerts, SeedAlertsArgs, Slos, SlosArgs,
    UptimeChecks, UptimeChecksArgs, UptimeTarget)
from infra.config.observability import Budget as BudgetConfig, Routing, Thresholds
from infra.seed_alerts import SEED_ALERTS

from .conftest import PROD, is_secret, register

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
UPTIME = "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig"
SLO = "gcp:monitoring/slo:Slo"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
ROUTING = AlertRouting(channels={"critical": ("projects/p/notificationChannels/pd",), "warning": ("projects/p/notificationChannels/mail",)},
                       kinds={"critical": ("pagerduty",), "warning": ("email",)})


def test_channels_one_per_email_pagerduty_key_secret_and_routing():
    holder = {}

    def go():
        holder["c"] = NotificationChannels("notifications", NotificationChannelsArgs(
            PROD, emails=("a@x.io", "b@x.io"), pagerduty_key="k", routing=Routing()))
        return {"critical": holder["c"].routing.for_severity("critical")}

    reg = register(go)
    assert reg.names(CHANNEL) == ["email-a-x-io", "email-b-x-io", "pagerduty"]
    assert is_secret(reg.raw(CHANNEL, "pagerduty")["sensitiveLabels"])  # the whole block is secret
    assert len(reg.outputs["critical"]) == 3  # critical -> pagerduty + email (seed 000)
    assert holder["c"].routing.text("warning") == "email"


def test_log_metrics_one_per_signal():
    reg = register(lambda: {"n": len(LogMetrics("log-metrics", LogMetricsArgs("netra-test")).metrics)})
    assert reg.names("gcp:logging/metric:Metric") == sorted(s.metric for s in signals.ALL_SIGNALS)


def test_uptime_checks_probe_each_targets_own_path_on_the_load_balancer():
    reg = register(lambda: UptimeChecks("uptime", UptimeChecksArgs(PROD, (
        UptimeTarget("web", "app.example.com", "/health"), UptimeTarget("api", "app.example.com", "/api/ready")))) and None)
    api = reg.one(UPTIME, "api")
    assert api["httpCheck"]["path"] == "/api/ready" and api["httpCheck"]["useSsl"] is True
    assert api["monitoredResource"]["labels"] == {"project_id": "netra-test", "host": "app.example.com"}
    assert reg.one(UPTIME, "web")["httpCheck"]["path"] == "/health"


def alerts(services=("web", "api", "worker"), checks=None):
    checks = {"web": "web-uptime", "api": "api-uptime"} if checks is None else checks
    holder = {}
    reg = register(lambda: holder.setdefault("a", SeedAlerts("seed-alerts", SeedAlertsArgs(
        PROD, services=services, uptime_check_ids=checks, thresholds=Thresholds(), routing=ROUTING))) and None)
    return reg, holder["a"]


def test_every_seed_alert_with_severity_and_channels():
    reg, component = alerts()
    assert sorted(component.policies) == sorted(a.id for a in SEED_ALERTS)
    for alert in SEED_ALERTS:
        p = reg.one(POLICY, alert.id)
        assert p["userLabels"]["severity"] == alert.severity and p["notificationChannels"]


def test_service_down_watches_public_services_by_uptime_and_workers_by_instances():
    reg, _ = alerts()
    conditions = reg.one(POLICY, "service-down")["conditions"]
    uptime = [c for c in conditions if "conditionThreshold" in c]
    absent = [c for c in conditions if "conditionAbsent" in c]
    assert [c["displayName"] for c in uptime] == ["netra-web-prod uptime check failing", "netra-api-prod uptime check failing"]
    assert 'metric.label.check_id="api-uptime"' in uptime[1]["conditionThreshold"]["filter"]
    (worker,) = absent
    assert worker["displayName"] == "netra-worker-prod has no running instance"
    assert 'resource.label.service_name="netra-worker-prod"' in worker["conditionAbsent"]["filter"]
    assert "container/instance_count" in worker["conditionAbsent"]["filter"]


def test_stack_wide_alerts_cover_every_service_of_the_map():
    reg, _ = alerts()
    query = reg.one(POLICY, "rollback-error-rate")["conditions"][0]["conditionPrometheusQueryLanguage"]["query"]
    assert 'service_name=~"netra-web-prod|netra-api-prod|netra-worker-prod"' in query


def test_without_workers_service_down_has_only_uptime_conditions():
    reg, _ = alerts(services=("web",), checks={"web": "web-uptime"})
    doc = reg.one(POLICY, "service-down")
    assert len(doc["conditions"]) == 1 and "without uptime check" not in doc["documentation"]["content"]


def test_slos_two_per_listed_service_with_burn_rate_alerts():
    holder = {}
    reg = register(lambda: holder.setdefault("s", Slos("slos", SlosArgs(PROD, ("api",), routing=ROUTING))) and None)
    assert reg.names(SLO) == ["api-availability", "api-latency"]
    assert len(holder["s"].policies) == 6 and all(k.startswith("slo-api-") for k in holder["s"].policies)
    assert reg.one(SLO, "api-availability")["goal"] == 0.999


def test_dashboards_have_a_canary_row_per_service():
    holder = {}
    candidates = {"web": "netra-web-prod-1", "api": "netra-api-prod-2", "worker": "netra-worker-prod-3"}
    reg = register(lambda: holder.setdefault("d", Dashboards("dashboards", DashboardsArgs(PROD, candidates))) and None)
    canary = json.loads(reg.one(DASHBOARD, "canary")["dashboardJson"])
    sections = [t["widget"]["title"] for t in canary["mosaicLayout"]["tiles"] if "sectionHeader" in t["widget"]]
    assert sections == ["netra-web-prod", "netra-api-prod", "netra-worker-prod"]
    assert "netra-worker-prod" in reg.one(DASHBOARD, "system-health")["dashboardJson"]


def test_log_retention_and_budget():
    reg = register(lambda: (LogRetention("log-retention", LogRetentionArgs(PROD, 45)),
                            Budget("budget", BudgetArgs(PROD, BudgetConfig.model_validate(
                                {"billingAccount": "01A2B3-C4D5E6-F7A8B9", "monthlyAmountUsd": 1234.5}),
                                ["projects/p/notificationChannels/mail"]))) and None)
    assert reg.one("gcp:logging/projectBucketConfig:ProjectBucketConfig")["retentionDays"] == 45
    budget = reg.one("gcp:billing/budget:Budget")
    assert budget["amount"]["specifiedAmount"] == {"currencyCode": "USD", "units": "1234", "nanos": 500000000}
    assert [t["thresholdPercent"] for t in budget["thresholdRules"]] == [0.5, 0.8, 1]
    # the API stores the project number: looked up from the id when not configured (mocked offline)
    assert budget["budgetFilter"]["projects"][0].removeprefix("projects/").isdigit()
