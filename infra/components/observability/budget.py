"""The project's billing budget: email at 50 / 80 / 100 % of the monthly amount (prod)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
from pulumi_gcp import billing, organizations

from infra.config.observability import Budget as BudgetConfig

from ..site import Site

COMPONENT_TYPE = "netra:observability:Budget"


@dataclass(frozen=True)
class BudgetArgs:
    site: Site
    config: BudgetConfig
    channels: Sequence[pulumi.Input[str]] = ()  # monitoring channels notified at each threshold
    pubsub_topic: Optional[pulumi.Input[str]] = None  # the emergency budget guard's topic, when there is one


def project_filter(project: str, number: Optional[str]) -> pulumi.Output[str]:
    """`projects/<project number>`: the Billing Budget API stores the number, so a project id here is a
    perpetual diff and failing updates. Configured (`budget.projectNumber`), or looked up at preview/up
    time from the project id (`organizations.getProject`; needs resourcemanager.projects.get)."""
    if number is None:
        number = organizations.get_project_output(project_id=project).number
    return pulumi.Output.concat("projects/", number)


class Budget(pulumi.ComponentResource):
    """Outputs: `budget`."""

    def __init__(self, name: str, args: BudgetArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        site, b, channels, pubsub_topic = args.site, args.config, list(args.channels), args.pubsub_topic
        units, cents = divmod(round(b.monthly_amount_usd * 100), 100)
        self.budget = billing.Budget(
            "monthly",
            billing.BudgetArgs(
                billing_account=b.billing_account,
                display_name=f"Netra {site.environment} monthly",
                amount=billing.BudgetAmountArgs(specified_amount=billing.BudgetAmountSpecifiedAmountArgs(
                    currency_code="USD", units=str(units), nanos=cents * 10_000_000)),
                budget_filter=billing.BudgetBudgetFilterArgs(
                    projects=[project_filter(site.project, b.project_number)],
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
