"""Stack-level go-live policies over AnalyzeStack: a compliant stack passes; removing or breaking one
resource violates exactly that policy. Plus: the pack's copy of the seed catalog matches infra's."""
from __future__ import annotations

import dataclasses
import json

import pytest

from infra import seed_alerts
from infra.components.guards import STATEFUL_TYPES
from infra.plan.engine import PlannedResource

from .test_policy_rules import SERVICE, built, pack, pack_path, mutated  # noqa: F401  (fixtures)

ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
BUDGET = "gcp:billing/budget:Budget"
LOG_BUCKET = "gcp:logging/projectBucketConfig:ProjectBucketConfig"
URL_MAP = "gcp:compute/uRLMap:URLMap"
HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
STACK_POLICIES = {"cloudrun-dedicated-service-account", "cloudrun-traffic-approved", "tls-http-redirects-to-https", "stack-seed-alerts",
                  "stack-seed-dashboards", "stack-billing-budget", "stack-log-retention", "iam-no-public-members",
                  "grafana-behind-auth", "iam-secret-access", "iam-budget-topic-publishers", "iam-custom-roles",
                  "lb-canary-route-private", "stateful-protected", "network-private-google-access"}


def public_members() -> list[PlannedResource]:
    """The stack's two public grants by design: static assets (by name, no listing) and the LB-only invoker."""
    def member(type_token, name, inputs):
        return PlannedResource(f"urn:pulumi:prod::netra::{type_token}::{name}", type_token, name, "", inputs, True)

    return [
        member("gcp:storage/bucket:Bucket", "static-assets", {
            "name": "netra-production-static-assets", "labels": {"public-by-design": "true"},
            "uniformBucketLevelAccess": True, "publicAccessPrevention": "inherited",
            "logging": {"logBucket": "netra-production-access-logs"}}),
        member(BUCKET_MEMBER, "static-assets-public-read", {
            "bucket": "netra-production-static-assets", "role": "roles/storage.legacyObjectReader", "member": "allUsers"}),
        member("gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "frontend-invoker", {
            "name": "netra-frontend-prod", "location": "us-central1", "role": "roles/run.invoker", "member": "allUsers"}),
    ]


@pytest.fixture(scope="module")
def compliant(built) -> list[PlannedResource]:
    """Every compliant example, three Cloud Run services with their own accounts, and the stack resources."""
    base = built[SERVICE][0]
    services = []
    for key in ("frontend", "backend", "auth"):
        def rename(i, key=key):
            i["name"] = f"netra-{key}-prod"
            i["template"]["serviceAccount"] = f"netra-{key}-prod@netra-production.iam.gserviceaccount.com"
        s = mutated(base, rename)
        s.urn, s.name = base.urn.replace("::backend", f"::{key}"), key
        services.append(s)
    stack_types = {r.type for r in built["stack"]}
    others = [r for t, rs in built.items() if t not in (SERVICE, "stack", *stack_types) for r in rs]
    # the program protects every resource holding data (infra/components/guards.py): stateful-protected
    return [dataclasses.replace(r, protect=r.type in STATEFUL_TYPES)
            for r in services + others + built["stack"] + public_members()]


def stack_hits(pack, resources) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in pack.analyze_stack(resources):
        out.setdefault(v.policy, []).append(v.message)
    return out


def replace(resources, pick, mutate):
    """Copy of `resources` with the first resource matching `pick` mutated (or dropped if mutate is None)."""
    out, done = [], False
    for r in resources:
        if not done and pick(r):
            done = True
            if mutate is None:
                continue
            r = mutated(r, mutate)
        out.append(r)
    assert done
    return out


def test_compliant_stack_passes(pack, compliant):
    assert stack_hits(pack, compliant) == {}


def is_type(t, name=None):
    return lambda r: r.type == t and (name is None or r.name == name)


STACK_CASES = [
    ("stack-seed-alerts", is_type(ALERT, "rollback-error-rate"), None, "rollback-error-rate"),
    ("stack-seed-alerts", is_type(ALERT, "service-down"), lambda i: i.update(notificationChannels=[]),
     "no notificationChannels"),
    ("stack-seed-alerts", is_type(ALERT, "cost-spike"), lambda i: i["userLabels"].update(severity="warning"),
     "the seed says 'critical'"),
    ("stack-seed-dashboards", is_type(DASHBOARD, "canary"), None, "'Canary'"),
    ("stack-seed-dashboards", is_type(DASHBOARD, "system-health"),
     lambda i: i.update(dashboardJson=json.dumps({"displayName": "Misc"})), "'System Health'"),
    ("stack-billing-budget", is_type(BUDGET), None, "no billing budget"),
    ("stack-billing-budget", is_type(BUDGET), lambda i: i.update(thresholdRules=[]), "no thresholdRules"),
    ("stack-log-retention", is_type(LOG_BUCKET), None, "not managed"),
    ("stack-log-retention", is_type(LOG_BUCKET), lambda i: i.update(retentionDays=7), "7 days"),
    ("tls-http-redirects-to-https", is_type(URL_MAP, "http-redirect"),
     lambda i: i["defaultUrlRedirect"].update(httpsRedirect=False), "does not redirect to HTTPS"),
    ("cloudrun-dedicated-service-account", is_type(SERVICE, "auth"),
     lambda i: i["template"].update(serviceAccount="123456789-compute@developer.gserviceaccount.com"),
     "default account"),
    ("cloudrun-dedicated-service-account", is_type(SERVICE, "auth"),
     lambda i: i["template"].update(serviceAccount="netra-backend-prod@netra-production.iam.gserviceaccount.com"),
     "is shared by netra-auth-prod, netra-backend-prod"),
    ("cloudrun-dedicated-service-account", is_type(SERVICE, "frontend"), lambda i: i["template"].pop("serviceAccount"),
     "not set"),
    ("iam-no-public-members", is_type(BUCKET_MEMBER), lambda i: i.update(role="roles/storage.objectViewer"),
     "only roles/storage.legacyObjectReader"),
    ("iam-no-public-members", is_type(BUCKET_MEMBER), lambda i: i.update(bucket="netra-production-backups"),
     "not labelled public-by-design=true"),
    ("iam-no-public-members", is_type(BUCKET_MEMBER), lambda i: i.update(member="allAuthenticatedUsers", bucket="x"),
     "allAuthenticatedUsers granted"),
    ("iam-no-public-members", is_type(SERVICE, "frontend"), lambda i: i.update(ingress="INGRESS_TRAFFIC_ALL"),
     "open to the internet"),
]


