"""The whole stack config: everything under `netra:` plus the provider's `gcp:project` / `gcp:region`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .app import AppSettings
from .base import Bool, ConfigModel, Int, problems, text
from .observability import ObservabilityConfig, environment_problems as observability_problems, service_problems
from .platform import SECRET_KEYS, PlatformConfig, check_platform
from .services import ServiceConfig, liveness_problems, routing_problems, service_name, unknown_service
from .release import ReleaseConfig
from .verification import VerificationConfig, verification_problems

ENVIRONMENTS = ("staging", "prod")
DEFAULT_STAGES = (0, 10, 50, 100)
# Seed 001's canary phases: in prod the ladder must stop (and be gated) at each of these, so no config
# line can send a candidate from the 0 % check straight to 100 %. The policy pack keeps its own copy
# (policies/netra_policies/cloudrun.py PROD_REQUIRED_STAGES; tests/test_prod_ladder.py pins them equal).
PROD_REQUIRED_STAGES = (10, 50)
# Secret keys services may read (`netra:services.<svc>.secrets`); the platform declares them.
PLATFORM_SECRETS: frozenset[str] = SECRET_KEYS


# A resource as `plan` names it: its URN, or `<type>::<name>` (the URN's last type and its name).
RESOURCE_REF = r"(urn:pulumi:[^:\s]+::[^:\s]+::)?[A-Za-z0-9_.:/$-]+:[A-Za-z0-9_./-]+::[^\s]+"


def resource_key(resource: str) -> str:
    """`<type>::<name>` of a URN (`urn:pulumi:<stack>::<project>::<parent types$type>::<name>`) or of a
    `<type>::<name>` itself: the form allowances are matched in (one resource per key in this program)."""
    if resource.startswith("urn:pulumi:"):
        parts = resource.split("::", 3)
        if len(parts) == 4:
            return f"{parts[2].rsplit('$', 1)[-1]}::{parts[3]}"
    return resource


class ReplaceAllowance(ConfigModel):
    """One explicit, reasoned permission to replace or delete a stateful resource (docs/data-safety.md)."""

    resource: text(1024, RESOURCE_REF, "a resource URN or <type>::<name> as `plan` prints it, "
                                       "e.g. gcp:sql/database:Database::app")
    reason: text(500, r"\S.{9,}", "why the data may go (at least 10 characters)")


def _off_ladder(percent: int, stages: tuple[int, ...] | None) -> str | None:
    """Why `percent` is not a stage of the ladder, or None (also when the ladder itself is invalid)."""
    if stages is not None and percent not in stages:
        return f"must be one of netra:stages {list(stages)}, got {percent}"
    return None


class StackConfig(ConfigModel):
    """Validated before any resource is registered; every key is in docs/reference/config.md (generated)."""

    project: text(30, r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "a GCP project id (6-30 lowercase letters, digits, -)") = Field(
        description="immutable: a change replaces every resource (netra:allowReplace, docs/data-safety.md); the GCP project every resource goes into (the provider's own key)")
    region: text(32, r"[a-z]+-[a-z]+[0-9]", "a GCP region like us-central1") = Field(
        "us-central1", description="immutable: a change replaces every regional resource holding data (netra:allowReplace, docs/data-safety.md); where every regional resource goes (the provider's own key)")
    environment: Literal["staging", "prod"] = Field(
        description="one of staging, prod; defaults to the stack name when that is staging or prod")
    cost_center: text(63, r"[a-z][a-z0-9_-]*", "a label value (lowercase letters, digits, _ and -, starting with a letter)") = Field("llm-platform",
        description="`cost-center` label on every resource")
    stages: tuple[Int, ...] = Field(DEFAULT_STAGES, max_length=101,
        description="the traffic ladder: increasing percentages from 0 to 100; prod must keep the seed's gated stages 10 and 50")
    canary_percent: Int = Field(0,
        description="the candidate revision's share of traffic, one of netra:stages; 0 = rollback (written by the release tools)")
    services: dict[str, ServiceConfig] = Field(
        min_length=1, description="service name -> Cloud Run service; any lowercase names (how-to: add a service)")
    app: AppSettings = Field(AppSettings(),
        description="application settings (seed 001's production configuration), passed to every service as environment variables")
    observability: ObservabilityConfig = Field(..., description="alert channels, routing, thresholds, SLOs, budget")
    platform: PlatformConfig = Field(description="network, Cloud SQL, Memorystore, buckets, secrets, migrations, edge")
    verification: VerificationConfig = Field(
        VerificationConfig(), description="release load test, bake window, emergency budget")
    release: ReleaseConfig = Field(ReleaseConfig(), description="approvals and the rollout journal (written by the rollout)")
    allow_replace: tuple[ReplaceAllowance, ...] = Field(
        (), max_length=100, description="stateful resources a change may replace or delete: docs/data-safety.md")
    teardown: Bool = Field(False, description="lift every data guard so the stack can be destroyed (staging only)")

    @field_validator("stages")
    @classmethod
    def _ladder(cls, v: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if not v or v[0] != 0 or v[-1] != 100 or list(v) != sorted(set(v)) or any(s < 0 or s > 100 for s in v):
            raise ValueError(f"must be strictly increasing percentages from 0 to 100, like [0, 10, 50, 100], got {list(v)}")
        missing = [s for s in PROD_REQUIRED_STAGES if s not in v]
        if info.data.get("environment") == "prod" and missing:
            raise ValueError(
                f"prod must keep the seed's canary stages {', '.join(map(str, PROD_REQUIRED_STAGES))} (each one gated), "
                f"missing {', '.join(map(str, missing))}, got {list(v)}; add stages if you like, e.g. "
                f"{sorted(set(v) | set(PROD_REQUIRED_STAGES))}")
        return v

    @field_validator("canary_percent")
    @classmethod
    def _on_ladder(cls, v: int, info: ValidationInfo) -> int:
        off = _off_ladder(v, info.data.get("stages"))
        if off:
            raise ValueError(off)
        return v

    @field_validator("services")
    @classmethod
    def _services_fit_together(cls, services: dict[str, ServiceConfig], info: ValidationInfo) -> dict[str, ServiceConfig]:
        stages = info.data.get("stages")
        found = [(f"{key}.canaryPercent", off) for key, svc in services.items()
                 if svc.canary_percent is not None and (off := _off_ladder(svc.canary_percent, stages))]
        found += routing_problems(services) + liveness_problems(services)
        if found:
            raise problems(*found)
        return services

    @field_validator("observability")
    @classmethod
    def _observability_for_environment(cls, obs: ObservabilityConfig, info: ValidationInfo) -> ObservabilityConfig:
        found = observability_problems(obs, info.data.get("environment", ""))
        found += service_problems(obs, info.data.get("services"))
        if found:
            raise problems(*found)
        return obs
    @field_validator("verification")
    @classmethod
    def _verification_for_environment(cls, v: VerificationConfig, info: ValidationInfo) -> VerificationConfig:
        if "observability" not in info.data:  # broken itself: its own errors say so, don't blame this key
            return v
        obs = info.data["observability"]
        found = verification_problems(v, info.data.get("environment", ""), bool(obs and obs.budget))
        services = info.data.get("services")
        if v.load_test is not None and services is not None and v.load_test.service not in services:
            found.append(("loadTest.service", unknown_service(v.load_test.service, services)))
        if found:
            raise problems(*found)
        return v

    @field_validator("release")
    @classmethod
    def _bake_names_services(cls, r: ReleaseConfig, info: ValidationInfo) -> ReleaseConfig:
        services, env = info.data.get("services"), info.data.get("environment")
        if services is None or env is None:
            return r
        found = []
        for key, b in r.bake.items():
            if key not in services:
                found.append((f"bake.{key}", unknown_service(key, services)))
                continue
            name = service_name(key, env)
            found += [(f"bake.{key}.{field}", f"must start with the service name '{name}-', got {rev!r}")
                      for field, rev in (("revision", b.revision), ("previous", b.previous))
                      if not rev.startswith(name + "-")]
            if b.previous == b.revision:
                found.append((f"bake.{key}.previous", f"is the baked revision itself ({b.revision})"))
        if found:
            raise problems(*found)
        return r

    @field_validator("platform", mode="wrap")
    @classmethod
    def _platform_fits(cls, value, handler, info: ValidationInfo) -> PlatformConfig:
        # services is declared first, so the pool and subnet checks see maxInstances when it is valid
        return check_platform(value, handler, info)

    @model_validator(mode="after")
    def _guards_fit(self) -> "StackConfig":
        found = []
        if self.teardown and self.is_prod:
            found.append(("teardown", "must be false in prod: only staging may lift the data guards for a "
                                      "teardown (python -m infra teardown --stack staging)"))
        seen: dict[str, int] = {}
        for i, a in enumerate(self.allow_replace):
            key = resource_key(a.resource)
            if key in seen:
                found.append((f"allowReplace.{i}.resource", f"names {key} again (allowReplace.{seen[key]})"))
            seen.setdefault(key, i)
        if found:
            raise problems(*found)
        return self

    @model_validator(mode="after")
    def _routes_clear_of_static_paths(self) -> "StackConfig":
        static = tuple(self.platform.edge.static_paths)
        found = [p for p in routing_problems(self.services, static) if "staticPaths" in p[1]]
        if found:
            raise problems(*[(f"services.{k}", m) for k, m in found])
        return self

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    def canary_percent_for(self, key: str) -> int:
        override = self.services[key].canary_percent
        return self.canary_percent if override is None else override
