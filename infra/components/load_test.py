"""The release load test: a Cloud Run job running Locust (loadtest/) and the bucket its verdicts land in.

The rollout executes the job at stage 0 with LOADTEST_TARGET_URL = the candidate's tagged URL
(`https://canary---<service host>`) and LOADTEST_RESULTS_URI = a fresh object in the results bucket,
waits for it, reads the verdict and adds the candidate's memory growth from Cloud Monitoring. Egress
goes through the VPC for all traffic: the services' ingress is INTERNAL_LOAD_BALANCER, and requests
from the stack's own VPC (Direct VPC egress, Private Google Access on the subnet) count as internal,
so the tagged run.app URL answers the job and nobody on the internet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from infra.config import StackConfig, service_name

COMPONENT_TYPE = "netra:verification:LoadTestJob"
RESULTS_RETENTION_DAYS = 90


@dataclass(frozen=True)
class LoadTestJobArgs:
    project: str
    region: str
    job_name: str
    image: str
    env: tuple[tuple[str, str], ...]  # the scenario and criteria settings (loadtest/run.py, loadtest/locustfile.py)
    cpu: str
    memory: str
    timeout_seconds: int
    target_service: str  # Cloud Run service whose candidate is loaded
    results_bucket: str
    bucket_location: str
    labels: tuple[tuple[str, str], ...]
    vpc_network: str
    vpc_subnetwork: str
    deletion_protection: bool
    access_log_bucket: pulumi.Input[str]  # where reads and writes of the results bucket are logged


def load_test_args(cfg: StackConfig, access_log_bucket: pulumi.Input[str]) -> Optional[LoadTestJobArgs]:
    """The job's args from the stack config; None when `netra:verification.loadTest` is not set."""
    from infra.components.network import network_name, subnet_name

    lt = cfg.verification.load_test
    if lt is None:
        return None
    env = {
        "LOADTEST_USERS": str(lt.users),
        "LOADTEST_SPAWN_RATE": f"{lt.spawn_rate:g}",
        "LOADTEST_DURATION_S": str(lt.duration_seconds),
        "LOADTEST_MAX_REQUESTS": str(lt.max_requests),
        "LOADTEST_WAIT_MIN_S": f"{lt.think_time_seconds[0]:g}",
        "LOADTEST_WAIT_MAX_S": f"{lt.think_time_seconds[1]:g}",
        "LOADTEST_HTTP_SCENARIOS": json.dumps([s.model_dump(by_alias=True, exclude_none=True) for s in lt.http],
                                              sort_keys=True, separators=(",", ":")),
        "LOADTEST_WS_PATH": lt.websocket.path,
        "LOADTEST_WS_USER_PERCENT": str(lt.websocket.user_percent),
        "LOADTEST_WS_MESSAGE": json.dumps(lt.websocket.message, sort_keys=True, separators=(",", ":")),
        "LOADTEST_WS_TIMEOUT_S": f"{lt.websocket.timeout_seconds:g}",
        "LOADTEST_CRITERIA": json.dumps(lt.criteria.model_dump(by_alias=True), sort_keys=True, separators=(",", ":")),
        **lt.env,
    }
    return LoadTestJobArgs(
        project=cfg.project, region=cfg.region, job_name=f"netra-loadtest-{cfg.environment}", image=lt.image,
        env=tuple(sorted(env.items())), cpu=lt.cpu, memory=lt.memory,
        timeout_seconds=lt.duration_seconds + 600,  # start-up, spawn, stop and upload on top of the run
        target_service=service_name(lt.service, cfg.environment),
        results_bucket=f"{cfg.project}-loadtest-results", bucket_location=cfg.platform.storage.location,
        labels=(("cost-center", cfg.cost_center), ("env", cfg.environment), ("managed-by", "pulumi"),
                ("service", "loadtest")),
        vpc_network=network_name(cfg), vpc_subnetwork=subnet_name(cfg), deletion_protection=cfg.is_prod,
        access_log_bucket=access_log_bucket,
    )


class LoadTestJob(pulumi.ComponentResource):
    """Service account, results bucket (it may write there and nowhere else) and the Locust job."""

    def __init__(self, name: str, args: LoadTestJobArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = dict(args.labels)
        self.args = args
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-sa",
            gcp.serviceaccount.AccountArgs(
                account_id=args.job_name, project=args.project, display_name=f"Cloud Run job {args.job_name}",
                description="Load-tests the candidate revision; writes its verdicts to the results bucket"),
            opts=child)
        self.bucket = gcp.storage.Bucket(
            f"{name}-results",
            gcp.storage.BucketArgs(
                name=args.results_bucket, project=args.project, location=args.bucket_location,
                uniform_bucket_level_access=True, public_access_prevention="enforced",
                force_destroy=not args.deletion_protection,
                labels={**labels, "purpose": "loadtest-results"},
                logging=gcp.storage.BucketLoggingArgs(log_bucket=args.access_log_bucket, log_object_prefix="loadtest-results"),
                lifecycle_rules=[gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=RESULTS_RETENTION_DAYS))]),
            opts=child)
        self.writes_results = gcp.storage.BucketIAMMember(
            f"{name}-writes-results",
            gcp.storage.BucketIAMMemberArgs(bucket=self.bucket.name, role="roles/storage.objectCreator",
                                            member=self.service_account.member),
            opts=child)
        self.job = run.Job(
            name,
            run.JobArgs(
                name=args.job_name, project=args.project, location=args.region, launch_stage="GA",
                deletion_protection=args.deletion_protection, labels=labels,
                template=run.JobTemplateArgs(
                    task_count=1, parallelism=1,
                    template=run.JobTemplateTemplateArgs(
                        service_account=f"{args.job_name}@{args.project}.iam.gserviceaccount.com",
                        execution_environment="EXECUTION_ENVIRONMENT_GEN2",
                        max_retries=0,  # a failed load test is looked at, not retried until it passes
                        timeout=f"{args.timeout_seconds}s",
                        vpc_access=run.JobTemplateTemplateVpcAccessArgs(
                            egress="ALL_TRAFFIC",  # run.app through the VPC: internal ingress accepts it
                            network_interfaces=[run.JobTemplateTemplateVpcAccessNetworkInterfaceArgs(
                                network=args.vpc_network, subnetwork=args.vpc_subnetwork)]),
                        containers=[run.JobTemplateTemplateContainerArgs(
                            image=args.image,
                            commands=["python", "-m", "loadtest.run"],
                            envs=[run.JobTemplateTemplateContainerEnvArgs(name=k, value=v) for k, v in args.env],
                            resources=run.JobTemplateTemplateContainerResourcesArgs(
                                limits={"cpu": args.cpu, "memory": args.memory}),
                        )],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, self.writes_results]))
        self.register_outputs({"name": args.job_name})

    def summary(self) -> dict:
        """The `loadTestJob` stack output the rollout reads."""
        return {"name": self.args.job_name, "region": self.args.region, "resultsBucket": self.args.results_bucket,
                "service": self.args.target_service}
