"""Feature-flag ramps: the reference bucketing, the flags document and its secret, and the gate on arms."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from infra import flags
from infra.flag_gate import ArmClient, arms, judge_flag_ramp
from infra.signals import REQUEST, REQUEST_LATENCY

from .conftest import config_problems, one, resources_of, stack_config


# ---- bucketing -------------------------------------------------------------------------------------

def test_a_user_stays_in_the_on_arm_as_the_ramp_climbs():
    users = [f"user-{i}" for i in range(20_000)]
    on = {p: {u for u in users if flags.enabled({"semantic_cache": {"percent": p, "killSwitch": False}}, "semantic_cache", u)}
          for p in (10, 50, 100)}
    assert on[10] <= on[50] <= on[100] == set(users)  # monotone: nobody leaves the on arm
    # stable: the same answer every time, in another process too (SHA-256, no per-process hash seed)
    assert flags.bucket("semantic_cache", "user-42") == flags.bucket("semantic_cache", "user-42") == 7744
    assert flags.enabled({"x": {"percent": 50, "killSwitch": True}}, "x", "user-1") is False  # kill switch
    assert flags.enabled({"x": True}, "x", "u") and not flags.enabled({"x": False}, "x", "u")
    assert not flags.enabled({}, "missing", "u")


def test_buckets_are_uniform_and_independent_across_flags():
    n = 100_000
    keys = [f"u{i}" for i in range(n)]
    a = np.array([flags.bucket("semantic_cache", k) for k in keys])
    b = np.array([flags.bucket("prompt_caching", k) for k in keys])
    # share in the 10 % arm within 4 standard errors of 10 %
    share = (a < 1000).mean()
    assert abs(share - 0.10) < 4 * math.sqrt(0.1 * 0.9 / n), share
    # chi-square over 100 equal ranges: 99 degrees of freedom, 99.9 % quantile ~148
    counts = np.bincount(a // 100, minlength=100)
    chi2 = ((counts - n / 100) ** 2 / (n / 100)).sum()
    assert chi2 < 148, chi2
    # arms of two flags are independent: P(on, on) ~ 0.1 x 0.1
    both = ((a < 1000) & (b < 1000)).mean()
    assert abs(both - 0.01) < 4 * math.sqrt(0.01 * 0.99 / n), both


def test_arm_label_names_the_one_ramping_flag():
    doc = {"semantic_cache": {"percent": 10, "killSwitch": False}, "prompt_caching": True,
           "token_budget_enforcement": {"percent": 100, "killSwitch": False}}
    labels = {flags.arm_label(doc, f"user-{i}") for i in range(200)}
    assert labels == {"semantic_cache=on", "semantic_cache=off"}
    assert flags.arm_label({"prompt_caching": True}, "u") == ""


# ---- config, secret payload, mount -----------------------------------------------------------------

def test_flag_ramps_reach_the_services_as_a_mounted_file(staging_plan):
    assert one(staging_plan, "gcp:secretmanager/secretVersion:SecretVersion", "feature-flags")["inputs"]["secretData"] == "[secret]"
    readers = [svc for svc in resources_of(staging_plan, "gcp:cloudrunv2/service:Service")
               if svc["name"] in ("frontend", "backend", "auth")]  # the services whose `secrets` name feature-flags
    assert len(readers) == 3
    for svc in readers:
        t = svc["inputs"]["template"]
        env = {e["name"]: e for e in t["containers"][0]["envs"]}
        assert env["FEATURE_FLAGS"] == {"name": "FEATURE_FLAGS", "value": "/secrets/feature-flags/flags.json"}
        (vol,) = [v for v in t["volumes"] if v["name"] == "feature-flags"]
        assert vol["secret"]["items"] == [{"path": "flags.json", "version": "latest", "mode": 292}]
        assert {"name": "feature-flags", "mountPath": "/secrets/feature-flags"} in t["containers"][0]["volumeMounts"]


def test_a_ramp_step_is_a_new_secret_version_only_and_the_diff_hides_its_value():
    from infra.plan.diff import diff_plans, render_diff

    from .conftest import plan_of

    ramp = plan_of("staging", {"netra:platform.featureFlags.semantic_cache": {"percent": 10, "killSwitch": False}})
    up = plan_of("staging", {"netra:platform.featureFlags.semantic_cache": {"percent": 50, "killSwitch": False}})
    d = diff_plans(ramp, up)
    # no revision template changes, so no new revision: running instances read the new version from the file
    assert d["summary"] == {"create": 0, "update": 0, "replace": 1, "delete": 0}  # secret_data is ForceNew: a new version
    [change] = d["resources"]
    assert (change["type"], change["name"]) == ("gcp:secretmanager/secretVersion:SecretVersion", "feature-flags")
    assert change["paths"] == [{"path": "secretData", "secret": True}]
    text = render_diff(d, "10 %")
    assert "secretData: changed (secret)" in text and "percent" not in text and "semantic_cache" not in text


def test_one_flag_ramps_at_a_time():
    cfg = stack_config("staging")
    cfg["netra:platform"]["featureFlags"]["semantic_cache"] = {"percent": 10}
    cfg["netra:platform"]["featureFlags"]["prompt_caching"] = {"percent": 50, "killSwitch": False}
    problems = config_problems(cfg, "staging")
    (key, message), = problems.items()  # the second ramping flag in the map is the one named
    assert key in ("netra:platform.featureFlags.prompt_caching", "netra:platform.featureFlags.semantic_cache")
    assert message.startswith("only one flag may ramp at a time (0 < percent < 100), got ")
    cfg["netra:platform"]["featureFlags"]["prompt_caching"] = {"percent": 150, "kilSwitch": True}
    assert config_problems(cfg, "staging") == {
        "netra:platform.featureFlags.prompt_caching.percent": "Input should be less than or equal to 100, got 150",
        "netra:platform.featureFlags.prompt_caching.kilSwitch": "Extra inputs are not permitted, got True"}


# ---- the gate on arms ------------------------------------------------------------------------------

def test_arm_client_rewrites_the_gates_queries():
    from google.cloud import monitoring_v3

    req = monitoring_v3.ListTimeSeriesRequest(
        name="projects/p",
        filter='metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision" '
               'AND resource.labels.service_name = "netra-backend-prod" '
               'AND resource.labels.revision_name = one_of("semantic_cache=off", "semantic_cache=on")',
        aggregation=monitoring_v3.Aggregation(group_by_fields=["resource.label.revision_name", "metric.label.response_code_class"]))
    out = ArmClient.translate(req)
    assert out.filter.startswith(f'metric.type = "{REQUEST.metric_type}"')
    assert 'metric.labels.flag_arm = one_of("semantic_cache=off", "semantic_cache=on")' in out.filter
    assert list(out.aggregation.group_by_fields) == ["metric.label.flag_arm", "metric.label.outcome"]


class ArmMetrics:
    """Cloud Monitoring as the log-based request metrics answer for two arms (Poisson traffic per window)."""

    BOUNDS = REQUEST_LATENCY.bounds

    def __init__(self, share_on: float, error_off: float, error_on: float, rps: float = 50, seed: int = 7):
        self.share_on, self.err = share_on, {"off": error_off, "on": error_on}
        self.rps, self.rng = rps, np.random.default_rng(seed)
        self.windows: dict[float, dict] = {}
        self.seen_filters: list[str] = []

    def _window(self, start):
        if start not in self.windows:
            n = self.rng.poisson(self.rps * 60)
            on = self.rng.binomial(n, self.share_on)
            w = {}
            for arm, k in (("off", n - on), ("on", on)):
                fails = self.rng.binomial(k, self.err[arm])
                lat = self.rng.lognormal(np.log(120), 0.8, size=k)
                hist = np.bincount(np.searchsorted(self.BOUNDS, lat, side="right"), minlength=len(self.BOUNDS) + 1)
                w[arm] = (k, fails, hist)
            self.windows[start] = w
        return self.windows[start]

    def list_time_series(self, request=None, **_):
        from google.api import distribution_pb2, metric_pb2
        from google.cloud import monitoring_v3

        self.seen_filters.append(request.filter)
        start = request.interval.start_time.timestamp()
        end = request.interval.end_time
        w = self._window(start)
        out = []
        for arm in ("off", "on"):
            k, fails, hist = w[arm]
            label = f"semantic_cache={arm}"
            point = lambda value: monitoring_v3.Point(  # noqa: E731
                interval=monitoring_v3.TimeInterval(start_time=request.interval.start_time, end_time=end), value=value)
            if REQUEST_LATENCY.metric_type in request.filter:
                dist = distribution_pb2.Distribution(
                    count=int(hist.sum()), bucket_counts=[int(c) for c in hist],
                    bucket_options=distribution_pb2.Distribution.BucketOptions(
                        explicit_buckets=distribution_pb2.Distribution.BucketOptions.Explicit(bounds=list(self.BOUNDS))))
                out.append(monitoring_v3.TimeSeries(
                    metric=metric_pb2.Metric(type=REQUEST_LATENCY.metric_type, labels={"flag_arm": label}),
                    points=[point(monitoring_v3.TypedValue(distribution_value=dist))]))
            elif f'"{REQUEST.metric_type}"' in request.filter:
                for outcome, v in (("success", k - fails), ("failure", fails)):
                    out.append(monitoring_v3.TimeSeries(
                        metric=metric_pb2.Metric(type=REQUEST.metric_type, labels={"flag_arm": label, "outcome": outcome}),
                        points=[point(monitoring_v3.TypedValue(int64_value=int(v)))]))
        return out


def _settings():
    from infra.canary.api import GateSettings
    from infra.canary.gate import GateOptions
    from infra.canary.judge import JudgeConfig

    return GateSettings(options=GateOptions(interval_s=60, max_duration_s=3600, lag_s=0), judge=JudgeConfig())


def _run(metrics):
    t = [1_800_000_000.0]
    return judge_flag_ramp("netra-production", "netra-backend-prod", "semantic_cache", 10, _settings(), client=metrics,
                           clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))


def test_gate_rolls_back_a_flag_arm_with_5x_errors():
    metrics = ArmMetrics(share_on=0.10, error_off=0.002, error_on=0.01)
    v = _run(metrics)
    assert v.as_dict()["decision"] == "rollback", v.reason
    assert v.details["stableRevision"], v.details["candidateRevision"] == arms("semantic_cache")
    assert all("flag_arm" in f for f in metrics.seen_filters)


def test_gate_promotes_an_equal_flag_arm():
    v = _run(ArmMetrics(share_on=0.10, error_off=0.002, error_on=0.002, seed=11))
    assert v.as_dict()["decision"] == "promote", v.reason
