"""The ClickHouse backup account sees only its prefix of the backups bucket (issue 21 item 6a).

Its `roles/storage.objectAdmin` on `<project>-backups` carries an IAM condition; the plan's expression is
evaluated here with cel-python (a CEL implementation, the language of IAM conditions) against the request
attributes Cloud Storage presents: `resource.name` / `resource.type` of the object or bucket checked, and
`api.getAttribute("storage.googleapis.com/objectListPrefix", "")` for `storage.objects.list`, which is
checked on the bucket.
"""
from __future__ import annotations

import celpy
import pytest

from tests.conftest import resources_of

BUCKET = "netra-production-backups"
OBJECT_TYPE, BUCKET_TYPE = "storage.googleapis.com/Object", "storage.googleapis.com/Bucket"
LIST_PREFIX = "storage.googleapis.com/objectListPrefix"


def evaluate(expression: str, resource_type: str, name: str, list_prefix: str | None = None) -> bool:
    env = celpy.Environment()

    def get_attribute(api, key, default):  # IAM's api.getAttribute(key, default)
        return api.get(key, default)

    program = env.program(env.compile(expression), functions={"getAttribute": get_attribute})
    api = {LIST_PREFIX: list_prefix} if list_prefix is not None else {}
    return bool(program.evaluate({"resource": celpy.json_to_cel({"type": resource_type, "name": name}),
                                  "api": celpy.json_to_cel(api)}))


@pytest.fixture(scope="module")
def condition(prod_plan) -> str:
    [grant] = [r["inputs"] for r in resources_of(prod_plan, "gcp:storage/bucketIAMMember:BucketIAMMember")
               if r["name"] == "clickhouse-backup-writes"]
    assert grant["role"] == "roles/storage.objectAdmin" and grant["bucket"] == BUCKET
    return grant["condition"]["expression"]


def obj(path: str) -> tuple[str, str]:
    return OBJECT_TYPE, f"projects/_/buckets/{BUCKET}/objects/{path}"


@pytest.mark.parametrize("request_,allowed", [
    ((*obj("clickhouse/2026-12-07/s1-r1/data.bin"),), True),  # write / read / delete a backup object
    ((*obj("clickhouse/"),), True),
    ((*obj("db/netra-2026-12-07.sql.gz"),), False),  # the Cloud SQL exports
    ((*obj("clickhousex/leak"),), False),  # a sibling prefix sharing the characters
    ((*obj("other/clickhouse/x"),), False),
    ((BUCKET_TYPE, f"projects/_/buckets/{BUCKET}", "clickhouse/"), True),  # list its own prefix
    ((BUCKET_TYPE, f"projects/_/buckets/{BUCKET}", "clickhouse/2026-12-07/"), True),
    ((BUCKET_TYPE, f"projects/_/buckets/{BUCKET}", ""), False),  # list the whole bucket
    ((BUCKET_TYPE, f"projects/_/buckets/{BUCKET}", None), False),  # a bucket call without a listing prefix
    ((BUCKET_TYPE, f"projects/_/buckets/{BUCKET}", "db/"), False),
], ids=["backup-object", "prefix-itself", "sql-export", "sibling-prefix", "nested-elsewhere", "list-own-prefix",
        "list-deeper", "list-everything", "bucket-no-prefix", "list-exports"])
def test_the_backup_account_sees_only_its_prefix(condition, request_, allowed):
    assert evaluate(condition, *request_) is allowed


def test_the_previous_condition_listed_the_whole_bucket():
    """What issue 21 found: `|| resource.type == Bucket` admits every listing of the bucket."""
    before = (f'resource.name.startsWith("projects/_/buckets/{BUCKET}/objects/clickhouse/") || '
              f'resource.type == "storage.googleapis.com/Bucket"')
    assert evaluate(before, BUCKET_TYPE, f"projects/_/buckets/{BUCKET}", "")
