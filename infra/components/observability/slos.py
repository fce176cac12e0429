"""Availability and latency SLOs per public service, with multi-window multi-burn-rate alerts.

The Google SRE workbook, "Alerting on SLOs" (recommended parameters for a 30-day-ish window):
page when the error budget burns 14.4x too fast over 1 h (confirmed over 5 min) or 6x over 6 h
(confirmed over 30 min); open a ticket at 1x over 3 days (confirmed over 6 h). Each pair is one alert
policy whose two conditions are combined with AND, so the short window stops the page as soon as the
burn stops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_gcp import monitoring

from infra.config import service_name
from infra.config.observability import Slo as SloConfig

from ..site import Site
from . import queries as q
from .channels import AlertRouting
from .policy import AlertSpec, declare, threshold
from .runbook import Runbook

COMPONENT_TYPE = "netra:observability:Slos"


@dataclass(frozen=True)
class BurnRateAlert:
    name: str
    severity: str  # critical pages, warning tickets
    factor: float
    long_window_min: int
    short_window_min: int


BURN_RATE_ALERTS = (
    BurnRateAlert("page-fast", "critical", 14.4, 60, 5),
    BurnRateAlert("page-slow", "critical", 6.0, 6 * 60, 30),
    BurnRateAlert("ticket", "warning", 1.0, 3 * 24 * 60, 6 * 60),
)


def _window(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d"
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def burn_rate_filter(slo_name: str, minutes: int) -> str:
    return f'select_slo_burn_rate("{slo_name}", "{minutes}m")'


def burn_rate_spec(key: str, kind: str, slo_name: pulumi.Output[str], goal: float, alert: BurnRateAlert,
                   env: str) -> AlertSpec:
    budget_pct = (1 - goal) * 100
    long, short = _window(alert.long_window_min), _window(alert.short_window_min)
    name = service_name(key, env)
    return AlertSpec(
        key=f"slo-{key}-{kind}-{alert.name}",
        title=f"{name} {kind} SLO burn rate ({alert.name})",
        severity=alert.severity,
        rule=f"error budget of the {goal * 100:g} % {kind} SLO burns > {alert.factor:g}x over {long} and over {short}",
        conditions=[
            threshold(f"burn rate > {alert.factor:g}x over {w}",
                      slo_name.apply(lambda n, m=m: burn_rate_filter(n, m)), alert.factor)
            for w, m in ((long, alert.long_window_min), (short, alert.short_window_min))
        ],
        combiner="AND",
        labels={"slo": f"{key}-{kind}", "burn_rate": alert.name.replace("-", "_")},
        runbook=Runbook(
            f"{name} spends its {kind} error budget ({budget_pct:.2g} % of requests) {alert.factor:g} times faster "
            f"than the SLO allows, over both {long} and {short}. "
            + ("At this pace the monthly budget is gone within days: page." if alert.severity == "critical"
               else "The budget will run out before the period ends: fix it this week."),
            ("SLO page of the service in Cloud Monitoring (Services): remaining budget and burn-down.",
             "Canary dashboard: did the burn start with the current canary revision?",
             "Rollback-trigger and seed alerts firing at the same time point to the cause."),
            rollback=alert.severity == "critical"),
    )


@dataclass(frozen=True)
class SlosArgs:
    site: Site
    services: tuple[str, ...]  # service keys with SLOs (default: every public service)
    slo: SloConfig = SloConfig()
    routing: AlertRouting = AlertRouting()


class Slos(pulumi.ComponentResource):
    """A Cloud Monitoring service per listed Cloud Run service, its two SLOs and their burn-rate alerts.

    Outputs: `slos` (<key>-<availability|latency> -> Slo) and `policies` (burn-rate alert key -> AlertPolicy)."""

    def __init__(self, name: str, args: SlosArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site, slo_cfg = args.site, args.slo
        child = pulumi.ResourceOptions(parent=self)
        self.slos: dict[str, monitoring.Slo] = {}
        self.policies: dict[str, monitoring.AlertPolicy] = {}
        for key in args.services:
            svc_name = service_name(key, site.environment)
            service = monitoring.GenericService(
                key,
                monitoring.GenericServiceArgs(
                    project=site.project,
                    service_id=svc_name,
                    display_name=svc_name,
                    basic_service=monitoring.GenericServiceBasicServiceArgs(
                        service_type="CLOUD_RUN", service_labels={"service_name": svc_name, "location": site.region}),
                    user_labels={"env": site.environment, "service": key},
                ),
                opts=child,
            )
            total = q.metric_filter(q.RUN_REQUEST_COUNT, q.RUN_REVISION, [svc_name])
            goals = {"availability": round(slo_cfg.availability_percent / 100, 6),
                     "latency": round(slo_cfg.latency_percent / 100, 6)}
            slis = {
                "availability": monitoring.SloRequestBasedSliArgs(
                    good_total_ratio=monitoring.SloRequestBasedSliGoodTotalRatioArgs(
                        total_service_filter=total,
                        bad_service_filter=q.metric_filter(q.RUN_REQUEST_COUNT, q.RUN_REVISION, [svc_name],
                                                           metric_labels={"response_code_class": "5xx"}))),
                "latency": monitoring.SloRequestBasedSliArgs(
                    distribution_cut=monitoring.SloRequestBasedSliDistributionCutArgs(
                        distribution_filter=q.metric_filter(q.RUN_REQUEST_LATENCIES, q.RUN_REVISION, [svc_name]),
                        range=monitoring.SloRequestBasedSliDistributionCutRangeArgs(max=slo_cfg.latency_threshold_ms))),
            }
            texts = {"availability": f"{goals['availability'] * 100:g} % of requests are not 5xx",
                     "latency": f"{goals['latency'] * 100:g} % of requests faster than {slo_cfg.latency_threshold_ms:g} ms"}
            for kind, sli in slis.items():
                slo = monitoring.Slo(
                    f"{key}-{kind}",
                    monitoring.SloArgs(
                        project=site.project,
                        service=service.service_id,
                        slo_id=kind,
                        display_name=f"{svc_name}: {texts[kind]} ({slo_cfg.rolling_period_days} d)",
                        goal=goals[kind],
                        rolling_period_days=slo_cfg.rolling_period_days,
                        request_based_sli=sli,
                        user_labels={"env": site.environment, "service": key, "sli": kind},
                    ),
                    opts=child,
                )
                self.slos[f"{key}-{kind}"] = slo
                for alert in BURN_RATE_ALERTS:
                    spec = burn_rate_spec(key, kind, slo.name, goals[kind], alert, site.environment)
                    self.policies[spec.key] = declare(spec, site, args.routing, child)
        self.register_outputs({})
