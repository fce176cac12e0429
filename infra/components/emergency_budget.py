"""Emergency budget guard (seed 000 severity 3): the budget's Pub/Sub topic and the function behind it.

Cloud Billing publishes the budget's notifications to the topic; the Cloud Functions gen2 function in
functions/emergency_budget/ derives the hourly spend rate and, on a spike, adds a version of the
emergency-limits secret (`<env>-emergency-limits`: `enable_emergency_limits`, `max_hourly_cost`; the
services mount it beside the feature flags) and pages through PagerDuty (the routing key is a secret of
its own). The function's identity may read and add versions of the emergency-limits secret only (never
the feature flags), read the PagerDuty key, and keep one state object in its bucket; nothing else.

Built in two steps: the budget needs the topic, and the function checks each notification against the
budget's id, which exists only once the budget does. `EmergencyBudget(...)` makes the topic, the
identity and its grants; `watch(budget_name)` adds the function once the budget is declared.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pulumi
import pulumi_gcp as gcp

COMPONENT_TYPE = "netra:verification:EmergencyBudget"
SOURCE_DIR = Path(__file__).resolve().parents[2] / "functions" / "emergency_budget"
ENTRY_POINT = "on_budget_notification"
# Cloud Billing publishes budget notifications as this service account (Billing docs, "Programmatic notifications").
BILLING_PUBLISHER = "serviceAccount:billing-budget-alert@system.gserviceaccount.com"


def source_digest(directory: Path = SOURCE_DIR) -> str:
    """Hash of the function's files: the source object's name changes (and the function redeploys) exactly when they do."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class EmergencyBudgetArgs:
    project: str
    region: str
    environment: str
    labels: tuple[tuple[str, str], ...]
    emergency_secret_id: str  # <env>-emergency-limits: the only secret the guard writes
    max_hourly_cost_usd: float
    trigger_hourly_cost_usd: float
    trigger_threshold_percent: Optional[float]
    bucket_location: str
    deletion_protection: bool
    access_log_bucket: pulumi.Input[str]  # where reads and writes of the guard's bucket are logged
    pagerduty_key: Optional[pulumi.Input[str]] = None  # a Pulumi secret; None = no pager (staging)
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)  # the emergency secret and its seed version
    budget_currency: str = "USD"  # the budget's amount is in USD; a notification in another currency is refused