def _share(canary: int, tag: str = "canary"):
    def m(i):
        i["traffics"][0]["percent"], i["traffics"][1]["percent"] = 100 - canary, canary
    return m


def _approved(stage: int, revision: str | None = None, share: int = 0):
    """Record an approval for the candidate (or `revision`) at `stage` and give the candidate `share` %."""
    def m(i):
        notes = i.setdefault("annotations", {})
        notes.update({"netra.dev/approved-revision": revision or i["template"]["revision"],
                      "netra.dev/approved-stage": str(stage), "netra.dev/approved-by": "gate",
                      "netra.dev/approval-evidence": "e" * 64, "netra.dev/approval-rejected": "false"})
        _share(share)(i)
    return m


def _first_deploy(approved: bool):
    def m(i):
        rev = i["template"]["revision"]
        if approved:
            _approved(0)(i)
        i["annotations"]["netra.dev/first-deploy"] = "true"
        i["traffics"] = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": rev, "percent": 100, "tag": "stable"}]
    return m


STACK_CASES += [
    ("cloudrun-traffic-approved", is_type(SERVICE, "backend"), _share(10), "no approval for this revision"),
    ("cloudrun-traffic-approved", is_type(SERVICE, "backend"), _approved(0, share=50),
     "approved only at 0 %: the next stage is 10 %"),
    ("cloudrun-traffic-approved", is_type(SERVICE, "backend"), _approved(10, revision="netra-backend-prod-00000000", share=10),
     "the approval names netra-backend-prod-00000000"),
    ("cloudrun-traffic-approved", is_type(SERVICE, "backend"), _first_deploy(False), "has 100 % but no approval"),
]


@pytest.mark.parametrize("mutate", [_approved(0, share=10), _approved(10, share=50), _approved(50, share=100),
                                    _approved(50, share=10), _first_deploy(True)])
def test_approved_stages_pass(pack, compliant, mutate):
    assert stack_hits(pack, replace(compliant, is_type(SERVICE, "backend"), mutate)) == {}


@pytest.mark.parametrize("policy,pick,mutate,expect", STACK_CASES,
                         ids=[f"{c[0]}-{n}" for n, c in enumerate(STACK_CASES)])
def test_one_change_violates_exactly_that_stack_policy(pack, compliant, policy, pick, mutate, expect):
    hits = stack_hits(pack, replace(compliant, pick, mutate))
    assert set(hits) == {policy}, hits
    assert any(expect in m for m in hits[policy]), hits[policy]


def test_http_proxy_resolved_by_url_map_name(pack, compliant):
    """The proxy's urlMap names a serving (non-redirect) map: caught even though another map redirects."""
    bad = replace(compliant, is_type(HTTP_PROXY), lambda i: i.update(urlMap="netra-https"))
    hits = stack_hits(pack, bad)
    assert set(hits) == {"tls-http-redirects-to-https"}
    assert "serves URL map https-map" in hits["tls-http-redirects-to-https"][0]


def test_empty_stack_misses_every_observability_resource(pack):
    assert set(stack_hits(pack, [])) == {"stack-seed-alerts", "stack-seed-dashboards", "stack-billing-budget",
                                         "stack-log-retention"}


def test_stack_policies_are_the_stack_kind(pack):
    assert {p.name for p in pack.policies if p.kind == "stack"} == STACK_POLICIES


def test_pack_seed_catalog_matches_infra(pack_path):
    """The pack keeps a self-contained copy (the CLI runs it without `infra` importable): it must not drift."""
    from netra_policies import seed_catalog as c

    assert c.SEED_ALERTS == {a.id: a.severity for a in seed_alerts.SEED_ALERTS}
    assert c.SEED_DASHBOARDS == seed_alerts.SEED_DASHBOARDS and c.CANARY_DASHBOARD == seed_alerts.CANARY_DASHBOARD
    assert c.LOG_RETENTION_DAYS == seed_alerts.LOG_RETENTION_DAYS
    assert (c.ALERT_LABEL, c.SEVERITY_LABEL) == (seed_alerts.ALERT_LABEL, seed_alerts.SEVERITY_LABEL)


def test_every_rollback_trigger_is_a_checked_alert(pack_path):
    from netra_policies.seed_catalog import SEED_ALERTS

    rollback = [a for a in SEED_ALERTS if a.startswith("rollback-")]
    assert len(rollback) == 4 and all(SEED_ALERTS[a] == "critical" for a in rollback)
