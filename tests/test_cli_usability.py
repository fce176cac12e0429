"""Frictions a new user met (issue 23 item 5): every command a tool prints runs as pasted (names the stack),
`--stack` reads as required where it is, a new service reads as one, a mistyped service under --set gets a
did-you-mean, and `plan --summary` prints what a reviewer reads first."""
from __future__ import annotations

import copy
import re

import pytest

from infra.__main__ import build_parser
from infra.plan.diff import diff_plans, render_diff
from infra.release.cli import status as status_cli

from .conftest import cli

STACK_COMMANDS = ("plan", "preflight",
                  "bootstrap", "teardown")


@pytest.mark.parametrize("command", STACK_COMMANDS)
def test_required_stack_reads_as_required_in_usage(command):
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    if command not in sub.choices:
        pytest.skip(f"{command} is not offered on this checkout")
    usage = sub.choices[command].format_usage()
    assert "--stack STACK" in usage and "[--stack STACK]" not in usage, usage


def test_service_status_commands_without_a_stack_name_a_placeholder_only_when_not_given():
    outputs = {"services": {"api": {"candidateRevision": "netra-api-prod-00000001", "stableRevision": None,
                                    "canaryPercent": 0}}}
    row = status_cli.service_status(outputs, {}, (0, 10, 50, 100), "staging")[0]
    assert row["next"] == "verify at 0 %: python -m infra rollout --stack staging --service api"


def test_warnings_name_the_stack_they_are_about(reuse_plans):
    r = cli("plan", "--stack", "prod", "--set", "netra:canaryPercent=10", "--summary")
    assert "has no approval" in r.stdout and "--stack prod --service auth" in r.stdout
    assert "<stack>" not in r.stdout


def test_a_mistyped_service_under_set_gets_a_did_you_mean():
    r = cli("plan", "--stack", "prod", "--set", "netra:services.bakend.canaryPercent=10")
    assert r.returncode == 2
    assert "netra:services.bakend: unknown service 'bakend'; did you mean 'backend'?" in r.stderr
    assert "image" not in r.stderr  # not the misleading "required key is missing" of a new service
    r = cli("plan", "--stack", "prod", "--summary", "--set", "netra:services.payments.minInstances=2")
    assert r.returncode == 2 and "netra:services.payments.image: required key is missing" in r.stderr  # a new one


def test_plan_summary_is_traffic_warnings_and_policy_only(reuse_plans):
    full = cli("plan", "--stack", "prod")
    short = cli("plan", "--stack", "prod", "--summary")
    assert full.returncode == short.returncode == 0
    assert "gcp:cloudrunv2/service:Service" in full.stdout and "gcp:" not in short.stdout
    assert "Traffic  netra-backend-prod" in short.stdout and "Policy: 0 violation(s)" in short.stdout
    assert len(short.stdout.splitlines()) < len(full.stdout.splitlines()) / 5
    assert not re.search(r"^\s*\+ ", full.stdout, re.M)  # `+` means "create", and only in --against
    assert cli("plan", "--stack", "prod", "--summary", "--json").returncode == 2


def test_a_new_service_in_a_diff_reads_as_a_first_deploy(prod_plan):
    after = copy.deepcopy(prod_plan)
    before = copy.deepcopy(prod_plan)
    del before["outputs"]["services"]["auth"]
    text = render_diff(diff_plans(before, after), "HEAD")
    line = next(line for line in text.splitlines() if "auth:" in line)
    assert "new service, candidate netra-auth-prod-" in line and "None" not in text
