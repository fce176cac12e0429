"""Where a component's resources go and how they are labelled: the few stack-wide values every
component needs, so no component has to read the whole StackConfig."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    project: str
    region: str
    environment: str  # staging | prod
    cost_center: str = "llm-platform"

    @property
    def prefix(self) -> str:
        """Resource name prefix, e.g. netra-prod."""
        return f"netra-{self.environment}"

    @property
    def protected(self) -> bool:
        """Deletion protection on stateful resources (prod); staging can be torn down."""
        return self.environment == "prod"

    def labels(self, **extra: str) -> dict[str, str]:
        return {"env": self.environment, "cost-center": self.cost_center, "managed-by": "pulumi", **extra}
