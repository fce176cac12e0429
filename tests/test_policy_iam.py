"""IAM the pack cannot miss (policies/netra_policies/iam.py), the pulumi-policy-aws way: a compliant program passes,
one added or changed IAM resource violates the policy it should. Resources are built with pulumi_gcp's typed
Args under Pulumi's mocks and sent to the real pack over the analyzer protocol (Analyze per resource and
AnalyzeStack), as `pulumi preview --policy-pack policies` does.

The seven grants issue 21 found passing with 0 violations are the first cases; their neighbours (other basic
roles, other IAM shapes and levels) follow. Unknown members/roles (a first preview) are sent as the engine's
unknown sentinels.
"""
from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp
import pytest
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import proxy

from infra.plan.analyzer import PackSession, PolicyConfig, to_struct
from infra.plan.engine import PlannedResource, run_program

from .test_policy_rules import PACK, pack, pack_path, mutated  # noqa: F401  (fixtures)

PROJECT = "netra-production"
APP_SA = f"netra-app-prod@{PROJECT}.iam.gserviceaccount.com"
BILLING = "serviceAccount:billing-budget-alert@system.gserviceaccount.com"
IAM_POLICIES = {"iam-role-deny-list", "iam-no-public-members", "iam-secret-access", "iam-budget-topic-publishers",
                "iam-custom-roles"}
UNKNOWN = proxy.UNKNOWN_STRING_VALUE


def compliant(extra=None):
    """A service account running a Cloud Run service that reads one secret, its grants, a public-by-design
    bucket and invoker, and the budget's topic with Cloud Billing as its only publisher. `extra(ctx)` adds
    the mutation (ctx: the resources above by name)."""
    def program():
        sa = gcp.serviceaccount.Account("app-sa", gcp.serviceaccount.AccountArgs(
            account_id="netra-app-prod", project=PROJECT, display_name="app"))
        other = gcp.serviceaccount.Account("other-sa", gcp.serviceaccount.AccountArgs(
            account_id="netra-other-prod", project=PROJECT, display_name="other"))
        secret = gcp.secretmanager.Secret("db-password", gcp.secretmanager.SecretArgs(
            secret_id="prod-db-password", project=PROJECT,
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs())))
        run = gcp.cloudrunv2
        run.Service("app", run.ServiceArgs(
            name="netra-app-prod", project=PROJECT, location="us-central1", ingress="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
            template=run.ServiceTemplateArgs(service_account=APP_SA, containers=[run.ServiceTemplateContainerArgs(
                image="us-docker.pkg.dev/p/r/app@sha256:" + "a" * 64,
                envs=[run.ServiceTemplateContainerEnvArgs(name="DB_PASSWORD", value_source=run.ServiceTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=run.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(secret="prod-db-password", version="latest")))])])))
        gcp.secretmanager.SecretIamMember("app-reads-db-password", gcp.secretmanager.SecretIamMemberArgs(
            project=PROJECT, secret_id=secret.secret_id, role="roles/secretmanager.secretAccessor", member=sa.member))
        gcp.projects.IAMMember("app-metric-writer", gcp.projects.IAMMemberArgs(
            project=PROJECT, role="roles/monitoring.metricWriter", member=sa.member))
        run.ServiceIamMember("app-invoker", run.ServiceIamMemberArgs(
            name="netra-app-prod", project=PROJECT, location="us-central1", role="roles/run.invoker", member="allUsers"))
        gcp.storage.Bucket("static", gcp.storage.BucketArgs(
            name="netra-static", location="US", labels={"public-by-design": "true"}))
        gcp.storage.BucketIAMMember("static-read", gcp.storage.BucketIAMMemberArgs(
            bucket="netra-static", role="roles/storage.legacyObjectReader", member="allUsers"))
        topic = gcp.pubsub.Topic("budget-topic", gcp.pubsub.TopicArgs(name="netra-budget-prod", project=PROJECT))
        gcp.pubsub.TopicIAMMember("billing-publishes", gcp.pubsub.TopicIAMMemberArgs(
            project=PROJECT, topic=topic.name, role="roles/pubsub.publisher", member=BILLING))
        gcp.billing.Budget("budget", gcp.billing.BudgetArgs(
            billing_account="000000-000000-000000", display_name="netra-prod",
            amount=gcp.billing.BudgetAmountArgs(specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                currency_code="USD", units="100")),
            all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(pubsub_topic=topic.id, schema_version="1.0")))
        if extra:
            extra(dict(sa=sa, other=other, secret=secret, topic=topic))
    return run_program(program, "netra", "prod", {}, ()).resources