class EmergencyBudget(pulumi.ComponentResource):
    def __init__(self, name: str, args: EmergencyBudgetArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        labels = dict(args.labels)
        env = args.environment
        fn_name = self.function_name = f"netra-budget-guard-{env}"
        self.topic_name = f"netra-budget-{env}"

        self.topic = gcp.pubsub.Topic(
            f"{name}-topic", gcp.pubsub.TopicArgs(name=self.topic_name, project=args.project, labels=labels),
            opts=child)
        gcp.pubsub.TopicIAMMember(
            f"{name}-billing-publishes",
            gcp.pubsub.TopicIAMMemberArgs(project=args.project, topic=self.topic.name, role="roles/pubsub.publisher",
                                          member=BILLING_PUBLISHER),
            opts=child)
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-sa",
            gcp.serviceaccount.AccountArgs(
                account_id=fn_name, project=args.project, display_name=f"Cloud Function {fn_name}",
                description="Turns on the emergency budget limits (an emergency-limits version) and pages"),
            opts=child)
        member = self.service_account.member
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            gcp.storage.BucketArgs(
                name=f"{args.project}-budget-guard", project=args.project, location=args.bucket_location,
                uniform_bucket_level_access=True, public_access_prevention="enforced",
                force_destroy=not args.deletion_protection, labels={**labels, "purpose": "budget-guard"},
                logging=gcp.storage.BucketLoggingArgs(log_bucket=args.access_log_bucket, log_object_prefix="budget-guard")),
            opts=child)
        grants: list[pulumi.Resource] = [
            gcp.storage.BucketIAMMember(
                f"{name}-keeps-state",
                gcp.storage.BucketIAMMemberArgs(bucket=self.bucket.name, role="roles/storage.objectUser", member=member),
                opts=child),
        ]
        after_secret = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        # reads the latest version (no second version when the limits are already on) and adds one
        for role, what in (("roles/secretmanager.secretAccessor", "reads"), ("roles/secretmanager.secretVersionAdder", "adds")):
            grants.append(gcp.secretmanager.SecretIamMember(
                f"{name}-{what}-emergency-limits",
                gcp.secretmanager.SecretIamMemberArgs(project=args.project, secret_id=args.emergency_secret_id, role=role,
                                                      member=member),
                opts=after_secret))
        pagerduty_secret = ""
        if args.pagerduty_key is not None:
            pagerduty_secret = f"{env}-pagerduty-key"
            secret = gcp.secretmanager.Secret(
                f"{name}-pagerduty-key",
                gcp.secretmanager.SecretArgs(
                    secret_id=pagerduty_secret, project=args.project, labels=labels,
                    replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs())),
                opts=child)
            version = gcp.secretmanager.SecretVersion(
                f"{name}-pagerduty-key",
                gcp.secretmanager.SecretVersionArgs(secret=secret.id, secret_data=pulumi.Output.secret(args.pagerduty_key),
                                                    deletion_policy="DISABLE"),
                opts=child)
            grants.append(gcp.secretmanager.SecretIamMember(
                f"{name}-reads-pagerduty-key",
                gcp.secretmanager.SecretIamMemberArgs(project=args.project, secret_id=pagerduty_secret,
                                                      role="roles/secretmanager.secretAccessor", member=member),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[secret, version])))
        # Its own build identity instead of the project's default build service account (broad by default):
        # it reads the source object, writes the build's logs and pushes the image Cloud Functions runs.
        self.build_account = gcp.serviceaccount.Account(
            f"{name}-build-sa",
            gcp.serviceaccount.AccountArgs(
                account_id=f"netra-budget-build-{env}", project=args.project, display_name=f"Cloud Build of {fn_name}",
                description="Builds the budget guard function: reads its source, writes build logs, pushes its image"),
            opts=child)
        builder = self.build_account.member
        grants += [
            gcp.storage.BucketIAMMember(
                f"{name}-build-reads-source",
                gcp.storage.BucketIAMMemberArgs(bucket=self.bucket.name, role="roles/storage.objectViewer", member=builder),
                opts=child),
            *(gcp.projects.IAMMember(
                f"{name}-build-{what}",
                gcp.projects.IAMMemberArgs(project=args.project, role=role, member=builder), opts=child)
              # the image repository (gcf-artifacts) appears only with the first build, so it cannot be granted on
              for role, what in (("roles/logging.logWriter", "writes-logs"), ("roles/artifactregistry.writer", "pushes-image"))),
        ]
        self.source = gcp.storage.BucketObject(
            f"{name}-source",
            gcp.storage.BucketObjectArgs(bucket=self.bucket.name, name=f"source/emergency_budget-{source_digest()}.zip",
                                         source=pulumi.FileArchive(str(SOURCE_DIR))),
            opts=child)
        self._args, self._grants, self._pagerduty_secret = args, grants, pagerduty_secret

    def watch(self, budget_name: pulumi.Input[str]) -> gcp.cloudfunctionsv2.Function:
        """The function on the topic, judging notifications of `budget_name` (billingAccounts/<a>/budgets/<id>)."""
        args, name, env = self._args, self._name, self._args.environment
        child = pulumi.ResourceOptions(parent=self)
        settings = {
            "PROJECT": args.project, "ENVIRONMENT": env, "EMERGENCY_SECRET": args.emergency_secret_id,
            "PAGERDUTY_SECRET": self._pagerduty_secret, "STATE_URI": f"gs://{args.project}-budget-guard/state/budget.json",
            "BUDGET_NAME": budget_name, "BUDGET_CURRENCY": args.budget_currency,
            "MAX_HOURLY_COST_USD": f"{args.max_hourly_cost_usd:g}",
            "TRIGGER_HOURLY_COST_USD": f"{args.trigger_hourly_cost_usd:g}",
            "TRIGGER_THRESHOLD_PERCENT": "" if args.trigger_threshold_percent is None else f"{args.trigger_threshold_percent:g}",
        }
        self.function = gcp.cloudfunctionsv2.Function(
            name,
            gcp.cloudfunctionsv2.FunctionArgs(
                name=self.function_name, project=args.project, location=args.region, labels=dict(args.labels),
                description="Seed 000 severity 3: emergency budget limits on a cost spike",
                build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                    runtime="python311", entry_point=ENTRY_POINT,
                    service_account=pulumi.Output.concat("projects/", args.project, "/serviceAccounts/",
                                                         self.build_account.email),
                    source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                        storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                            bucket=self.bucket.name, object=self.source.name))),
                service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                    service_account_email=self.service_account.email, max_instance_count=1, min_instance_count=0,
                    available_memory="256M", timeout_seconds=60, ingress_settings="ALLOW_INTERNAL_ONLY",
                    all_traffic_on_latest_revision=True, environment_variables=settings),
                event_trigger=gcp.cloudfunctionsv2.FunctionEventTriggerArgs(
                    trigger_region=args.region, event_type="google.cloud.pubsub.topic.v1.messagePublished",
                    pubsub_topic=self.topic.id, retry_policy="RETRY_POLICY_RETRY",
                    service_account_email=self.service_account.email),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._grants))
        # Eventarc delivers the Pub/Sub event to the function's Cloud Run service as the trigger's identity.
        gcp.cloudrunv2.ServiceIamMember(
            f"{name}-trigger-invokes",
            gcp.cloudrunv2.ServiceIamMemberArgs(project=args.project, location=args.region, name=self.function.name,
                                                role="roles/run.invoker", member=self.service_account.member),
            opts=child)
        self.register_outputs({"topic": self.topic.id, "function": self.function.name})
        return self.function

    def summary(self) -> dict:
        return {"function": self.function_name, "topic": self.topic_name}
