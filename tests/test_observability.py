"""Observability of both stacks, planned offline: every seed alert with its threshold, severity and routing,
every metric read is built in or declared, dashboards parse strictly, bad thresholds are refused."""
from __future__ import annotations

import json
import re
import pytest
from google.cloud import monitoring_dashboard_v1
from google.protobuf import json_format

from infra import signals
from infra.config import ConfigError, load_stack_config
from infra.plan.engine import is_secret
from infra.plan.stackfile import encode
from infra.seed_alerts import CANARY_DASHBOARD, LOG_RETENTION_DAYS, SEED_ALERTS, SEED_DASHBOARDS

from .conftest import cli, one, resources_of, run_of, stack_config

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
LOG_METRIC = "gcp:logging/metric:Metric"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
SLO = "gcp:monitoring/slo:Slo"
UPTIME = "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig"
BUDGET = "gcp:billing/budget:Budget"
BUCKET = "gcp:logging/projectBucketConfig:ProjectBucketConfig"

# Built-in metrics the stack may read: exact names (anything else must be a declared log metric).
BUILTIN = {
    "run.googleapis.com/request_count", "run.googleapis.com/request_latencies",
    "run.googleapis.com/container/memory/utilizations", "run.googleapis.com/container/cpu/utilizations",
    "run.googleapis.com/container/instance_count",
    "monitoring.googleapis.com/uptime_check/check_passed",
    "cloudsql.googleapis.com/database/cpu/utilization", "cloudsql.googleapis.com/database/postgresql/num_backends",
    "cloudsql.googleapis.com/database/up",
    "redis.googleapis.com/stats/memory/usage_ratio", "redis.googleapis.com/clients/connected",
    "loadbalancing.googleapis.com/https/request_count", "loadbalancing.googleapis.com/https/total_latencies",
    "agent.googleapis.com/disk/percent_used", "agent.googleapis.com/agent/uptime",  # Ops Agent (ClickHouse VMs)
}

# seed alert id -> (severity, what its condition must contain: PromQL comparison or threshold value)
SEED_THRESHOLDS = {
    "rollback-error-rate": ("critical", "> 0.01"),
    "rollback-p95-latency": ("critical", 2000),
    "rollback-token-optimization-failure": ("critical", "> 0.1"),
    "rollback-websocket-connection-failures": ("critical", "> 0.05"),
    "token-optimization-failure-rate": ("critical", "> 0.05"),
    "cost-calculation-accuracy": ("critical", "< 0.95"),
    "websocket-event-latency": ("warning", 200),
    "session-isolation-breach": ("critical", 0),
    "service-down": ("critical", 1),
    "cost-spike": ("critical", "> 1.5 *"),
    "cache-hit-rate-drop": ("critical", "< 0.5"),
    "performance-degradation": ("warning", "> 1.2 *"),
    "budget-utilization-high": ("warning", 80),
    "memory-usage-high": ("warning", 0.85),
}


def policies_by_alert(plan: dict) -> dict[str, dict]:
    out = {}
    for r in resources_of(plan, POLICY):
        alert = r["inputs"].get("userLabels", {}).get("netra_alert")
        if alert:
            assert alert not in out, f"two policies for {alert}"
            out[alert] = r["inputs"]
    return out


def channels(plan: dict) -> dict[str, set[str]]:
    out = {"email": set(), "pagerduty": set()}
    for r in resources_of(plan, CHANNEL):
        out[r["inputs"]["type"]].add(f"projects/{r['inputs']['project']}/notificationChannels/{r['name']}")
    return out


def test_seed_table_covers_every_seed_alert():
    assert set(SEED_THRESHOLDS) == {a.id for a in SEED_ALERTS}
    assert all(SEED_THRESHOLDS[a.id][0] == a.severity for a in SEED_ALERTS)


