"""Notification channels from config, and which of them each severity notifies."""
from __future__ import annotations

import re
from typing import Optional

import pulumi
from pulumi_gcp import monitoring

from infra.config import StackConfig

COMPONENT_TYPE = "netra:observability:NotificationChannels"


def _slug(address: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", address.lower()).strip("-")


class NotificationChannels(pulumi.ComponentResource):
    """One email channel per address and a PagerDuty channel whose service key is a Pulumi secret."""

    def __init__(self, name: str, cfg: StackConfig, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        obs = cfg.observability
        child = pulumi.ResourceOptions(parent=self)
        labels = {"env": cfg.environment, "managed-by": "pulumi"}
        self.by_kind: dict[str, list[monitoring.NotificationChannel]] = {"email": [], "pagerduty": []}
        for address in obs.emails:
            self.by_kind["email"].append(monitoring.NotificationChannel(
                f"email-{_slug(address)}",
                monitoring.NotificationChannelArgs(
                    project=cfg.project,
                    type="email",
                    display_name=f"Netra {cfg.environment} alerts: {address}",
                    labels={"email_address": address},
                    user_labels=labels,
                    enabled=True,
                ),
                opts=child,
            ))
        if obs.pagerduty is not None:
            self.by_kind["pagerduty"].append(monitoring.NotificationChannel(
                "pagerduty",
                monitoring.NotificationChannelArgs(
                    project=cfg.project,
                    type="pagerduty",
                    display_name=f"Netra {cfg.environment} PagerDuty",
                    sensitive_labels=monitoring.NotificationChannelSensitiveLabelsArgs(
                        service_key=pulumi.Output.secret(obs.pagerduty.service_key.get_secret_value()),
                    ),
                    user_labels=labels,
                    enabled=True,
                ),
                opts=child,
            ))
        self.kinds = {sev: obs.channel_kinds(sev) for sev in ("critical", "warning")}
        self.routes = {
            severity: [ch for kind in obs.channel_kinds(severity) for ch in self.by_kind[kind]]
            for severity in ("critical", "warning")
        }
        self.register_outputs({})

    def for_severity(self, severity: str) -> list[pulumi.Output[str]]:
        """The channels' resource names (projects/<p>/notificationChannels/<id>) for this severity."""
        return [ch.name for ch in self.routes[severity]]

    def routing_text(self, severity: str) -> str:
        names = {"pagerduty": "PagerDuty", "email": "email"}
        return " + ".join(names[k] for k in self.kinds[severity])
