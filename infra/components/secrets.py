"""Secret Manager (seed: prod-token-optimization-config, prod-pricing-config, prod-feature-flags) plus the
database and Redis credentials. Payloads are Pulumi secrets; services read version `latest`, so a
feature-flag flip is a new secret version and nothing else."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_gcp as gcp

from infra.config import AppSettings
from infra.config.platform import FlagValue, secret_id

from .site import Site

COMPONENT_TYPE = "netra:platform:Secrets"


def config_payloads(app: AppSettings, feature_flags: Mapping[str, FlagValue]) -> dict[str, str]:
    """The structured-config secrets as the JSON documents the services read."""

    def doc(value) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    return {
        "token-optimization-config": doc({
            **app.token_optimization.model_dump(by_alias=True),
            "session": app.session.model_dump(by_alias=True),
            "costOptimizationTargetSavings": app.cost_optimization_target_savings,
            "userBudgetDefaultMonthly": app.user_budget_default_monthly,
        }),
        "pricing-config": doc({
            "llmPricing": app.llm_pricing.model_dump(by_alias=True),
            "costAlertThresholds": app.cost_alert_thresholds.model_dump(by_alias=True),
        }),
        # a ramp as {percent, killSwitch}: its success criteria are the gate's, not the application's
        "feature-flags": doc({k: v.model_dump(by_alias=True, exclude={"criteria"}) if hasattr(v, "model_dump") else v
                              for k, v in feature_flags.items()}),
    }


@dataclass(frozen=True)
class AppSecret:
    """A user-defined secret (netra:platform.appSecrets): `value` None means its versions are added outside
    Pulumi (`gcloud secrets versions add`), so none is managed here."""

    description: Optional[str] = None
    value: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class SecretsArgs:
    """Platform secret key -> payload (plain or an Output; stored as a Pulumi secret either way), and the
    user's app secrets by key (keys never collide with the platform's: the config refuses that)."""

    site: Site
    payloads: Mapping[str, pulumi.Input[str]]
    app_secrets: Mapping[str, AppSecret] = field(default_factory=dict)
    # keys whose payload is only the first version: Pulumi adds it once and never a later one (someone else
    # writes the versions that count, e.g. the budget guard's emergency limits)
    seeded: frozenset[str] = frozenset()


class Secrets(pulumi.ComponentResource):
    """One Secret per platform secret key and app secret, and its current version when Pulumi manages one.

    Outputs: `ids` (key -> secret id), `secrets`, `versions` (no entry for an app secret without a value),
    and `resources(keys)` for readers to wait on."""

    def __init__(self, name: str, args: SecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._site = args.site
        self.ids: dict[str, str] = {}
        self.secrets: dict[str, gcp.secretmanager.Secret] = {}
        self.versions: dict[str, gcp.secretmanager.SecretVersion] = {}
        for key, payload in args.payloads.items():
            self._declare(key, payload, seeded=key in args.seeded)
        for key, app in args.app_secrets.items():
            self._declare(key, app.value, {"description": app.description} if app.description else None)
        self.register_outputs({"secrets": dict(self.ids)})

    def _declare(self, key: str, payload: Optional[pulumi.Input[str]],
                 annotations: Optional[dict[str, str]] = None, seeded: bool = False) -> None:
        site, sid = self._site, secret_id(self._site.environment, key)
        secret = gcp.secretmanager.Secret(
            key,
            gcp.secretmanager.SecretArgs(
                secret_id=sid, project=site.project,
                replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
                labels=site.labels(), annotations=annotations),
            opts=pulumi.ResourceOptions(parent=self),
        )
        if payload is not None:
            self.versions[key] = gcp.secretmanager.SecretVersion(
                key,
                gcp.secretmanager.SecretVersionArgs(
                    secret=secret.id, secret_data=pulumi.Output.secret(payload),
                    # a replaced version is disabled, not destroyed: the previous flags stay auditable
                    # and can be re-enabled by hand in an emergency. A seed version is abandoned: it is
                    # never the latest once its writer added one, and must not be touched
                    deletion_policy="ABANDON" if seeded else "DISABLE"),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["secretData"] if seeded else None),
            )
        self.ids[key], self.secrets[key] = sid, secret

    def resources(self, keys) -> list[pulumi.Resource]:
        """What a reader of `keys` must wait for: the secrets and their versions (where Pulumi manages one)."""
        return [r for k in sorted(set(keys)) for r in (self.secrets[k], self.versions.get(k)) if r is not None]
