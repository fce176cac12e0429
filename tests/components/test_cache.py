from infra.components.cache import TLS_PORT, Cache, CacheArgs, client_env
from infra.config.platform import CacheConfig

from .conftest import PROD, register

REDIS = "gcp:redis/instance:Instance"


def build(**config):
    def go():
        c = Cache("cache", CacheArgs(PROD, CacheConfig.model_validate(config), network_id="vpc-id",
                                     reserved_ip_range="netra-prod-private-services"))
        return {"auth": c.auth_string, "host": c.host, "ca": c.server_ca}

    return register(go)


def test_redis_with_auth_tls_private_access_and_rdb():
    reg = build(tier="STANDARD_HA", memorySizeGb=3)
    r = reg.one(REDIS)
    assert (r["tier"], r["memorySizeGb"], r["redisVersion"]) == ("STANDARD_HA", 3, "REDIS_7_2")
    assert r["authEnabled"] is True and r["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert (r["connectMode"], r["authorizedNetwork"], r["reservedIpRange"]) == (
        "PRIVATE_SERVICE_ACCESS", "vpc-id", "netra-prod-private-services")
    assert r["persistenceConfig"]["persistenceMode"] == "RDB" and r["deletionProtection"] is True
    assert reg.outputs["ca"].startswith("-----BEGIN CERTIFICATE-----")


def test_clients_use_the_tls_port():
    assert dict(client_env())["REDIS_PORT"] == str(TLS_PORT) == "6378"
