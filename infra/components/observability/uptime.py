"""Uptime checks on the public services, through the load balancer: the seed's "service down" signal.

The run.app URLs are closed (ingress INTERNAL_LOAD_BALANCER), so each check requests the service's own
healthCheckPath under its first route on the edge domain (frontend /health, backend /api/health, auth
/auth/health). Services with `public: false` have no check: SeedAlerts watches their instances instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_gcp import monitoring

from infra.config import service_name

from ..site import Site

COMPONENT_TYPE = "netra:observability:UptimeChecks"


@dataclass(frozen=True)
class UptimeTarget:
    key: str  # service key
    host: str  # the load balancer's domain
    path: str  # the service's health path as routed on the load balancer


@dataclass(frozen=True)
class UptimeChecksArgs:
    site: Site
    targets: tuple[UptimeTarget, ...]
    period_seconds: int = 60
    timeout_seconds: int = 10


class UptimeChecks(pulumi.ComponentResource):
    """One HTTPS check per target, probing its path from several regions.

    Outputs: `checks` (service key -> UptimeCheckConfig; its `uptime_check_id` feeds the service-down alert)."""

    def __init__(self, name: str, args: UptimeChecksArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site = args.site
        self.checks: dict[str, monitoring.UptimeCheckConfig] = {}
        for t in args.targets:
            self.checks[t.key] = monitoring.UptimeCheckConfig(
                t.key,
                monitoring.UptimeCheckConfigArgs(
                    project=site.project,
                    display_name=f"{service_name(t.key, site.environment)} up",
                    timeout=f"{args.timeout_seconds}s",
                    period=f"{args.period_seconds}s",
                    http_check=monitoring.UptimeCheckConfigHttpCheckArgs(
                        path=t.path, port=443, use_ssl=True, validate_ssl=True, request_method="GET",
                        accepted_response_status_codes=[
                            monitoring.UptimeCheckConfigHttpCheckAcceptedResponseStatusCodeArgs(status_class="STATUS_CLASS_2XX")],
                    ),
                    monitored_resource=monitoring.UptimeCheckConfigMonitoredResourceArgs(
                        type="uptime_url",
                        labels={"project_id": site.project, "host": t.host},
                    ),
                    user_labels={"env": site.environment, "service": t.key},
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
