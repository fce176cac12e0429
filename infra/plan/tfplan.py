"""The offline plan as Terraform plan JSON, so Terraform-ecosystem scanners (Checkov) read our stacks.

pulumi-gcp is generated from the Terraform Google provider: each resource type is one Terraform
resource type and each property one Terraform attribute or block, renamed by two rules only:
snake_case becomes camelCase, and a block list (`rule`, `backend`, `env`) gets a plural name in Pulumi
(`rules`, `backends`, `envs`). So the export is mechanical:

- the type token maps to its Terraform type (`TF_TYPES`, one entry per type the stacks use);
- each property takes the Python SDK's snake_case name, singularised where Terraform's name is
  singular (`SINGULAR_BLOCKS`);
- nested objects (the SDK's `*Args` classes) become blocks, which Terraform's JSON always writes as
  lists (a max-one block is a list of one); maps (`labels`) stay objects;
- Pulumi secrets are not exported: the value is null and `sensitive_values` marks it, as Terraform
  marks sensitive attributes.

Which property is a block, a map or a scalar comes from the typed `*Args` classes of the SDK itself,
so a property the SDK does not know is an error here rather than a silent guess.
"""
from __future__ import annotations

import importlib
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from infra.compat import pulumi_sdk as pulumi_types  # pulumi._types' input-type helpers, pinned there

from .engine import PlannedResource, is_secret

FORMAT_VERSION = "1.2"
TERRAFORM_VERSION = "1.9.8"  # the plan format Checkov 3.x parses; nothing here depends on a Terraform binary
PROVIDERS = {"gcp": "registry.terraform.io/hashicorp/google", "random": "registry.terraform.io/hashicorp/random",
             "tls": "registry.terraform.io/hashicorp/tls"}

