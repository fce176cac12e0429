"""Uptime checks on the public endpoints: the seed's "service down" signal."""
from __future__ import annotations

from typing import Mapping, Optional
from urllib.parse import urlparse

import pulumi
from pulumi_gcp import monitoring

from infra.config import StackConfig, service_name

COMPONENT_TYPE = "netra:observability:UptimeChecks"


def host_of(url: str) -> str:
    return urlparse(url).hostname or url


def path_under(url: str, path: str) -> str:
    """The health path under the URL's route prefix: https://app/api + /health -> /api/health."""
    return urlparse(url).path.rstrip("/") + path


class UptimeChecks(pulumi.ComponentResource):
    """One HTTPS check per public service, probing its health path from several regions."""

    def __init__(self, name: str, cfg: StackConfig, urls: Mapping[str, pulumi.Input[str]],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        up = cfg.observability.uptime
        self.checks: dict[str, monitoring.UptimeCheckConfig] = {}
        for key, url in urls.items():
            self.checks[key] = monitoring.UptimeCheckConfig(
                key,
                monitoring.UptimeCheckConfigArgs(
                    project=cfg.project,
                    display_name=f"{service_name(key, cfg.environment)} up",
                    timeout=f"{up.timeout_seconds}s",
                    period=f"{up.period_seconds}s",
                    http_check=monitoring.UptimeCheckConfigHttpCheckArgs(
                        path=pulumi.Output.from_input(url).apply(lambda u: path_under(u, up.path)), port=443, use_ssl=True, validate_ssl=True, request_method="GET",
                        accepted_response_status_codes=[
                            monitoring.UptimeCheckConfigHttpCheckAcceptedResponseStatusCodeArgs(status_class="STATUS_CLASS_2XX")],
                    ),
                    monitored_resource=monitoring.UptimeCheckConfigMonitoredResourceArgs(
                        type="uptime_url",
                        labels={"project_id": cfg.project, "host": pulumi.Output.from_input(url).apply(host_of)},
                    ),
                    user_labels={"env": cfg.environment, "service": key},
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
