"""See what a change does: the plan document in a stable order, and `plan --against FILE|GITREF`: per
resource create / update (changed paths; secrets by digest, never printed) / delete, per service the
revision and traffic before and after."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from infra.plan import plan_document
from infra.plan.diff import diff_plans, render_diff

from .conftest import cli, plan_of

# `plan` in process answers from the session's plan cache (the git-ref test's export plans for real)
pytestmark = pytest.mark.usefixtures("reuse_plans")

FLAG_FLIP = {"netra:platform.featureFlags.semantic_cache": True}
NEW_IMAGE = {"netra:services.backend.image": "us-central1-docker.pkg.dev/netra-production/netra/backend@sha256:" + "1" * 64}


def test_the_document_does_not_depend_on_registration_order(prod_run):
    shuffled = dataclasses.replace(prod_run, resources=list(reversed(prod_run.resources)))
    a, b = plan_document(prod_run, []), plan_document(shuffled, [])
    assert json.dumps(a) == json.dumps(b)
    assert [r["urn"] for r in a["resources"]] == sorted(r["urn"] for r in a["resources"])


def test_a_feature_flag_flip_shows_as_a_changed_secret_without_its_value(prod_plan):
    after = plan_of("prod", FLAG_FLIP)
    d = diff_plans(prod_plan, after)
    # secret_data is ForceNew: a flip is a new secret version (the old one disabled: deletion_policy DISABLE)
    assert d["summary"] == {"create": 0, "update": 0, "replace": 1, "delete": 0} and d["refused"] == []
    [change] = d["resources"]
    assert change["type"] == "gcp:secretmanager/secretVersion:SecretVersion" and change["name"] == "feature-flags"
    assert change["paths"] == [{"path": "secretData", "secret": True}]
    text = render_diff(d, "main")
    assert "secretData: changed (secret)" in text
    digest = after["secretDigests"][change["urn"]]["secretData"]
    assert digest not in text and "semantic_cache" not in text and "semantic_cache" not in json.dumps(d)


def test_an_image_change_shows_the_new_revision_and_its_traffic(prod_plan):
    d = diff_plans(prod_plan, plan_of("prod", NEW_IMAGE))
    backend = next(r for r in d["services"] if r["service"] == "backend")
    assert backend["changed"] and backend["revision"]["before"] != backend["revision"]["after"]
    assert backend["traffic"]["after"][1] == {"revision": backend["revision"]["after"], "percent": 0, "tag": "canary"}
    assert not next(r for r in d["services"] if r["service"] == "auth")["changed"]
    run = next(c for c in d["resources"] if c["type"] == "gcp:cloudrunv2/service:Service")
    assert {"path": "template.containers[0].image", "before": prod_plan["resources"] and
            next(r for r in prod_plan["resources"] if r["urn"] == run["urn"])["inputs"]["template"]["containers"][0]["image"],
            "after": NEW_IMAGE["netra:services.backend.image"]} in run["paths"]
    text = render_diff(d, "main")
    assert "~ backend: candidate" in text and "traffic after:  100 % stable" in text


def test_creates_and_deletes():
    res = lambda urn, **inputs: {"urn": urn, "type": "t:m:R", "name": urn[-1], "parent": "", "inputs": inputs}  # noqa: E731
    before = {"stack": "prod", "resources": [res("u:a", x=1), res("u:b", x=1)], "secretDigests": {}}
    after = {"stack": "prod", "resources": [res("u:b", x=2), res("u:c", x=1)], "secretDigests": {}}
    d = diff_plans(before, after)
    assert [(c["action"], c["urn"]) for c in d["resources"]] == [("delete", "u:a"), ("update", "u:b"), ("create", "u:c")]
    assert d["resources"][1]["paths"] == [{"path": "x", "before": 1, "after": 2}]
    assert render_diff(d, "x").splitlines()[2:5] == ["- t:m:R  a", "~ t:m:R  b", "    x: 1 -> 2"]


def test_cli_against_a_plan_file(tmp_path, prod_plan):
    before = tmp_path / "before.json"
    before.write_text(json.dumps(copy.deepcopy(prod_plan)))
    r = cli("plan", "--stack", "prod", "--against", str(before), "--set", "netra:platform.featureFlags.semantic_cache=true")
    assert r.returncode == 0, r.stderr
    assert "0 to create, 0 to update, 1 to replace, 0 to delete" in r.stdout and "secretData: changed (secret)" in r.stdout
    assert "+- gcp:secretmanager/secretVersion:SecretVersion  feature-flags  (replace)" in r.stdout
    j = cli("plan", "--stack", "prod", "--against", str(before), "--json")
    assert json.loads(j.stdout)["summary"] == {"create": 0, "update": 0, "replace": 0, "delete": 0}


@pytest.mark.parametrize("against", ["no-such-ref-or-file", "README.md"])
def test_cli_against_nothing_usable_is_exit_2(against):
    r = cli("plan", "--stack", "prod", "--against", against)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--against" in r.stderr


def test_cli_against_a_git_ref():
    """The plan of HEAD's tree, planned in a temporary export with this interpreter."""
    r = cli("plan", "--stack", "prod", "--against", "HEAD")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Plan diff of prod against HEAD:") and "Services (revision, traffic):" in r.stdout
    assert "fileAsset" not in r.stdout  # file assets' absolute paths are mapped back to this checkout
