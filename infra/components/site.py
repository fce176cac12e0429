"""Where a component's resources go and how they are labelled: the few stack-wide values every
component needs, so no component has to read the whole StackConfig."""
from __future__ import annotations

from dataclasses import dataclass, field

from .guards import DataGuards


@dataclass(frozen=True)
class Site:
    project: str
    region: str
    environment: str  # staging | prod
    cost_center: str = "llm-platform"
    guards: DataGuards = field(default_factory=DataGuards)  # data protection, on in every stack

    @property
    def prefix(self) -> str:
        """Resource name prefix, e.g. netra-prod."""
        return f"netra-{self.environment}"

    @property
    def protected(self) -> bool:
        """Deletion protection of what holds no data (Cloud Run services and jobs): prod only. Data is
        guarded in every stack (`guards`)."""
        return self.environment == "prod"

    def labels(self, **extra: str) -> dict[str, str]:
        return {"env": self.environment, "cost-center": self.cost_center, "managed-by": "pulumi", **extra}
