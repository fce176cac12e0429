"""The analytics subnet, its egress (Cloud NAT: packages and the Ops Agent, no external IPs) and the
firewall rules around the ClickHouse and Keeper nodes.

Ingress is allow-listed; everything else meets the VPC's implied deny:
    service subnet        -> ClickHouse  9440 (native TLS), 8443 (HTTPS)      clients, through the ILB
    ClickHouse            -> ClickHouse  9440, 9010 (interserver HTTPS)       Distributed queries, replication
    ClickHouse            -> Keeper      9281 (Keeper client TLS)
    Keeper                -> Keeper      9234 (Raft TLS), 9281
    IAP TCP forwarding    -> both        22                                   operators (OS Login)
    Google health checks  -> ClickHouse 8443, Keeper 9281                     autohealing and the ILB
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi

from infra.components.gcp_compute import compute

from . import topology as t

COMPONENT_TYPE = "netra:analytics:Network"
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")


@dataclass(frozen=True)
class AnalyticsNetworkArgs:
    project: str
    region: str
    environment: str
    network: pulumi.Input[str]  # the VPC (id or self link)
    subnet_cidr: str
    service_cidr: str  # Cloud Run Direct VPC egress subnet: the only client range
    operator_ranges: tuple[str, ...]
    labels: Mapping[str, str]


def tags(environment: str) -> tuple[str, str]:
    """Network tags of the ClickHouse and the Keeper nodes."""
    return f"netra-{environment}-clickhouse", f"netra-{environment}-keeper"


class AnalyticsNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: AnalyticsNetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = t.prefix(args.environment)
        ch, keeper = tags(args.environment)
        self.ch_tag, self.keeper_tag = ch, keeper

        self.subnet = compute.Subnetwork(
            "analytics", compute.SubnetworkArgs(
                name=f"{prefix}-analytics", project=args.project, region=args.region, network=args.network,
                # the nodes (no external IP) read Secret Manager, write backups to Cloud Storage, logs and
                # metrics; Cloud NAT enables Private Google Access on the ranges it serves in any case
                ip_cidr_range=args.subnet_cidr, private_ip_google_access=True, stack_type="IPV4_ONLY",
                description="ClickHouse and Keeper nodes (no external IPs)",
                log_config=compute.SubnetworkLogConfigArgs(aggregation_interval="INTERVAL_5_SEC", flow_sampling=0.5,
                                                           metadata="INCLUDE_ALL_METADATA")),
            opts=child)
        self.router = compute.Router(
            "analytics-egress", compute.RouterArgs(name=f"{prefix}-analytics-egress", project=args.project,
                                                   region=args.region, network=args.network),
            opts=child)
        self.nat = compute.RouterNat(
            "analytics-egress", compute.RouterNatArgs(
                name=f"{prefix}-analytics-egress", project=args.project, region=args.region, router=self.router.name,
                nat_ip_allocate_option="AUTO_ONLY", source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
                subnetworks=[compute.RouterNatSubnetworkArgs(name=self.subnet.id,
                                                             source_ip_ranges_to_nats=["ALL_IP_RANGES"])],
                log_config=compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY")),
            opts=child)

        def allow(key: str, description: str, ports: list[int], targets: list[str], *,
                  sources: tuple[str, ...] = (), source_tags: tuple[str, ...] = ()) -> compute.Firewall:
            return compute.Firewall(
                key, compute.FirewallArgs(
                    name=f"{prefix}-{key}", project=args.project, network=args.network, direction="INGRESS",
                    priority=1000, description=description,
                    allows=[compute.FirewallAllowArgs(protocol="tcp", ports=[str(p) for p in ports])],
                    source_ranges=list(sources) or None, source_tags=list(source_tags) or None, target_tags=targets,
                    log_config=compute.FirewallLogConfigArgs(metadata="INCLUDE_ALL_METADATA")),
                opts=child)

        self.rules = {
            "ch-clients": allow("ch-clients", "Cloud Run services -> ClickHouse (TLS only)",
                                [t.NATIVE_TLS_PORT, t.HTTPS_PORT], [ch], sources=(args.service_cidr,)),
            "ch-interserver": allow("ch-interserver", "ClickHouse <-> ClickHouse: Distributed queries and replication",
                                    [t.NATIVE_TLS_PORT, t.INTERSERVER_HTTPS_PORT], [ch], source_tags=(ch,)),
            "keeper-clients": allow("keeper-clients", "ClickHouse -> Keeper client port (TLS)",
                                    [t.KEEPER_CLIENT_PORT], [keeper], source_tags=(ch,)),
            "keeper-raft": allow("keeper-raft", "Keeper <-> Keeper: Raft and client port (TLS)",
                                 [t.KEEPER_RAFT_PORT, t.KEEPER_CLIENT_PORT], [keeper], source_tags=(keeper,)),
            "analytics-iap-ssh": allow("analytics-iap-ssh", "operators over IAP TCP forwarding (OS Login)", [22],
                                       [ch, keeper], sources=args.operator_ranges),
            "analytics-health-checks": allow("analytics-health-checks", "Google health checks: autohealing and the ILB",
                                             [t.HTTPS_PORT, t.KEEPER_CLIENT_PORT], [ch, keeper],
                                             sources=HEALTH_CHECK_RANGES),
        }
        self.register_outputs({"subnetwork": self.subnet.name})
