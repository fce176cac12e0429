"""The semantic layer over both stacks (infra/plan/semantics.py): what typed Args cannot catch.

Both stacks come out clean; each mutation below is one mistake the API would refuse (or turn into a
perpetual diff) and the layer names it. PromQL goes through Prometheus' own parser (promtool).
"""
from __future__ import annotations

import copy
import json

import pytest

from infra.plan import semantics
from infra.plan.engine import PlannedResource

BUCKET = "gcp:storage/bucket:Bucket"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
BUDGET = "gcp:billing/budget:Budget"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
SERVICE = "gcp:cloudrunv2/service:Service"


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_both_stacks_are_clean(request, stack):
    run = request.getfixturevalue(f"{stack}_run")
    assert semantics.problems(run.resources) == []


def test_every_promql_expression_is_found(prod_run):
    found = semantics.promql_expressions(prod_run.resources)
    alerts = [w for w, _ in found if w.startswith("AlertPolicy")]
    dashboards = [w for w, _ in found if w.startswith("Dashboard")]
    conditions = sum(1 for r in prod_run.resources if r.type == ALERT
                     for c in r.inputs.get("conditions", []) if "conditionPrometheusQueryLanguage" in c)
    assert len(alerts) == conditions and conditions >= 8
    assert len(dashboards) >= 10 and all("prometheusQuery" in w for w in dashboards)


def test_enums_come_from_the_providers_documented_values():
    from pulumi_gcp import monitoring, storage

    assert "REDUCE_PERCENTILE_95" in semantics.possible_values(
        monitoring.AlertPolicyConditionConditionThresholdAggregationArgs, "cross_series_reducer")
    assert set(semantics.possible_values(monitoring.AlertPolicyConditionConditionThresholdArgs, "comparison")) >= {
        "COMPARISON_GT", "COMPARISON_LT"}
    assert semantics.possible_values(storage.BucketArgs, "name") == ()


def pick(run, type_token, name=None) -> PlannedResource:
    return next(r for r in run.resources if r.type == type_token and (name is None or r.name == name))


def mutated(r: PlannedResource, mutate) -> PlannedResource:
    inputs = copy.deepcopy(r.inputs)
    mutate(inputs)
    return PlannedResource(r.urn, r.type, r.name, r.parent, inputs, r.custom)


def threshold_alert(run) -> PlannedResource:
    return next(r for r in run.resources if r.type == ALERT and "conditionThreshold" in r.inputs["conditions"][0]
                and r.inputs["conditions"][0]["conditionThreshold"].get("aggregations"))


def set_threshold(**kv):
    return lambda i: i["conditions"][0]["conditionThreshold"].update(kv)


def set_aggregation(**kv):
    return lambda i: i["conditions"][0]["conditionThreshold"]["aggregations"][0].update(kv)


CASES = [
    # scalar types the SDK declares (pulumi-gcp 10 types retentionPeriod as a string)
    (BUCKET, "backups", lambda i: i["retentionPolicy"].update(retentionPeriod=2592000), "types it str, got int"),
    # enum strings: the provider's "Possible values are"
    (BUCKET, "backups", lambda i: i.update(publicAccessPrevention="Enforced"), "'Enforced' is not one of"),
    (ALERT, None, set_aggregation(perSeriesAligner="ALIGN_AVG"), "'ALIGN_AVG' is not one of"),
    (ALERT, None, set_threshold(comparison="GREATER_THAN"), "'GREATER_THAN' is not one of"),
    (ALERT, None, lambda i: i.update(combiner="XOR"), "'XOR' is not one of"),
    # durations
    (ALERT, None, set_threshold(duration="5m"), "is not a duration"),
    (ALERT, None, set_threshold(duration="90s"), "only whole minutes"),
    (ALERT, None, lambda i: i["alertStrategy"].update(autoClose="30 min"), "is not a duration"),
    # mutually exclusive settings
    (BUCKET, "backups", lambda i: i.update(versioning={"enabled": True}), "refuses a retention policy"),
    (ALERT, None, lambda i: i["conditions"][0].update(conditionAbsent={"duration": "300s"}), "exactly one condition kind"),
    (ARMOR, "armor", lambda i: i["rules"][-1].update(rateLimitOptions={"conformAction": "allow"}), "rateLimitOptions go with"),
    # formats the API normalises
    (BUDGET, None, lambda i: i["budgetFilter"].update(projects=["projects/netra-production"]), "projects/<project number>"),
]


@pytest.mark.parametrize("type_token,name,mutate,expect", CASES, ids=[f"{c[0].split(':')[-1]}-{n}" for n, c in enumerate(CASES)])
def test_one_mistake_is_named(prod_run, type_token, name, mutate, expect):
    base = threshold_alert(prod_run) if type_token == ALERT else pick(prod_run, type_token, name)
    assert semantics.property_problems(base) + semantics.cross_field_problems(base) == []
    bad = mutated(base, mutate)
    found = semantics.property_problems(bad) + semantics.cross_field_problems(bad)
    assert len(found) == 1 and expect in found[0], found
    assert found[0].startswith(f"{type_token.split(':')[-1]} {base.name}: ")


def test_promtool_names_the_broken_expression(prod_run):
    alert = next(r for r in prod_run.resources if r.type == ALERT
                 and "conditionPrometheusQueryLanguage" in r.inputs["conditions"][0])
    broken = mutated(alert, lambda i: i["conditions"][0]["conditionPrometheusQueryLanguage"].update(
        query="sum by (service_name) (rate(run_googleapis_com:request_count[5m])"))
    dashboard = next(r for r in prod_run.resources if r.type == DASHBOARD and "prometheusQuery" in r.inputs["dashboardJson"])
    doc = json.loads(dashboard.inputs["dashboardJson"])

    def break_first(node) -> bool:
        if isinstance(node, dict):
            if "prometheusQuery" in node:
                node["prometheusQuery"] += " by"
                return True
            return any(break_first(v) for v in node.values())
        return isinstance(node, list) and any(break_first(v) for v in node)

    assert break_first(doc)
    bad_dash = mutated(dashboard, lambda i: i.update(dashboardJson=json.dumps(doc)))
    found = semantics.promql_problems(semantics.promql_expressions([alert, broken, dashboard, bad_dash]))
    assert len(found) == 2, found
    assert found[0].startswith(f"AlertPolicy {alert.name}: conditions[0].conditionPrometheusQueryLanguage.query: ")
    assert "parse error" in found[0] and "unclosed left parenthesis" in found[0]
    assert found[1].startswith(f"Dashboard {dashboard.name}: ") and "prometheusQuery" in found[1]
