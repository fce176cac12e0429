"""Which CI job may become which Google identity: the Workload Identity provider's attribute condition and
the service-account bindings, in one place for the bootstrap program, the docs and the tests.

GitHub signs an OIDC token per job; its claims name the repository, the ref, the workflow file and the
GitHub environment the job runs in. The provider admits a token only when these claims match a row of
`GRANTS` (a workflow on main in one of its environments, or a PR preview in a `*-preview` environment,
which has required reviewers), so a branch pushed by anyone, a fork, another repository or a job outside
an environment gets no Google credentials at all. Each service account is then bound to the environments
that need it (`attribute.environment`), so the preview identity can never be the deploy identity.
"""
from __future__ import annotations

from dataclasses import dataclass

STACKS = ("staging", "prod")
MAIN = "refs/heads/main"


@dataclass(frozen=True)
class Grant:
    workflow: str              # file under .github/workflows/
    environments: tuple[str, ...]  # `{stack}` is replaced by each stack
    identity: str              # deploy | gate | preview
    pull_request: bool = False  # runs on pull_request (ref refs/pull/N/merge) instead of main


GRANTS = (
    Grant("deploy.yml", ("{stack}",), "deploy"),
    Grant("rollback.yml", ("{stack}-ops",), "deploy"),
    Grant("bake.yml", ("{stack}-ops",), "deploy"),
    Grant("drift.yml", ("{stack}-ops",), "gate"),
    Grant("pull-request.yml", ("{stack}-preview",), "preview", pull_request=True),
)


def environments(grant: Grant) -> list[str]:
    return [env.format(stack=stack) for env in grant.environments for stack in STACKS]


def identity_environments(identity: str) -> list[str]:
    """The GitHub environments whose jobs may impersonate this identity (deploy, gate or preview)."""
    return sorted({env for g in GRANTS if g.identity == identity for env in environments(g)})


def attribute_mapping() -> dict[str, str]:
    return {
        "google.subject": "assertion.sub",
        "attribute.repository": "assertion.repository",
        "attribute.ref": "assertion.ref",
        "attribute.environment": "assertion.environment",
        "attribute.workflow_ref": "assertion.workflow_ref",
    }


def _quote(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"not a repository name: {value!r}")
    return f"'{value}'"


def attribute_condition(repository: str, repository_id: str | None = None) -> str:
    """The CEL condition of the provider. `repository` is OWNER/NAME; `repository_id` (GitHub's numeric id)
    also pins it against a deleted and re-created repository of the same name."""
    if repository.count("/") != 1:
        raise ValueError(f"repository must be OWNER/NAME, got {repository!r}")
    rows = []
    for g in GRANTS:
        prefix = f"{repository}/.github/workflows/{g.workflow}@"
        envs = ", ".join(_quote(e) for e in environments(g))
        if g.pull_request:
            rows.append(f"(assertion.event_name == 'pull_request' && assertion.workflow_ref.startsWith("
                        f"{_quote(prefix + 'refs/pull/')}) && assertion.environment in [{envs}])")
        else:
            rows.append(f"(assertion.ref == {_quote(MAIN)} && assertion.workflow_ref == {_quote(prefix + MAIN)}"
                        f" && assertion.environment in [{envs}])")
    repo = f"assertion.repository == {_quote(repository)}"
    if repository_id is not None:
        if not repository_id.isdigit():
            raise ValueError(f"repository_id must be GitHub's numeric id, got {repository_id!r}")
        repo += f" && assertion.repository_id == {_quote(repository_id)}"
    return f"{repo} && (" + " || ".join(rows) + ")"


def principal_sets(pool: str, identity: str) -> list[str]:
    """Members for roles/iam.workloadIdentityUser on the identity's service account.
    `pool` is projects/NUMBER/locations/global/workloadIdentityPools/POOL."""
    return [f"principalSet://iam.googleapis.com/{pool}/attribute.environment/{env}"
            for env in identity_environments(identity)]
