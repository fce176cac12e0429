"""Terraform plan JSON export (`plan --format tfplan-json`) and the Checkov waiver logic of `make scan`.

The expected Terraform names below are the Terraform Google provider's (its resource docs), written
out by hand per type: the exporter must produce them from our Pulumi plans, type by type.
"""
from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp
import pytest

from infra.plan import tfplan
from infra.plan.engine import run_program
from infra.scan import ScanError, Waiver, evaluate, load_waivers, stale_waivers

from .conftest import cli

# Terraform type -> attribute paths our stacks must produce ("." = nested, "[0]" = a block's list entry).
EXPECTED = {
    "google_cloudfunctions2_function": ["build_config[0].entry_point", "service_config[0].ingress_settings",
                                        "event_trigger[0].event_type", "event_trigger[0].pubsub_topic"],
    "google_pubsub_topic": ["name"],
    "google_pubsub_topic_iam_member": ["topic", "role", "member"],
    "google_billing_budget": ["budget_filter[0].projects", "budget_filter[0].calendar_period", "threshold_rules[0].threshold_percent",
                              "amount[0].specified_amount[0].units", "all_updates_rule[0].monitoring_notification_channels"],
    "google_cloud_run_v2_job": ["template[0].template[0].containers[0].env[0].name", "template[0].template[0].vpc_access[0].network_interfaces[0].subnetwork",
                                "template[0].template[0].volumes[0].gcs[0].bucket", "template[0].template[0].max_retries"],
    "google_cloud_run_v2_service": ["traffic[0].revision", "traffic[0].type", "template[0].containers[0].env[0].name",
                                    "template[0].containers[0].startup_probe[0].http_get[0].path", "template[0].scaling[0].min_instance_count",
                                    "template[0].containers[0].resources[0].limits", "ingress", "deletion_protection"],
    "google_cloud_run_v2_service_iam_member": ["role", "member", "location"],
    "google_compute_backend_bucket": ["cdn_policy[0].cache_mode", "enable_cdn", "custom_response_headers"],
    "google_compute_backend_service": ["backend[0].group", "log_config[0].enable", "security_policy", "custom_response_headers"],
    "google_compute_global_address": ["address_type", "ip_version"],
    "google_compute_global_forwarding_rule": ["port_range", "load_balancing_scheme", "target"],
    "google_compute_managed_ssl_certificate": ["managed[0].domains"],
    "google_compute_network": ["auto_create_subnetworks", "routing_mode"],
    "google_compute_region_network_endpoint_group": ["cloud_run[0].service", "network_endpoint_type"],
    "google_compute_security_policy": ["rule[0].match[0].expr[0].expression", "rule[0].action", "rule[0].priority",
                                       "advanced_options_config[0].json_parsing"],
    "google_compute_ssl_policy": ["min_tls_version", "profile"],
    "google_compute_subnetwork": ["ip_cidr_range", "log_config[0].flow_sampling", "log_config[0].aggregation_interval",
                                  "private_ip_google_access"],
    "google_compute_target_http_proxy": ["url_map"],
    "google_compute_target_https_proxy": ["ssl_certificates", "ssl_policy", "url_map"],
    "google_compute_url_map": ["default_url_redirect[0].https_redirect"],
    "google_logging_metric": ["metric_descriptor[0].metric_kind", "filter"],
    "google_logging_project_bucket_config": ["bucket_id", "retention_days"],
    "google_monitoring_alert_policy": ["conditions[0].display_name", "documentation[0].content", "alert_strategy[0].auto_close",
                                       "notification_channels", "user_labels"],
    "google_monitoring_dashboard": ["dashboard_json"],
    "google_monitoring_notification_channel": ["type", "labels"],
    "google_monitoring_service": ["service_id", "basic_service[0].service_type"],
    "google_monitoring_slo": ["goal", "rolling_period_days", "request_based_sli[0]"],
    "google_monitoring_uptime_check_config": ["http_check[0].path", "monitored_resource[0].type", "period", "timeout"],
    "google_redis_instance": ["auth_enabled", "transit_encryption_mode", "persistence_config[0].rdb_snapshot_period",
                              "maintenance_policy[0].weekly_maintenance_window[0].day"],
    "google_secret_manager_secret": ["secret_id", "replication[0].auto[0]"],
    "google_secret_manager_secret_iam_member": ["secret_id", "role", "member"],
    "google_secret_manager_secret_version": ["secret", "deletion_policy"],
    "google_service_account": ["account_id", "display_name"],
    "google_service_networking_connection": ["reserved_peering_ranges", "service", "deletion_policy"],
    "google_sql_database": ["instance", "name"],
    "google_sql_database_instance": ["database_version", "settings[0].ip_configuration[0].ssl_mode",
                                     "settings[0].database_flags[0].name", "settings[0].backup_configuration[0].enabled",
                                     "settings[0].maintenance_window[0].day", "settings[0].insights_config[0].query_insights_enabled"],
    "google_sql_user": ["instance", "type", "deletion_policy"],
    "google_storage_bucket": ["uniform_bucket_level_access", "public_access_prevention", "labels"],
    "google_storage_bucket_iam_member": ["bucket", "role", "member"],
    "google_storage_bucket_object": ["bucket", "source", "content_type"],
    "random_password": ["length", "special"],
    # the analytics cluster: the paths Checkov's compute checks read
    "google_compute_address": ["address_type", "purpose", "subnetwork"],
    "google_iap_web_backend_service_iam_member": ["role", "member", "web_backend_service"],
    "google_compute_disk": ["size", "type", "labels", "zone"],
    "google_compute_firewall": ["allow[0].ports", "source_ranges", "target_tags", "direction", "log_config[0].metadata"],
    "google_compute_forwarding_rule": ["load_balancing_scheme", "ports", "backend_service"],
    "google_compute_health_check": ["https_health_check[0].request_path", "tcp_health_check[0].port"],
    "google_compute_instance_group_manager": ["version[0].instance_template", "stateful_disk[0].delete_rule",
                                              "auto_healing_policies[0].health_check", "named_port[0].port"],
    "google_compute_instance_template": ["disk[0].boot", "network_interface[0].subnetwork", "service_account[0].scopes",
                                         "shielded_instance_config[0].enable_secure_boot", "metadata", "tags"],
    "google_compute_per_instance_config": ["preserved_state[0].disk[0].delete_rule", "preserved_state[0].metadata", "name"],
    "google_compute_region_backend_service": ["backend[0].balancing_mode", "load_balancing_scheme", "health_checks"],
    "google_compute_router": ["network"],
    "google_compute_router_nat": ["subnetwork[0].source_ip_ranges_to_nat", "source_subnetwork_ip_ranges_to_nat"],
    "google_project_iam_member": ["role", "member"],
    "google_project_service": ["service", "disable_on_destroy"],
    "google_storage_hmac_key": ["service_account_email"],
    "tls_cert_request": ["dns_names", "ip_addresses"],
    "tls_locally_signed_cert": ["allowed_uses", "validity_period_hours"],
    "tls_private_key": ["algorithm", "ecdsa_curve"],
    "tls_self_signed_cert": ["is_ca_certificate", "allowed_uses"],
}
BUCKET_PATHS = {  # per bucket, what the fixes in issue 11 depend on
    "backups": ["retention_policy[0].retention_period", "lifecycle_rule[0].action[0].storage_class", "logging[0].log_bucket"],
    "migrations": ["versioning[0].enabled", "logging[0].log_bucket"],
    "static-assets": ["website[0].main_page_suffix", "logging[0].log_bucket"],
    "access-logs": ["lifecycle_rule[0].condition[0].age", "versioning[0].enabled"],
}


