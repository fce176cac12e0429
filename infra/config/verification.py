"""`netra:verification`: what the release checks beyond the canary gate, and the runtime controls.

* `loadTest`: the release load test (seed 001 phase 1: 150 concurrent users for 1 hour, WebSocket
  events < 100 ms, no memory leaks), a Cloud Run job the rollout runs against the candidate's tagged
  URL at stage 0, before any traffic;
* `bake`: the window after finalize in which the previous revision stays one step away (seed 000,
  "48-hour validation period");
* `emergencyBudget`: the function that turns on the application's emergency limits when the billing
  budget reports a cost spike (seed 000, severity 3).
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator

from .base import Bool, ConfigModel, Float, Image, Int, UrlPath, problems, text
from .services import EnvName, credential_name

Path = UrlPath
JsonBody = Union[dict[str, Any], list[Any]]


class HttpScenario(ConfigModel):
    """One weighted HTTP request of the load test; a non-2xx/3xx answer counts as an error."""

    name: text(40, r"[A-Za-z0-9_.-]+", "a scenario name (letters, digits, _ . -)")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: Path
    weight: Int = Field(1, ge=1, le=1000)
    body: Optional[JsonBody] = Field(None, description="JSON body sent with the request")


class WebSocketScenario(ConfigModel):
    """Users holding one WebSocket each and timing message -> event round trips."""

    path: Path = Field("/ws", description="the WebSocket endpoint's path")
    user_percent: Int = Field(50, ge=0, le=100, description="share of the users on WebSockets")
    message: dict[str, Any] = Field(default_factory=lambda: {"type": "ping"},
                                    description="JSON object sent; the run adds `id`, the event must echo it")
    timeout_seconds: Float = Field(5.0, gt=0, le=60, description="an event later than this is a failure")


class LoadTestCriteria(ConfigModel):
    """Pass criteria (the seeds' values): see loadtest/verdict.py."""

    error_rate_percent: Float = Field(0.1, ge=0, le=100, description="per kind: HTTP, WS connections, WS events")
    p95_latency_ms: Float = Field(500, gt=0, description="HTTP p95 (seed 001: < 500 ms)")
    websocket_event_latency_ms: Float = Field(100, gt=0, description="seed 001 phase 1: events delivered < 100 ms")
    websocket_event_percentile: Float = Field(95, gt=0, le=100,
        description="the percentile of WebSocket event latency the criteria judge")
    memory_growth_percent: Float = Field(5, gt=0, description="candidate memory utilization growth over the run")
    min_requests: Int = Field(1000, ge=1,
        description="fewer HTTP requests than this and the load test fails (too little evidence)")
    min_websocket_events: Int = Field(100, ge=0, description="fewer WebSocket events than this and the load test fails")


class LoadTestConfig(ConfigModel):
    image: Image = Field(description="image built from loadtest/Dockerfile; pinned by digest in prod")
    service: text(63) = Field("backend", description="the service of netra:services whose candidate is loaded")
    users: Int = Field(150, ge=1, le=5000, description="concurrent users (seed 001: 150)")
    spawn_rate: Float = Field(10, gt=0, le=1000, description="users started per second")
    duration_seconds: Int = Field(3600, ge=10, le=86400, description="seed 001: 1 hour")
    max_requests: Int = Field(0, ge=0, description="stop after this many requests; 0 = the duration bounds the run")
    think_time_seconds: tuple[Float, Float] = Field((1.0, 3.0), description="[min, max] wait between a user's requests")
    http: tuple[HttpScenario, ...] = Field((HttpScenario(name="health", path="/health"),), min_length=1,
        description="HTTP scenarios the load test runs (name, path, weight)")
    websocket: WebSocketScenario = WebSocketScenario()
    criteria: LoadTestCriteria = LoadTestCriteria()
    cpu: Literal["1", "2", "4", "8"] = Field("2", description="the load-test job's vCPUs")
    memory: text(16, r"[1-9][0-9]{0,5}(Mi|Gi)", "a size like 512Mi or 4Gi") = Field("2Gi",
        description="the load-test job's memory")
    env: dict[EnvName, text(32768)] = Field(
        default_factory=dict, max_length=100, description="extra environment of the job (no credentials)")

    @field_validator("think_time_seconds")
    @classmethod
    def _think(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1] <= 600:
            raise ValueError(f"must be [min, max] seconds with 0 <= min <= max <= 600, got {list(v)}")
        return v

    @field_validator("env")
    @classmethod
    def _no_credentials(cls, env: dict[str, str]) -> dict[str, str]:
        found = [(k, "looks like a credential; the load test needs none") for k in env if credential_name(k)]
        found += [(k, "is set by the stack from the other loadTest keys") for k in env if k.startswith("LOADTEST_")]
        if found:
            raise problems(*found)
        return env




class EmergencyBudgetConfig(ConfigModel):
    """Seed 000 severity 3: `{"enable_emergency_limits": true, "max_hourly_cost": 100}`."""

    max_hourly_cost_usd: Float = Field(100, gt=0, description="the limit the application enforces once on")
    trigger_hourly_cost_usd: Optional[Float] = Field(
        None, gt=0, description="spend rate between two budget notifications that turns the limits on; default maxHourlyCostUsd")
    trigger_threshold_percent: Optional[Float] = Field(
        100, gt=0, le=1000, description="a budget threshold at or above this share of the monthly amount also turns them on")

    @property
    def trigger_rate(self) -> float:
        return self.trigger_hourly_cost_usd or self.max_hourly_cost_usd


class BakeConfig(ConfigModel):
    """Seed 000 "48-hour validation period": after finalize the previous stable revision stays tagged
    `previous` (0 %) so `rollback` returns to it in one step, and `python -m infra bake` watches the
    released revision with the gate's absolute triggers."""

    hours: Float = Field(48, ge=0, le=720, description="the bake window after finalize; 0: no bake")
    auto_rollback: Bool = Field(True, description="a trigger of the watch rolls back to `previous`; false: it only pages")


class VerificationConfig(ConfigModel):
    load_test: Optional[LoadTestConfig] = None
    bake: BakeConfig = BakeConfig()
    emergency_budget: Optional[EmergencyBudgetConfig] = None


def verification_problems(v: Optional[VerificationConfig], environment: str, has_budget: bool) -> list[tuple[str, str]]:
    """Checks that need the environment and the observability budget: (key under netra:verification, message)."""
    if v is None:
        return []
    found = []
    if environment == "prod" and v.load_test and "@sha256:" not in v.load_test.image:
        found.append(("loadTest.image", f"must be pinned by digest in prod (…@sha256:<64 hex>), got {v.load_test.image!r}"))
    if v.emergency_budget is not None and not has_budget:
        found.append(("emergencyBudget", "needs netra:observability.budget: the budget's notifications drive it"))
    return found
