"""The load test as a release step: run the load-test job against the candidate, judge, record.

At stage 0, after the candidate's smoke verification and before any production traffic, the rollout
(infra/release/steps.py, step `load-test`) calls `LoadTestStep.run(target)`:

1. the candidate's tagged URL from Cloud Run (`trafficStatuses[tag=canary].uri`, Admin API v2);
2. the job `netra-loadtest-<env>` executed with LOADTEST_TARGET_URL = that URL and LOADTEST_RESULTS_URI =
   a fresh object in the results bucket (jobs.run overrides; the job exits 1 on a failing verdict, so
   a failed execution still has a verdict to read);
3. the verdict read back, and the memory criterion added: the candidate revision's memory utilization
   (`run.googleapis.com/container/memory/utilizations`, p99 per minute across instances) over the run,
   from Cloud Monitoring;
4. the final verdict (loadtest.verdict.judge) written to verdict-loadtest-STACK-SERVICE.json (SERVICE: the Cloud Run
   service name) and returned.

A failing verdict rejects the candidate (the rollout rolls back to 0 %, exit 1); an operation that
fails (the job cannot run, no verdict object, Monitoring unreachable) is a failure (exit 4).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Optional

from loadtest.summary import InconsistentSummary, summary_from_dict
from loadtest.verdict import Criteria, judge, memory_growth

MEMORY_METRIC = "run.googleapis.com/container/memory/utilizations"
RUN_API = "https://run.googleapis.com/v2/"


class LoadTestError(Exception):
    """The load test could not run or be read (not a verdict)."""


def candidate_url(session, project: str, region: str, service_name: str, tag: str = "canary") -> str:
    """The tagged URL Cloud Run serves the candidate under (it answers only from inside the VPC)."""
    r = session.get(f"{RUN_API}projects/{project}/locations/{region}/services/{service_name}")
    if r.status_code >= 300:
        raise LoadTestError(f"get service {service_name}: HTTP {r.status_code}: {r.text[:200]}")
    for t in r.json().get("trafficStatuses", []):
        if t.get("tag") == tag and t.get("uri"):
            return t["uri"]
    raise LoadTestError(f"{service_name} has no traffic tag {tag!r} with a URL: is the candidate deployed at 0 %?")


def memory_points(client, project: str, service_name: str, revision: str, start: float, end: float) -> list[tuple[float, float]]:
    """(time, p99 memory utilization across the revision's instances) per minute of [start, end]."""
    from google.cloud import monitoring_v3
    from google.protobuf import duration_pb2, timestamp_pb2

    def ts(t):
        out = timestamp_pb2.Timestamp()
        out.FromNanoseconds(int(t * 1e9))
        return out

    req = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=(f'metric.type = "{MEMORY_METRIC}" AND resource.type = "cloud_run_revision" '
                f'AND resource.labels.service_name = "{service_name}" AND resource.labels.revision_name = "{revision}"'),
        interval=monitoring_v3.TimeInterval(start_time=ts(start), end_time=ts(end)),
        aggregation=monitoring_v3.Aggregation(
            alignment_period=duration_pb2.Duration(seconds=60),
            per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_PERCENTILE_99,
            cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_MAX,
            group_by_fields=["resource.label.revision_name"]),
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL)
    points = []
    for series in client.list_time_series(request=req):
        for p in series.points:
            points.append((p.interval.end_time.timestamp(), float(p.value.double_value)))
    return sorted(points)


@dataclass
class LoadTestStep:
    stack: str
    project: str
    region: str
    job: dict  # the `loadTestJob` stack output: name, region, resultsBucket, service
    criteria: Criteria  # from netra:verification.loadTest.criteria (memory included)
    session: object = None  # authorized requests session (Cloud Run, Cloud Storage)
    monitoring: object = None  # MetricServiceClient
    run_job: Optional[Callable] = None  # (job, project, overrides) -> None; default: effects.run_migration_job
    log: Callable[[str], None] = print
    clock: Callable[[], float] = time.time

    def run(self, service_name: str, revision: str) -> dict:
        from loadtest.gcs import download_json

        from infra.release.effects import run_migration_job
        from infra.release.state import OperationFailed

        if self.session is None:
            from infra.release.effects import authorized_session

            self.session = authorized_session()
        url = candidate_url(self.session, self.project, self.region, service_name)
        results = f"gs://{self.job['resultsBucket']}/{self.stack}/{revision}/{int(self.clock())}.json"
        overrides = {"containerOverrides": [{"env": [{"name": "LOADTEST_TARGET_URL", "value": url},
                                                     {"name": "LOADTEST_RESULTS_URI", "value": results}]}]}
        self.log(f"load test {self.job['name']}: {url} -> {results}")
        run = self.run_job or (lambda job, project, overrides: run_migration_job(
            job, project, session=self.session, log=self.log, overrides=overrides,
            timeout_s=7 * 24 * 3600))
        job_error = None
        try:
            run(self.job, self.project, overrides)
        except OperationFailed as exc:  # a failing verdict exits 1: read it all the same
            job_error = str(exc)
        doc = download_json(results, http=self.session)
        if doc is None:
            raise LoadTestError(f"the load test left no verdict at {results}" + (f" ({job_error})" if job_error else ""))
        try:
            summary = summary_from_dict(doc.get("summary"))
        except InconsistentSummary as exc:  # impossible figures are an error (exit 4), never a verdict
            raise LoadTestError(f"{results}: {exc}") from None
        growth, why = None, None
        try:
            if self.monitoring is None:
                from infra.canary.monitoring import make_client

                self.monitoring = make_client()
            pts = memory_points(self.monitoring, self.project, service_name, revision,
                                float(summary.started_at), float(summary.ended_at))
            growth = memory_growth(pts)
            why = None if growth else f"{len(pts)} memory points for {revision}: too few"
        except Exception as exc:  # noqa: BLE001 - the criterion then fails with the reason
            why = f"{type(exc).__name__}: {exc}"[:200]
        verdict = judge(summary, self.criteria, memory=growth, memory_error=why,
                        websocket_expected=bool(doc.get("websocketExpected", True)))
        verdict.update({"target": url, "revision": revision, "results": results, "jobError": job_error,
                        "profile": doc.get("profile")})
        with open(f"verdict-loadtest-{self.stack}-{service_name}.json", "w") as f:
            json.dump(verdict, f, indent=2)
        return verdict
