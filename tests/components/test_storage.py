import pytest

from infra.components.storage import PUBLIC_BY_DESIGN_LABEL, Storage, StorageArgs
from infra.config.platform import StorageConfig

from .conftest import PROD, STAGING, register

BUCKET = "gcp:storage/bucket:Bucket"
IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"


def build(site=PROD, **config):
    return register(lambda: {"summary": Storage("storage", StorageArgs(site, StorageConfig.model_validate(config))).summary()})


def test_three_buckets_uniform_access_public_access_prevented():
    reg = build()
    assert reg.names(BUCKET) == ["backups", "migrations", "static-assets"]
    for name in reg.names(BUCKET):
        b = reg.one(BUCKET, name)
        assert b["name"] == f"netra-test-{name}" and b["uniformBucketLevelAccess"] is True
        assert b["publicAccessPrevention"] == "enforced" and b["forceDestroy"] is False
    assert reg.of(IAM) == []
    assert reg.outputs["summary"]["backups"] == "netra-test-backups"


def test_static_assets_public_only_when_config_says_so():
    reg = build(staticAssets={"public": True})
    static = reg.one(BUCKET, "static-assets")
    assert static["publicAccessPrevention"] == "inherited" and static["labels"][PUBLIC_BY_DESIGN_LABEL] == "true"
    assert reg.one(IAM)["member"] == "allUsers" and reg.one(IAM)["role"] == "roles/storage.objectViewer"
    assert reg.one(BUCKET, "backups")["publicAccessPrevention"] == "enforced"


@pytest.mark.parametrize("site,destroy", [(PROD, False), (STAGING, True)])
def test_only_staging_buckets_can_be_torn_down(site, destroy):
    assert build(site).one(BUCKET, "backups")["forceDestroy"] is destroy


def test_backups_are_versioned_retained_and_move_colder():
    b = build(backups={"retentionDays": 10}).one(BUCKET, "backups")
    assert b["versioning"] == {"enabled": True} and b["retentionPolicy"]["retentionPeriod"] == 10 * 86400
    classes = [r["action"].get("storageClass") for r in b["lifecycleRules"]]
    assert classes == ["NEARLINE", "COLDLINE", "ARCHIVE", None]
