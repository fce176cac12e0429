"""Per-service config: the three Cloud Run services of the platform."""
from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import Field, ValidationInfo, field_validator

from .base import DIGEST, Bool, ConfigModel, Image, Int, ResourceName, Text, UrlPath, ordered_after, problems, text

SERVICE_KEYS = ("frontend", "backend", "auth")
CPU_VALUES = ("1", "2", "4", "6", "8")
# Cloud Run accepts env names of letters, digits and underscores not starting with a digit.
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# Names that say "this is a credential": such values belong in Secret Manager, never in env.
SECRET_LOOKING_ENV = re.compile(
    r"(PASSWORD|PASSWD|SECRET|PRIVATE_KEY|API_KEY|APIKEY|ACCESS_KEY|AUTH_TOKEN|ACCESS_TOKEN|CREDENTIAL)",
    re.IGNORECASE,
)
EnvName = text(255, ENV_NAME, "an environment variable name (letters, digits, _; not starting with a digit)")


def service_name(key: str, environment: str) -> str:
    """The Cloud Run service name, e.g. netra-backend-prod (as the seed names them)."""
    return f"netra-{key}-{environment}"


class ServiceConfig(ConfigModel):
    image: Image = Field(description="container image; in prod pinned by digest (…@sha256:<64 hex>)")
    stable_revision: Optional[ResourceName] = Field(
        None, description="the revision serving today; absent on first deploy"
    )
    canary_percent: Optional[Int] = Field(
        None, description="per-service override of netra:canaryPercent (used by `rollout --service`)"
    )
    # maxInstances first, so the minInstances check can see it even when other keys are broken
    max_instances: Int = Field(10, ge=1, le=1000)
    min_instances: Int = Field(1, ge=0, le=1000)
    cpu: str = "1"
    memory: text(16, r"[1-9][0-9]{0,5}(Mi|Gi)", "a size like 512Mi or 4Gi") = "512Mi"
    concurrency: Int = Field(80, ge=1, le=1000)
    port: Int = Field(8080, ge=1, le=65535)
    timeout_seconds: Int = Field(300, ge=1, le=3600, description="request timeout; 3600 for WebSockets")
    session_affinity: Bool = False
    health_check_path: UrlPath = "/health"
    env: dict[EnvName, text(32768)] = Field(default_factory=dict, max_length=1000)
    secrets: dict[EnvName, Text] = Field(
        default_factory=dict, max_length=1000, description="env var name -> platform secret key it is read from"
    )

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: object) -> object:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
            v = str(int(v))
        if v not in CPU_VALUES:
            raise ValueError(f"must be one of {', '.join(CPU_VALUES)} (Cloud Run gen2 CPUs), got {v!r}")
        return v

    @field_validator("min_instances")
    @classmethod
    def _min_le_max(cls, v: int, info: ValidationInfo) -> int:
        return ordered_after(v, info, "max_instances", "<=")

    @field_validator("env")
    @classmethod
    def _no_credentials_in_env(cls, env: dict[str, str]) -> dict[str, str]:
        found = [
            (name, "looks like a credential; read it from Secret Manager through `secrets` instead")
            for name in env if SECRET_LOOKING_ENV.search(name)
        ]
        if found:
            raise problems(*found)
        return env

    @field_validator("secrets")
    @classmethod
    def _one_source_per_variable(cls, secrets: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        env = info.data.get("env") or {}
        known = (info.context or {}).get("known_secrets")
        found = [(name, "is also set in `env`; a variable comes from one place") for name in secrets if name in env]
        if known is not None:
            allowed = ", ".join(sorted(known)) or "none declared"
            found += [(name, f"unknown secret {key!r}; allowed: {allowed}") for name, key in secrets.items() if key not in known]
        if found:
            raise problems(*found)
        return secrets

    @property
    def pinned(self) -> bool:
        return bool(DIGEST.search(self.image))


class Services(ConfigModel):
    frontend: ServiceConfig
    backend: ServiceConfig
    auth: ServiceConfig

    def items(self) -> list[tuple[str, ServiceConfig]]:
        return [(key, getattr(self, key)) for key in SERVICE_KEYS]


def environment_problems(raw_services: Any, environment: str) -> list[tuple[str, str]]:
    """Checks that need the service's name and environment, run on the raw map so they report
    alongside type errors of the same service: (key under netra:services, message)."""
    if not isinstance(raw_services, dict):
        return []
    found = []
    for key in SERVICE_KEYS:
        svc = raw_services.get(key)
        if not isinstance(svc, dict):
            continue
        name = service_name(key, environment)
        stable, image = svc.get("stableRevision"), svc.get("image")
        if isinstance(stable, str) and not stable.startswith(name + "-"):
            found.append((f"{key}.stableRevision", f"must start with the service name '{name}-' (Cloud Run names revisions <service>-<suffix>), got {stable!r}"))
        if environment == "prod" and isinstance(image, str) and not DIGEST.search(image):
            found.append((f"{key}.image", f"must be pinned by digest in prod (…@sha256:<64 hex>), got {image!r}"))
    return found
