"""The ClickHouse cluster on Compute Engine: shards x replicas ClickHouse nodes and three Keeper nodes.

Each node is a zonal stateful managed instance group of size one (Google's pattern for stateful
workloads on Compute Engine), chosen over bare instances because it brings what a bare instance lacks:
- autohealing: a node failing its health check (HTTPS /ping, Keeper's TLS port) is recreated;
- a stable name: the per-instance config names the instance, and a stateful MIG recreates it under
  the same name, so its internal DNS name and its `{replica}` macro survive replacement;
- a data disk that outlives the instance: a separate `compute.Disk` (created first, `protect` in prod),
  attached through the per-instance config with delete rule NEVER: neither autohealing, nor a template
  change, nor deleting the group deletes it.
Template changes apply when a node is recreated (update policy OPPORTUNISTIC); per-node config changes
wait for an operator (minimal action NONE): a database cluster is rolled one node at a time
(README "Analytics", operating the cluster), never all at once by an `up`.

Private only: no access config (no external IP), OS Login, project SSH keys blocked, Shielded VM
(secure boot, vTPM, integrity monitoring). Disks are encrypted with the configured Cloud KMS key or,
declared explicitly by a `disk-encryption: google-managed` label, with Google-managed keys.
Clients reach the cluster through an internal passthrough load balancer on the native TLS and HTTPS ports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_gcp as gcp

from infra.components.gcp_compute import compute

from . import render
from . import topology as t
from .render import Cluster
from .topology import Node

COMPONENT_TYPE = "netra:analytics:ClickHouseCluster"
ENCRYPTION_LABEL = "disk-encryption"
LOG_AND_METRICS_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")


@dataclass(frozen=True)
class ClickHouseClusterArgs:
    project: str
    region: str
    environment: str
    cluster: Cluster
    machine_type: str
    disk_size_gb: int
    disk_type: str
    boot_disk_size_gb: int
    keeper_machine_type: str
    keeper_disk_size_gb: int
    keeper_disk_type: str
    image: str
    kms_key: Optional[str]
    backup_time: str
    full_backup_every_days: int
    subnet: pulumi.Input[str]
    tags: tuple[str, str]  # network tags: ClickHouse, Keeper
    address: pulumi.Input[str]  # the internal load balancer's address
    secret_ids: Mapping[str, str]  # Secret Manager key -> secret id (the platform's Secrets)
    protect: bool
    labels: Mapping[str, str] = field(default_factory=dict)


class ClickHouseCluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClickHouseClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.args = args
        child = pulumi.ResourceOptions(parent=self)
        prefix = t.prefix(args.environment)
        self.encryption = "cmek" if args.kms_key else "google-managed"

        self.accounts = {role: self._identity(role, prefix) for role in ("clickhouse", "keeper")}
        self.health_checks = {
            "clickhouse": compute.HealthCheck(
                "clickhouse", compute.HealthCheckArgs(
                    name=f"{prefix}-clickhouse", project=args.project, check_interval_sec=10, timeout_sec=5,
                    healthy_threshold=2, unhealthy_threshold=6, description="ClickHouse HTTPS /ping",
                    https_health_check=compute.HealthCheckHttpsHealthCheckArgs(port=t.HTTPS_PORT, request_path="/ping"),
                    log_config=compute.HealthCheckLogConfigArgs(enable=True)),
                opts=child),
            "keeper": compute.HealthCheck(
                "keeper", compute.HealthCheckArgs(
                    name=f"{prefix}-keeper", project=args.project, check_interval_sec=10, timeout_sec=5,
                    healthy_threshold=2, unhealthy_threshold=6, description="Keeper client port (TLS)",
                    tcp_health_check=compute.HealthCheckTcpHealthCheckArgs(port=t.KEEPER_CLIENT_PORT),
                    log_config=compute.HealthCheckLogConfigArgs(enable=True)),
                opts=child),
        }
        self.templates = {
            "clickhouse": self._template("clickhouse", prefix, args.machine_type, args.tags[0], {
                "netra-users-xml": render.users_xml(args.cluster), "netra-database": args.cluster.database},
                render.startup_script("clickhouse", args.cluster.version, args.secret_ids, args.project,
                                      (args.backup_time, args.full_backup_every_days))),
            "keeper": self._template("keeper", prefix, args.keeper_machine_type, args.tags[1], {},
                                     render.startup_script("keeper", args.cluster.version, args.secret_ids, args.project)),
        }
        self.disks: dict[str, compute.Disk] = {}
        self.groups: dict[str, compute.InstanceGroupManager] = {}
        self.configs: dict[str, compute.PerInstanceConfig] = {}
        first_replicas = {nodes[0].name for nodes in t.shards(list(args.cluster.nodes)).values()}
        for node in args.cluster.nodes:
            self._node(node, render.server_xml(args.cluster, node), args.disk_size_gb, args.disk_type,
                       {"netra-shard": f"{node.shard:02d}", "netra-backup": str(node.name in first_replicas).lower()})
        for node in args.cluster.keepers:
            self._node(node, render.keeper_xml(args.cluster, node), args.keeper_disk_size_gb, args.keeper_disk_type, {})

        # Clients: one internal passthrough load balancer over every ClickHouse node (native TLS + HTTPS).
        self.backend = compute.RegionBackendService(
            "clickhouse", compute.RegionBackendServiceArgs(
                name=f"{prefix}-clickhouse", project=args.project, region=args.region,
                load_balancing_scheme="INTERNAL", protocol="TCP", health_checks=self.health_checks["clickhouse"].id,
                session_affinity="CLIENT_IP", connection_draining_timeout_sec=60,
                backends=[compute.RegionBackendServiceBackendArgs(group=self.groups[n.key].instance_group,
                                                                  balancing_mode="CONNECTION")
                          for n in args.cluster.nodes],
                log_config=compute.RegionBackendServiceLogConfigArgs(enable=True, sample_rate=1.0)),
            opts=child)
        self.forwarding_rule = compute.ForwardingRule(
            "clickhouse", compute.ForwardingRuleArgs(
                name=f"{prefix}-clickhouse", project=args.project, region=args.region, load_balancing_scheme="INTERNAL",
                ip_protocol="TCP", ports=[str(t.NATIVE_TLS_PORT), str(t.HTTPS_PORT)], ip_address=args.address,
                subnetwork=args.subnet, backend_service=self.backend.id, labels=dict(args.labels)),
            opts=child)
        self.register_outputs({"nodes": [n.name for n in args.cluster.nodes],
                               "keepers": [n.name for n in args.cluster.keepers]})

    def _identity(self, role: str, prefix: str) -> gcp.serviceaccount.Account:
        """A service account per role: logs, metrics, and exactly the secrets the role's boot script reads."""
        args = self.args
        account = gcp.serviceaccount.Account(
            f"{role}-sa", gcp.serviceaccount.AccountArgs(
                account_id=f"{prefix}-{role}"[:30], project=args.project, display_name=f"{prefix} {role} nodes",
                description=f"Runs the {role} nodes: writes logs and metrics, reads its own secrets"),
            opts=pulumi.ResourceOptions(parent=self))
        for r in LOG_AND_METRICS_ROLES:
            gcp.projects.IAMMember(f"{role}-{r.split('/')[-1]}", gcp.projects.IAMMemberArgs(
                project=args.project, role=r, member=account.member), opts=pulumi.ResourceOptions(parent=self))
        reads = (*render.NODE_SECRETS, *render.TLS_SECRETS) if role == "clickhouse" else tuple(render.KEEPER_SECRETS)
        for key in reads:
            gcp.secretmanager.SecretIamMember(f"{role}-reads-{key}", gcp.secretmanager.SecretIamMemberArgs(
                project=args.project, secret_id=args.secret_ids[key], role="roles/secretmanager.secretAccessor",
                member=account.member), opts=pulumi.ResourceOptions(parent=self))
        return account

    def _encryption(self, kind):
        return kind(kms_key_self_link=self.args.kms_key) if self.args.kms_key else None

    def _template(self, role: str, prefix: str, machine_type: str, tag: str, metadata: Mapping[str, str],
                  script: str) -> compute.InstanceTemplate:
        args = self.args
        labels = {**args.labels, "component": role, ENCRYPTION_LABEL: self.encryption}
        return compute.InstanceTemplate(
            role, compute.InstanceTemplateArgs(
                name_prefix=f"{prefix}-{role}-", project=args.project, region=args.region, machine_type=machine_type,
                description=f"Netra {role} node ({args.environment}), version {args.cluster.version}",
                disks=[compute.InstanceTemplateDiskArgs(
                    boot=True, auto_delete=True, source_image=args.image, disk_size_gb=args.boot_disk_size_gb,
                    disk_type="pd-balanced", labels=labels,
                    disk_encryption_key=self._encryption(compute.InstanceTemplateDiskDiskEncryptionKeyArgs))],
                network_interfaces=[compute.InstanceTemplateNetworkInterfaceArgs(subnetwork=args.subnet)],
                service_account=compute.InstanceTemplateServiceAccountArgs(
                    email=self.accounts[role].email, scopes=["https://www.googleapis.com/auth/cloud-platform"]),
                shielded_instance_config=compute.InstanceTemplateShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True),
                scheduling=compute.InstanceTemplateSchedulingArgs(automatic_restart=True, on_host_maintenance="MIGRATE"),
                metadata={"enable-oslogin": "TRUE", "block-project-ssh-keys": "TRUE", "startup-script": script,
                          **metadata},
                tags=[tag], labels=labels),
            opts=pulumi.ResourceOptions(parent=self))

    def _node(self, node: Node, config_xml: str, size: int, disk_type: str, metadata: Mapping[str, str]) -> None:
        args = self.args
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect)
        self.disks[node.key] = compute.Disk(
            f"{node.key}-data", compute.DiskArgs(
                name=f"{node.name}-data", project=args.project, zone=node.zone, size=size, type=disk_type,
                description=f"{node.role} data of {node.name}: outlives the instance",
                labels={**args.labels, "component": node.role, ENCRYPTION_LABEL: self.encryption},
                disk_encryption_key=self._encryption(compute.DiskDiskEncryptionKeyArgs)),
            opts=keep)
        self.groups[node.key] = compute.InstanceGroupManager(
            node.key, compute.InstanceGroupManagerArgs(
                name=node.name, project=args.project, zone=node.zone, base_instance_name=node.name,
                description=f"{node.role} node {node.name}: one stateful instance, autohealed",
                versions=[compute.InstanceGroupManagerVersionArgs(name="primary",
                                                                  instance_template=self.templates[node.role].id)],
                target_size=1,
                stateful_disks=[compute.InstanceGroupManagerStatefulDiskArgs(device_name=t.DATA_DEVICE,
                                                                             delete_rule="NEVER")],
                auto_healing_policies=compute.InstanceGroupManagerAutoHealingPoliciesArgs(
                    health_check=self.health_checks[node.role].id, initial_delay_sec=600),
                update_policy=compute.InstanceGroupManagerUpdatePolicyArgs(
                    type="OPPORTUNISTIC", minimal_action="REPLACE", replacement_method="RECREATE",
                    max_surge_fixed=0, max_unavailable_fixed=1),
                named_ports=[compute.InstanceGroupManagerNamedPortArgs(name="clickhouse-tls", port=t.NATIVE_TLS_PORT)]
                if node.role == "clickhouse" else None,
                wait_for_instances=False),
            opts=keep)
        self.configs[node.key] = compute.PerInstanceConfig(
            node.key, compute.PerInstanceConfigArgs(
                project=args.project, zone=node.zone, instance_group_manager=self.groups[node.key].name,
                name=node.name, minimal_action="NONE", most_disruptive_allowed_action="REPLACE",
                remove_instance_on_destroy=False,
                preserved_state=compute.PerInstanceConfigPreservedStateArgs(
                    metadata={"netra-config-xml": config_xml, "netra-ops-agent-yaml": render.ops_agent_yaml(node),
                              **metadata},
                    disks=[compute.PerInstanceConfigPreservedStateDiskArgs(
                        device_name=t.DATA_DEVICE, source=self.disks[node.key].id, mode="READ_WRITE",
                        delete_rule="NEVER")])),
            opts=keep)

    def summary(self) -> dict:
        c = self.args.cluster
        return {"cluster": c.name, "database": c.database, "endpoint": self.args.address,
                "ports": {"nativeTls": t.NATIVE_TLS_PORT, "https": t.HTTPS_PORT},
                "nodes": [n.name for n in c.nodes], "keepers": [n.name for n in c.keepers]}