def iam_hits(pack: PackSession, resources: list[PlannedResource]) -> dict[str, list[str]]:
    """IAM policy -> messages, from Analyze of every resource and AnalyzeStack."""
    out: dict[str, list[str]] = {}
    violations = [v for r in resources for v in pack.analyze(r)] + pack.analyze_stack(resources)
    for v in violations:
        if v.policy in IAM_POLICIES:
            out.setdefault(v.policy, []).append(v.message)
    return out


def project_member(role, member):
    return lambda c: gcp.projects.IAMMember("added", gcp.projects.IAMMemberArgs(project=PROJECT, role=role, member=member))


def policy_data(*bindings):
    return json.dumps({"bindings": [{"role": r, "members": list(m)} for r, m in bindings]})


USER = "user:alice@example.com"
# (policies that must fire, words in one message, mutation)
CASES = {
    # the seven of issue 21
    "project-editor-on-sa": ({"iam-role-deny-list"}, "roles/editor is a basic role",
                             lambda c: gcp.projects.IAMMember("added", gcp.projects.IAMMemberArgs(
                                 project=PROJECT, role="roles/editor", member=c["sa"].member))),
    "project-owner-user": ({"iam-role-deny-list"}, "roles/owner is a basic role", project_member("roles/owner", USER)),
    "project-policy-all-authenticated-editor": (
        {"iam-role-deny-list", "iam-no-public-members"}, "allAuthenticatedUsers granted roles/editor",
        lambda c: gcp.projects.IAMPolicy("added", gcp.projects.IAMPolicyArgs(
            project=PROJECT, policy_data=policy_data(("roles/editor", ["allAuthenticatedUsers"]))))),
    "secret-policy-all-users": (
        {"iam-no-public-members", "iam-secret-access"}, "allUsers granted roles/secretmanager.secretAccessor",
        lambda c: gcp.secretmanager.SecretIamPolicy("added", gcp.secretmanager.SecretIamPolicyArgs(
            project=PROJECT, secret_id=c["secret"].secret_id,
            policy_data=policy_data(("roles/secretmanager.secretAccessor", ["allUsers"]))))),
    "project-token-creator": ({"iam-role-deny-list"}, "impersonate",
                              project_member("roles/iam.serviceAccountTokenCreator", USER)),
    "sa-user-on-account": ({"iam-role-deny-list"}, "roles/iam.serviceAccountUser",
                           lambda c: gcp.serviceaccount.IAMMember("added", gcp.serviceaccount.IAMMemberArgs(
                               service_account_id=c["sa"].name, role="roles/iam.serviceAccountUser", member=USER))),
    "extra-budget-publisher": ({"iam-budget-topic-publishers"}, "on budget topic netra-budget-prod",
                               lambda c: gcp.pubsub.TopicIAMMember("added", gcp.pubsub.TopicIAMMemberArgs(
                                   project=PROJECT, topic=c["topic"].name, role="roles/pubsub.publisher",
                                   member=c["other"].member))),
    # neighbours: other basic roles, shapes and levels
    "project-binding-viewer": ({"iam-role-deny-list"}, "roles/viewer is a basic role",
                               lambda c: gcp.projects.IAMBinding("added", gcp.projects.IAMBindingArgs(
                                   project=PROJECT, role="roles/viewer", members=[USER]))),
    "org-member-editor": ({"iam-role-deny-list"}, "roles/editor",
                          lambda c: gcp.organizations.IAMMember("added", gcp.organizations.IAMMemberArgs(
                              org_id="123456789012", role="roles/editor", member=USER))),
    "folder-binding-owner": ({"iam-role-deny-list"}, "roles/owner",
                             lambda c: gcp.folder.IAMBinding("added", gcp.folder.IAMBindingArgs(
                                 folder="folders/1234", role="roles/owner", members=[USER]))),
    "folder-policy-viewer": ({"iam-role-deny-list"}, "roles/viewer",
                             lambda c: gcp.folder.IAMPolicy("added", gcp.folder.IAMPolicyArgs(
                                 folder="folders/1234", policy_data=policy_data(("roles/viewer", [USER]))))),
    "bucket-editor-basic": ({"iam-role-deny-list"}, "roles/editor",
                            lambda c: gcp.storage.BucketIAMMember("added", gcp.storage.BucketIAMMemberArgs(
                                bucket="netra-static", role="roles/editor", member=USER))),
    "project-storage-admin": ({"iam-role-deny-list"}, "admin role at project level",
                              project_member("roles/storage.admin", USER)),
    "project-run-admin-binding": ({"iam-role-deny-list"}, "admin role at project level",
                                  lambda c: gcp.projects.IAMBinding("added", gcp.projects.IAMBindingArgs(
                                      project=PROJECT, role="roles/run.admin", members=[USER]))),
    "project-iam-admin": ({"iam-role-deny-list"}, "administers IAM or KMS",
                          project_member("roles/resourcemanager.projectIamAdmin", USER)),
    "security-admin": ({"iam-role-deny-list"}, "administers IAM or KMS", project_member("roles/iam.securityAdmin", USER)),
    "kms-admin-on-key": ({"iam-role-deny-list"}, "administers IAM or KMS",
                         lambda c: gcp.kms.CryptoKeyIAMMember("added", gcp.kms.CryptoKeyIAMMemberArgs(
                             crypto_key_id="projects/p/locations/us/keyRings/r/cryptoKeys/k", role="roles/cloudkms.admin",
                             member=USER))),
    "workload-identity-binding": ({"iam-role-deny-list"}, "roles/iam.workloadIdentityUser",
                                  lambda c: gcp.serviceaccount.IAMBinding("added", gcp.serviceaccount.IAMBindingArgs(
                                      service_account_id=c["sa"].name, role="roles/iam.workloadIdentityUser",
                                      members=["principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*"]))),
    "sa-policy-token-creator": ({"iam-role-deny-list"}, "roles/iam.serviceAccountTokenCreator",
                                lambda c: gcp.serviceaccount.IAMPolicy("added", gcp.serviceaccount.IAMPolicyArgs(
                                    service_account_id=c["sa"].name,
                                    policy_data=policy_data(("roles/iam.serviceAccountTokenCreator", [USER]))))),
    "budget-topic-binding": ({"iam-budget-topic-publishers"}, "on budget topic",
                             lambda c: gcp.pubsub.TopicIAMBinding("added", gcp.pubsub.TopicIAMBindingArgs(
                                 project=PROJECT, topic="projects/netra-production/topics/netra-budget-prod",
                                 role="roles/pubsub.publisher", members=[BILLING, USER]))),
    "budget-topic-policy-editor": ({"iam-budget-topic-publishers"}, "roles/pubsub.editor on budget topic",
                                   lambda c: gcp.pubsub.TopicIAMPolicy("added", gcp.pubsub.TopicIAMPolicyArgs(
                                       project=PROJECT, topic=c["topic"].name,
                                       policy_data=policy_data(("roles/pubsub.editor", [USER]))))),
    "project-pubsub-publisher": ({"iam-budget-topic-publishers"}, "may publish to budget topic",
                                 project_member("roles/pubsub.publisher", USER)),
    "secret-reader-undeclared": ({"iam-secret-access"}, "no workload running as netra-other-prod",
                                 lambda c: gcp.secretmanager.SecretIamMember("added", gcp.secretmanager.SecretIamMemberArgs(
                                     project=PROJECT, secret_id=c["secret"].secret_id,
                                     role="roles/secretmanager.secretAccessor", member=c["other"].member))),
    "secret-binding-user": ({"iam-secret-access"}, "user:alice@example.com granted",
                            lambda c: gcp.secretmanager.SecretIamBinding("added", gcp.secretmanager.SecretIamBindingArgs(
                                project=PROJECT, secret_id="projects/netra-production/secrets/prod-db-password",
                                role="roles/secretmanager.secretAccessor", members=[USER]))),
    "project-secret-accessor": ({"iam-secret-access"}, "at project level",
                                project_member("roles/secretmanager.secretAccessor", f"serviceAccount:{APP_SA}")),
    "bucket-all-users-private": ({"iam-no-public-members"}, "not labelled public-by-design",
                                 lambda c: gcp.storage.BucketIAMMember("added", gcp.storage.BucketIAMMemberArgs(
                                     bucket="netra-private", role="roles/storage.objectViewer", member="allUsers"))),
    "public-principal-set": ({"iam-no-public-members"}, "never public",
                             lambda c: gcp.pubsub.TopicIAMMember("added", gcp.pubsub.TopicIAMMemberArgs(
                                 project=PROJECT, topic="other-topic", role="roles/pubsub.subscriber",
                                 member="principalSet://goog/public:all"))),
    "custom-role-escalates": ({"iam-custom-roles"}, "resourcemanager.projects.setIamPolicy",
                              lambda c: gcp.projects.IAMCustomRole("added", gcp.projects.IAMCustomRoleArgs(
                                  project=PROJECT, role_id="deployer", title="deployer",
                                  permissions=["run.services.get", "resourcemanager.projects.setIamPolicy"]))),
    "custom-role-undefined": ({"iam-custom-roles"}, "does not define",
                              project_member(f"projects/{PROJECT}/roles/mystery", USER)),
}


