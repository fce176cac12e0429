"""Log retention on the project's _Default bucket (seed 000: log_retention_days 30)."""
from __future__ import annotations

from typing import Optional

import pulumi
from pulumi_gcp import logging

from infra.config import StackConfig

COMPONENT_TYPE = "netra:observability:LogRetention"


class LogRetention(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        # _Default always exists: Pulumi adopts it and sets retention (deleting it only forgets it).
        self.bucket = logging.ProjectBucketConfig(
            "default-bucket",
            logging.ProjectBucketConfigArgs(
                project=cfg.project,
                location="global",
                bucket_id="_Default",
                retention_days=cfg.observability.log_retention_days,
                description=f"Netra {cfg.environment}: application and platform logs, "
                            f"{cfg.observability.log_retention_days} days",
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
