"""The Pulumi program: typed config in, components out (infra/wiring.py). `__main__.py` at the root
only calls `main()`."""
from __future__ import annotations

import pulumi

from infra.config import NAMESPACE, ConfigError, StackConfig, load_stack_config
from infra.config.loader import PROVIDER_KEYS
from infra import wiring


def pulumi_config() -> dict[str, str]:
    """Every `netra:` key and the provider keys we read, as the engine passed them to this process."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {k: v for k, v in merged.items() if k.startswith(NAMESPACE + ":") or k in PROVIDER_KEYS}


def load() -> StackConfig:
    try:
        return load_stack_config(pulumi_config(), pulumi.get_stack())
    except ConfigError as e:
        # RunError: Pulumi prints the message without a traceback and registers nothing.
        raise pulumi.RunError(f"invalid stack config ({len(e.problems)} problem(s)):\n{e}") from None


def build(cfg: StackConfig) -> dict:
    """Build the stack and return its outputs."""
    return wiring.build(cfg).outputs()


def main() -> None:
    for name, value in build(load()).items():
        pulumi.export(name, value)