def test_compliant_program_passes_every_iam_policy(pack):
    assert iam_hits(pack, compliant()) == {}


@pytest.mark.parametrize("case", list(CASES))
def test_one_added_grant_violates(pack, case):
    expected, words, extra = CASES[case]
    hits = iam_hits(pack, compliant(extra))
    assert expected <= set(hits), (case, hits)
    assert any(words in m for p in expected for m in hits[p]), (case, hits)
    # nothing else of the compliant program is blamed: every message names the added resource's grant
    assert set(hits) - expected <= {"iam-no-public-members", "iam-secret-access", "iam-role-deny-list"}, hits


def test_the_prod_stack_has_no_iam_violation(pack, prod_run):
    resources = prod_run.resources
    assert iam_hits(pack, resources) == {}


def test_prod_grafana_invoker_is_the_iap_agent_and_allusers_there_is_refused(pack, prod_run):
    """Grafana is behind IAP: its invoker is IAP's service agent; allUsers there is a violation (its run.app URL
    would accept any IAP token from inside the VPC)."""
    invoker = next(r for r in prod_run.resources if r.name == "grafana-invoker")
    assert invoker.inputs["member"].endswith("@gcp-sa-iap.iam.gserviceaccount.com")
    swapped = [mutated(r, lambda i: i.update(member="allUsers")) if r is invoker else r for r in prod_run.resources]
    [message] = iam_hits(pack, swapped)["iam-no-public-members"]
    assert "netra-grafana-prod, which is behind IAP" in message
    # any other invoker reaches the run.app URL past IAP too
    other = [mutated(r, lambda i: i.update(member=USER)) if r is invoker else r for r in prod_run.resources]
    [message] = iam_hits(pack, other)["iam-no-public-members"]
    assert "user:alice@example.com may invoke Cloud Run service netra-grafana-prod" in message and "past IAP" in message


