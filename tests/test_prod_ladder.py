"""Issue 19 item 6: in prod the ladder keeps the seed's gated stages 10 and 50. The typed config refuses a
ladder without them (naming netra:stages, before anything registers), and the policy pack refuses a
service whose rendered ladder (the `netra.dev/stages` annotation) skips one, so neither a config line nor
a program that skipped the config check gives a candidate 100 % straight after the 0 % check."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.config import load_stack_config
from infra.config.stack import PROD_REQUIRED_STAGES
from infra.plan import policy_violations

from .conftest import cli, config_problems, flat, run_of, stack_config
from .test_policy_protocol import _pack_copy

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "gcp:cloudrunv2/service:Service"


@pytest.mark.parametrize("ladder,missing", [([0, 100], "10, 50"), ([0, 50, 100], "10"), ([0, 10, 100], "50"),
                                            ([0, 25, 100], "10, 50")])
def test_prod_config_refuses_a_ladder_without_the_seed_stages(ladder, missing):
    cfg = stack_config("prod")
    cfg["netra:stages"] = ladder
    found = config_problems(cfg)
    assert set(found) == {"netra:stages"}, found
    assert f"missing {missing}, got {ladder}" in found["netra:stages"]


def test_prod_accepts_extra_stages_and_staging_may_skip():
    cfg = stack_config("prod")
    cfg["netra:stages"] = [0, 1, 10, 25, 50, 100]
    cfg["netra:canaryPercent"] = 0
    assert load_stack_config(flat(cfg), "prod").stages == (0, 1, 10, 25, 50, 100)
    staging = stack_config("staging")
    staging["netra:stages"] = [0, 100]
    assert load_stack_config(flat(staging), "staging").stages == (0, 100)


def test_plan_cli_refuses_the_short_prod_ladder_with_exit_2():
    proc = cli("plan", "--stack", "prod", "--set", "netra:stages=[0, 100]")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "netra:stages: prod must keep the seed's canary stages 10, 50" in proc.stderr
    assert "Traceback" not in proc.stderr


def _ladders(run) -> set[str]:
    return {r.inputs["annotations"]["netra.dev/stages"] for r in run.resources if r.type == SERVICE
            and "netra.dev/stages" in (r.inputs.get("annotations") or {})}


def test_pack_refuses_the_rendered_short_ladder_under_the_prod_config():
    """Staging may skip (its config disables the policy); the same resources under prod's pack config
    violate `cloudrun-prod-ladder-stages` once per service, and nothing else changes."""
    run = run_of("staging", {"netra:stages": [0, 100]})
    assert _ladders(run) == {"0,100"}
    staging_hits = {v["policy"] for v in policy_violations(run) if v["level"] == "mandatory"}
    assert "cloudrun-prod-ladder-stages" not in staging_hits
    prod_cfg = (ROOT / "policies" / "config.prod.json").read_text()
    root = _pack_copy(ROOT / "build" / "policy-test-prod-ladder", config=prod_cfg, stack="staging")
    hits = [v for v in policy_violations(run, root) if v["policy"] == "cloudrun-prod-ladder-stages"]
    services = [r for r in run.resources if r.type == SERVICE and "netra.dev/stages" in r.inputs.get("annotations", {})]
    assert len(hits) == len(services) >= 3
    assert all(v["level"] == "mandatory" and "skips the required stages 10, 50" in v["message"] for v in hits)
    # the repo's own ladder passes under the same config
    ok = [v for v in policy_violations(run_of("staging"), root) if v["policy"] == "cloudrun-prod-ladder-stages"]
    assert ok == []


def test_the_pack_copy_of_the_required_stages_matches_infra():
    import sys

    sys.path.insert(0, str(ROOT / "policies")) if str(ROOT / "policies") not in sys.path else None
    from netra_policies.cloudrun import PROD_REQUIRED_STAGES as pack_stages

    assert tuple(pack_stages) == PROD_REQUIRED_STAGES == (10, 50)
    prod = json.loads((ROOT / "policies" / "config.prod.json").read_text())
    assert prod["cloudrun-prod-ladder-stages"] == {"enforcementLevel": "mandatory", "requiredStages": [10, 50]}