@pytest.mark.parametrize("alert_id", sorted(SEED_THRESHOLDS))
def test_prod_seed_alert_threshold_severity_routing_runbook(prod_plan, alert_id):
    severity, expected = SEED_THRESHOLDS[alert_id]
    policy = policies_by_alert(prod_plan)[alert_id]
    assert policy["userLabels"]["severity"] == severity and policy["severity"] == severity.upper()
    chans, routed = channels(prod_plan), set(policy["notificationChannels"])
    if severity == "critical":  # seed 000: pager_duty + email
        assert routed == chans["pagerduty"] | chans["email"] and chans["pagerduty"] and chans["email"]
    else:  # seed 000: email
        assert routed == chans["email"]
    for cond in policy["conditions"]:
        if isinstance(expected, str):
            assert expected in cond["conditionPrometheusQueryLanguage"]["query"]
        else:
            assert cond["conditionThreshold"]["thresholdValue"] == expected
            assert cond["conditionThreshold"]["comparison"] == "COMPARISON_GT"
    doc = policy["documentation"]["content"]
    assert "### What it means" in doc and "### What to check" in doc
    assert "python -m infra rollback --stack prod" in doc
    assert "pulumi config set netra:canaryPercent 0 && pulumi up" in doc


def test_rollback_triggers_are_judged_per_revision(prod_plan):
    policies = policies_by_alert(prod_plan)
    for alert_id in ("rollback-error-rate", "rollback-token-optimization-failure", "rollback-websocket-connection-failures"):
        assert "by (service_name, revision_name)" in policies[alert_id]["conditions"][0]["conditionPrometheusQueryLanguage"]["query"]
    agg = policies["rollback-p95-latency"]["conditions"][0]["conditionThreshold"]["aggregations"][0]
    assert agg["crossSeriesReducer"] == "REDUCE_PERCENTILE_95" and "resource.label.revision_name" in agg["groupByFields"]


def test_baselines_are_the_same_window_a_week_earlier(prod_plan):
    policies = policies_by_alert(prod_plan)
    for alert_id in ("cost-spike", "performance-degradation"):
        assert "offset 1w" in policies[alert_id]["conditions"][0]["conditionPrometheusQueryLanguage"]["query"]
    assert "user_netra_llm_request_cost_sum" in policies["cost-spike"]["conditions"][0]["conditionPrometheusQueryLanguage"]["query"]


def test_service_down_watches_each_public_uptime_check(prod_plan):
    checks = {r["name"]: r["inputs"] for r in resources_of(prod_plan, UPTIME)}
    assert set(checks) == {"frontend", "backend", "auth"}
    # through the load balancer (the run.app URLs are closed), under each service's route prefix
    expected_paths = {"frontend": "/health", "backend": "/api/health", "auth": "/auth/health"}
    for key, check in checks.items():
        assert check["httpCheck"]["path"] == expected_paths[key] and check["httpCheck"]["useSsl"] is True
        assert check["monitoredResource"]["labels"]["host"] == "app.netra.ai"
    conditions = policies_by_alert(prod_plan)["service-down"]["conditions"]
    assert sorted(re.search(r'check_id="([^"]+)"', c["conditionThreshold"]["filter"]).group(1) for c in conditions) == \
        sorted(f"{k}-uptime" for k in checks)


def test_staging_routes_everything_to_email(staging_plan):
    chans = channels(staging_plan)
    assert not chans["pagerduty"] and chans["email"]
    for policy in resources_of(staging_plan, POLICY):
        assert set(policy["inputs"]["notificationChannels"]) == chans["email"]
    assert set(policies_by_alert(staging_plan)) == {a.id for a in SEED_ALERTS}


def test_pagerduty_service_key_is_a_pulumi_secret(prod_plan):
    assert one(prod_plan, CHANNEL, "pagerduty")["inputs"]["sensitiveLabels"] == "[secret]"
    raw = next(r for r in run_of("prod").resources if r.type == CHANNEL and r.name == "pagerduty")
    labels = raw.inputs["sensitiveLabels"]
    assert is_secret(labels) or is_secret(labels.get("serviceKey"))
    assert "offline-plan-secret" not in json.dumps(prod_plan)


