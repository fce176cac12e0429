"""The bootstrap stack's config (bootstrap/Pulumi.<stack>.yaml): every error names its key."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from pydantic import Field, ValidationError

from infra.config.base import ConfigModel, Int, text
from infra.config.loader import ConfigError, Problem

PROJECT = "netra-bootstrap"
ProjectId = text(30, r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "a GCP project id (6-30 lowercase letters, digits, -)")


class BootstrapConfig(ConfigModel):
    project: ProjectId = Field(description="the GCP project the main stack will deploy into")
    region: text(32, r"[a-z]+-[a-z]+[0-9]", "a GCP region like us-central1") = Field(
        "us-central1", description="where the state bucket, the key and the image repository live")
    github_repository: text(140, r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "OWNER/NAME of the GitHub repository") = Field(
        description="the repository whose workflows may impersonate the CI identities")
    github_repository_id: Optional[text(20, r"[0-9]+", "GitHub's numeric repository id")] = Field(
        None, description="pins the repository against a deleted and re-created one of the same name")
    state_bucket: Optional[text(63, r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]", "a bucket name")] = Field(
        None, description="Pulumi state bucket; default <project>-pulumi-state")
    state_noncurrent_days: Int = Field(
        90, ge=1, le=3650, description="days a replaced state file version is kept (rollback of a bad state write)")
    artifact_repository: text(63, r"[a-z]([a-z0-9-]*[a-z0-9])?", "a repository id") = Field(
        "netra", description="Artifact Registry Docker repository for the services' images")
    billing_account: Optional[text(20, r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", "a billing account id XXXXXX-XXXXXX-XXXXXX")] = Field(
        None, description="billing account of the project: the deploy identity manages its budget there")

    @property
    def bucket(self) -> str:
        return self.state_bucket or f"{self.project}-pulumi-state"


def load_bootstrap_config(flat: Mapping[str, Any]) -> BootstrapConfig:
    """`flat`: the engine's config (`gcp:project`, `netra-bootstrap:githubRepository`, ...). ConfigError
    lists every problem, each naming its key."""
    values = {}
    for key, value in flat.items():
        namespace, _, name = key.partition(":")
        if namespace == "gcp" and name in ("project", "region"):
            values[name] = value
        elif namespace == PROJECT:
            values[name] = value
        elif namespace == "gcp":
            continue  # the provider's own keys (gcp:zone, ...) are the provider's business
        else:
            raise ConfigError([Problem(key, f"unknown namespace; this program reads gcp:* and {PROJECT}:*")])
    try:
        return BootstrapConfig.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "?"
            key = f"gcp:{field}" if field in ("project", "region") else f"{PROJECT}:{field}"
            message = "required key is missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
            problems.append(Problem(key, message))
        raise ConfigError(problems) from None
