"""A Cloud Run v2 service with its own service account and staged revision traffic."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from infra import release
from infra.config import ConfigError, Problem, StackConfig, service_name

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

    ingress: str = "INGRESS_TRAFFIC_ALL"
    vpc_network: Optional[str] = None
    vpc_subnetwork: Optional[str] = None
    secret_env: tuple[SecretEnv, ...] = ()
    secret_volumes: tuple[SecretVolume, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # plain values derived from config (DB_NAME, DB_POOL_SIZE, ...)
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


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


def labels_for(cfg: StackConfig, key: str) -> dict[str, str]:
    return {"env": cfg.environment, "service": key, "cost-center": cfg.cost_center, "managed-by": "pulumi"}


def release_approval(cfg: StackConfig, key: str) -> Optional[release.Approval]:
    record = cfg.release.approvals.get(key)
    if record is None:
        return None
    return release.Approval(record.revision, record.stage, record.by, record.evidence, record.rejected)


def canary_percent_key(cfg: StackConfig, key: str) -> str:
    """The config key that set this service's stage (for error messages)."""
    return f"netra:services.{key}.canaryPercent" if getattr(cfg.services, key).canary_percent is not None else "netra:canaryPercent"


def service_account_id(cfg: StackConfig, key: str) -> str:
    return service_name(key, cfg.environment)


def revision_spec(cfg: StackConfig, key: str, wiring: ServiceWiring) -> RevisionSpec:
    svc = getattr(cfg.services, key)
    env = {**cfg.app.environment(), **dict(wiring.env), **svc.env}
    return RevisionSpec(
        service_account=f"{service_account_id(cfg, key)}@{cfg.project}.iam.gserviceaccount.com",
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
        labels=tuple(sorted(labels_for(cfg, key).items())),
        env=tuple(sorted(env.items())),
        secret_env=tuple(sorted(wiring.secret_env, key=lambda s: s.name)),
        secret_volumes=tuple(sorted(wiring.secret_volumes, key=lambda v: v.name)),
        vpc_network=wiring.vpc_network,
        vpc_subnetwork=wiring.vpc_subnetwork,
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
        ] or None,
        containers=[run.ServiceTemplateContainerArgs(
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
        )],
    )


class CloudRunService(pulumi.ComponentResource):
    """frontend, backend or auth: service account, service, and the traffic of the current stage."""

    def __init__(self, key: str, cfg: StackConfig, wiring: ServiceWiring = ServiceWiring(),
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, key, None, opts)
        name = service_name(key, cfg.environment)
        svc = getattr(cfg.services, key)
        child = pulumi.ResourceOptions(parent=self)

        self.service_account = gcp.serviceaccount.Account(
            f"{key}-sa",
            gcp.serviceaccount.AccountArgs(
                account_id=service_account_id(cfg, key),
                display_name=f"Cloud Run {name}",
                description=f"Runs {name}; granted only what {key} reads",
                project=cfg.project,
            ),
            opts=child,
        )
        spec = revision_spec(cfg, key, wiring)
        self.spec = spec
        # secretAccessor on exactly the secrets this revision reads, before the revision is created
        # (Cloud Run checks access when it deploys the revision).
        read = sorted({s.secret for s in spec.secret_env} | {v.secret for v in spec.secret_volumes})
        self.secret_grants = [
            gcp.secretmanager.SecretIamMember(
                f"{key}-reads-{secret}",
                gcp.secretmanager.SecretIamMemberArgs(
                    project=cfg.project, secret_id=secret, role="roles/secretmanager.secretAccessor",
                    member=self.service_account.member),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(wiring.depends_on)),
            )
            for secret in read
        ]
        self.candidate_revision = release.candidate_revision(name, spec)
        self.stable_revision = svc.stable_revision
        approval = release_approval(cfg, key)
        share = release.decide_share(key, self.candidate_revision, self.stable_revision, cfg.canary_percent_for(key),
                                     approval, cfg.stages)
        if share.problem:
            raise ConfigError([Problem(canary_percent_key(cfg, key), share.problem)])
        self.canary_percent = share.percent
        self.traffic = release.traffic_plan(name, self.candidate_revision, self.stable_revision, self.canary_percent)
        for warning in (*share.warnings, *self.traffic.warnings):
            pulumi.log.warn(warning, resource=self)

        self.service = run.Service(
            key,
            run.ServiceArgs(
                name=name,
                project=cfg.project,
                location=cfg.region,
                description=f"Netra {key} ({cfg.environment})",
                ingress=wiring.ingress,
                launch_stage="GA",
                deletion_protection=cfg.is_prod,
                labels=labels_for(cfg, key),
                # the approval record beside the traffic, so the policy pack checks one against the other
                annotations=release.approval_annotations(approval, self.stable_revision, cfg.stages),
                template=template_args(spec, self.candidate_revision),
                traffics=[
                    run.ServiceTrafficArgs(type=REVISION_TRAFFIC, revision=t.revision, percent=t.percent, tag=t.tag)
                    for t in self.traffic.targets
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, *self.secret_grants, *wiring.depends_on]),
        )
        self.name = name
        self.url = self.service.uri
        self.register_outputs({
            "name": name,
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
