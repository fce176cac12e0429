"""Notification channels from config, and which of them each severity notifies."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
from pulumi_gcp import monitoring

from infra.config.observability import ChannelKind, Routing

from ..site import Site

COMPONENT_TYPE = "netra:observability:NotificationChannels"


def _slug(address: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", address.lower()).strip("-")


KIND_NAMES = {"pagerduty": "PagerDuty", "email": "email"}


@dataclass(frozen=True)
class AlertRouting:
    """Who each severity notifies: the channels' resource names and the channel kinds (for runbooks)."""

    channels: Mapping[str, tuple[pulumi.Input[str], ...]] = field(default_factory=dict)
    kinds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def for_severity(self, severity: str) -> list[pulumi.Input[str]]:
        """The channels' resource names (projects/<p>/notificationChannels/<id>) for this severity."""
        return list(self.channels.get(severity, ()))

    def text(self, severity: str) -> str:
        return " + ".join(KIND_NAMES[k] for k in self.kinds.get(severity, ()))


@dataclass(frozen=True)
class NotificationChannelsArgs:
    site: Site
    emails: tuple[str, ...] = ()
    pagerduty_key: Optional[pulumi.Input[str]] = None  # stored as a Pulumi secret whatever is passed
    routing: Routing = Routing()


class NotificationChannels(pulumi.ComponentResource):
    """One email channel per address and a PagerDuty channel whose service key is a Pulumi secret.

    Outputs: `by_kind` (kind -> channels) and `routing` (what alert policies notify per severity)."""

    def __init__(self, name: str, args: NotificationChannelsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        labels = {"env": site.environment, "managed-by": "pulumi"}
        self.by_kind: dict[str, list[monitoring.NotificationChannel]] = {"email": [], "pagerduty": []}
        for address in args.emails:
            self.by_kind["email"].append(monitoring.NotificationChannel(
                f"email-{_slug(address)}",
                monitoring.NotificationChannelArgs(
                    project=site.project,
                    type="email",
                    display_name=f"Netra {site.environment} alerts: {address}",
                    labels={"email_address": address},
                    user_labels=labels,
                    enabled=True,
                ),
                opts=child,
            ))
        if args.pagerduty_key is not None:
            self.by_kind["pagerduty"].append(monitoring.NotificationChannel(
                "pagerduty",
                monitoring.NotificationChannelArgs(
                    project=site.project,
                    type="pagerduty",
                    display_name=f"Netra {site.environment} PagerDuty",
                    sensitive_labels=monitoring.NotificationChannelSensitiveLabelsArgs(
                        service_key=pulumi.Output.secret(args.pagerduty_key),
                    ),
                    user_labels=labels,
                    enabled=True,
                ),
                opts=child,
            ))
        kinds: dict[str, tuple[ChannelKind, ...]] = {sev: getattr(args.routing, sev) for sev in ("critical", "warning")}
        self.routing = AlertRouting(
            channels={sev: tuple(ch.name for kind in kinds[sev] for ch in self.by_kind[kind]) for sev in kinds},
            kinds=kinds)
        self.register_outputs({})