# Pulumi type token -> Terraform resource type (pulumi-gcp's provider mapping, one line per type we use).
TF_TYPES: dict[str, str] = {
    "gcp:billing/budget:Budget": "google_billing_budget",
    "gcp:cloudfunctionsv2/function:Function": "google_cloudfunctions2_function",
    "gcp:cloudrunv2/job:Job": "google_cloud_run_v2_job",
    "gcp:cloudrunv2/service:Service": "google_cloud_run_v2_service",
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": "google_cloud_run_v2_service_iam_member",
    "gcp:compute/backendBucket:BackendBucket": "google_compute_backend_bucket",
    "gcp:compute/backendService:BackendService": "google_compute_backend_service",
    "gcp:compute/globalAddress:GlobalAddress": "google_compute_global_address",
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": "google_compute_global_forwarding_rule",
    "gcp:compute/managedSslCertificate:ManagedSslCertificate": "google_compute_managed_ssl_certificate",
    "gcp:compute/network:Network": "google_compute_network",
    "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup": "google_compute_region_network_endpoint_group",
    "gcp:compute/sSLPolicy:SSLPolicy": "google_compute_ssl_policy",
    "gcp:compute/securityPolicy:SecurityPolicy": "google_compute_security_policy",
    "gcp:compute/subnetwork:Subnetwork": "google_compute_subnetwork",
    "gcp:compute/targetHttpProxy:TargetHttpProxy": "google_compute_target_http_proxy",
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy": "google_compute_target_https_proxy",
    "gcp:compute/uRLMap:URLMap": "google_compute_url_map",
    "gcp:logging/metric:Metric": "google_logging_metric",
    "gcp:logging/projectBucketConfig:ProjectBucketConfig": "google_logging_project_bucket_config",
    "gcp:monitoring/alertPolicy:AlertPolicy": "google_monitoring_alert_policy",
    "gcp:monitoring/dashboard:Dashboard": "google_monitoring_dashboard",
    "gcp:monitoring/genericService:GenericService": "google_monitoring_service",
    "gcp:monitoring/notificationChannel:NotificationChannel": "google_monitoring_notification_channel",
    "gcp:monitoring/slo:Slo": "google_monitoring_slo",
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": "google_monitoring_uptime_check_config",
    "gcp:organizations/project:Project": "google_project",
    "gcp:pubsub/topic:Topic": "google_pubsub_topic",
    "gcp:pubsub/topicIAMMember:TopicIAMMember": "google_pubsub_topic_iam_member",
    "gcp:redis/instance:Instance": "google_redis_instance",
    "gcp:secretmanager/secret:Secret": "google_secret_manager_secret",
    "gcp:secretmanager/secretIamMember:SecretIamMember": "google_secret_manager_secret_iam_member",
    "gcp:secretmanager/secretVersion:SecretVersion": "google_secret_manager_secret_version",
    "gcp:serviceaccount/account:Account": "google_service_account",
    "gcp:servicenetworking/connection:Connection": "google_service_networking_connection",
    "gcp:sql/database:Database": "google_sql_database",
    "gcp:sql/databaseInstance:DatabaseInstance": "google_sql_database_instance",
    "gcp:sql/user:User": "google_sql_user",
    "gcp:storage/bucket:Bucket": "google_storage_bucket",
    "gcp:storage/bucketIAMMember:BucketIAMMember": "google_storage_bucket_iam_member",
    "gcp:storage/bucketObject:BucketObject": "google_storage_bucket_object",
    "random:index/randomPassword:RandomPassword": "random_password",
    # the analytics cluster (infra/components/clickhouse/) and Grafana
    "gcp:compute/address:Address": "google_compute_address",
    "gcp:iap/webBackendServiceIamMember:WebBackendServiceIamMember": "google_iap_web_backend_service_iam_member",
    "gcp:compute/disk:Disk": "google_compute_disk",
    "gcp:compute/firewall:Firewall": "google_compute_firewall",
    "gcp:compute/forwardingRule:ForwardingRule": "google_compute_forwarding_rule",
    "gcp:compute/healthCheck:HealthCheck": "google_compute_health_check",
    "gcp:compute/instanceGroupManager:InstanceGroupManager": "google_compute_instance_group_manager",
    "gcp:compute/instanceTemplate:InstanceTemplate": "google_compute_instance_template",
    "gcp:compute/perInstanceConfig:PerInstanceConfig": "google_compute_per_instance_config",
    "gcp:compute/regionBackendService:RegionBackendService": "google_compute_region_backend_service",
    "gcp:compute/router:Router": "google_compute_router",
    "gcp:compute/routerNat:RouterNat": "google_compute_router_nat",
    "gcp:projects/iAMMember:IAMMember": "google_project_iam_member",
    "gcp:projects/service:Service": "google_project_service",  # infra/components/apis.py
    "gcp:storage/hmacKey:HmacKey": "google_storage_hmac_key",
    "tls:index/certRequest:CertRequest": "tls_cert_request",
    "tls:index/locallySignedCert:LocallySignedCert": "tls_locally_signed_cert",
    "tls:index/privateKey:PrivateKey": "tls_private_key",
    "tls:index/selfSignedCert:SelfSignedCert": "tls_self_signed_cert",
}

# Resources that are not cloud resources, so have no Terraform counterpart: not exported.
NOT_EXPORTED = {
    "pulumi-python:dynamic:Resource",  # MetricReady: waits for Cloud Monitoring, creates nothing
}