def at(values, path: str):
    node = values
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            assert isinstance(node, list), f"{path}: {part} is not a list (a block must be a list)"
            node = node[int(part[1:-1])]
        else:
            assert isinstance(node, dict) and part in node, f"{path}: no {part!r} in {sorted(node) if isinstance(node, dict) else node}"
            node = node[part]
    return node


@pytest.fixture(scope="module")
def exports(prod_run, staging_run) -> dict[str, dict]:
    return {"prod": tfplan.export(prod_run.resources), "staging": tfplan.export(staging_run.resources)}


def planned(doc: dict) -> list[dict]:
    return doc["planned_values"]["root_module"]["resources"]


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_type_we_use_exports_with_terraform_names(exports, stack):
    resources = planned(exports[stack])
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["type"], []).append(r)
        assert r["address"] == f"{r['type']}.{r['name']}" and r["mode"] == "managed"
    # staging has no budget, hence no emergency budget guard
    prod_only = {"google_billing_budget", "google_cloudfunctions2_function", "google_pubsub_topic",
                 "google_pubsub_topic_iam_member"}
    assert set(by_type) == set(EXPECTED) - (prod_only if stack == "staging" else set()), \
        "every type in the plan has expected Terraform paths, and vice versa"
    for tf_type in by_type:
        paths = EXPECTED[tf_type]
        for path in paths:
            assert any(_has(r["values"], path) for r in by_type[tf_type]), f"{tf_type}: no resource has {path}"
    buckets = {r["name"]: r["values"] for r in by_type["google_storage_bucket"]}
    for name, paths in BUCKET_PATHS.items():
        for path in paths:
            at(buckets[name], path)
    assert len({r["address"] for r in resources}) == len(resources), "addresses are unique"
    assert [c["address"] for c in exports[stack]["resource_changes"]] == [r["address"] for r in resources]
    assert all(c["change"]["actions"] == ["create"] for c in exports[stack]["resource_changes"])


