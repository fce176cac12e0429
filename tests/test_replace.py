"""The plan knows what replaces (infra/plan/replace.py, infra/plan/replace_table.json): the table covers every
type the program registers and matches the installed pulumi_gcp; `plan --against` shows replacements,
delete-before-replace and the dependents deleted first; every config edit that would replace or delete a
resource holding data is refused without an allowance and accepted with one, in both stacks."""
from __future__ import annotations

import copy
import json
from importlib import metadata

import pytest

from infra.plan import replace, replace_gen
from infra.plan.diff import diff_plans, render_diff

from .conftest import ROOT, cli, plan_of

SQL_INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"


def test_the_table_was_generated_for_the_installed_pulumi_gcp():
    t = replace.table()
    assert t["pulumiGcpVersion"] == metadata.version("pulumi_gcp"), (
        "pulumi_gcp was bumped: re-extract the provider schema and regenerate the replace table "
        "(python -m infra.plan.replace_gen extract --provider-git DIR && python -m infra.plan.replace_gen generate)")
    assert t["source"]["provider"] == "hashicorp/terraform-provider-google-beta" and len(t["source"]["commit"]) == 40


def test_the_table_regenerates_offline_from_the_vendored_extract():
    extract = json.loads(replace_gen.EXTRACT.read_text())
    assert replace_gen.generate(extract, replace_gen.program_types()) == replace.table()


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_registered_provider_type_is_in_the_table(stack):
    types = {r["type"] for r in plan_of(stack)["resources"] if r["type"].startswith(("gcp:", "random:", "tls:"))}
    entries = replace.table()["types"]
    assert types - set(entries) == set()
    # the names the schema marks as identity are in it (read from the source, not typed in)
    assert {"name", "instance"} <= set(entries["gcp:sql/database:Database"]["replaceOnChanges"])
    assert {"region", "name"} <= set(entries[SQL_INSTANCE]["replaceOnChanges"])
    assert {"zone", "type", "diskEncryptionKey"} <= set(entries["gcp:compute/disk:Disk"]["replaceOnChanges"])
    assert {"location", "name"} <= set(entries["gcp:storage/bucket:Bucket"]["replaceOnChanges"])
    assert {"path": "redisVersion", "when": "isRedisVersionDecreasing"} in entries["gcp:redis/instance:Instance"]["replaceIf"]


GO = '''
func init() {
	registry.Schema{
		Name:   "google_thing",
		Type:   registry.SchemaTypeResource,
		Schema: ResourceThing(),
	}.Register()
}

func ResourceThing() *schema.Resource {
	return &schema.Resource{
		CustomizeDiff: customdiff.All(
			customdiff.ForceNewIfChange("size", IsShrinking), thingDiff,
		),
		// a comment before the key, with a "quote" and a { brace
		Schema: map[string]*schema.Schema{
			"name": {Type: schema.TypeString, Required: true, ForceNew: true},
			"size": {Type: schema.TypeInt, Optional: true},
			"settings": {
				Type: schema.TypeList, MaxItems: 1, Optional: true,
				Elem: &schema.Resource{Schema: map[string]*schema.Schema{
					"tier": {Type: schema.TypeString, Optional: true, ForceNew: true, Description: `a } brace`},
					"flags": {Type: schema.TypeList, Optional: true, Elem: flagSchema()},
				}},
			},
			"self_link": {Type: schema.TypeString, Computed: true, ForceNew: true},
		},
	}
}

func flagSchema() *schema.Resource {
	return &schema.Resource{Schema: map[string]*schema.Schema{"value": {Type: schema.TypeString, ForceNew: true, Optional: true}}}
}

func thingDiff(_ context.Context, d *schema.ResourceDiff, meta interface{}) error {
	return d.ForceNew("mode")
}
'''


def test_the_extractor_reads_force_new_from_go_source():
    source = replace_gen.Source({"thing.go": GO})
    got = replace_gen.Extractor(source).resource("ResourceThing")
    assert got["forceNew"] == ["name", "self_link", "settings.flags.value", "settings.tier"]
    assert got["maxItemsOne"] == ["settings"]
    assert {"path": "size", "when": "IsShrinking"} in got["forceNewIf"]
    assert {"path": "mode", "when": "thingDiff"} in got["forceNewIf"]


def _edit(stack: str, key: str, value):
    """The diff of the stack against itself with one config edit."""
    return diff_plans(plan_of(stack), plan_of(stack, {key: value}))


