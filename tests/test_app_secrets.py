"""`netra:platform.appSecrets`: user-defined secrets (an LLM provider's API key) as Secret Manager secrets,
their value only ever a Pulumi secret, read only by the services that list them in `secrets`."""
from __future__ import annotations

import functools
import json

import pytest

from infra import program, wiring
from infra.components import prometheus
from infra.components.clickhouse.render import NODE_SECRETS, TLS_SECRETS
from infra.config import ConfigError, load_stack_config
from infra.config.platform import RESERVED_SECRET_KEYS
from infra.plan import plan_document, tfplan
from infra.plan.engine import run_program
from infra.plan.stackfile import OFFLINE_SECRET, encode, read_stack

from .conftest import cli, config_problems, flat, plan_of, resources_of, stack_config

SECRET = "gcp:secretmanager/secret:Secret"
VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
GRANT = "gcp:secretmanager/secretIamMember:SecretIamMember"
VALUE_PATH = "netra:platform.appSecrets.anthropic-api-key.value"
# backend reads a key given as `secure:` and one without a value; auth reads only the one without
OVERRIDES = {
    "netra:platform.appSecrets": {
        "anthropic-api-key": {"description": "Anthropic API key", "value": {"secure": "v1:AAAAencrypted"}},
        "openai-api-key": {"description": "OpenAI API key, added with gcloud"}},
    "netra:services.backend.secrets.ANTHROPIC_API_KEY": "anthropic-api-key",
    "netra:services.backend.secrets.OPENAI_API_KEY": "openai-api-key",
    "netra:services.auth.secrets.OPENAI_API_KEY": "openai-api-key",
}


def with_app_secrets(apps: dict, reads: dict[str, dict[str, str]] | None = None, stack: str = "prod") -> dict:
    cfg = stack_config(stack)
    cfg["netra:platform"]["appSecrets"] = apps
    for svc, secrets in (reads or {}).items():
        cfg["netra:services"][svc].setdefault("secrets", {}).update(secrets)
    return cfg


def load_problems(cfg: dict, secret_paths=()) -> dict[str, str]:
    """Problems as `pulumi up` and the plan see them: they know which leaves of the stack file were `secure:`."""
    with pytest.raises(ConfigError) as e:
        load_stack_config(flat(cfg), "prod", secret_paths=secret_paths)
    return {p.key: p.message for p in e.value.problems}


# ---------------------------------------------------------------- config errors, each naming its key

def test_a_plaintext_value_is_refused_naming_the_key_and_never_shown():
    cfg = with_app_secrets({"anthropic-api-key": {"value": "sk-ant-plaintext-123"}})
    found = load_problems(cfg)
    assert list(found) == [VALUE_PATH]
    assert "pulumi config set --secret --path 'netra:platform.appSecrets.anthropic-api-key.value'" in found[VALUE_PATH]
    assert "sk-ant-plaintext-123" not in json.dumps(found)
    # the same value given as `secure:` is accepted
    load_stack_config(flat(cfg), "prod", secret_paths=[VALUE_PATH])


def test_the_command_line_refuses_a_plaintext_value_before_planning():
    result = cli("plan", "--stack", "prod", "--set", f"{VALUE_PATH}=sk-ant-plaintext-456")
    assert result.returncode == 2
    assert VALUE_PATH in result.stderr + result.stdout and "--secret" in result.stderr + result.stdout
    assert "sk-ant-plaintext-456" not in result.stderr + result.stdout


@pytest.mark.parametrize("key", ["db-password", "feature-flags", "db-migrate-password", "prometheus-config",
                                 "clickhouse-tls-key", "grafana-admin-password", "grafana-iap-audience",
                                 "pagerduty-key"])
def test_a_key_the_stack_already_uses_is_refused_naming_both(key):
    found = config_problems(with_app_secrets({key: {}}))
    assert list(found) == [f"netra:platform.appSecrets.{key}"]
    assert f"collides with the platform secret key {key!r}" in found[f"netra:platform.appSecrets.{key}"]
    assert f"<env>-{key}" in found[f"netra:platform.appSecrets.{key}"]


@pytest.mark.parametrize("key", ["Anthropic", "anthropic_api_key", "-x", "x-", "1key", "a" * 64])
def test_a_bad_key_is_refused_naming_it(key):
    found = config_problems(with_app_secrets({key: {}}))
    assert list(found) == [f"netra:platform.appSecrets.{key}"]
    assert "a secret key (lowercase letters, digits and -" in found[f"netra:platform.appSecrets.{key}"]


