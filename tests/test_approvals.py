"""No traffic without approval: the pure rule (infra.release.decide_share), the program under mocks, the
plan CLI's refusal of a skipped stage, and the policy pack's `cloudrun-traffic-approved` stack policy."""
from __future__ import annotations

import json

import pytest

from infra.release import model as release

from .conftest import cli, ledger_stamped, plan_of

LADDER = (0, 10, 50, 100)
CAND, OTHER, STABLE = "netra-backend-prod-11111111", "netra-backend-prod-22222222", "netra-backend-prod-a41c9e07"
EV = "e" * 64


def approval(stage, revision=CAND, rejected=False):
    return release.Approval(revision, stage, "gate", EV, rejected)


@pytest.mark.parametrize("approved_stage, requested, percent, refused", [
    (None, 0, 0, False), (None, 10, 0, False), (None, 50, 0, False),   # no approval: 0 %, never the asked share
    (0, 10, 10, False), (0, 50, None, True), (0, 100, None, True),      # approved at 0: one stage up, no skipping
    (10, 10, 10, False), (10, 50, 50, False), (10, 100, None, True),
    (50, 100, 100, False), (50, 10, 10, False), (50, 0, 0, False),      # going back down is always allowed
])
def test_a_share_above_zero_needs_an_approval_at_the_stage_below(approved_stage, requested, percent, refused):
    a = None if approved_stage is None else approval(approved_stage)
    d = release.decide_share("backend", CAND, STABLE, requested, a, LADDER)
    assert (d.problem is not None) == refused
    if refused:
        assert "skips a stage" in d.problem and "python -m infra approve" in d.problem
    else:
        assert d.percent == percent
        assert bool(d.warnings) == (requested > 0 and percent == 0)


def test_an_approval_of_another_revision_or_a_rejected_one_gives_nothing():
    d = release.decide_share("backend", CAND, STABLE, 50, approval(50, OTHER), LADDER)
    assert d.percent == 0 and OTHER in d.warnings[0] and "deployed at 0 %" in d.warnings[0]
    d = release.decide_share("backend", CAND, STABLE, 10, approval(10, rejected=True), LADDER)
    assert d.percent == 0 and "rolled back" in d.warnings[0]


def test_first_deploy_climbs_0_then_100_after_verification():
    assert release.decide_share("auth", CAND, None, 100, None, LADDER).percent == 0
    assert release.decide_share("auth", CAND, None, 100, approval(0), LADDER).percent == 100
    assert release.ladder_for(None, LADDER) == (0, 100) and release.ladder_for(STABLE, LADDER) == LADDER


def test_finalized_services_ignore_the_stage():
    assert release.decide_share("auth", STABLE, STABLE, 50, None, LADDER).percent == 50


def test_evidence_digest_is_canonical():
    assert release.evidence_digest({"a": 1, "b": [1, 2]}) == release.evidence_digest({"b": [1, 2], "a": 1})
    assert len(release.evidence_digest({})) == 64


def approvals_for(plan: dict, stage: int, keys=("frontend", "backend", "auth")) -> dict:
    return {f"netra:release.approvals.{k}": {"revision": plan["outputs"]["services"][k]["candidateRevision"],
                                             "stage": stage, "by": "verify", "evidence": EV} for k in keys}


def traffic(doc, key):
    return [(t["tag"], t["percent"]) for t in doc["outputs"]["services"][key]["traffic"]]


def test_unapproved_stage_in_the_program_gives_zero(prod_plan):
    """The issue's reproduction: canaryPercent 50 and a new backend image -> the new revision gets 0 %."""
    live = plan_of("prod", ledger_stamped("prod", {"netra:canaryPercent": 50, **approvals_for(prod_plan, 10)}))
    assert traffic(live, "backend") == [("stable", 50), ("canary", 50)]
    new_image = "us-central1-docker.pkg.dev/netra-production/netra/backend@sha256:" + "1" * 64
    changed = plan_of("prod", ledger_stamped("prod", {"netra:canaryPercent": 50, **approvals_for(prod_plan, 10),
                                                      "netra:services.backend.image": new_image}))
    assert traffic(changed, "backend") == [("stable", 100), ("canary", 0)]
    assert traffic(changed, "auth") == [("stable", 50), ("canary", 50)]  # untouched services keep their stage