# Block lists whose Terraform name is singular (Pulumi pluralised it): (Terraform type, SDK path) -> name.
# The SDK path is the snake_case property path without list indices. Every other list keeps its name
# (Terraform's own name is already plural: `conditions`, `containers`, `database_flags`); a test walks
# every list of both stacks and fails on one that is in neither `SINGULAR_BLOCKS` nor `PLURAL_LISTS`.
SINGULAR_BLOCKS: dict[tuple[str, str], str] = {
    ("google_compute_security_policy", "rules"): "rule",
    ("google_compute_backend_service", "backends"): "backend",
    ("google_compute_url_map", "host_rules"): "host_rule",
    ("google_compute_url_map", "path_matchers"): "path_matcher",
    ("google_compute_url_map", "path_matchers.path_rules"): "path_rule",
    ("google_storage_bucket", "lifecycle_rules"): "lifecycle_rule",
    ("google_cloud_run_v2_service", "traffics"): "traffic",
    ("google_cloud_run_v2_service", "template.containers.envs"): "env",
    ("google_cloud_run_v2_job", "template.template.containers.envs"): "env",
    ("google_cloud_run_v2_job", "template.template.containers.commands"): "command",
    ("google_redis_instance", "maintenance_policy.weekly_maintenance_windows"): "weekly_maintenance_window",
    ("google_cloud_run_v2_service", "template.containers.depends_ons"): "depends_on",
    ("google_compute_firewall", "allows"): "allow",
    ("google_compute_instance_template", "disks"): "disk",
    ("google_compute_instance_template", "network_interfaces"): "network_interface",
    ("google_compute_instance_group_manager", "versions"): "version",
    ("google_compute_instance_group_manager", "stateful_disks"): "stateful_disk",
    ("google_compute_instance_group_manager", "named_ports"): "named_port",
    ("google_compute_per_instance_config", "preserved_state.disks"): "disk",
    ("google_compute_region_backend_service", "backends"): "backend",
    ("google_compute_router_nat", "subnetworks"): "subnetwork",
    ("google_compute_router_nat", "subnetworks.source_ip_ranges_to_nats"): "source_ip_ranges_to_nat",
}
# Lists whose Terraform name equals the SDK's (checked against the provider's field names).
PLURAL_LISTS: frozenset[tuple[str, str]] = frozenset({
    ("google_billing_budget", "budget_filter.projects"),
    ("google_billing_budget", "threshold_rules"),
    ("google_billing_budget", "all_updates_rule.monitoring_notification_channels"),
    ("google_cloud_run_v2_job", "template.template.containers"),
    ("google_cloud_run_v2_job", "template.template.containers.args"),
    ("google_cloud_run_v2_job", "template.template.containers.volume_mounts"),
    ("google_cloud_run_v2_job", "template.template.volumes"),
    ("google_cloud_run_v2_job", "template.template.volumes.secret.items"),
    ("google_cloud_run_v2_job", "template.template.vpc_access.network_interfaces"),
    ("google_cloud_run_v2_service", "template.containers"),
    ("google_cloud_run_v2_service", "template.containers.volume_mounts"),
    ("google_cloud_run_v2_service", "template.volumes"),
    ("google_cloud_run_v2_service", "template.volumes.secret.items"),
    ("google_cloud_run_v2_service", "template.vpc_access.network_interfaces"),
    ("google_compute_managed_ssl_certificate", "managed.domains"),
    ("google_compute_security_policy", "rules.match.config.src_ip_ranges"),
    ("google_compute_security_policy", "rules.header_action.request_headers_to_adds"),
    ("google_compute_backend_service", "custom_response_headers"),
    ("google_compute_backend_bucket", "custom_response_headers"),
    ("google_compute_target_https_proxy", "ssl_certificates"),
    ("google_compute_url_map", "host_rules.hosts"),
    ("google_compute_url_map", "path_matchers.path_rules.paths"),
    ("google_compute_url_map", "path_matchers.route_rules"),
    ("google_compute_url_map", "path_matchers.route_rules.match_rules"),
    ("google_compute_url_map", "path_matchers.route_rules.match_rules.header_matches"),
    ("google_logging_metric", "bucket_options.explicit_buckets.bounds"),
    ("google_logging_metric", "metric_descriptor.labels"),
    ("google_monitoring_alert_policy", "conditions"),
    ("google_monitoring_alert_policy", "conditions.condition_threshold.aggregations"),
    ("google_monitoring_alert_policy", "conditions.condition_threshold.aggregations.group_by_fields"),
    ("google_monitoring_alert_policy", "notification_channels"),
    ("google_monitoring_uptime_check_config", "selected_regions"),
    ("google_monitoring_uptime_check_config", "http_check.accepted_response_status_codes"),
    ("google_service_networking_connection", "reserved_peering_ranges"),
    ("google_sql_database_instance", "settings.database_flags"),
    ("google_sql_database_instance", "settings.ip_configuration.authorized_networks"),
    ("google_compute_firewall", "allows.ports"),
    ("google_compute_firewall", "source_ranges"),
    ("google_compute_firewall", "source_tags"),
    ("google_compute_firewall", "target_tags"),
    ("google_compute_forwarding_rule", "ports"),
    ("google_compute_instance_template", "service_account.scopes"),
    ("google_compute_instance_template", "tags"),
    ("google_monitoring_alert_policy", "conditions.condition_absent.aggregations"),
    ("google_monitoring_alert_policy", "conditions.condition_absent.aggregations.group_by_fields"),
    ("tls_cert_request", "dns_names"),
    ("tls_cert_request", "ip_addresses"),
    ("tls_locally_signed_cert", "allowed_uses"),
    ("tls_self_signed_cert", "allowed_uses"),
})

