"""Cloud Storage (seed: static assets and backups) plus the bucket the migration job reads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp

from infra.config.platform import StorageConfig

from .site import Site

# The label the policy pack honours on a bucket that config marks public (only static assets may be).
PUBLIC_BY_DESIGN_LABEL = "public-by-design"
COMPONENT_TYPE = "netra:platform:Storage"
BUCKET_TYPE = "gcp:storage/bucket:Bucket"
DAY = 86400
# Read an object by name, never list the bucket (objectViewer would let anyone enumerate it).
PUBLIC_READ_ROLE = "roles/storage.legacyObjectReader"
# The identity Cloud Storage writes usage logs as (Cloud Storage docs, "Usage logs & storage logs").
USAGE_LOG_WRITER = "group:cloud-storage-analytics@google.com"


RELEASE_LEDGER = "release-ledger"


def bucket_name(project: str, purpose: str) -> str:
    """Globally unique through the project id: netra-production-static-assets."""
    return f"{project}-{purpose}"


@dataclass(frozen=True)
class StorageArgs:
    site: Site
    config: StorageConfig


class Storage(pulumi.ComponentResource):
    """Uniform bucket-level access everywhere; public access prevention enforced unless a bucket is
    public by design in config (only the static-assets bucket may be).

    Outputs: the buckets `static_assets`, `backups`, `migrations`, `release_ledger` and `public_read` (or None)."""

    def __init__(self, name: str, args: StorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site, st = args.site, args.config
        child = pulumi.ResourceOptions(parent=self)
        labels = site.labels()

        def bucket(purpose: str, public: bool = False, **kwargs) -> gcp.storage.Bucket:
            return gcp.storage.Bucket(
                purpose,
                gcp.storage.BucketArgs(
                    name=bucket_name(site.project, purpose), project=site.project, location=st.location,
                    uniform_bucket_level_access=True,
                    public_access_prevention="inherited" if public else "enforced",
                    # never empties itself on delete, in any stack, unless config lifts its guard
                    force_destroy=not site.guards.kept(BUCKET_TYPE, purpose),
                    labels={**labels, "purpose": purpose, **({PUBLIC_BY_DESIGN_LABEL: "true"} if public else {})},
                    **kwargs),
                opts=child,
            )

        # Usage logs of every other bucket (CKV_GCP_62). Cloud Storage writes them as the
        # cloud-storage-analytics group, which needs objectCreator here and nothing else.
        self.access_logs = bucket(
            "access-logs",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            lifecycle_rules=[gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=st.access_logs.retention_days,
                                                                      with_state="ANY"))])
        self.access_log_writer = gcp.storage.BucketIAMMember(
            "access-logs-writer",
            gcp.storage.BucketIAMMemberArgs(bucket=self.access_logs.name, role="roles/storage.objectCreator",
                                            member=USAGE_LOG_WRITER),
            opts=child,
        )

        def logged(purpose: str) -> gcp.storage.BucketLoggingArgs:
            return gcp.storage.BucketLoggingArgs(log_bucket=self.access_logs.name, log_object_prefix=purpose)

        sa = st.static_assets
        self.static_assets = bucket(
            "static-assets", public=sa.public, logging=logged("static-assets"),
            website=gcp.storage.BucketWebsiteArgs(main_page_suffix="index.html", not_found_page="404.html"))
        self.public_read = None
        if sa.public:
            # Public by design: browsers fetch these through the load balancer's CDN backend bucket.
            # legacyObjectReader reads an object by name; unlike objectViewer it cannot list the bucket.
            self.public_read = gcp.storage.BucketIAMMember(
                "static-assets-public-read",
                gcp.storage.BucketIAMMemberArgs(bucket=self.static_assets.name, role=PUBLIC_READ_ROLE,
                                                member="allUsers"),
                opts=child,
            )

        b = st.backups
        move = [("NEARLINE", b.nearline_after_days), ("COLDLINE", b.coldline_after_days), ("ARCHIVE", b.archive_after_days)]
        # A retention policy, not versioning: Cloud Storage refuses a retention policy on a versioned
        # bucket, and the policy is the stronger guard (no delete or overwrite before the age, by anyone).
        self.backups = bucket(
            "backups", logging=logged("backups"),
            retention_policy=gcp.storage.BucketRetentionPolicyArgs(retention_period=str(b.retention_days * DAY)),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="SetStorageClass", storage_class=cls),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=age, with_state="ANY"))
                for cls, age in move],
        )
        self.migrations = bucket("migrations", logging=logged("migrations"),
                                 versioning=gcp.storage.BucketVersioningArgs(enabled=True))
        # The release ledger (infra/release/ledger.py): one object per stack, overwritten only with
        # if_generation_match. Versioned, so every generation stays readable (the audit trail), with soft
        # delete as its retention: a bucket retention policy would forbid the overwrites the ledger is made
        # of (and Cloud Storage refuses one on a versioned bucket). Old generations go after a year.
        rl = st.release_ledger
        self.release_ledger = bucket(
            RELEASE_LEDGER, logging=logged(RELEASE_LEDGER),
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(
                retention_duration_seconds=rl.soft_delete_days * DAY),
            lifecycle_rules=[gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    days_since_noncurrent_time=rl.noncurrent_days, with_state="ARCHIVED"))])
        # writable by the deploy and gate identities only (uniform access: no object ACLs)
        self.release_ledger_writers = [
            gcp.storage.BucketIAMMember(
                f"release-ledger-writer-{i}",
                gcp.storage.BucketIAMMemberArgs(bucket=self.release_ledger.name, role="roles/storage.objectUser",
                                                member=member),
                opts=child)
            for i, member in enumerate(rl.writers)]
        self.register_outputs(self.summary())

    def summary(self) -> dict:
        return {"staticAssets": self.static_assets.name, "backups": self.backups.name, "migrations": self.migrations.name,
                "accessLogs": self.access_logs.name, "releaseLedger": self.release_ledger.name}
