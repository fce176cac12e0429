"""Wait until Cloud Monitoring knows the log-based metrics before any alert policy names them.

A log-based metric created in an update is not queryable at once: for up to ~10 minutes Cloud
Monitoring answers an alert policy that names it with 404 "Cannot find metric(s) ... If a metric was
created recently, it could take up to 10 minutes to become available" (terraform-provider-google
issue 11102, still open; pulumi-gcp is built on it and does not retry this error). `depends_on` orders
the calls but does not bridge that delay, and there is no delay resource in this project's
dependencies. So `MetricReady` is a Pulumi dynamic resource whose create polls Cloud Monitoring's
`metricDescriptors.get` (the same lookup the alert API does) for each metric until all exist, or fails
after `timeout_seconds` with the missing names. Alerts depend on it; on later updates it is unchanged
and costs nothing. PromQL conditions additionally set `disableMetricValidation`.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

POLL_SECONDS = 15
DEFAULT_TIMEOUT_SECONDS = 900


def wait_for_metrics(project: str, metric_types: Sequence[str], timeout_seconds: float,
                     exists: Optional[Callable[[str], bool]] = None, sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic, poll_seconds: float = POLL_SECONDS) -> int:
    """Poll until every metric type has a descriptor; return the number of polls. Raises TimeoutError."""
    if exists is None:
        exists = _descriptor_lookup(project)
    pending = list(metric_types)
    deadline, polls = clock() + timeout_seconds, 0
    while True:
        polls += 1
        pending = [m for m in pending if not exists(m)]
        if not pending:
            return polls
        if clock() + poll_seconds > deadline:
            raise TimeoutError(f"after {timeout_seconds:g} s Cloud Monitoring still does not know {', '.join(pending)} "
                               f"in project {project}; run `pulumi up` again (the metrics exist, they are not yet queryable)")
        sleep(poll_seconds)


def _descriptor_lookup(project: str, endpoint: Optional[str] = None) -> Callable[[str], bool]:
    """metricDescriptors.get, True once it answers; `endpoint` HOST:PORT for an emulator (tests)."""
    from google.api_core import exceptions

    from infra.canary.monitoring import make_client

    client = make_client(endpoint)

    def exists(metric_type: str) -> bool:
        try:
            client.get_metric_descriptor(name=f"projects/{project}/metricDescriptors/{metric_type}")
            return True
        except exceptions.NotFound:
            return False

    return exists


class _MetricReadyProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        wait_for_metrics(props["project"], props["metricTypes"], float(props["timeoutSeconds"]))
        return CreateResult(id_=f"{props['project']}/metric-ready", outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # a new metric must be waited for again: replace; a timeout change alone is no work
        changed = sorted(olds.get("metricTypes") or []) != sorted(news.get("metricTypes") or [])
        return DiffResult(changes=changed, replaces=["metricTypes"] if changed else [], delete_before_replace=False)


class MetricReady(Resource):
    """Created once every `metric_types` is known to Cloud Monitoring (see the module docstring)."""

    def __init__(self, name: str, project: str, metric_types: Sequence[str],
                 timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_MetricReadyProvider(), name,
                         {"project": project, "metricTypes": sorted(metric_types), "timeoutSeconds": timeout_seconds},
                         opts)