# Address names: Terraform identifiers (letters, digits, `_`, `-`; not starting with a digit or `-`).
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_-]")


class ExportError(Exception):
    """A resource or property the exporter has no exact Terraform mapping for."""


def args_class(type_token: str) -> type:
    """The SDK's `*Args` class of a Pulumi type token: gcp:storage/bucket:Bucket -> pulumi_gcp.storage.BucketArgs."""
    package, _, rest = type_token.partition(":")
    module, _, cls = rest.rpartition(":")
    module = module.split("/")[0]
    root = {"gcp": "pulumi_gcp", "random": "pulumi_random", "tls": "pulumi_tls"}.get(package)
    if root is None:
        raise ExportError(f"{type_token}: no Terraform provider for package {package!r}")
    path = root if module == "index" else f"{root}.{module}"
    if path == "pulumi_gcp.compute":
        from infra.components.gcp_compute import compute as mod  # the lazily loaded compute package
    else:
        mod = importlib.import_module(path)
    return getattr(mod, f"{cls}Args")


def _element(tp: Any) -> Any:
    """Input[X] / Optional[X] / Union[X, Awaitable[X], Output] -> X."""
    while typing.get_origin(tp) is typing.Union:
        members = [a for a in typing.get_args(tp) if a is not type(None)
                   and typing.get_origin(a) is None and not (isinstance(a, type) and a.__name__ == "Output")]
        members = members or [a for a in typing.get_args(tp) if a is not type(None)]
        tp = members[0]
    return tp


def _kind(tp: Any) -> tuple[str, Any]:
    """("block", ArgsClass) | ("blocks", ArgsClass) | ("list", None) | ("map", None) | ("scalar", None)."""
    tp = _element(tp)
    origin = typing.get_origin(tp)
    if origin in (list, Sequence):
        inner = _element(typing.get_args(tp)[0])
        return ("blocks", inner) if pulumi_types.is_input_type(inner) else ("list", None)
    if origin in (dict, Mapping):
        return "map", None
    if isinstance(tp, type) and pulumi_types.is_input_type(tp):
        return "block", tp
    return "scalar", None


def _fields(cls: type) -> dict[str, tuple[str, Any, str]]:
    """wire (camelCase) name -> (kind, nested class, snake_case name) for an `*Args` class."""
    types = pulumi_types.input_type_types(cls)
    names = {pulumi: py for py, pulumi in pulumi_types.input_type_py_to_pulumi_names(cls).items()}
    return {wire: (*_kind(tp), names.get(wire, wire)) for wire, tp in types.items()}


def convert(tf_type: str, cls: type, inputs: Mapping[str, Any], path: str = "", where: str = "") -> tuple[dict, dict]:
    """(values, sensitive_values) of one object of `cls`, Terraform-named."""
    fields = _fields(cls)
    values: dict[str, Any] = {}
    sensitive: dict[str, Any] = {}
    for wire, value in inputs.items():
        if wire.startswith("__"):
            continue
        if wire not in fields:
            raise ExportError(f"{where}: {cls.__name__} has no property {wire!r}")
        kind, nested, snake = fields[wire]
        sub = f"{path}.{snake}" if path else snake
        name = SINGULAR_BLOCKS.get((tf_type, sub), snake)
        if is_secret(value):
            values[name], sensitive[name] = None, True
            continue
        if value is None:
            continue
        if kind == "block":
            v, s = convert(tf_type, nested, value, sub, where)
            values[name], sens = [v], [s]
            if any(sens):
                sensitive[name] = sens
        elif kind == "blocks":
            pairs = [convert(tf_type, nested, item, sub, where) for item in value]
            values[name] = [v for v, _ in pairs]
            if any(s for _, s in pairs):
                sensitive[name] = [s for _, s in pairs]
        elif isinstance(value, dict) and set(value) == {"fileAsset"}:
            values[name] = value["fileAsset"]  # an asset's source is the file's path in Terraform too
        else:
            values[name] = value
    return values, sensitive