def test_approval_annotations_sit_beside_the_traffic(prod_plan):
    doc = plan_of("prod", ledger_stamped("prod", {"netra:canaryPercent": 10, **approvals_for(prod_plan, 0)}))
    svc = next(r for r in doc["resources"] if r["type"] == "gcp:cloudrunv2/service:Service" and r["name"] == "backend")
    notes = svc["inputs"]["annotations"]
    assert notes["netra.dev/approved-revision"] == svc["inputs"]["template"]["revision"]
    assert notes["netra.dev/approved-stage"] == "0" and notes["netra.dev/stages"] == "0,10,50,100"


def test_plan_refuses_a_skipped_stage_with_exit_2(prod_plan):
    cand = prod_plan["outputs"]["services"]["backend"]["candidateRevision"]
    record = '{"approvals": {"backend": {"revision": "%s", "stage": 0, "by": "verify", "evidence": "%s"}}}' % (cand, EV)
    r = cli("plan", "--stack", "prod", "--set", "netra:canaryPercent=50", "--set", f"netra:release={record}")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "netra:canaryPercent: canaryPercent 50 skips a stage" in r.stderr and "Traceback" not in r.stderr


def test_a_stale_override_is_called_out_so_the_manual_ladder_does_not_silently_skip_a_service():
    doc = plan_of("prod", {"netra:services.backend.canaryPercent": 0, "netra:canaryPercent": 0})
    [w] = [w for w in doc["warnings"] if "overrides netra:canaryPercent" in w]
    assert w.startswith("backend:") and "pulumi config rm --path netra:services.backend.canaryPercent" in w
    in_rollout = plan_of("prod", {"netra:services.backend.canaryPercent": 0, "netra:canaryPercent": 0,
                                  "netra:release.rollout": {"services": ["backend"], "scope": "service"}})
    assert not [w for w in in_rollout["warnings"] if "overrides netra:canaryPercent" in w]
    assert release.override_warnings(10, {"auth": None}) == []


def _set(overrides: dict) -> list[str]:
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def test_a_hand_written_approval_is_refused_naming_the_key(prod_plan):
    """The issue's reproduction: an approval at 50 % written into the stack config by hand (any name, all-zero
    evidence) gave an untested candidate 100 %. Without the release ledger's stamp it moves nothing."""
    forged = {"netra:canaryPercent": 100, "netra:release.approvals.backend": {
        "revision": prod_plan["outputs"]["services"]["backend"]["candidateRevision"], "stage": 50, "by": "operator:mallory",
        "evidence": "0" * 64}}
    r = cli("plan", "--stack", "prod", *_set(forged))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "netra:release.approvals.backend: has no release-ledger stamp" in r.stderr
    assert "nothing registered" in r.stderr
    # the same record as the ledger rendered it (stamped) is what the program honours
    assert cli("plan", "--stack", "prod", "--summary", *_set(ledger_stamped("prod", forged))).returncode == 0


def test_an_edit_after_the_ledger_rendered_the_record_is_refused(prod_plan):
    rendered = ledger_stamped("prod", {"netra:canaryPercent": 10, **approvals_for(prod_plan, 0, keys=("backend",))})
    edited = {**rendered, "netra:release.approvals.backend": {**rendered["netra:release.approvals.backend"], "stage": 50}}
    r = cli("plan", "--stack", "prod", *_set(edited))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "netra:release.approvals.backend: differs from what the release ledger rendered (generation 1)" in r.stderr
    # a stable revision restored from a stale copy changes the digest too
    stale = {**rendered, "netra:services.auth.stableRevision": "netra-auth-prod-00000000"}
    assert cli("plan", "--stack", "prod", *_set(stale)).returncode == 2
    # a rejection is no grant: it needs no stamp
    rejected = {"netra:release.approvals.backend": {**rendered["netra:release.approvals.backend"], "rejected": True}}
    assert cli("plan", "--stack", "prod", "--summary", *_set(rejected)).returncode == 0
