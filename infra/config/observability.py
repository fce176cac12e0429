"""`netra:observability`: notification channels, routing, alert thresholds, SLOs, uptime, budget, retention.

Every default is the seeds' value (seed 000 alerting configuration and log management, seed 001
rollback triggers and alert thresholds); stack config may tighten them. Units are in the key names:
`...Percent` is 0-100, `...Ms` is milliseconds, `...Factor` multiplies a baseline.
"""
from __future__ import annotations

import re

from typing import Annotated, Literal, Optional

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from .analytics import GrafanaConfig, PrometheusConfig
from .base import ConfigModel, Distinct, Email, Float, Int, UrlPath, problems, text
from .services import unknown_service

Severity = Literal["critical", "warning"]
ChannelKind = Literal["pagerduty", "email"]


def percent(default: float, description: str):
    return Field(default, ge=0, le=100, description=f"percent (0-100): {description}")


class PagerDuty(ConfigModel):
    # A Pulumi secret: `pulumi config set --secret --path netra:observability.pagerduty.serviceKey ...`.
    # SecretStr so the value never appears in a repr, a log line or an error message.
    service_key: SecretStr = Field(description="PagerDuty integration key (Events API v2); set it with --secret")

    @field_validator("service_key", mode="before")
    @classmethod
    def _string(cls, v: object) -> object:
        # Never echo the value back: pydantic's own type errors would print it.
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)
        if not isinstance(v, (str, SecretStr)):
            raise ValueError("must be a string (set it with `pulumi config set --secret --path ...`)")
        plain = v.get_secret_value() if isinstance(v, SecretStr) else v
        if len(plain) > 256 or not plain.isprintable() or plain != plain.strip():
            raise ValueError("must be at most 256 printable characters without surrounding whitespace "
                             "(the value is a secret and is not shown)")
        return v

    @field_validator("service_key")
    @classmethod
    def _not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v


class Routing(ConfigModel):
    """Which channel kinds each severity notifies. Seed 000: critical -> pager_duty + email, warning -> email."""

    critical: Annotated[tuple[ChannelKind, ...], Distinct] = Field(("pagerduty", "email"),
        description="channel kinds critical alerts notify")
    warning: Annotated[tuple[ChannelKind, ...], Distinct] = Field(("email",),
        description="channel kinds warning alerts notify")


class Thresholds(ConfigModel):
    """Alert thresholds, the seeds' values by default."""

    # seed 001 rollback triggers (evaluated per revision, so a bad canary is caught on its own)
    error_rate_percent: Float = percent(1.0, "5xx share of requests (rollback trigger)")
    p95_latency_ms: Float = Field(2000, gt=0, description="milliseconds: p95 request latency (rollback trigger)")
    token_optimization_failure_percent: Float = percent(10.0, "failed token optimizations (rollback trigger)")
    websocket_connection_failure_percent: Float = percent(5.0, "failed WebSocket connections (rollback trigger)")
    # seed 001 alert thresholds
    token_optimization_failure_rate_percent: Float = percent(5.0, "failed token optimizations, stack-wide")
    cost_calculation_accuracy_percent: Float = percent(95.0, "accurate cost calculations; alert below")
    websocket_event_latency_ms: Float = Field(200, gt=0, description="milliseconds: p95 WebSocket event latency")
    session_isolation_breaches: Int = Field(0, ge=0, description="breaches tolerated per 5 min (seed: zero tolerance)")
    # seed 000
    cost_spike_factor: Float = Field(1.5, gt=1, description="hourly LLM cost vs the same hour a week earlier")
    cache_hit_rate_percent: Float = percent(50.0, "prompt/semantic cache hit rate; alert below")
    response_time_factor: Float = Field(1.2, gt=1, description="p95 latency vs the same time a week earlier")
    budget_utilization_percent: Float = percent(80.0, "tenant token-budget utilization (p99 over tenants)")
    memory_usage_percent: Float = percent(85.0, "container memory utilization (p99)")


class Slo(ConfigModel):
    """Availability and latency SLOs per public service, with SRE-workbook burn-rate alerts."""

    services: Optional[Annotated[tuple[text(63), ...], Distinct]] = Field(
        None, description="service names with SLOs; default every public service of netra:services")
    availability_percent: Float = Field(99.9, gt=0, lt=100, description="percent of non-5xx requests (seed 000: 99.9 % uptime)")
    latency_percent: Float = Field(99.0, gt=0, lt=100, description="percent of requests faster than latencyThresholdMs")
    latency_threshold_ms: Float = Field(2000, gt=0, description="milliseconds; the seed's rollback p95 bound")
    rolling_period_days: Int = Field(28, ge=1, le=30, description="the SLOs' rolling compliance window")