# ---------------------------------------------------------------- a first preview: unknowns

def _request(resources, property_dependencies=None):
    deps = property_dependencies or {}
    return analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(
            urn=r.urn, type=r.type, name=r.name, properties=to_struct(r.inputs), parent=r.parent or "",
            dependencies=list(r.dependencies),
            propertyDependencies={k: analyzer_pb2.AnalyzerPropertyDependencies(urns=v)
                                  for k, v in deps.get(r.urn, {}).items()})
        for r in resources])


def _stack_iam(pack, request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in pack._violations(pack._call("AnalyzeStack", request), ""):
        if v.policy in IAM_POLICIES:
            out.setdefault(v.policy, []).append(f"[{v.level}] {v.message}")
    return out


def test_unknown_member_of_a_service_account_is_that_account(pack):
    """`member=account.member` is unknown in a first preview; its property dependency on the stack's own
    account proves it is that account: no violation. Without the dependency it fails closed."""
    resources = compliant()
    grant = next(r for r in resources if r.name == "app-reads-db-password")
    account = next(r for r in resources if r.name == "app-sa")
    blind = [mutated(r, lambda i: i.update(member=UNKNOWN)) if r is grant else r for r in resources]
    assert _stack_iam(pack, _request(blind, {grant.urn: {"member": [account.urn]}})) == {}
    hits = _stack_iam(pack, _request(blind))
    assert set(hits) == {"iam-no-public-members", "iam-secret-access"}, hits
    assert all(m.startswith("[mandatory]") and "unknown in this preview" in m for ms in hits.values() for m in ms)


def test_unknown_role_or_policy_is_a_violation_naming_what_was_not_seen(pack):
    base = compliant(project_member("roles/logging.logWriter", USER))
    added = next(r for r in base if r.name == "added")
    [v] = [v for v in pack.analyze(mutated(added, lambda i: i.update(role=UNKNOWN))) if v.policy in IAM_POLICIES]
    assert v.level == "mandatory" and "the role is unknown in this preview" in v.message
    policy = compliant(lambda c: gcp.projects.IAMPolicy("added", gcp.projects.IAMPolicyArgs(
        project=PROJECT, policy_data=policy_data(("roles/logging.logWriter", [USER])))))
    added = next(r for r in policy if r.name == "added")
    assert [v.policy for v in pack.analyze(added) if v.policy in IAM_POLICIES] == []
    [v] = [v for v in pack.analyze(mutated(added, lambda i: i.update(policyData=UNKNOWN))) if v.policy in IAM_POLICIES]
    assert "policyData is unknown in this preview" in v.message
    [v] = [v for v in pack.analyze(mutated(added, lambda i: i.update(policyData="{not json"))) if v.policy in IAM_POLICIES]
    assert "policyData is not JSON" in v.message


def test_the_parser_knows_every_iam_resource_shape_of_pulumi_gcp(pack_path):
    """Every *IamMember / *IamBinding / *IamPolicy resource type pulumi-gcp ships is recognised, and its
    member(s)/policyData are what the parser reads (a provider upgrade adding a shape fails here)."""
    import glob
    import re
    from pathlib import Path

    from netra_policies import iam

    root = Path(gcp.__file__).parent
    tokens = set()
    for f in glob.glob(str(root / "*" / "*.py")):
        text = Path(f).read_text()
        for token in re.findall(r"'(gcp:[a-z0-9]+/[a-zA-Z0-9]+:[A-Za-z0-9]+)'", text):
            cls = token.rsplit(":", 1)[-1]
            if re.search(r"I[aA][mM](Member|Binding|Policy)$", cls) and not cls.startswith("get"):
                tokens.add(token)
                field = {"member": '"member"', "inding": '"members"', "policy": '"policy_data"'}[cls[-6:].lower()]
                assert f'__props__.__dict__[{field}]' in text, token
    assert len(tokens) > 400
    assert all(iam.is_iam(t) for t in tokens)
    assert not any(iam.is_iam(t) for t in ("gcp:projects/iAMCustomRole:IAMCustomRole", "gcp:projects/iAMAuditConfig:IAMAuditConfig",
                                          "gcp:projects/iAMMemberRemove:IAMMemberRemove", "gcp:storage/bucket:Bucket"))
    assert iam.level("gcp:organizations/iAMMember:IAMMember") == "organization"
    assert iam.level("gcp:folder/iAMPolicy:IAMPolicy") == "folder"
    assert iam.level("gcp:serviceaccount/iAMBinding:IAMBinding") == "service-account"
    assert iam.level("gcp:secretmanager/secretIamMember:SecretIamMember") == "resource"


@pytest.fixture(scope="module")
def allowing_pack(pack_path):
    with PackSession(PACK, "netra", "prod") as session:
        session.configure_stack()
        session.analyzer_info()
        session.configure({"all": PolicyConfig("mandatory"), "iam-role-deny-list": PolicyConfig("", {
            "allowedImpersonation": [{"role": "roles/iam.serviceAccountUser", "member": "serviceAccount:deployer@x.iam.gserviceaccount.com"}]})})
        yield session


def test_impersonation_allow_list_admits_exactly_its_entries(allowing_pack):
    def grant(member):
        return lambda c: gcp.serviceaccount.IAMMember("added", gcp.serviceaccount.IAMMemberArgs(
            service_account_id=c["sa"].name, role="roles/iam.serviceAccountUser", member=member))

    assert iam_hits(allowing_pack, compliant(grant("serviceAccount:deployer@x.iam.gserviceaccount.com"))) == {}
    hits = iam_hits(allowing_pack, compliant(grant("serviceAccount:other@x.iam.gserviceaccount.com")))
    assert set(hits) == {"iam-role-deny-list"} and "not on the allowedImpersonation list" in hits["iam-role-deny-list"][0]


# ---------------------------------------------------------------- Private Google Access only where needed

def _subnets(run) -> dict[str, bool]:
    return {r.name: r.inputs.get("privateIpGoogleAccess") for r in run.resources
            if r.type == "gcp:compute/subnetwork:Subnetwork"}


def _pga_hits(pack, resources) -> list[str]:
    return [v.message for v in pack.analyze_stack(resources) if v.policy == "network-private-google-access"]


def test_private_google_access_only_where_a_workload_needs_it(pack, prod_run, staging_run):
    """prod: the services' egress subnet has none (their Google traffic never enters the VPC); the ClickHouse
    subnet has it (VMs without external IPs). staging: the load test job sends ALL_TRAFFIC to run.app."""
    assert _subnets(prod_run) == {"run-egress": False, "analytics": True}
    assert _subnets(staging_run)["run-egress"] is True
    assert _pga_hits(pack, prod_run.resources) == [] and _pga_hits(pack, staging_run.resources) == []
    on = [mutated(r, lambda i: i.update(privateIpGoogleAccess=True)) if r.name == "run-egress" else r
          for r in prod_run.resources]
    [message] = _pga_hits(pack, on)
    assert "netra-prod-run-egress: privateIpGoogleAccess is on but nothing on it needs it" in message

    def private_ranges(i):
        i["template"]["template"]["vpcAccess"]["egress"] = "PRIVATE_RANGES_ONLY"
    job = [mutated(r, private_ranges) if r.type == "gcp:cloudrunv2/job:Job" and "loadtest" in r.inputs["name"] else r
           for r in staging_run.resources]
    [message] = _pga_hits(pack, job)
    assert "run-egress" in message
    no_vms = [r for r in prod_run.resources if r.type != "gcp:compute/instanceTemplate:InstanceTemplate"]
    [message] = _pga_hits(pack, no_vms)
    assert "analytics" in message
