"""Log retention on the project's _Default bucket (seed 000: log_retention_days 30)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_gcp import logging

from ..site import Site

COMPONENT_TYPE = "netra:observability:LogRetention"


@dataclass(frozen=True)
class LogRetentionArgs:
    site: Site
    retention_days: int = 30


class LogRetention(pulumi.ComponentResource):
    """Outputs: `bucket` (the adopted _Default bucket config)."""

    def __init__(self, name: str, args: LogRetentionArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site = args.site
        # _Default always exists: Pulumi adopts it and sets retention (deleting it only forgets it).
        self.bucket = logging.ProjectBucketConfig(
            "default-bucket",
            logging.ProjectBucketConfigArgs(
                project=site.project,
                location="global",
                bucket_id="_Default",
                retention_days=args.retention_days,
                description=f"Netra {site.environment}: application and platform logs, "
                            f"{args.retention_days} days",
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
