"""The project's billing budget: email at 50 / 80 / 100 % of the monthly amount (prod)."""
from __future__ import annotations

from typing import Optional

import pulumi
from pulumi_gcp import billing, organizations

from infra.config import StackConfig

COMPONENT_TYPE = "netra:observability:Budget"


def project_filter(project: str, number: Optional[str]) -> pulumi.Output[str]:
    """`projects/<project number>`: the Billing Budget API stores the number, so a project id here is a
    perpetual diff and failing updates. Configured (`budget.projectNumber`), or looked up at preview/up
    time from the project id (`organizations.getProject`; needs resourcemanager.projects.get)."""
    if number is None:
        number = organizations.get_project_output(project_id=project).number
    return pulumi.Output.concat("projects/", number)


class Budget(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, channels: list[pulumi.Input[str]],
                 opts: Optional[pulumi.ResourceOptions] = None, pubsub_topic: Optional[pulumi.Input[str]] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        b = cfg.observability.budget
        assert b is not None
        units, cents = divmod(round(b.monthly_amount_usd * 100), 100)
        self.budget = billing.Budget(
            "monthly",
            billing.BudgetArgs(
                billing_account=b.billing_account,
                display_name=f"Netra {cfg.environment} monthly",
                amount=billing.BudgetAmountArgs(specified_amount=billing.BudgetAmountSpecifiedAmountArgs(
                    currency_code="USD", units=str(units), nanos=cents * 10_000_000)),
                budget_filter=billing.BudgetBudgetFilterArgs(
                    projects=[project_filter(cfg.project, b.project_number)],
                    calendar_period="MONTH",
                    credit_types_treatment="INCLUDE_ALL_CREDITS",
                ),
                threshold_rules=[billing.BudgetThresholdRuleArgs(threshold_percent=t / 100, spend_basis="CURRENT_SPEND")
                                 for t in b.thresholds_percent],
                all_updates_rule=billing.BudgetAllUpdatesRuleArgs(
                    monitoring_notification_channels=channels,
                    disable_default_iam_recipients=False,
                    # every notification also goes to the emergency budget guard (netra:verification.emergencyBudget)
                    pubsub_topic=pubsub_topic,
                    schema_version="1.0" if pubsub_topic is not None else None,
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
