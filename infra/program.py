"""The Pulumi program: typed config in, components out. `__main__.py` at the root only calls `main()`."""
from __future__ import annotations

import pulumi

from infra.config import ConfigError, StackConfig, load_stack_config
from infra.components.platform import build_platform
from infra.components.service import CloudRunService
from infra.components import observability
from infra.components.emergency_budget import EmergencyBudget, emergency_budget_args
from infra.components.load_test import LoadTestJob, load_test_args


class InvalidStackConfig(pulumi.RunError):
    """Printed by Pulumi without a traceback; the offline plan turns it back into the ConfigError (exit 2)."""

    def __init__(self, error: ConfigError):
        self.error = error
        super().__init__(f"invalid stack config ({len(error.problems)} problem(s)):\n{error}")


def pulumi_config() -> dict[str, str]:
    """Every config key of the stack, as the engine passed them to this process (the loader refuses
    namespaces this program does not read, so a `gcp:projet` typo is an error, not a silent default)."""
    from pulumi.runtime import config as runtime_config

    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def load() -> StackConfig:
    try:
        return load_stack_config(pulumi_config(), pulumi.get_stack())
    except ConfigError as e:
        # RunError: Pulumi prints the message without a traceback and registers nothing.
        raise pulumi.RunError(f"invalid stack config ({len(e.problems)} problem(s)):\n{e}") from None


def build(cfg: StackConfig) -> dict:
    platform = build_platform(cfg)
    services = {key: CloudRunService(key, cfg, platform.wiring(key)) for key, _ in cfg.services.items()}
    edge = platform.add_edge({key: svc.service for key, svc in services.items()})
    # The run.app URLs are closed (ingress INTERNAL_LOAD_BALANCER): uptime checks go through the edge.
    eb_args = emergency_budget_args(cfg, platform.secrets.resources(["feature-flags"]),
                                    platform.storage.access_logs.name)
    guard = EmergencyBudget("emergency-budget", eb_args) if eb_args else None
    obs = observability.build(cfg, {key: observability.PublicService(edge.public_url(key), svc.candidate_revision)
                                    for key, svc in services.items()},
                              budget_topic=guard.topic.id if guard else None)
    lt_args = load_test_args(cfg, platform.storage.access_logs.name)
    load_test = LoadTestJob("load-test", lt_args) if lt_args else None
    return {
        "gcpProject": cfg.project,
        "region": cfg.region,
        "environment": cfg.environment,
        "canaryPercent": cfg.canary_percent,
        "stages": list(cfg.stages),
        "services": {key: svc.summary() for key, svc in services.items()},
        "platform": platform.summary(),
        "migrationJob": platform.migrations.summary(),
        "observability": obs.summary(),
        "loadTestJob": load_test.summary() if load_test else None,
        "emergencyBudget": guard.summary() if guard else None,
    }


def main() -> None:
    try:
        outputs = build(load())
    except ConfigError as e:  # a check that needs the built components (a skipped traffic stage)
        raise InvalidStackConfig(e) from None
    for name, value in outputs.items():
        pulumi.export(name, value)
