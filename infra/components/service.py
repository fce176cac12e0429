"""A Cloud Run v2 service with its own service account and staged revision traffic."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from infra.release import model as release
from infra.config.loader import STACK_PLACEHOLDER
from infra.config import ConfigError, Problem, ServiceConfig, service_name
from infra.config.stack import DEFAULT_STAGES

from . import prometheus
from .prometheus import MetricsSidecar
from .site import Site

COMPONENT_TYPE = "netra:run:Service"
REVISION_TRAFFIC = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


@dataclass(frozen=True)
class SecretEnv:
    """An env var read from Secret Manager (secret in the stack's project)."""

    name: str
    secret: str
    version: str = "latest"


@dataclass(frozen=True)
class SecretVolume:
    """A secret mounted as a file: `<mount_path>/<file>` holds the secret's `version`."""

    name: str
    secret: str
    mount_path: str
    file: str
    version: str = "latest"


@dataclass(frozen=True)
class ServiceWiring:
    """What the platform hands a service: network, secrets, ingress and what must exist first."""

    ingress: str = "INGRESS_TRAFFIC_INTERNAL_ONLY"
    vpc_network: Optional[str] = None
    vpc_subnetwork: Optional[str] = None
    secret_env: tuple[SecretEnv, ...] = ()
    secret_volumes: tuple[SecretVolume, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # plain values derived from config (DB_NAME, DB_POOL_SIZE, ...)
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    metrics: Optional[MetricsSidecar] = None  # the Managed Prometheus sidecar (netra:observability.prometheus)


@dataclass(frozen=True)
class RevisionSpec:
    """Everything the revision template holds, as plain values.

    The template is built from this spec alone and the revision name is a hash of it, so the name
    changes exactly when the template changes. Values produced by other resources enter here as the
    names they are derived from (the service account's email, a secret's id), never as Outputs.
    """

    service_account: str
    image: str
    port: int
    cpu: str
    memory: str
    min_instances: int
    max_instances: int
    concurrency: int
    timeout_seconds: int
    session_affinity: bool
    health_check_path: str
    labels: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    secret_env: tuple[SecretEnv, ...]
    secret_volumes: tuple[SecretVolume, ...]
    vpc_network: Optional[str]
    vpc_subnetwork: Optional[str]
    # A field of the spec, so adding the sidecar changes the revision name once, and only its own
    # config (image, scrape port/path/interval) changes it again.
    metrics: Optional[MetricsSidecar] = None


APP_CONTAINER = "app"

# Service account ids are 6-30 characters; longer service names get a short id with a hash.
ACCOUNT_ID_MAX = 30


def labels_for(site: Site, key: str) -> dict[str, str]:
    return {"env": site.environment, "service": key, "cost-center": site.cost_center, "managed-by": "pulumi"}


def service_account_id(key: str, environment: str) -> str:
    """netra-<key>-<env> (the seed's names), or <key prefix>-<8 hex> when that exceeds 30 characters."""
    name = service_name(key, environment)
    if len(name) <= ACCOUNT_ID_MAX:
        return name
    return f"{key[:ACCOUNT_ID_MAX - 9].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class CloudRunServiceArgs:
    """One service of `netra:services`, the app settings every revision reads, and the platform wiring."""

    site: Site
    config: ServiceConfig
    canary_percent: int  # the stage asked for; the share it gets is bound to `approval`
    app_env: tuple[tuple[str, str], ...] = ()
    wiring: ServiceWiring = ServiceWiring()
    approval: Optional[release.Approval] = None  # netra:release.approvals.<key>
    stages: tuple[int, ...] = DEFAULT_STAGES
    canary_percent_key: str = "netra:canaryPercent"  # the config key that set the stage, for errors
    previous_revision: Optional[str] = None  # netra:release.bake.<key>.previous: tagged `previous` at 0 %


def revision_spec(key: str, args: CloudRunServiceArgs) -> RevisionSpec:
    """The template as plain values: a function of this service's own args only, so a change to
    another service can never change this revision's name."""
    svc, site, wiring = args.config, args.site, args.wiring
    env = {**dict(args.app_env), **dict(wiring.env), **svc.env}
    return RevisionSpec(
        service_account=f"{service_account_id(key, site.environment)}@{site.project}.iam.gserviceaccount.com",
        image=svc.image,
        port=svc.port,
        cpu=svc.cpu,
        memory=svc.memory,
        min_instances=svc.min_instances,
        max_instances=svc.max_instances,
        concurrency=svc.concurrency,
        timeout_seconds=svc.timeout_seconds,
        session_affinity=svc.session_affinity,
        health_check_path=svc.health_check_path,
        labels=tuple(sorted(labels_for(site, key).items())),
        env=tuple(sorted(env.items())),
        secret_env=tuple(sorted(wiring.secret_env, key=lambda s: s.name)),
        secret_volumes=tuple(sorted(wiring.secret_volumes, key=lambda v: v.name)),
        vpc_network=wiring.vpc_network,
        vpc_subnetwork=wiring.vpc_subnetwork,
        metrics=wiring.metrics,
    )


def template_args(spec: RevisionSpec, revision: str) -> run.ServiceTemplateArgs:
    envs = [run.ServiceTemplateContainerEnvArgs(name=k, value=v) for k, v in spec.env]
    envs += [
        run.ServiceTemplateContainerEnvArgs(
            name=s.name,
            value_source=run.ServiceTemplateContainerEnvValueSourceArgs(
                secret_key_ref=run.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(secret=s.secret, version=s.version)
            ),
        )
        for s in spec.secret_env
    ]
    vpc = None
    if spec.vpc_network:
        vpc = run.ServiceTemplateVpcAccessArgs(
            egress="PRIVATE_RANGES_ONLY",
            network_interfaces=[run.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                network=spec.vpc_network, subnetwork=spec.vpc_subnetwork)],
        )
    return run.ServiceTemplateArgs(
        revision=revision,
        service_account=spec.service_account,
        execution_environment="EXECUTION_ENVIRONMENT_GEN2",
        labels=dict(spec.labels),
        max_instance_request_concurrency=spec.concurrency,
        timeout=f"{spec.timeout_seconds}s",
        session_affinity=spec.session_affinity,
        scaling=run.ServiceTemplateScalingArgs(min_instance_count=spec.min_instances, max_instance_count=spec.max_instances),
        vpc_access=vpc,
        volumes=[
            run.ServiceTemplateVolumeArgs(name=v.name, secret=run.ServiceTemplateVolumeSecretArgs(
                secret=v.secret, default_mode=0o444,
                items=[run.ServiceTemplateVolumeSecretItemArgs(path=v.file, version=v.version, mode=0o444)]))
            for v in spec.secret_volumes
        ] + ([prometheus.volume(spec.metrics)] if spec.metrics else []) or None,
        containers=[run.ServiceTemplateContainerArgs(
            # named only with a sidecar, which starts after it (an unnamed container keeps the template as it was)
            name=APP_CONTAINER if spec.metrics else None,
            image=spec.image,
            ports=run.ServiceTemplateContainerPortsArgs(container_port=spec.port, name="http1"),
            envs=envs,
            volume_mounts=[run.ServiceTemplateContainerVolumeMountArgs(name=v.name, mount_path=v.mount_path)
                           for v in spec.secret_volumes] or None,
            resources=run.ServiceTemplateContainerResourcesArgs(
                limits={"cpu": spec.cpu, "memory": spec.memory}, cpu_idle=True, startup_cpu_boost=True),
            # Startup: up to 2 min for model/cache warm-up before liveness takes over.
            startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
                http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(path=spec.health_check_path, port=spec.port),
                initial_delay_seconds=0, period_seconds=5, timeout_seconds=3, failure_threshold=24),
            liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
                http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(path=spec.health_check_path, port=spec.port),
                period_seconds=30, timeout_seconds=5, failure_threshold=3),
        )] + ([prometheus.container(spec.metrics, APP_CONTAINER)] if spec.metrics else []),
    )