def test_an_unknown_reference_is_refused_listing_platform_and_app_keys():
    cfg = with_app_secrets({"openai-api-key": {}}, {"backend": {"ANTHROPIC_API_KEY": "anthropic-api-key"}})
    found = config_problems(cfg)
    message = found["netra:services.backend.secrets.ANTHROPIC_API_KEY"]
    assert message.startswith("unknown secret 'anthropic-api-key'; allowed: ")
    allowed = message.split("allowed: ")[1].split(", ")
    assert "openai-api-key" in allowed and "db-password" in allowed and "feature-flags" in allowed


def test_bad_values_are_refused_without_echoing_them():
    found = config_problems(with_app_secrets({"a-key": {"value": 12345}, "b-key": {"value": ""},
                                              "c-key": {"value": "x" * 65537}, "d-key": {"nope": 1}}))
    assert set(found) == {"netra:platform.appSecrets.a-key.value", "netra:platform.appSecrets.b-key.value",
                          "netra:platform.appSecrets.c-key.value", "netra:platform.appSecrets.d-key.nope"}
    assert "12345" not in json.dumps(found) and "xxxx" not in json.dumps(found)


def test_a_secret_description_is_refused_as_taking_no_secret():
    found = load_problems(with_app_secrets({"openai-api-key": {"description": "d"}}),
                          ["netra:platform.appSecrets.openai-api-key.description"])
    assert list(found) == ["netra:platform.appSecrets.openai-api-key.description"]
    assert "takes no secret" in found["netra:platform.appSecrets.openai-api-key.description"]


def test_reserved_keys_are_every_secret_the_stack_creates(prod_plan):
    """The collision list is the stack's own secrets (so an app key can never take one), checked against
    the constants of the components that create them and against the prod plan's Secret resources."""
    assert set(NODE_SECRETS) | set(TLS_SECRETS) | {prometheus.CONFIG_KEY} <= RESERVED_SECRET_KEYS
    created = {r["inputs"]["secretId"].removeprefix("prod-") for r in resources_of(prod_plan, SECRET)}
    # a database client's own password (<env>-<service>-db-password) is reserved by its suffix
    own = {k for k in created if k.endswith("-db-password")}
    assert own == {"auth-db-password", "backend-db-password"}
    assert created - own <= RESERVED_SECRET_KEYS


def test_a_key_ending_in_db_password_is_refused():
    found = config_problems(with_app_secrets({"backend-db-password": {}}))
    assert list(found) == ["netra:platform.appSecrets.backend-db-password"]
    assert "a database client's own password" in found["netra:platform.appSecrets.backend-db-password"]


# ---------------------------------------------------------------- the plan

@pytest.fixture(scope="module")
def plan() -> dict:
    return plan_of("prod", OVERRIDES, policy=True)


def by_secret_id(doc: dict, type_token: str, sid: str) -> list[dict]:
    return [r for r in resources_of(doc, type_token) if r["inputs"].get("secretId") == sid]


def test_each_app_secret_is_a_secret_like_the_platform_ones(plan):
    platform = by_secret_id(plan, SECRET, "prod-feature-flags")[0]["inputs"]
    for key, description in (("anthropic-api-key", "Anthropic API key"), ("openai-api-key", "OpenAI API key, added with gcloud")):
        (secret,) = by_secret_id(plan, SECRET, f"prod-{key}")
        assert secret["inputs"]["replication"] == platform["replication"]
        assert secret["inputs"]["labels"] == platform["labels"]
        assert secret["inputs"]["annotations"] == {"description": description}
        assert secret["parent"] == by_secret_id(plan, SECRET, "prod-feature-flags")[0]["parent"]
    versions = {r["name"]: r["inputs"] for r in resources_of(plan, VERSION)}
    assert versions["anthropic-api-key"]["secretData"] == "[secret]"
    assert "openai-api-key" not in versions  # its versions are added outside Pulumi
    assert [v for v in plan["policy"]["violations"] if v["level"] == "mandatory"] == []


def test_only_the_services_that_list_a_secret_may_read_it(plan):
    def readers(sid):
        return sorted(r["inputs"]["member"] for r in by_secret_id(plan, GRANT, sid))

    sa = "serviceAccount:netra-{}-prod@netra-production.iam.gserviceaccount.com"
    assert readers("prod-anthropic-api-key") == [sa.format("backend")]
    assert readers("prod-openai-api-key") == sorted([sa.format("auth"), sa.format("backend")])
    env = {e["name"]: e for r in resources_of(plan, "gcp:cloudrunv2/service:Service") if r["name"] == "backend"
           for e in r["inputs"]["template"]["containers"][0]["envs"]}
    assert env["ANTHROPIC_API_KEY"]["valueSource"]["secretKeyRef"] == {"secret": "prod-anthropic-api-key",
                                                                      "version": "latest"}


