"""The canary gate for a feature-flag ramp: the flag's "on" arm judged against its "off" arm.

Cloud Run's metrics split by revision only, and a flag ramp happens inside one revision, so the arms
come from the application's request log (infra/signals.py: `netra_request`, `netra_request_latency`,
and the token-optimization / WebSocket signals, each labelled `flag_arm`). `ArmClient` wraps a Cloud
Monitoring client so that the gate's own queries (infra/canary/monitoring.py, unchanged) read those
series: per revision becomes per arm, Cloud Run's request count and latencies become the log-based
request metrics, `response_code_class` 5xx becomes outcome `failure`. The judge, its thresholds and
its verdicts are the gate's; a ramp climbs the same ladder (0 -> 10 -> 50 -> 100 %).

    verdict = judge_flag_ramp("netra-production", "netra-backend-prod", "semantic_cache", 10, settings)
"""
from __future__ import annotations

import re

from infra.signals import FLAG_ARM, REQUEST, REQUEST_LATENCY, RUN_MEMORY_UTILIZATIONS

RUN_REQUEST_COUNT = "run.googleapis.com/request_count"
RUN_REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
METRIC_FOR = {RUN_REQUEST_COUNT: REQUEST.metric_type, RUN_REQUEST_LATENCIES: REQUEST_LATENCY.metric_type}
ARM_LABEL = f"metric.label.{FLAG_ARM}"
# Cloud Run metrics that exist per revision only and have no log-based counterpart per arm
PER_REVISION_ONLY = (RUN_MEMORY_UTILIZATIONS,)


def arms(flag: str) -> tuple[str, str]:
    """(off, on): the `flag_arm` values of the two arms, the gate's (stable, candidate)."""
    return f"{flag}=off", f"{flag}=on"


class ArmClient:
    """A MetricServiceClient whose per-revision answers are per flag arm (see the module doc)."""

    def __init__(self, client):
        self.client = client

    @staticmethod
    def translate(request):
        from google.cloud import monitoring_v3

        req = monitoring_v3.ListTimeSeriesRequest(request)
        f = req.filter
        for run_metric, log_metric in METRIC_FOR.items():
            f = f.replace(f'metric.type = "{run_metric}"', f'metric.type = "{log_metric}"')
        f = f.replace("resource.labels.revision_name = one_of(", f"metric.labels.{FLAG_ARM} = one_of(")
        req.filter = f
        fields = []
        for g in req.aggregation.group_by_fields:
            fields.append({"resource.label.revision_name": ARM_LABEL,
                           "metric.label.response_code_class": f"metric.label.{REQUEST.outcome_label}"}.get(g, g))
        req.aggregation.group_by_fields = fields
        return req

    def list_time_series(self, request=None, **kwargs):
        if any(f'metric.type = "{m}"' in request.filter for m in PER_REVISION_ONLY):
            return  # no arm of a flag has a container of its own (memory): no series, no query
        req = self.translate(request)
        split_by_class = "metric.label.response_code_class" in list(request.aggregation.group_by_fields)
        for series in self.client.list_time_series(request=req, **kwargs):
            arm = series.metric.labels.get(FLAG_ARM)
            if not arm:
                continue  # requests logged without an arm (no flag ramping then) are no evidence
            series.resource.labels["revision_name"] = arm
            if split_by_class:
                outcome = series.metric.labels.get(REQUEST.outcome_label, "")
                series.metric.labels["response_code_class"] = "5xx" if outcome == REQUEST.failure else "2xx"
            yield series


FLAG = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def criteria_for(cfg, flag: str):
    """The flag's success criteria (infra.canary.value.Criteria) from a typed StackConfig: its
    `criteria` over the seed's defaults for its optimization; None when it has none."""
    from infra.canary.value import Criteria
    from infra.config.platform import flag_criteria

    kw = flag_criteria(flag, cfg.platform.feature_flags.get(flag))
    return Criteria(**kw) if kw else None


def judge_flag_ramp(project: str, service_name: str, flag: str, percent: int, settings, *, client=None,
                    criteria=None, **kwargs):
    """The gate's verdict (infra.canary.api.judge) on the flag's "on" arm against its "off" arm; with the
    flag's success criteria (infra.canary.value.Criteria, `criteria_for`) a promote needs every one met."""
    from infra.canary.api import Revisions, judge
    from infra.canary.monitoring import make_client

    if not FLAG.match(flag):
        raise ValueError(f"flag must be a featureFlags key (snake_case), got {flag!r}")
    off, on = arms(flag)
    rev = Revisions(key=f"{service_name}:{flag}", service_name=service_name, candidate=on, stable=off,
                    canary_percent=percent, project=project, region="")
    client = client if client is not None else make_client(settings.endpoint)
    return judge(rev, settings, client=ArmClient(client), criteria=criteria, **kwargs)
