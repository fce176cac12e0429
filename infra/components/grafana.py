"""Grafana on Cloud Run (seed 001's monitoring box), stateless: everything it shows is provisioned from code.

State: none of its own. Data sources and dashboards are files Grafana's provisioning reads at start
from a Cloud Storage volume (this stack writes them); users sign in through IAP and are created on
first visit as Viewers (JWT auth on IAP's signed header); the SQLite database Grafana keeps in the
container holds nothing that is not recreated from code or from IAP on the next start. So no Cloud SQL
database, no backup, and any instance can serve any request.

Identity: its own service account, whose only project role is `roles/monitoring.viewer` (the Cloud
Monitoring / Managed Prometheus data source); besides that it reads its provisioning bucket and the
three ClickHouse secrets of the read-only Grafana user.

Access: ingress internal-load-balancer only; the load balancer (infra/components/edge.py) serves it on
its own hostname through a backend service with IAP. Only IAP's service agent may invoke it (a caller
inside the VPC that reaches the run.app URL is refused by Cloud Run), and Grafana accepts only a token IAP
signed for this backend service: issuer IAP, audience `/projects/<number>/global/backendServices/<id>`
(read from Secret Manager at start, so the backend's id is not part of the revision template).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random
from pulumi_gcp import cloudrunv2 as run

from infra.release import model as release

from .observability.dashboard_model import Dashboard
from .observability import grafana_render

COMPONENT_TYPE = "netra:observability:Grafana"
PORT = 3000
PROVISIONING = "/etc/grafana/provisioning"
CA_DIR = "/secrets/clickhouse"
IAP_JWT_HEADER = "X-Goog-Iap-Jwt-Assertion"
IAP_JWKS = "https://www.gstatic.com/iap/verify/public_key-jwk"
IAP_ISSUER = "https://cloud.google.com/iap"
AUDIENCE_ENV = "IAP_AUDIENCE"
# Grafana applies GF_* overrides, then expands $__env{...} inside every value (pkg/setting: expandConfig),
# so the audience comes from the secret-backed env var at start.
EXPECT_CLAIMS = json.dumps({"iss": IAP_ISSUER, "aud": f"$__env{{{AUDIENCE_ENV}}}"})
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource@4.20.0"
# Secret Manager keys Grafana reads (the read-only ClickHouse user; the endpoint; the CA that signed it)
CLICKHOUSE_SECRETS = {"CLICKHOUSE_GRAFANA_PASSWORD": "clickhouse-grafana-password", "CLICKHOUSE_HOST": "clickhouse-host"}


@dataclass(frozen=True)
class GrafanaArgs:
    project: str
    region: str
    environment: str
    image: str
    domain: str
    cpu: str
    memory: str
    min_instances: int
    max_instances: int
    dashboards: Sequence[Dashboard]
    secret_ids: Mapping[str, str]  # Secret Manager key -> id, for the ClickHouse keys above and clickhouse-ca
    clickhouse_database: Optional[str]  # None: no ClickHouse data source
    vpc_network: Optional[str]  # Direct VPC egress to reach ClickHouse's internal load balancer
    vpc_subnetwork: Optional[str]
    access_logs_bucket: pulumi.Input[str]
    protect: bool
    iap_audience_secret: str  # Secret Manager id holding the audience IAP signs for (Edge.iap_audiences)
    iap_invoker: pulumi.Input[str]  # IAP's service agent: the only member that may invoke the service
    waits_for: Sequence[pulumi.Resource] = ()  # the audience secret and its version
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GrafanaSpec:
    """The revision template as plain values: the revision name is a hash of it."""

    image: str
    service_account: str
    env: tuple[tuple[str, str], ...]
    secret_env: tuple[tuple[str, str], ...]
    bucket: str
    ca_secret: Optional[str]
    cpu: str
    memory: str
    min_instances: int
    max_instances: int
    vpc: tuple[Optional[str], Optional[str]]
    provisioning_digest: str  # data sources and grafana.ini: a change restarts Grafana on a new revision


def service_name(environment: str) -> str:
    return f"netra-grafana-{environment}"


def datasources_yaml(project: str, clickhouse_database: Optional[str]) -> str:
    doc: dict = {"apiVersion": 1, "datasources": [{
        "name": "Cloud Monitoring", "uid": grafana_render.CLOUD_MONITORING.uid, "type": grafana_render.CLOUD_MONITORING.type_val,
        "access": "proxy", "isDefault": True, "editable": False,
        "jsonData": {"authenticationType": "gce", "defaultProject": project}}]}
    if clickhouse_database:
        from .clickhouse import topology
        from .clickhouse.render import GRAFANA_USER

        doc["datasources"].append({
            "name": "ClickHouse", "uid": grafana_render.CLICKHOUSE.uid, "type": grafana_render.CLICKHOUSE.type_val,
            "editable": False,
            "jsonData": {"host": "$__env{CLICKHOUSE_HOST}", "port": topology.NATIVE_TLS_PORT, "protocol": "native",
                         "secure": True, "username": GRAFANA_USER, "defaultDatabase": clickhouse_database,
                         "tlsAuthWithCACert": True},
            "secureJsonData": {"password": "$__env{CLICKHOUSE_GRAFANA_PASSWORD}", "tlsCACert": f"$__file{{{CA_DIR}/ca.pem}}"}})
    return json.dumps(doc, indent=2, sort_keys=True)  # JSON is YAML


def grafana_ini(clickhouse: bool) -> str:
    """Settings that are not auth (auth is in the environment, where the policy pack reads it): the
    ClickHouse data source plugin, pinned, installed before the server starts."""
    lines = ["[plugins]", f"preinstall_sync = {CLICKHOUSE_PLUGIN if clickhouse else ''}".rstrip(" ="),
             "", "[analytics]", "reporting_enabled = false", "check_for_updates = false", ""]
    return "\n".join(line for line in lines if line != "preinstall_sync")


def dashboards_provider_yaml() -> str:
    return json.dumps({"apiVersion": 1, "providers": [{
        "name": "netra", "folder": "Netra", "type": "file", "disableDeletion": True, "allowUiUpdates": False,
        "updateIntervalSeconds": 30, "options": {"path": f"{PROVISIONING}/dashboards/json"}}]}, indent=2, sort_keys=True)


class Grafana(pulumi.ComponentResource):
    def __init__(self, name: str, args: GrafanaArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.name = service_name(args.environment)
        labels = {**args.labels, "app": "grafana", "service": "grafana"}

        self.account = gcp.serviceaccount.Account(
            "grafana-sa", gcp.serviceaccount.AccountArgs(
                account_id=self.name, project=args.project, display_name=f"Grafana ({args.environment})",
                description="Grafana: reads Cloud Monitoring (monitoring.viewer), its provisioning files and the "
                            "read-only ClickHouse user's secrets"),
            opts=child)
        self.viewer = gcp.projects.IAMMember(
            "grafana-monitoring-viewer", gcp.projects.IAMMemberArgs(
                project=args.project, role="roles/monitoring.viewer", member=self.account.member),
            opts=child)

        # Provisioning files: data sources, the dashboards provider, one JSON per dashboard of the model.
        bucket_name = f"{args.project}-grafana-provisioning"
        self.bucket = gcp.storage.Bucket(
            "grafana-provisioning", gcp.storage.BucketArgs(
                name=bucket_name, project=args.project, location=args.region.upper(), force_destroy=not args.protect,
                uniform_bucket_level_access=True, public_access_prevention="enforced",
                versioning=gcp.storage.BucketVersioningArgs(enabled=True),
                logging=gcp.storage.BucketLoggingArgs(log_bucket=args.access_logs_bucket,
                                                      log_object_prefix="grafana-provisioning"),
                labels={**args.labels, "purpose": "grafana-provisioning"}),
            opts=child)
        self.reader = gcp.storage.BucketIAMMember(
            "grafana-reads-provisioning", gcp.storage.BucketIAMMemberArgs(
                bucket=self.bucket.name, role="roles/storage.objectViewer", member=self.account.member),
            opts=child)
        files = {"datasources/netra.yaml": datasources_yaml(args.project, args.clickhouse_database),
                 "dashboards/netra.yaml": dashboards_provider_yaml(),
                 "grafana.ini": grafana_ini(args.clickhouse_database is not None)}
        files.update({f"dashboards/json/{grafana_render.uid(d.display_name)}.json": grafana_render.dumps(d, args.project)
                      for d in args.dashboards})
        self.files = dict(files)
        self.objects = {path: gcp.storage.BucketObject(
            path.replace("/", "-").removesuffix(".json").removesuffix(".yaml"), gcp.storage.BucketObjectArgs(
                bucket=self.bucket.name, name=path, content=text,
                content_type={"json": "application/json", "yaml": "application/yaml"}.get(path.rsplit(".", 1)[-1], "text/plain")),
            opts=child) for path, text in files.items()}

        secret_env: dict[str, str] = {}
        reads: list[str] = []
        if args.clickhouse_database:
            secret_env = {var: args.secret_ids[key] for var, key in CLICKHOUSE_SECRETS.items()}
            reads = [*secret_env.values(), args.secret_ids["clickhouse-ca"]]
        self.admin_password = random.RandomPassword("grafana-admin", random.RandomPasswordArgs(length=32, special=False),
                                                    opts=child)
        self.admin_secret = gcp.secretmanager.Secret(
            "grafana-admin-password", gcp.secretmanager.SecretArgs(
                secret_id=f"{args.environment}-grafana-admin-password", project=args.project, labels=dict(args.labels),
                replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs())),
            opts=child)
        self.admin_version = gcp.secretmanager.SecretVersion(
            "grafana-admin-password", gcp.secretmanager.SecretVersionArgs(
                secret=self.admin_secret.id, secret_data=pulumi.Output.secret(self.admin_password.result),
                deletion_policy="DISABLE"),
            opts=child)
        secret_env["GF_SECURITY_ADMIN_PASSWORD"] = f"{args.environment}-grafana-admin-password"
        secret_env[AUDIENCE_ENV] = args.iap_audience_secret
        reads += [secret_env["GF_SECURITY_ADMIN_PASSWORD"], args.iap_audience_secret]
        self.grants = [gcp.secretmanager.SecretIamMember(
            f"grafana-reads-{sid}", gcp.secretmanager.SecretIamMemberArgs(
                project=args.project, secret_id=sid, role="roles/secretmanager.secretAccessor", member=self.account.member),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.admin_secret, *args.waits_for]))
            for sid in sorted(set(reads))]

        env = {
            "GF_SERVER_DOMAIN": args.domain, "GF_SERVER_ROOT_URL": f"https://{args.domain}/",
            "GF_PATHS_PROVISIONING": PROVISIONING,
            # who you are comes from IAP only: its signed header, verified against Google's keys
            "GF_AUTH_JWT_ENABLED": "true", "GF_AUTH_JWT_HEADER_NAME": IAP_JWT_HEADER, "GF_AUTH_JWT_JWK_SET_URL": IAP_JWKS,
            "GF_AUTH_JWT_EMAIL_CLAIM": "email", "GF_AUTH_JWT_USERNAME_CLAIM": "email", "GF_AUTH_JWT_AUTO_SIGN_UP": "true",
            "GF_AUTH_JWT_EXPECT_CLAIMS": EXPECT_CLAIMS,
            "GF_AUTH_ANONYMOUS_ENABLED": "false", "GF_AUTH_BASIC_ENABLED": "false", "GF_AUTH_DISABLE_LOGIN_FORM": "true",
            "GF_USERS_ALLOW_SIGN_UP": "false", "GF_USERS_AUTO_ASSIGN_ORG_ROLE": "Viewer",
            "GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_LOG_MODE": "console",
        }
        env["GF_PATHS_CONFIG"] = f"{PROVISIONING}/grafana.ini"
        # Dashboards are re-read from the volume every 30 s (file provider), so a dashboard change (the
        # canary dashboard names each release's candidate) never restarts Grafana; data sources and
        # settings are read at start, so they are part of the revision spec.
        digest = release.template_hash(tuple(sorted((p, t) for p, t in files.items() if not p.startswith("dashboards/"))))
        spec = GrafanaSpec(
            image=args.image, service_account=f"{self.name}@{args.project}.iam.gserviceaccount.com",
            env=tuple(sorted(env.items())), secret_env=tuple(sorted(secret_env.items())), bucket=bucket_name,
            ca_secret=args.secret_ids.get("clickhouse-ca") if args.clickhouse_database else None, cpu=args.cpu,
            memory=args.memory, min_instances=args.min_instances, max_instances=args.max_instances,
            vpc=(args.vpc_network, args.vpc_subnetwork), provisioning_digest=digest)
        self.spec = spec
        self.revision = release.candidate_revision(self.name, spec)
        self.service = run.Service(
            "grafana", run.ServiceArgs(
                name=self.name, project=args.project, location=args.region, description="Grafana (IAP, provisioned)",
                ingress="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", launch_stage="GA", deletion_protection=args.protect,
                labels=labels, template=self._template(spec, labels),
                traffics=[run.ServiceTrafficArgs(type="TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", revision=self.revision,
                                                 percent=100, tag="current")]),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.grants, self.reader, self.viewer,
                                                                 *self.objects.values(), *args.waits_for]))
        # IAP calls Cloud Run as its service agent: no other identity may invoke, so a caller that reaches the
        # run.app URL past the load balancer (same-project VPC, Private Google Access) is refused by Cloud Run
        self.invoker = gcp.cloudrunv2.ServiceIamMember(
            "grafana-invoker", gcp.cloudrunv2.ServiceIamMemberArgs(
                name=self.service.name, project=args.project, location=args.region, role="roles/run.invoker",
                member=args.iap_invoker),
            opts=child)
        self.register_outputs({"service": self.name, "revision": self.revision, "url": f"https://{args.domain}/"})

    def _template(self, spec: GrafanaSpec, labels: Mapping[str, str]) -> run.ServiceTemplateArgs:
        volumes = [run.ServiceTemplateVolumeArgs(name="provisioning", gcs=run.ServiceTemplateVolumeGcsArgs(
            bucket=spec.bucket, read_only=True))]
        mounts = [run.ServiceTemplateContainerVolumeMountArgs(name="provisioning", mount_path=PROVISIONING)]
        if spec.ca_secret:
            volumes.append(run.ServiceTemplateVolumeArgs(name="clickhouse-ca", secret=run.ServiceTemplateVolumeSecretArgs(
                secret=spec.ca_secret, default_mode=0o444,
                items=[run.ServiceTemplateVolumeSecretItemArgs(path="ca.pem", version="latest", mode=0o444)])))
            mounts.append(run.ServiceTemplateContainerVolumeMountArgs(name="clickhouse-ca", mount_path=CA_DIR))
        envs = [run.ServiceTemplateContainerEnvArgs(name=k, value=v) for k, v in spec.env]
        envs += [run.ServiceTemplateContainerEnvArgs(
            name=k, value_source=run.ServiceTemplateContainerEnvValueSourceArgs(
                secret_key_ref=run.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(secret=v, version="latest")))
            for k, v in spec.secret_env]
        network, subnet = spec.vpc
        probe = dict(path="/api/health", port=PORT)
        return run.ServiceTemplateArgs(
            revision=self.revision, service_account=spec.service_account, execution_environment="EXECUTION_ENVIRONMENT_GEN2",
            labels=dict(labels), max_instance_request_concurrency=80, timeout="60s",
            scaling=run.ServiceTemplateScalingArgs(min_instance_count=spec.min_instances, max_instance_count=spec.max_instances),
            vpc_access=run.ServiceTemplateVpcAccessArgs(
                egress="PRIVATE_RANGES_ONLY",
                network_interfaces=[run.ServiceTemplateVpcAccessNetworkInterfaceArgs(network=network, subnetwork=subnet)])
            if network else None,
            volumes=volumes,
            containers=[run.ServiceTemplateContainerArgs(
                image=spec.image, ports=run.ServiceTemplateContainerPortsArgs(container_port=PORT, name="http1"),
                envs=envs, volume_mounts=mounts,
                resources=run.ServiceTemplateContainerResourcesArgs(limits={"cpu": spec.cpu, "memory": spec.memory},
                                                                    cpu_idle=True, startup_cpu_boost=True),
                startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
                    http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(**probe),
                    period_seconds=5, timeout_seconds=3, failure_threshold=36),
                liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
                    http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(**probe),
                    period_seconds=30, timeout_seconds=5, failure_threshold=3))])

    def summary(self) -> dict:
        return {"service": self.name, "revision": self.revision, "dashboards": sorted(self.files)}
