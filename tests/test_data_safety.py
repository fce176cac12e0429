"""Data never dies by a config edit (docs/data-safety.md): every resource holding data is protected in
every stack, with the provider's own guard; only a reasoned allowance or a staging teardown lifts them,
and the policy pack refuses anything else."""
from __future__ import annotations

import dataclasses
import json

import pytest

from infra.components.guards import STATEFUL_TYPES

from .conftest import cli, config_problems, plan_of, run_of, stack_config
from .test_policy_rules import pack, pack_path, built  # noqa: F401  (fixtures)
from .test_policy_stack import compliant, stack_hits  # noqa: F401

SQL_INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
DATABASE = "gcp:sql/database:Database"


def _stateful(doc):
    return [r for r in doc["resources"] if r["type"] in STATEFUL_TYPES]


def _guard_problems(r: dict) -> list[str]:
    """What is off of a resource's protection in a plan document."""
    i, t = r["inputs"], r["type"]
    out = [] if r.get("protect") else ["protect"]
    if t == SQL_INSTANCE and not (i.get("deletionProtection") is True and i["settings"].get("deletionProtectionEnabled") is True):
        out.append("deletion protection")
    if t == "gcp:redis/instance:Instance" and i.get("deletionProtection") is not True:
        out.append("deletionProtection")
    if t in (DATABASE, "gcp:sql/user:User") and i.get("deletionPolicy") != "ABANDON":
        out.append("deletionPolicy")
    if t == "gcp:storage/bucket:Bucket" and i.get("forceDestroy") is True:
        out.append("forceDestroy")
    return out


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_resource_holding_data_is_guarded_in_every_stack(stack):
    doc = plan_of(stack)
    found = _stateful(doc)
    # what holds data: the instance, its database and two users, Redis, the buckets, ClickHouse/Keeper disks, secrets
    assert {r["type"] for r in found} == set(STATEFUL_TYPES)
    assert len([r for r in found if r["type"] == "gcp:compute/disk:Disk"]) == 7
    assert {r["name"]: _guard_problems(r) for r in found if _guard_problems(r)} == {}


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_no_secret_version_is_destroyed_with_its_data(stack):
    """A replaced or deleted version is disabled (or left alone), never destroyed: the provider's default
    `DELETE` would lose a value nobody can read back (a generated password, a routing key)."""
    versions = [r for r in plan_of(stack)["resources"] if r["type"] == "gcp:secretmanager/secretVersion:SecretVersion"]
    assert versions and {r["name"]: r["inputs"].get("deletionPolicy") for r in versions
                         if r["inputs"].get("deletionPolicy") not in ("DISABLE", "ABANDON")} == {}


def test_the_pack_checks_the_program_s_list_of_stateful_types(pack_path):
    from netra_policies import stateful

    assert stateful.STATEFUL_TYPES == STATEFUL_TYPES


def test_an_allowance_lifts_the_guards_of_that_resource_only():
    allow = [{"resource": f"{SQL_INSTANCE}::postgres", "reason": "move the instance to a new region (ticket 42)"}]
    doc = plan_of("staging", {"netra:allowReplace": allow})
    lifted = {r["name"]: _guard_problems(r) for r in _stateful(doc) if _guard_problems(r)}
    assert lifted == {"postgres": ["protect", "deletion protection"]}
    guards = next(r for r in doc["resources"] if r["type"] == "netra:data:Guards")
    assert guards["inputs"] == {"allowReplace": allow, "teardown": False}


def test_an_allowance_by_urn_names_the_same_resource(prod_plan):
    urn = next(r["urn"] for r in prod_plan["resources"] if r["type"] == DATABASE)
    doc = plan_of("prod", {"netra:allowReplace": [{"resource": urn, "reason": "rename the database, data copied first"}]})
    assert [r["name"] for r in _stateful(doc) if not r.get("protect")] == ["app"]


@pytest.mark.parametrize("value,key,message", [
    ([{"resource": "postgres", "reason": "because it must go now"}], "netra:allowReplace.0.resource", "<type>::<name>"),
    ([{"resource": f"{SQL_INSTANCE}::postgres", "reason": "why"}], "netra:allowReplace.0.reason", "at least 10"),
    ([{"resource": f"{SQL_INSTANCE}::postgres"}], "netra:allowReplace.0.reason", "required"),
    ([{"resource": f"{SQL_INSTANCE}::postgres", "reason": "region move, ticket 42"}] * 2,
     "netra:allowReplace.1.resource", "again"),
])
def test_a_malformed_allowance_is_refused_naming_the_key(value, key, message):
    cfg = stack_config("prod")
    cfg["netra:allowReplace"] = value
    problems = config_problems(cfg)
    assert key in problems and message in problems[key], problems


def test_teardown_is_refused_in_prod():
    cfg = stack_config("prod")
    cfg["netra:teardown"] = True
    assert "staging" in config_problems(cfg)["netra:teardown"]


def test_teardown_lifts_every_guard_in_staging():
    doc = plan_of("staging", {"netra:teardown": True})
    assert all(_guard_problems(r) for r in _stateful(doc))
    assert not any(r.get("protect") for r in doc["resources"])


def test_teardown_command_prints_the_steps_for_staging_and_refuses_prod(reuse_plans):
    r = cli("teardown", "--stack", "staging", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["steps"] == ["pulumi config set netra:teardown true --stack staging", "pulumi up --stack staging",
                            "pulumi destroy --stack staging"]
    assert doc["stillProtected"] == [] and len(doc["destroys"]) == len(_stateful(plan_of("staging")))
    r = cli("teardown", "--stack", "prod")
    assert r.returncode == 2 and "netra:teardown" in r.stderr and "prod" in r.stderr and not r.stdout


def _protect(resources, pick, on):
    return [dataclasses.replace(r, protect=on) if pick(r) else r for r in resources]


def test_the_pack_refuses_an_unprotected_resource_holding_data(pack, compliant):
    bucket = lambda r: r.type == "gcp:storage/bucket:Bucket"  # noqa: E731
    hits = stack_hits(pack, _protect(compliant, bucket, False))
    assert set(hits) == {"stateful-protected"}
    assert "protect is not set" in hits["stateful-protected"][0] and "netra:data:Guards" in hits["stateful-protected"][0]


def test_the_pack_accepts_it_only_with_an_allowance_naming_it(pack, prod_run):
    """The real prod run: as planned it passes; one resource unprotected fails; the same with an allowance
    naming it passes."""
    resources = list(prod_run.resources)
    assert "stateful-protected" not in stack_hits(pack, resources)
    instance = lambda r: r.type == SQL_INSTANCE  # noqa: E731
    hits = stack_hits(pack, _protect(resources, instance, False))
    assert any("DatabaseInstance::postgres" in m and "protect is not set" in m for m in hits["stateful-protected"])
    allowed = run_of("prod", {"netra:allowReplace": [{"resource": f"{SQL_INSTANCE}::postgres",
                                                       "reason": "region move, data restored from export"}]})
    assert not next(r for r in allowed.resources if r.type == SQL_INSTANCE).protect
    assert "stateful-protected" not in stack_hits(pack, allowed.resources)