def list_paths(tf_type: str, cls: type, inputs: Mapping[str, Any], path: str = "") -> set[tuple[str, str]]:
    """Every (Terraform type, SDK path) holding a list in `inputs`: what `SINGULAR_BLOCKS` / `PLURAL_LISTS` classify."""
    fields = _fields(cls)
    found: set[tuple[str, str]] = set()
    for wire, value in inputs.items():
        if wire not in fields or value is None or is_secret(value):
            continue
        kind, nested, snake = fields[wire]
        sub = f"{path}.{snake}" if path else snake
        if kind in ("blocks", "list"):
            found.add((tf_type, sub))
        if kind == "block":
            found |= list_paths(tf_type, nested, value, sub)
        elif kind == "blocks":
            for item in value:
                found |= list_paths(tf_type, nested, item, sub)
    return found


def _addresses(resources: Sequence[PlannedResource]) -> dict[str, str]:
    """urn -> Terraform address name: the Pulumi name as an identifier, prefixed with its parent
    component's name where two resources of a type would share it."""
    by_urn = {r.urn: r for r in resources}

    def ident(text: str) -> str:
        text = _NOT_IDENT.sub("_", text)
        return text if re.match(r"[A-Za-z_]", text) else f"_{text}"

    names: dict[str, str] = {}
    seen: dict[tuple[str, str], int] = {}
    for r in resources:
        seen[(r.type, ident(r.name))] = seen.get((r.type, ident(r.name)), 0) + 1
    for r in resources:
        base = ident(r.name)
        if seen[(r.type, base)] > 1 and r.parent in by_urn:
            base = ident(f"{by_urn[r.parent].name}_{r.name}")
        names[r.urn] = base
    return names


def export(resources: Sequence[PlannedResource]) -> dict:
    """Terraform plan JSON (format 1.2) of the custom resources: every one is a `create`."""
    custom = [r for r in resources if r.custom and r.type not in NOT_EXPORTED]
    names = _addresses(custom)
    planned, changes = [], []
    for r in custom:
        tf_type = TF_TYPES.get(r.type)
        if tf_type is None:
            raise ExportError(f"{r.urn}: no Terraform type for {r.type}; add it to infra/plan/tfplan.py TF_TYPES")
        values, sensitive = convert(tf_type, args_class(r.type), r.inputs, where=r.urn)
        address = f"{tf_type}.{names[r.urn]}"
        provider = PROVIDERS[r.type.split(":")[0]]
        planned.append({"address": address, "mode": "managed", "type": tf_type, "name": names[r.urn],
                        "provider_name": provider, "schema_version": 0, "values": values,
                        "sensitive_values": sensitive})
        changes.append({"address": address, "mode": "managed", "type": tf_type, "name": names[r.urn],
                        "provider_name": provider,
                        "change": {"actions": ["create"], "before": None, "after": values, "after_unknown": {},
                                   "before_sensitive": False, "after_sensitive": sensitive}})
    return {"format_version": FORMAT_VERSION, "terraform_version": TERRAFORM_VERSION,
            "planned_values": {"root_module": {"resources": planned}},
            "resource_changes": changes,
            "configuration": {"root_module": {"resources": [
                {"address": p["address"], "mode": "managed", "type": p["type"], "name": p["name"],
                 "provider_config_key": p["provider_name"].rsplit("/", 1)[-1], "expressions": {}, "schema_version": 0}
                for p in planned]}}}