class Uptime(ConfigModel):
    """One check per public service, probing its own healthCheckPath under its first route."""

    period_seconds: Literal[60, 300, 600, 900] = Field(60,
        description="how often each uptime check probes a public service")
    timeout_seconds: Int = Field(10, ge=1, le=60, description="an uptime check's request timeout")


class Budget(ConfigModel):
    billing_account: text(20, r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", "a billing account id like 01A2B3-C4D5E6-F7A8B9") = Field(
        description="billing account id, XXXXXX-XXXXXX-XXXXXX")
    monthly_amount_usd: Float = Field(ge=0.01, description="USD per calendar month (rounded to cents)")
    project_number: Optional[text(20, r"[0-9]{6,20}", "a numeric project number")] = Field(None,
                                          description="numeric project id; avoids a diff after the API normalizes the id")
    thresholds_percent: tuple[Float, ...] = Field((50.0, 80.0, 100.0), max_length=20,
        description="budget alert thresholds, percent of the monthly amount")

    @field_validator("thresholds_percent")
    @classmethod
    def _thresholds(cls, v: tuple[Float, ...]) -> tuple[Float, ...]:
        if not v or any(t <= 0 or t > 100 for t in v) or list(v) != sorted(set(v)):
            raise ValueError(f"must be increasing percentages in (0, 100], like [50, 80, 100], got {list(v)}")
        return v


class ObservabilityConfig(ConfigModel):
    """See the README, "Observability", for the reference and the alert table."""

    emails: tuple[Email, ...] = Field(default=(), max_length=50, description="addresses notified (one email channel each)")
    pagerduty: Optional[PagerDuty] = None
    routing: Routing = Routing()
    thresholds: Thresholds = Thresholds()
    slo: Slo = Slo()
    uptime: Uptime = Uptime()
    budget: Optional[Budget] = None
    log_retention_days: Int = Field(30, ge=1, le=3650, description="days kept in the _Default log bucket (seed 000: 30)")
    prometheus: PrometheusConfig = Field(PrometheusConfig(), description="Managed Prometheus sidecar on every service")
    grafana: Optional[GrafanaConfig] = Field(None, description="Grafana on Cloud Run behind the load balancer and IAP")

    @field_validator("emails")
    @classmethod
    def _emails(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [(str(i), f"listed twice: {a!r}") for i, a in enumerate(v) if a.lower() in [b.lower() for b in v[:i]]]
        if bad:
            raise problems(*bad)
        return v

    @model_validator(mode="after")
    def _every_severity_reaches_someone(self) -> "ObservabilityConfig":
        configured = {"email": bool(self.emails), "pagerduty": self.pagerduty is not None}
        found = []
        for severity in ("critical", "warning"):
            kinds = getattr(self.routing, severity)
            if not kinds:
                found.append((f"routing.{severity}", f"{severity} alerts need at least one channel (pagerduty, email)"))
            for kind in kinds:
                if not configured[kind]:
                    where = "emails is empty" if kind == "email" else "pagerduty.serviceKey is not set"
                    found.append((f"routing.{severity}", f"routes to {kind} but {where}"))
        if found:
            raise problems(*found)
        return self

    def channel_kinds(self, severity: Severity) -> tuple[ChannelKind, ...]:
        return getattr(self.routing, severity)


def service_problems(obs: ObservabilityConfig, services: Optional[dict]) -> list[tuple[str, str]]:
    """Service names the observability config refers to must be services of netra:services."""
    if services is None or obs.slo.services is None:
        return []
    return [(f"slo.services.{i}", unknown_service(key, services))
            for i, key in enumerate(obs.slo.services) if key not in services]


def slo_services(obs: ObservabilityConfig, public: list[str]) -> tuple[str, ...]:
    return obs.slo.services if obs.slo.services is not None else tuple(public)


def environment_problems(obs: Optional[ObservabilityConfig], environment: str) -> list[tuple[str, str]]:
    """Checks that need the environment: prod pages and has a budget (seed 000: pager_duty + email)."""
    if obs is None or environment != "prod":
        return []
    found = []
    if "pagerduty" not in obs.routing.critical:
        found.append(("routing.critical", "must include pagerduty in prod (seed 000: critical -> pager_duty + email)"))
    if obs.budget is None:
        found.append(("budget", "required in prod: billingAccount and monthlyAmountUsd (50/80/100 % thresholds)"))
    digest = re.compile(r"@sha256:[0-9a-f]{64}$")
    if obs.prometheus.enabled and not digest.search(obs.prometheus.sidecar_image):
        found.append(("prometheus.sidecarImage", "must be pinned by digest in prod (…@sha256:<64 hex>), got "
                      f"{obs.prometheus.sidecar_image!r}"))
    if obs.grafana is not None and not digest.search(obs.grafana.image):
        found.append(("grafana.image", f"must be pinned by digest in prod (…@sha256:<64 hex>), got {obs.grafana.image!r}"))
    return found