def _has(values, path) -> bool:
    try:
        at(values, path)
        return True
    except AssertionError:
        return False


def test_every_list_is_classified_singular_or_plural(prod_run, staging_run):
    """Pulumi pluralises Terraform's singular block names (`rule` -> `rules`); each list our stacks use is
    either in SINGULAR_BLOCKS (with Terraform's name) or in PLURAL_LISTS (same name). A new list fails here."""
    found = set()
    for run in (prod_run, staging_run):
        for r in run.resources:
            if r.custom and r.type not in tfplan.NOT_EXPORTED:
                found |= tfplan.list_paths(tfplan.TF_TYPES[r.type], tfplan.args_class(r.type), r.inputs)
    known = set(tfplan.SINGULAR_BLOCKS) | tfplan.PLURAL_LISTS
    assert found - known == set()
    assert not set(tfplan.SINGULAR_BLOCKS) & tfplan.PLURAL_LISTS


def test_secrets_are_null_and_marked_sensitive(exports):
    versions = [r for r in planned(exports["prod"]) if r["type"] == "google_secret_manager_secret_version"]
    assert versions and all(r["values"]["secret_data"] is None and r["sensitive_values"]["secret_data"] is True
                            for r in versions)
    user = next(r for r in planned(exports["prod"]) if r["type"] == "google_sql_user")
    assert user["values"]["password"] is None and user["sensitive_values"]["password"] is True
    text = json.dumps(exports["prod"])
    assert "offline-plan-password" not in text and "offline-plan-redis-auth" not in text and "offline-plan-secret" not in text


def _program():
    gcp.storage.Bucket("b", gcp.storage.BucketArgs(
        name="b", location="US", labels={"env": "x"},
        versioning=gcp.storage.BucketVersioningArgs(enabled=True),
        lifecycle_rules=[gcp.storage.BucketLifecycleRuleArgs(
            action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
            condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=3))]))
    gcp.secretmanager.SecretVersion("v", gcp.secretmanager.SecretVersionArgs(
        secret="s", secret_data=pulumi.Output.secret("hunter2")))