def test_log_signal_contract(prod_plan):
    metrics = {r["name"]: r["inputs"] for r in resources_of(prod_plan, LOG_METRIC)}
    assert set(metrics) == {s.metric for s in signals.ALL_SIGNALS}
    for signal in (signals.TOKEN_OPTIMIZATION, signals.WEBSOCKET_CONNECTION):  # what the canary gate queries
        m = metrics[signal.metric]
        assert m["name"] == signal.metric and m["labelExtractors"]["outcome"] == "EXTRACT(jsonPayload.outcome)"
        assert f'jsonPayload.event="{signal.event}"' in m["filter"] and 'resource.type="cloud_run_revision"' in m["filter"]
        assert m["metricDescriptor"]["metricKind"] == "DELTA" and m["metricDescriptor"]["valueType"] == "INT64"
    for signal in signals.VALUE_SIGNALS:
        m = metrics[signal.metric]
        assert m["valueExtractor"] == f"EXTRACT(jsonPayload.{signal.field})"
        assert m["metricDescriptor"]["valueType"] == "DISTRIBUTION" and m["metricDescriptor"]["unit"] == signal.unit
        if signal.exponential:  # cost and tokens: the gate shifts one revision's histogram by whole buckets
            n, growth, scale = signal.exponential
            assert m["bucketOptions"]["exponentialBuckets"] == {"numFiniteBuckets": n, "growthFactor": growth, "scale": scale}
        else:
            assert m["bucketOptions"]["explicitBuckets"]["bounds"] == list(signal.bounds)
    assert metrics["netra_cache_lookup"]["labelExtractors"]["cache"] == "EXTRACT(jsonPayload.cache)"


def _promql_name(metric_type: str) -> str:
    domain, _, path = metric_type.partition("/")
    return domain.replace(".", "_") + ":" + path.replace(".", "_").replace("/", "_")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("plan_name", ["prod_plan", "staging_plan"])
def test_every_metric_read_is_built_in_or_declared(request, plan_name):
    plan = request.getfixturevalue(plan_name)
    declared = {signals.LOG_METRIC_PREFIX + r["inputs"]["name"] for r in resources_of(plan, LOG_METRIC)}
    known = BUILTIN | declared
    promql_known = {_promql_name(m) + sfx for m in known for sfx in ("", "_sum", "_count", "_bucket")}
    texts = [s for t in (POLICY, SLO) for r in resources_of(plan, t) for s in _strings(r["inputs"])]
    texts += [s for r in resources_of(plan, DASHBOARD) for s in _strings(json.loads(r["inputs"]["dashboardJson"]))]
    filters = [m for t in texts for m in re.findall(r'metric\.type="([^"]+)"', t)]
    promql = [m for t in texts for m in re.findall(r"\b[a-z0-9_]+_googleapis_com:[a-z0-9_]+", t)]
    assert filters and promql
    assert set(filters) <= known, set(filters) - known
    assert set(promql) <= promql_known, set(promql) - promql_known
    from infra.flag_gate import METRIC_FOR  # the gate on flag arms reads the request metrics

    assert declared <= set(filters) | set(METRIC_FOR.values()) | {
        m for m in known if _promql_name(m) + "_sum" in promql or _promql_name(m) in promql}, \
        "a declared log metric nothing reads"


@pytest.mark.parametrize("plan_name", ["prod_plan", "staging_plan"])
def test_dashboards_parse_strictly_against_the_cloud_monitoring_schema(request, plan_name):
    plan = request.getfixturevalue(plan_name)
    titles = []
    for r in resources_of(plan, DASHBOARD):
        msg = monitoring_dashboard_v1.Dashboard.pb()()
        json_format.Parse(r["inputs"]["dashboardJson"], msg, ignore_unknown_fields=False)
        titles.append(msg.display_name)
        tiles = msg.mosaic_layout.tiles
        assert tiles and all(t.x_pos + t.width <= msg.mosaic_layout.columns for t in tiles)
        for t in tiles:
            for ds in t.widget.xy_chart.data_sets:
                assert ds.time_series_query.WhichOneof("source"), f"{msg.display_name}: {t.widget.title} has no query"
    assert sorted(titles) == sorted([*SEED_DASHBOARDS, CANARY_DASHBOARD])


