"""Typed stack config: every error names its key and what is allowed."""
from .app import AppSettings
from .loader import NAMESPACE, ConfigError, Problem, decode_pulumi_value, load_stack_config
from .services import ServiceConfig, Services, service_name
from .stack import DEFAULT_STAGES, ENVIRONMENTS, StackConfig

__all__ = [
    "AppSettings", "ConfigError", "DEFAULT_STAGES", "ENVIRONMENTS", "NAMESPACE", "Problem",
    "ServiceConfig", "Services", "StackConfig", "decode_pulumi_value",
    "load_stack_config", "service_name",
]