def test_a_secret_without_value_warns_for_every_service_that_reads_it(plan):
    warned = [w for w in plan["warnings"] if "prod-openai-api-key" in w]
    assert len(warned) == 2
    assert any(w.startswith("netra-backend-prod reads OPENAI_API_KEY") for w in warned)
    assert any(w.startswith("netra-auth-prod reads OPENAI_API_KEY") for w in warned)
    assert all("gcloud secrets versions add prod-openai-api-key --data-file=-" in w for w in warned)
    assert not [w for w in plan["warnings"] if "prod-anthropic-api-key" in w]  # Pulumi manages its version


def test_the_plan_command_shows_the_warning_and_exits_0(reuse_plans):
    result = cli("plan", "--stack", "staging",
                 "--set", "netra:platform.appSecrets.openai-api-key.description=OpenAI API key",
                 "--set", "netra:services.backend.secrets.OPENAI_API_KEY=openai-api-key")
    assert result.returncode == 0, result.stderr
    assert ("! netra-backend-staging reads OPENAI_API_KEY from Secret Manager secret staging-openai-api-key"
            in result.stdout)
    assert "gcloud secrets versions add staging-openai-api-key --data-file=- --project " in result.stdout


def test_the_plaintext_never_reaches_the_plan_outputs_logs_or_tfplan():
    """As under `pulumi up`: the CLI decrypts the `secure:` value and hands the program the plaintext,
    marking `netra:platform` as a secret key. It must leave the program only as a Pulumi secret."""
    plaintext = "sk-ant-api03-plaintext-must-not-leak"
    stack_file = read_stack("prod", overrides=OVERRIDES)
    platform = json.loads(stack_file.config["netra:platform"])
    assert platform["appSecrets"]["anthropic-api-key"]["value"] == OFFLINE_SECRET
    platform["appSecrets"]["anthropic-api-key"]["value"] = plaintext
    config = {**stack_file.config, "netra:platform": encode(platform)}
    run = run_program(functools.partial(program.main, stack_file.secret_paths), stack_file.project, "prod", config,
                      (*stack_file.secret_keys, "netra:platform"))
    version = next(r for r in run.resources if r.type == VERSION and r.name == "anthropic-api-key")
    assert plaintext in json.dumps(version.inputs)  # the engine gets it (wrapped), to store it encrypted
    exported = tfplan.export(run.resources)
    everything = json.dumps([plan_document(run, []), exported])
    assert "anthropic-api-key" in everything and plaintext not in everything
    # Terraform's own form of a secret: the value null, marked sensitive (what Checkov and friends see)
    (tf_version,) = [r for r in exported["planned_values"]["root_module"]["resources"]
                     if r["type"] == "google_secret_manager_secret_version" and r["name"] == "anthropic-api-key"]
    assert tf_version["values"]["secret_data"] is None and tf_version["sensitive_values"]["secret_data"] is True


# ---------------------------------------------------------------- no cascade

def revisions(cfg: dict) -> dict[str, str]:
    return wiring.candidate_revisions(load_stack_config(flat(cfg), "prod"))


def test_adding_an_app_secret_renames_only_the_revision_of_its_reader():
    before = revisions(stack_config("prod"))
    declared = revisions(with_app_secrets({"anthropic-api-key": {"value": "a"}}))
    assert declared == before  # declared, read by nobody: no template changes
    after = revisions(with_app_secrets({"anthropic-api-key": {"value": "a"}},
                                       {"backend": {"ANTHROPIC_API_KEY": "anthropic-api-key"}}))
    assert after["backend"] != before["backend"]
    assert {k: v for k, v in after.items() if k != "backend"} == {k: v for k, v in before.items() if k != "backend"}


def test_changing_an_app_secret_value_renames_no_revision():
    reads = {"backend": {"ANTHROPIC_API_KEY": "anthropic-api-key"}}
    one = revisions(with_app_secrets({"anthropic-api-key": {"value": "first"}}, reads))
    assert revisions(with_app_secrets({"anthropic-api-key": {"value": "rotated"}}, reads)) == one
    assert revisions(with_app_secrets({"anthropic-api-key": {}}, reads)) == one  # value moved out of Pulumi