def test_blocks_become_lists_maps_stay_objects():
    run = run_program(_program, "p", "s", {}, ())
    doc = tfplan.export(run.resources)
    by_type = {r["type"]: r for r in planned(doc)}  # registrations arrive in no fixed order
    bucket, version = by_type["google_storage_bucket"], by_type["google_secret_manager_secret_version"]
    assert bucket["values"] == {"name": "b", "location": "US", "labels": {"env": "x"}, "versioning": [{"enabled": True}],
                                "lifecycle_rule": [{"action": [{"type": "Delete"}], "condition": [{"age": 3}]}]}
    assert version["values"] == {"secret": "s", "secret_data": None} and version["sensitive_values"] == {"secret_data": True}


def test_unknown_property_and_type_fail_loudly(prod_run):
    bucket = next(r for r in prod_run.resources if r.type == "gcp:storage/bucket:Bucket")
    with pytest.raises(tfplan.ExportError, match="no property 'versionning'"):
        tfplan.convert("google_storage_bucket", tfplan.args_class(bucket.type), {"versionning": {"enabled": True}}, where="x")
    odd = type(bucket)(bucket.urn, "gcp:pubsub/subscription:Subscription", "t", "", {}, True)
    with pytest.raises(tfplan.ExportError, match="no Terraform type"):
        tfplan.export([odd])


def test_cli_prints_terraform_plan_json(reuse_plans):
    out = cli("plan", "--stack", "staging", "--format", "tfplan-json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["format_version"] == tfplan.FORMAT_VERSION and planned(doc)
    bad = cli("plan", "--stack", "staging", "--format", "tfplan-json", "--set", "netra:canaryPercent=7")
    assert bad.returncode == 2 and "netra:canaryPercent" in bad.stderr and not bad.stdout


# ---------------------------------------------------------------- make scan: waivers

def report(*failed: tuple[str, str], passed: int = 3) -> dict:
    return {"results": {"passed_checks": [{}] * passed,
                        "failed_checks": [{"check_id": c, "resource": r, "check_name": "n"} for c, r in failed]}}


def test_waivers_match_by_check_resource_pattern_and_stack():
    waivers = [Waiver("CKV_GCP_62", "google_storage_bucket.access-logs", "the log bucket itself, see file"),
               Waiver("CKV_GCP_6", "google_sql_database_instance.*", "password plus server verification instead", ("prod",))]
    prod = evaluate("prod", report(("CKV_GCP_62", "google_storage_bucket.access-logs"),
                                   ("CKV_GCP_6", "google_sql_database_instance.postgres"),
                                   ("CKV_GCP_26", "google_compute_subnetwork.run-egress")), waivers)
    assert prod.passed == 3 and len(prod.waived) == 2
    assert prod.unwaived == [("CKV_GCP_26", "google_compute_subnetwork.run-egress", "n")]
    staging = evaluate("staging", report(("CKV_GCP_6", "google_sql_database_instance.postgres")), waivers)
    assert [f[0] for f in staging.unwaived] == ["CKV_GCP_6"]
    assert stale_waivers([prod, staging], waivers) == []
    assert stale_waivers([evaluate("prod", report(), waivers)], waivers) == waivers  # nothing failed: both stale


def test_waiver_file_refuses_entries_without_reason(tmp_path):
    bad = tmp_path / "w.yaml"
    bad.write_text("waivers:\n  - {check: CKV_GCP_62, resource: google_storage_bucket.x, reason: ok}\n"
                   "  - {check: GCP_1, resource: bucket, reason: because we decided so long ago, stacks: [prod]}\n")
    with pytest.raises(ScanError) as e:
        load_waivers(bad)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and "waivers[0].reason" in lines[0] and "waivers[1].check" in lines[1]


def test_committed_waivers_name_resources_of_our_plans(exports):
    """A typo in scan/checkov-waivers.yaml fails here, not only under `make scan`."""
    waivers = load_waivers()
    assert waivers
    for w in waivers:
        stacks = w.stacks or ("prod", "staging")
        for stack in stacks:
            addresses = [r["address"] for r in planned(exports[stack])]
            assert any(Waiver(w.check, w.resource, w.reason).matches(stack, w.check, a) for a in addresses), w