# Every config key that feeds a replace-on-change input of a resource holding data, with an edit of it
# (issue 20's list): each must be refused unless an allowance names what it destroys.
EDITS = [
    ("netra:platform.database.databaseName", "netra_v2", {"gcp:sql/database:Database::app"}),
    ("netra:platform.database.instanceName", "netra-{env}-db-2", None),
    ("netra:platform.database.userName", "netra_app2", {"gcp:sql/user:User::backend-db-user"}),
    ("netra:platform.cache.instanceName", "netra-{env}-redis-2", {"gcp:redis/instance:Instance::redis"}),
    ("netra:platform.cache.redisVersion", "7.0", {"gcp:redis/instance:Instance::redis"}),
    # (prod refuses BASIC outright: only staging can reach this replacement by an edit)
    ("netra:platform.cache.tier", {"staging": "STANDARD_HA"}, {"gcp:redis/instance:Instance::redis"}),
    ("gcp:region", "europe-west1", None),
    ("netra:platform.storage.location", "EU", None),
    ("netra:platform.clickhouse.diskType", {"prod": "pd-balanced", "staging": "pd-ssd"}, None),
    ("netra:platform.clickhouse.diskSizeGb", {"prod": 400, "staging": 40}, None),  # smaller: a new disk
    ("netra:platform.clickhouse.kmsKey", "projects/netra-kms-1/locations/us-central1/keyRings/ring/cryptoKeys/disks", None),
    ("netra:platform.clickhouse.zones", ["b", "c", "f"], None),
    ("netra:platform.clickhouse.shards", 1, None),
    ("netra:platform.clickhouse.keeper.diskType", {"prod": "pd-balanced", "staging": "pd-ssd"}, None),
]


CASES = [(stack, key, value[stack] if isinstance(value, dict) else value, expect) for key, value, expect in EDITS
         for stack in ("prod", "staging") if not isinstance(value, dict) or stack in value]


@pytest.mark.parametrize("stack,key,value,expect", CASES, ids=[f"{c[1].split(':')[-1]}-{c[0]}" for c in CASES])
def test_a_data_destroying_edit_is_refused_without_an_allowance_and_accepted_with_one(stack, key, value, expect):
    if isinstance(value, str):
        value = value.format(env="production" if stack == "prod" else "staging")
    d = _edit(stack, key, value)
    refused = {r["resource"] for r in d["refused"]}
    assert refused, f"{stack}: {key}={value!r} destroys no data?"
    if expect is not None:
        assert expect <= refused
    assert all(r["urn"].split("::")[2].rsplit("$", 1)[-1] in replace.STATEFUL_TYPES for r in d["refused"])
    if stack != "prod":  # the allowance works the same in every stack; one stack's plans keep the suite fast
        return
    allow = [{"resource": r, "reason": "planned move, data exported and verified first"} for r in sorted(refused)]
    allowed = diff_plans(plan_of(stack), plan_of(stack, {key: value, "netra:allowReplace": allow}))
    assert allowed["refused"] == []
    assert {r["resource"] for r in allowed["refused"]} == set()


def test_the_config_reference_marks_every_such_key_immutable():
    rows = {line.split("|")[1].strip().strip("`"): line for line in
            (ROOT / "docs/reference/config.md").read_text().splitlines() if line.startswith("| `")}
    keys = [k for k, _, _ in EDITS] + ["netra:platform.clickhouse.replicas", "netra:platform.clickhouse.keeper.diskSizeGb",
                                       "netra:platform.database.migrationUserName", "gcp:project"]
    unmarked = [k for k in keys if "immutable" not in rows.get(k.split(".", 1)[-1] if k.startswith("netra:platform")
                                                                 else k, rows.get(k, ""))]
    assert unmarked == []


def test_the_instance_rename_is_delete_before_replace_and_deletes_its_dependents_first():
    d = _edit("prod", "netra:platform.database.instanceName", "netra-production-db-2")
    by_name = {(c["type"], c["name"]): c for c in d["resources"]}
    instance = by_name[(SQL_INSTANCE, "postgres")]
    assert instance["action"] == "replace" and instance["deleteBeforeReplace"] and instance["reasons"] == ["name"]
    db = by_name[("gcp:sql/database:Database", "app")]
    assert db["action"] == "replace" and db["replacedBy"] == [instance["urn"]]
    assert by_name[("gcp:sql/user:User", "migrate")]["replacedBy"] == [instance["urn"]]
    text = render_diff(d, "main")
    assert "-+ gcp:sql/databaseInstance:DatabaseInstance  postgres  (delete before replace)" in text
    assert "(deleted first, recreated after: it refers to postgres)" in text
    assert "Refused: " in text and "netra:allowReplace" in text


def test_an_in_place_edit_is_no_replacement():
    d = _edit("prod", "netra:platform.database.maxConnections", 1100)
    assert d["summary"]["replace"] == 0 and d["summary"]["update"] >= 1 and d["refused"] == []


def test_a_disk_grows_in_place_and_shrinks_by_replacement():
    grow = _edit("prod", "netra:platform.clickhouse.diskSizeGb", 600)
    assert grow["refused"] == [] and grow["summary"]["replace"] == 0
    shrink = _edit("prod", "netra:platform.clickhouse.diskSizeGb", 400)
    assert {r["resource"] for r in shrink["refused"]} >= {"gcp:compute/disk:Disk::s1-r1-data"}


def test_plan_against_exits_1_on_a_refusal(tmp_path, reuse_plans):
    before = tmp_path / "before.json"
    before.write_text(json.dumps(copy.deepcopy(plan_of("prod"))))
    r = cli("plan", "--stack", "prod", "--against", str(before), "--set", "netra:platform.database.databaseName=netra2")
    assert r.returncode == 1 and "Refused: 1 resource(s) holding data" in r.stdout, r.stdout
    assert "gcp:sql/database:Database::app" in r.stdout
