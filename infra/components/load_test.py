"""The release load test: a Cloud Run job running Locust (loadtest/) and the bucket its verdicts land in.

The rollout executes the job at stage 0 with LOADTEST_TARGET_URL = the candidate's tagged URL
(`https://canary---<service host>`) and LOADTEST_RESULTS_URI = a fresh object in the results bucket,
waits for it, reads the verdict and adds the candidate's memory growth from Cloud Monitoring. Egress
goes through the VPC for all traffic: the services' ingress is INTERNAL_LOAD_BALANCER, and requests
from the stack's own VPC (Direct VPC egress, Private Google Access on the subnet) count as internal,
so the tagged run.app URL answers the job and nobody on the internet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run


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
