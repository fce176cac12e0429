import pulumi

from infra.components.secrets import Secrets, SecretsArgs, config_payloads
from infra.config import AppSettings

from .conftest import PROD, is_secret, register

SECRET = "gcp:secretmanager/secret:Secret"
VERSION = "gcp:secretmanager/secretVersion:SecretVersion"


def test_one_secret_and_version_per_key_payloads_always_secret():
    holder = {}

    def go():
        s = holder["s"] = Secrets("secrets", SecretsArgs(PROD, {"feature-flags": '{"a":true}',
                                                                "db-password": pulumi.Output.from_input("pw")}))
        return {"ids": s.ids}

    reg = register(go)
    assert reg.outputs["ids"] == {"feature-flags": "prod-feature-flags", "db-password": "prod-db-password"}
    assert reg.one(SECRET, "feature-flags")["secretId"] == "prod-feature-flags"
    for r in reg.of(VERSION):
        assert is_secret(r.inputs["secretData"]) and r.inputs["deletionPolicy"] == "DISABLE"
    assert [r._name for r in holder["s"].resources(["db-password"])] == ["db-password", "db-password"]


def test_config_payloads_are_the_seed_documents():
    docs = config_payloads(AppSettings(), {"semantic_cache": False})
    assert docs["feature-flags"] == '{"semantic_cache":false}'
    assert '"gpt4"' in docs["pricing-config"] and '"enabled":true' in docs["token-optimization-config"]