def test_strict_parse_refuses_unknown_fields():
    with pytest.raises(json_format.ParseError):
        json_format.Parse('{"displayName": "x", "mosaicLayout": {"colums": 48}}', monitoring_dashboard_v1.Dashboard.pb()(),
                          ignore_unknown_fields=False)


def test_canary_dashboard_puts_stable_and_canary_side_by_side(prod_plan):
    dash = json.loads(one(prod_plan, DASHBOARD, "canary")["inputs"]["dashboardJson"])
    candidate = prod_plan["outputs"]["services"]["backend"]["candidateRevision"]
    tiles = [t for t in dash["mosaicLayout"]["tiles"] if "xyChart" in t["widget"]]
    backend = [t for t in tiles if candidate in json.dumps(t)]
    stable = [t for t in backend if t["widget"]["title"].endswith(": stable")]
    canary = [t for t in backend if t["widget"]["title"].endswith(": canary")]
    assert len(stable) == len(canary) == 5
    for s, c in zip(stable, canary):
        assert s["yPos"] == c["yPos"] and s["xPos"] == 0 and c["xPos"] == 24
        s_text, c_text = " ".join(_strings(s)), " ".join(_strings(c))
        assert f'revision_name!="{candidate}"' in s_text and f'revision_name="{candidate}"' not in s_text
        assert f'revision_name="{candidate}"' in c_text


def test_slos_and_burn_rate_alerts(prod_plan):
    slos = {r["name"]: r["inputs"] for r in resources_of(prod_plan, SLO)}
    assert set(slos) == {f"{k}-{kind}" for k in ("frontend", "backend", "auth") for kind in ("availability", "latency")}
    assert slos["backend-availability"]["goal"] == 0.999 and slos["backend-latency"]["goal"] == 0.99
    assert slos["backend-latency"]["requestBasedSli"]["distributionCut"]["range"]["max"] == 2000
    burn = {r["name"]: r["inputs"] for r in resources_of(prod_plan, POLICY) if "slo" in r["inputs"]["userLabels"]}
    assert len(burn) == 18
    expected = {"page-fast": (14.4, ("60m", "5m"), "critical"), "page-slow": (6, ("360m", "30m"), "critical"),
                "ticket": (1, ("4320m", "360m"), "warning")}
    for name, policy in burn.items():
        factor, windows, severity = next(v for k, v in expected.items() if name.endswith(k))
        assert policy["combiner"] == "AND" and policy["userLabels"]["severity"] == severity
        conds = [c["conditionThreshold"] for c in policy["conditions"]]
        assert [c["thresholdValue"] for c in conds] == [factor, factor]
        assert [re.search(r'"(\d+m)"\)$', c["filter"]).group(1) for c in conds] == list(windows)
        assert all(c["filter"].startswith('select_slo_burn_rate("projects/netra-production/services/netra-') for c in conds)


def test_budget_in_prod_only_and_log_retention(prod_plan, staging_plan):
    budget = one(prod_plan, BUDGET, "monthly")["inputs"]
    assert [r["thresholdPercent"] for r in budget["thresholdRules"]] == [0.5, 0.8, 1]
    assert budget["billingAccount"] == "01A2B3-C4D5E6-F7A8B9"
    # the project NUMBER (what the Budget API stores), looked up from the id; offline a stable stand-in
    from infra.plan.engine import CALLS

    number = CALLS["gcp:organizations/getProject:getProject"]({"projectId": "netra-production"})["number"]
    assert re.fullmatch(r"\d{12}", number) and budget["budgetFilter"]["projects"] == [f"projects/{number}"]
    assert set(budget["allUpdatesRule"]["monitoringNotificationChannels"]) == channels(prod_plan)["email"]
    assert not resources_of(staging_plan, BUDGET)
    for plan in (prod_plan, staging_plan):
        bucket = one(plan, BUCKET, "default-bucket")["inputs"]
        assert (bucket["bucketId"], bucket["location"], bucket["retentionDays"]) == ("_Default", "global", LOG_RETENTION_DAYS)


# ---- config errors: each names its key, the plan exits 2 ----

