"""The application's production settings from the seed, as structured config.

Seed 001, "Production token optimization configuration": every value below is the seed's and reaches
the services as the environment variable the seed names (see `AppSettings.environment`).
"""
from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from .base import Bool, ConfigModel, Float, Int


class TokenOptimization(ConfigModel):
    enabled: Bool = Field(True, description="TOKEN_OPTIMIZATION_ENABLED")
    default_target_reduction: Int = Field(20, ge=0, le=100, description="percent")
    max_retries: Int = Field(3, ge=0, le=10, description="TOKEN_OPTIMIZATION_MAX_RETRIES")


class ModelPrice(ConfigModel):
    input: Float = Field(gt=0, description="USD per token")
    output: Float = Field(gt=0, description="USD per token")


class LlmPricing(ConfigModel):
    gpt4: ModelPrice = ModelPrice(input=0.00003, output=0.00006)
    gpt35: ModelPrice = ModelPrice(input=0.0000015, output=0.000002)


class CostAlertThresholds(ConfigModel):
    low: Float = Field(1.00, gt=0, description="USD; COST_ALERT_LOW_THRESHOLD")
    medium: Float = Field(3.00, gt=0, description="USD; COST_ALERT_MEDIUM_THRESHOLD")
    high: Float = Field(5.00, gt=0, description="USD; COST_ALERT_HIGH_THRESHOLD")


class SessionSettings(ConfigModel):
    ttl_minutes: Int = Field(60, ge=1, le=24 * 60, description="TOKEN_SESSION_TTL_MINUTES")
    context_cleanup_interval_seconds: Int = Field(300, ge=10, le=24 * 3600,
        description="TOKEN_CONTEXT_CLEANUP_INTERVAL")


class AppSettings(ConfigModel):
    token_optimization: TokenOptimization = TokenOptimization()
    llm_pricing: LlmPricing = LlmPricing()
    cost_alert_thresholds: CostAlertThresholds = CostAlertThresholds()
    cost_optimization_target_savings: Float = Field(0.20, ge=0, le=1, description="fraction")
    user_budget_default_monthly: Float = Field(100.00, gt=0, description="USD")
    session: SessionSettings = SessionSettings()

    def environment(self) -> dict[str, str]:
        """The variables the application reads, named as in the seed's PRODUCTION_CONFIG."""
        t, p, c, s = self.token_optimization, self.llm_pricing, self.cost_alert_thresholds, self.session
        return {
            "TOKEN_OPTIMIZATION_ENABLED": str(t.enabled).lower(),
            "TOKEN_OPTIMIZATION_DEFAULT_TARGET_REDUCTION": str(t.default_target_reduction),
            "TOKEN_OPTIMIZATION_MAX_RETRIES": str(t.max_retries),
            "LLM_PRICING_GPT4_INPUT": _num(p.gpt4.input),
            "LLM_PRICING_GPT4_OUTPUT": _num(p.gpt4.output),
            "LLM_PRICING_GPT35_INPUT": _num(p.gpt35.input),
            "LLM_PRICING_GPT35_OUTPUT": _num(p.gpt35.output),
            "COST_ALERT_LOW_THRESHOLD": f"{c.low:.2f}",
            "COST_ALERT_MEDIUM_THRESHOLD": f"{c.medium:.2f}",
            "COST_ALERT_HIGH_THRESHOLD": f"{c.high:.2f}",
            "COST_OPTIMIZATION_TARGET_SAVINGS": f"{self.cost_optimization_target_savings:.2f}",
            "USER_BUDGET_DEFAULT_MONTHLY": f"{self.user_budget_default_monthly:.2f}",
            "TOKEN_SESSION_TTL_MINUTES": str(s.ttl_minutes),
            "TOKEN_CONTEXT_CLEANUP_INTERVAL": str(s.context_cleanup_interval_seconds),
        }


def _num(x: float) -> str:
    # Plain decimal notation as in the seed ("0.0000015", not "1.5e-06").
    return format(Decimal(repr(x)), "f")
