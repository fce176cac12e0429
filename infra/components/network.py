"""The VPC: a subnet for Cloud Run Direct VPC egress and private services access for Cloud SQL and Redis."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp

from infra.components.gcp_compute import compute
from infra.config.platform import NetworkConfig

from .site import Site

COMPONENT_TYPE = "netra:platform:Network"
SERVICE_NETWORKING = "servicenetworking.googleapis.com"


def network_name(site: Site) -> str:
    return f"{site.prefix}-vpc"


def subnet_name(site: Site) -> str:
    return f"{site.prefix}-run-egress"


@dataclass(frozen=True)
class NetworkArgs:
    """`private_google_access`: whether something on the egress subnet sends Google-bound traffic into the VPC
    (a Cloud Run job with egress ALL_TRAFFIC: the load test reaching run.app URLs as internal). Services and
    jobs with PRIVATE_RANGES_ONLY egress reach Google APIs outside the VPC and do not need it; off, callers on
    this subnet cannot reach run.app URLs as "internal" traffic."""

    site: Site
    config: NetworkConfig
    private_google_access: bool = False


class Network(pulumi.ComponentResource):
    """VPC (custom subnets), the egress subnet and the private services access peering.

    Cloud SQL and Memorystore get private IPs from `privateServicesCidr` through the servicenetworking
    Connection; both depend on it explicitly. The Connection is abandoned on delete (the peering goes
    with the VPC): deleting it directly fails while producer services still hold addresses, which
    would block `pulumi destroy` of staging.

    Outputs: `name`, `subnet_name` (plain names, what Cloud Run's VPC access takes), `vpc`, `subnet`,
    `psa_range`, `connection` and `peered_range` (the private services range, read from the
    peering so that a resource using it waits for the peering).
    """

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site, net = args.site, args.config
        child = pulumi.ResourceOptions(parent=self)
        self.name = network_name(site)
        self.subnet_name = subnet_name(site)

        self.vpc = compute.Network(
            "vpc",
            compute.NetworkArgs(
                name=self.name, project=site.project, auto_create_subnetworks=False, routing_mode="REGIONAL",
                description=f"Netra {site.environment}: Cloud Run egress, Cloud SQL and Memorystore private IPs"),
            opts=child,
        )
        self.subnet = compute.Subnetwork(
            "run-egress",
            compute.SubnetworkArgs(
                name=self.subnet_name, project=site.project, region=site.region, network=self.vpc.id,
                ip_cidr_range=net.subnet_cidr, private_ip_google_access=args.private_google_access, stack_type="IPV4_ONLY",
                description="Cloud Run Direct VPC egress (2 addresses per instance)",
                # VPC Flow Logs (CIS 3.8, CKV_GCP_26): what the services reach, for incident response
                log_config=compute.SubnetworkLogConfigArgs(
                    aggregation_interval="INTERVAL_5_SEC", flow_sampling=net.flow_log_sampling,
                    metadata="INCLUDE_ALL_METADATA")),
            opts=child,
        )
        self.psa_range = compute.GlobalAddress(
            "private-services",
            compute.GlobalAddressArgs(
                name=f"{site.prefix}-private-services", project=site.project, purpose="VPC_PEERING",
                address_type="INTERNAL", address=net.psa_address, prefix_length=net.psa_prefix, network=self.vpc.id,
                description="Private services access: Cloud SQL and Memorystore"),
            opts=child,
        )
        self.connection = gcp.servicenetworking.Connection(
            "private-services",
            gcp.servicenetworking.ConnectionArgs(
                network=self.vpc.id, service=SERVICE_NETWORKING, reserved_peering_ranges=[self.psa_range.name],
                deletion_policy="ABANDON", update_on_creation_fail=True),
            opts=child,
        )
        # The range name read back from the peering: whoever takes an address from it (Cloud SQL,
        # Memorystore) thereby waits for the peering, which the API requires.
        self.peered_range: pulumi.Output[str] = self.connection.reserved_peering_ranges.apply(lambda r: r[0])
        self.register_outputs({"network": self.name, "subnetwork": self.subnet_name})
