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
DAY = 86400


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

    Outputs: the buckets `static_assets`, `backups`, `migrations` and `public_read` (or None)."""

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
                    force_destroy=not site.protected,  # staging can be torn down; prod buckets must be emptied first
                    labels={**labels, "purpose": purpose, **({PUBLIC_BY_DESIGN_LABEL: "true"} if public else {})},
                    **kwargs),
                opts=child,
            )

        sa = st.static_assets
        self.static_assets = bucket(
            "static-assets", public=sa.public,
            website=gcp.storage.BucketWebsiteArgs(main_page_suffix="index.html", not_found_page="404.html"))
        self.public_read = None
        if sa.public:
            # Public by design: browsers fetch these through the load balancer's CDN backend bucket.
            self.public_read = gcp.storage.BucketIAMMember(
                "static-assets-public-read",
                gcp.storage.BucketIAMMemberArgs(bucket=self.static_assets.name, role="roles/storage.objectViewer",
                                                member="allUsers"),
                opts=child,
            )

        b = st.backups
        move = [("NEARLINE", b.nearline_after_days), ("COLDLINE", b.coldline_after_days), ("ARCHIVE", b.archive_after_days)]
        self.backups = bucket(
            "backups",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            retention_policy=gcp.storage.BucketRetentionPolicyArgs(retention_period=b.retention_days * DAY),
            lifecycle_rules=[
                *[gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="SetStorageClass", storage_class=cls),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=age, with_state="ANY"))
                  for cls, age in move],
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        num_newer_versions=b.noncurrent_versions_kept, with_state="ARCHIVED")),
            ],
        )
        self.migrations = bucket("migrations", versioning=gcp.storage.BucketVersioningArgs(enabled=True))
        self.register_outputs({"staticAssets": self.static_assets.name, "backups": self.backups.name,
                               "migrations": self.migrations.name})

    def summary(self) -> dict:
        return {"staticAssets": self.static_assets.name, "backups": self.backups.name, "migrations": self.migrations.name}
