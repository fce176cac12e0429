"""Preview parity: `plan --preview` runs the program as a first `pulumi preview` of a fresh stack sees it,
and every mandatory policy decides there (no pulumi_policy "can't run", which is an ADVISORY skip).
The normal mode's mocks return every computed output the program reads, shaped as the provider does.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.plan import checked_run, plan_document, policy_config_file, run_stack
from infra.plan.cli import render_text
from infra.plan.analyzer import PackSession, load_pack_config, reconcile
from infra.plan.engine import SECRET_SIG, SIG_KEY, UNKNOWN, run_program

from .conftest import cli

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("prod", "staging")
CANT_RUN = "can't run policy"
# Policies that fail closed on the repo's own fresh-stack preview, each with why (none: the https URL map
# names its backends by relative URL, known in a preview).
KNOWN_FAIL_CLOSED: set[str] = set()


def _mandatory_policies(stack: str) -> list[str]:
    """Every policy the pack enforces as mandatory under policies/config.<stack>.json, as the CLI resolves it."""
    with PackSession(ROOT / "policies", "netra", stack) as session:
        policies = session.analyzer_info()
        resolved = reconcile(policies, session.initial_config(), load_pack_config(policy_config_file(stack)))
    return sorted(name for name, cfg in resolved.items() if cfg.enforcement_level == "mandatory")


@pytest.fixture(scope="module")
def previews():
    return {stack: checked_run(stack, preview=True) for stack in STACKS}


@pytest.mark.parametrize("stack", STACKS)
def test_every_mandatory_policy_decides_in_a_fresh_stack_preview(stack, previews):
    run, violations = previews[stack]
    mandatory = _mandatory_policies(stack)
    assert len(mandatory) >= 30  # the whole pack, not an empty enumeration
    skipped = {v["policy"] for v in violations if CANT_RUN in v["message"]}
    closed = {v["policy"] for v in violations if v["message"].startswith("fails closed")}
    report = {p: ("skipped (can't run)" if p in skipped else "failed closed" if p in closed else "decided")
              for p in mandatory}
    assert [p for p, r in report.items() if r == "skipped (can't run)"] == [], report
    assert {p for p, r in report.items() if r == "failed closed"} == KNOWN_FAIL_CLOSED, report
    # otherwise the repo's stacks pass every policy in preview as they do in the normal mode
    assert [v for v in violations if v["level"] == "mandatory" and v["policy"] not in KNOWN_FAIL_CLOSED] == []
    # and it really was a preview: inputs computed from other resources are unknown
    unknown = [r for r in run.resources if UNKNOWN in json.dumps(r.inputs)]
    assert len(unknown) >= 20


@pytest.mark.parametrize("stack", STACKS)
def test_preview_leaves_computed_values_unknown_and_the_normal_mode_none(stack, previews, request):
    run, _ = previews[stack]
    by_name = {(r.type, r.name): r for r in run.resources}
    sql = by_name[("gcp:sql/databaseInstance:DatabaseInstance", "postgres")]
    assert sql.inputs["settings"]["ipConfiguration"]["privateNetwork"] == UNKNOWN  # the VPC's id
    assert sql.inputs["name"] != UNKNOWN  # inputs from config stay known
    ilb = [r for r in run.resources if r.type == "gcp:compute/regionBackendService:RegionBackendService"]
    assert ilb and all(b["group"] == UNKNOWN for r in ilb for b in r.inputs["backends"])
    normal = request.getfixturevalue(f"{stack}_run")
    assert [r.urn for r in normal.resources if UNKNOWN in json.dumps(r.inputs)] == []
    assert {r.urn for r in normal.resources} == {r.urn for r in run.resources}


def test_preview_document_marks_unknowns_and_the_cli_refuses_against(previews):
    doc = plan_document(*previews["staging"], preview=True)
    text = json.dumps(doc)
    assert doc["mode"] == "preview" and "[unknown]" in text and UNKNOWN not in text
    assert "preview of a fresh stack" in render_text(doc)
    for extra in (("--against", "HEAD"), ("--format", "tfplan-json")):
        proc = cli("plan", "--stack", "staging", "--preview", *extra)
        assert proc.returncode == 2 and "--preview" in proc.stderr and extra[0] in proc.stderr, proc.stderr


# ---------------------------------------------------------------- normal mode: computed outputs

def _unset_outputs_read(program, monkeypatch) -> set[str]:
    """Resolve every output the mocks do not return with a marker naming it; the markers that reach a
    registered input or a stack output are computed outputs the program reads and the mocks lack."""
    import pulumi.runtime.rpc as rpc

    original = rpc.resolve_outputs

    def marking(res, serialized_props, outputs, deps, resolvers, custom, *args, **kwargs):
        kind = getattr(res, "_type", type(res).__name__)

        def wrap(key, resolve):
            def resolve_marked(value, known, secret, d, err):
                if value is None and known and key not in ("id", "urn"):
                    value = f"<unset:{kind}.{key}>"
                return resolve(value, known, secret, d, err)
            return resolve_marked

        marked = {key: wrap(key, resolve) for key, resolve in resolvers.items()}
        return original(res, serialized_props, outputs, deps, marked, custom, *args, **kwargs)

    monkeypatch.setattr(rpc, "resolve_outputs", marking)
    run = run_stack(program) if isinstance(program, str) else run_program(program, "netra", "test", {})
    text = json.dumps([r.inputs for r in run.resources]) + json.dumps(run.outputs)
    return set(re.findall(r"<unset:[^>]*>", text))


@pytest.mark.parametrize("stack", STACKS)
def test_mocks_return_every_computed_output_the_program_reads(stack, monkeypatch):
    assert _unset_outputs_read(stack, monkeypatch) == set()


def _group_program() -> None:
    """An instance group manager whose group a regional backend service serves (the ClickHouse ILB's shape)."""
    import pulumi_gcp as gcp

    compute = gcp.compute
    template = compute.InstanceTemplate("t", compute.InstanceTemplateArgs(
        machine_type="e2-small", disks=[compute.InstanceTemplateDiskArgs(source_image="debian-12")],
        network_interfaces=[compute.InstanceTemplateNetworkInterfaceArgs(network="default")]))
    group = compute.InstanceGroupManager("g", compute.InstanceGroupManagerArgs(
        name="netra-g", project="p", zone="us-central1-a", base_instance_name="g", target_size=1,
        versions=[compute.InstanceGroupManagerVersionArgs(instance_template=template.self_link_unique)]))
    compute.RegionBackendService("ilb", compute.RegionBackendServiceArgs(
        region="us-central1", load_balancing_scheme="INTERNAL",
        backends=[compute.RegionBackendServiceBackendArgs(group=group.instance_group)]))


def test_the_detector_sees_a_computed_output_the_mocks_lack(monkeypatch):
    from infra.plan import engine

    assert "<unset:gcp:compute/instanceGroupManager:InstanceGroupManager.instance_group>" not in \
        _unset_outputs_read(_group_program, monkeypatch)
    monkeypatch.delitem(engine.COMPUTED, "gcp:compute/instanceGroupManager:InstanceGroupManager")
    assert "<unset:gcp:compute/instanceGroupManager:InstanceGroupManager.instance_group>" in \
        _unset_outputs_read(_group_program, monkeypatch)


def test_clickhouse_ilb_backends_name_their_instance_groups(prod_run):
    managers = {r.inputs["name"]: r.inputs["zone"] for r in prod_run.resources
                if r.type == "gcp:compute/instanceGroupManager:InstanceGroupManager"}
    ilb = [r for r in prod_run.resources if r.type == "gcp:compute/regionBackendService:RegionBackendService"]
    groups = [b["group"] for r in ilb for b in r.inputs["backends"]]
    assert groups and len(groups) == len(set(groups))
    for g in groups:
        m = re.fullmatch(r"https://www\.googleapis\.com/compute/v1/projects/netra-production/zones/([a-z0-9-]+)"
                         r"/instanceGroups/([a-z0-9-]+)", g)
        assert m and managers.get(m.group(2)) == m.group(1), g


# ---------------------------------------------------------------- the pack on unknowns (analyzer protocol)

@dataclass
class R:
    """A resource as the engine sends it to the pack (PlannedResource's shape)."""
    type: str
    name: str
    inputs: dict
    property_dependencies: dict = field(default_factory=dict)
    parent: str = ""
    custom: bool = True

    @property
    def urn(self) -> str:
        return f"urn:pulumi:prod::netra::{self.type}::{self.name}"


def secret(value):
    return {SIG_KEY: SECRET_SIG, "value": value}


@pytest.fixture(scope="module")
def pack():
    with PackSession(ROOT / "policies", "netra", "prod") as session:
        session.configure_stack()
        session.analyzer_info()
        session.configure(load_pack_config(policy_config_file("prod")))
        yield session


def _found(pack, resources, policy: str) -> list[str]:
    out = [v for r in resources for v in pack.analyze(r)] + pack.analyze_stack(resources)
    assert not [v for v in out if CANT_RUN in v.message], out
    return [f"{v.level}: {v.message}" for v in out if v.policy == policy]


SV = "gcp:secretmanager/secretVersion:SecretVersion"


def test_secret_payload_decides_on_the_secret_marker_of_an_unknown(pack):
    assert _found(pack, [R(SV, "ok", {"secret": UNKNOWN, "secretData": secret(UNKNOWN)})],
                  "secret-version-payload-secret") == []
    found = _found(pack, [R(SV, "plain", {"secret": UNKNOWN, "secretData": UNKNOWN})], "secret-version-payload-secret")
    assert found == ["mandatory: secretData reached the engine as plaintext: pass it as a Pulumi secret "
                     "(Output.secret / --secret config)"]


SQL = "gcp:sql/databaseInstance:DatabaseInstance"


def test_sql_private_network_unknown_is_set_and_an_unknown_it_reads_fails_closed(pack):
    ip = {"ipv4Enabled": False, "privateNetwork": UNKNOWN, "sslMode": "ENCRYPTED_ONLY"}
    assert _found(pack, [R(SQL, "db", {"settings": {"ipConfiguration": ip}})], "sql-no-public-ip") == []
    assert _found(pack, [R(SQL, "db", {"settings": {"ipConfiguration": {"ipv4Enabled": False}}})],
                  "sql-no-public-ip") == ["mandatory: settings.ipConfiguration has no privateNetwork (private IP) or pscConfigs"]
    found = _found(pack, [R(SQL, "db", {"settings": {"ipConfiguration": {**ip, "ipv4Enabled": UNKNOWN}}})],
                   "sql-no-public-ip")
    assert len(found) == 1 and found[0].startswith("mandatory: fails closed: settings.ipConfiguration.ipv4Enabled is unknown")


HTTPS_PROXY = "gcp:compute/targetHttpsProxy:TargetHttpsProxy"
HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
URL_MAP = "gcp:compute/uRLMap:URLMap"


def test_https_proxy_ssl_policy_reference_unknown_is_set(pack):
    assert _found(pack, [R(HTTPS_PROXY, "p", {"sslPolicy": UNKNOWN, "urlMap": UNKNOWN})], "tls-https-proxy-ssl-policy") == []
    assert _found(pack, [R(HTTPS_PROXY, "p", {"urlMap": UNKNOWN})], "tls-https-proxy-ssl-policy") == \
        ["mandatory: no sslPolicy: Google's default allows TLS 1.0 and weak ciphers"]


def test_http_redirect_follows_the_url_map_the_engine_names(pack):
    redirect = R(URL_MAP, "redirect", {"name": "r", "defaultUrlRedirect": {"httpsRedirect": True}})
    serving = R(URL_MAP, "serving", {"name": "s", "defaultService": UNKNOWN})
    to = lambda m: R(HTTP_PROXY, "http", {"urlMap": UNKNOWN}, {"urlMap": (m.urn,)})  # noqa: E731
    assert _found(pack, [redirect, serving, to(redirect)], "tls-http-redirects-to-https") == []
    assert _found(pack, [redirect, serving, to(serving)], "tls-http-redirects-to-https") == [
        "mandatory: the HTTP proxy http serves URL map serving, which does not redirect to HTTPS (defaultUrlRedirect.httpsRedirect)"]
    found = _found(pack, [redirect, R(HTTP_PROXY, "http", {"urlMap": UNKNOWN})], "tls-http-redirects-to-https")
    assert len(found) == 1 and found[0].startswith("mandatory: fails closed: the HTTP proxy http's urlMap is unknown")


ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"


def test_seed_alert_channels_counted_while_their_names_are_unknown(pack):
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_catalog", ROOT / "policies/netra_policies/seed_catalog.py")
    catalog = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(catalog)
    SEED_ALERTS = catalog.SEED_ALERTS

    def alerts(channels):
        return [R(ALERT, a, {"userLabels": {"netra_alert": a, "severity": sev}, "notificationChannels": channels})
                for a, sev in SEED_ALERTS.items()]

    assert _found(pack, alerts([UNKNOWN, UNKNOWN]), "stack-seed-alerts") == []
    assert len(_found(pack, alerts([]), "stack-seed-alerts")) == len(SEED_ALERTS)
    closed = _found(pack, alerts(UNKNOWN), "stack-seed-alerts")
    assert len(closed) == len(SEED_ALERTS) and all("fails closed" in m for m in closed)


RUN = "gcp:cloudrunv2/service:Service"
NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND = "gcp:compute/backendService:BackendService"


def test_grafana_backend_found_through_property_dependencies_while_the_group_is_unknown(pack):
    envs = [{"name": "GF_AUTH_JWT_ENABLED", "value": "true"},
            {"name": "GF_AUTH_JWT_HEADER_NAME", "value": "X-Goog-Iap-Jwt-Assertion"},
            {"name": "GF_AUTH_JWT_EXPECT_CLAIMS",
             "value": '{"iss": "https://cloud.google.com/iap", "aud": "$__env{IAP_AUDIENCE}"}'},
            {"name": "IAP_AUDIENCE", "valueSource": {"secretKeyRef": {"secret": "prod-grafana-iap-audience"}}},
            {"name": "GF_DATABASE_HOST", "value": UNKNOWN}]
    svc = R(RUN, "grafana", {"name": "netra-grafana", "labels": {"app": "grafana"},
                             "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
                             "template": {"containers": [{"envs": envs}]}})
    neg = R(NEG, "grafana-neg", {"name": "netra-grafana-neg", "cloudRun": {"service": "netra-grafana"}})

    def backend(iap: bool):
        return R(BACKEND, "grafana-backend", {"name": "netra-grafana-backend", "backends": [{"group": UNKNOWN}],
                                              "iap": {"enabled": iap}}, {"backends": (neg.urn,)})

    assert _found(pack, [svc, neg, backend(True)], "grafana-behind-auth") == []
    assert _found(pack, [svc, neg, backend(False)], "grafana-behind-auth") == [
        "mandatory: backend service netra-grafana-backend serves Grafana without IAP (iap.enabled is not true)"]
    unseen = {**svc.inputs, "template": {"containers": [{"envs": [{"name": "GF_AUTH_JWT_ENABLED", "value": UNKNOWN},
                                                                   *envs[1:]]}]}}
    found = _found(pack, [R(RUN, "grafana", unseen), neg, backend(True)], "grafana-behind-auth")
    assert any(m.startswith("mandatory: fails closed: Grafana service netra-grafana: env GF_AUTH_JWT_ENABLED") for m in found)