class CloudRunService(pulumi.ComponentResource):
    """One service of the map: service account, secret grants, service, and the traffic of the current stage.

    Outputs: `service` (the Cloud Run resource), `name`, `url`, `candidate_revision`, `stable_revision`,
    `canary_percent`, `traffic`, `spec`.
    """

    def __init__(self, name: str, args: CloudRunServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        key, site, svc, wiring = name, args.site, args.config, args.wiring
        service = service_name(key, site.environment)
        child = pulumi.ResourceOptions(parent=self)

        self.service_account = gcp.serviceaccount.Account(
            f"{key}-sa",
            gcp.serviceaccount.AccountArgs(
                account_id=service_account_id(key, site.environment),
                display_name=f"Cloud Run {service}",
                description=f"Runs {service}; granted only what {key} reads",
                project=site.project,
            ),
            opts=child,
        )
        spec = revision_spec(key, args)
        self.spec = spec
        # secretAccessor on exactly the secrets this revision reads, before the revision is created
        # (Cloud Run checks access when it deploys the revision).
        read = sorted({s.secret for s in spec.secret_env} | {v.secret for v in spec.secret_volumes}
                      | ({spec.metrics.config_secret} if spec.metrics else set()))
        self.secret_grants = [
            gcp.secretmanager.SecretIamMember(
                f"{key}-reads-{secret}",
                gcp.secretmanager.SecretIamMemberArgs(
                    project=site.project, secret_id=secret, role="roles/secretmanager.secretAccessor",
                    member=self.service_account.member),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(wiring.depends_on)),
            )
            for secret in read
        ]
        # the sidecar writes the scraped series to Managed Service for Prometheus as this identity
        self.metric_writer = gcp.projects.IAMMember(
            f"{key}-metric-writer", gcp.projects.IAMMemberArgs(
                project=site.project, role=prometheus.METRIC_WRITER, member=self.service_account.member),
            opts=child) if spec.metrics else None
        self.candidate_revision = release.candidate_revision(service, spec)
        self.stable_revision = svc.stable_revision
        share = release.decide_share(key, self.candidate_revision, self.stable_revision, args.canary_percent,
                                     args.approval, args.stages)
        if share.problem:
            raise ConfigError([Problem(args.canary_percent_key, share.problem)])
        self.canary_percent = share.percent
        self.traffic = release.traffic_plan(service, self.candidate_revision, self.stable_revision, self.canary_percent,
                                            args.previous_revision)
        for warning in (*share.warnings, *self.traffic.warnings):
            # the commands a warning suggests name this stack, so they run as pasted
            pulumi.log.warn(warning.replace(STACK_PLACEHOLDER, f"--stack {pulumi.get_stack()}"), resource=self)

        self.service = run.Service(
            key,
            run.ServiceArgs(
                name=service,
                project=site.project,
                location=site.region,
                description=f"Netra {key} ({site.environment})",
                ingress=wiring.ingress,
                launch_stage="GA",
                deletion_protection=site.protected,
                labels=labels_for(site, key),
                # the approval record beside the traffic, so the policy pack checks one against the other
                annotations=release.approval_annotations(args.approval, self.stable_revision, args.stages),
                template=template_args(spec, self.candidate_revision),
                traffics=[
                    run.ServiceTrafficArgs(type=REVISION_TRAFFIC, revision=t.revision, percent=t.percent, tag=t.tag)
                    for t in self.traffic.targets
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, *self.secret_grants, *wiring.depends_on]),
        )
        self.name = service
        self.url = self.service.uri
        self.register_outputs({
            "name": service,
            "url": self.url,
            "candidateRevision": self.candidate_revision,
            "stableRevision": self.stable_revision,
        })

    def summary(self) -> dict:
        """This service's stack output."""
        return {
            "serviceName": self.name,
            "url": self.url,
            "candidateRevision": self.candidate_revision,
            "stableRevision": self.stable_revision,
            "canaryPercent": self.canary_percent,
            "serviceAccount": self.spec.service_account,
            "traffic": [{"revision": t.revision, "percent": t.percent, "tag": t.tag} for t in self.traffic.targets],
        }