def _problems(cfg: dict, stack: str = "prod") -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        load_stack_config({k: encode(v) for k, v in cfg.items()}, stack)
    return {p.key: p.message for p in e.value.problems}


def test_thresholds_come_from_config():
    cfg = stack_config("prod")
    cfg["netra:observability"]["thresholds"] = {"errorRatePercent": 0.5, "memoryUsagePercent": 90}
    obs = load_stack_config({k: encode(v) for k, v in cfg.items()}, "prod").observability
    assert obs.thresholds.error_rate_percent == 0.5 and obs.thresholds.memory_usage_percent == 90
    assert obs.thresholds.p95_latency_ms == 2000  # seed default kept


@pytest.mark.parametrize("key,value,message", [
    ("errorRatePercent", -1, "greater than or equal to 0"),
    ("cacheHitRatePercent", 150, "less than or equal to 100"),
    ("p95LatencyMs", -5, "greater than 0"),
    ("costSpikeFactor", 0.9, "greater than 1"),
    ("sessionIsolationBreaches", -1, "greater than or equal to 0"),
])
def test_bad_thresholds_name_their_key(key, value, message):
    cfg = stack_config("prod")
    cfg["netra:observability"]["thresholds"] = {key: value}
    found = _problems(cfg)
    assert message in found[f"netra:observability.thresholds.{key}"]


def test_unknown_threshold_gets_did_you_mean():
    cfg = stack_config("prod")
    cfg["netra:observability"]["thresholds"] = {"errorRatePercnt": 2}
    assert "did you mean 'errorRatePercent'" in _problems(cfg)["netra:observability.thresholds.errorRatePercnt"]


def test_critical_alert_without_a_channel_is_refused():
    cfg = stack_config("staging")
    cfg["netra:observability"]["routing"] = {"critical": [], "warning": ["email"]}
    assert "at least one channel" in _problems(cfg, "staging")["netra:observability.routing.critical"]
    cfg["netra:observability"]["routing"] = {"critical": ["pagerduty", "email"]}
    assert "pagerduty.serviceKey is not set" in _problems(cfg, "staging")["netra:observability.routing.critical"]
    cfg = stack_config("prod")
    del cfg["netra:observability"]["pagerduty"]
    assert "pagerduty" in _problems(cfg)["netra:observability.routing.critical"]
    cfg = stack_config("prod")
    cfg["netra:observability"]["routing"] = {"critical": ["email"]}
    assert "must include pagerduty in prod" in _problems(cfg)["netra:observability.routing.critical"]


def test_prod_needs_a_budget_and_good_emails():
    cfg = stack_config("prod")
    del cfg["netra:observability"]["budget"]
    assert "required in prod" in _problems(cfg)["netra:observability.budget"]
    cfg = stack_config("prod")
    cfg["netra:observability"]["emails"] = ["sre@netra.ai", "not-an-address"]
    assert "must be an email address" in _problems(cfg)["netra:observability.emails.1"]


def test_budget_thresholds_are_percentages():
    cfg = stack_config("prod")
    cfg["netra:observability"]["budget"]["thresholdsPercent"] = [50, 120]
    assert "increasing percentages" in _problems(cfg)["netra:observability.budget.thresholdsPercent"]


def test_observability_is_required():
    cfg = stack_config("staging")
    del cfg["netra:observability"]
    assert "required key is missing" in _problems(cfg, "staging")["netra:observability"]


def test_cli_refuses_a_bad_threshold_with_exit_2():
    proc = cli("plan", "--stack", "prod", "--set", "netra:observability.thresholds.memoryUsagePercent=185")
    assert proc.returncode == 2
    assert "netra:observability.thresholds.memoryUsagePercent" in proc.stderr and "less than or equal to 100" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_secret_never_appears_in_errors():
    cfg = stack_config("prod")
    cfg["netra:observability"]["pagerduty"]["serviceKey"] = ["s3cr3t-key"]
    text = str(pytest.raises(ConfigError, load_stack_config, {k: encode(v) for k, v in cfg.items()}, "prod").value)
    assert "netra:observability.pagerduty.serviceKey" in text and "s3cr3t" not in text
