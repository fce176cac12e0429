import pytest

from infra.components.storage import PUBLIC_BY_DESIGN_LABEL, PUBLIC_READ_ROLE, USAGE_LOG_WRITER, Storage, StorageArgs
from infra.config.platform import StorageConfig

from .conftest import PROD, STAGING, TEARDOWN, register

BUCKET = "gcp:storage/bucket:Bucket"
IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"


def build(site=PROD, **config):
    return register(lambda: {"summary": Storage("storage", StorageArgs(site, StorageConfig.model_validate(config))).summary()})


def test_buckets_uniform_access_public_access_prevented_usage_logged():
    reg = build()
    assert reg.names(BUCKET) == ["access-logs", "backups", "migrations", "release-ledger", "static-assets"]
    for name in reg.names(BUCKET):
        b = reg.one(BUCKET, name)
        assert b["name"] == f"netra-test-{name}" and b["uniformBucketLevelAccess"] is True
        assert b["publicAccessPrevention"] == "enforced" and b["forceDestroy"] is False
        if name != "access-logs":
            assert b["logging"] == {"logBucket": "netra-test-access-logs", "logObjectPrefix": name}
    assert reg.one(IAM)["member"] == USAGE_LOG_WRITER  # the only grant: usage logs in, nothing public
    assert reg.outputs["summary"]["backups"] == "netra-test-backups"


def test_static_assets_public_only_when_config_says_so():
    reg = build(staticAssets={"public": True})
    static = reg.one(BUCKET, "static-assets")
    assert static["publicAccessPrevention"] == "inherited" and static["labels"][PUBLIC_BY_DESIGN_LABEL] == "true"
    read = reg.one(IAM, "static-assets-public-read")
    assert (read["member"], read["role"]) == ("allUsers", PUBLIC_READ_ROLE)  # read by name, never list
    assert reg.one(BUCKET, "backups")["publicAccessPrevention"] == "enforced"


@pytest.mark.parametrize("site,destroy", [(PROD, False), (STAGING, False), (TEARDOWN, True)])
def test_buckets_empty_themselves_only_in_a_teardown(site, destroy):
    assert build(site).one(BUCKET, "backups")["forceDestroy"] is destroy


def test_backups_are_retained_and_move_colder():
    b = build(backups={"retentionDays": 10}).one(BUCKET, "backups")
    assert b["retentionPolicy"]["retentionPeriod"] == str(10 * 86400)
    assert [r["action"]["storageClass"] for r in b["lifecycleRules"]] == ["NEARLINE", "COLDLINE", "ARCHIVE"]
