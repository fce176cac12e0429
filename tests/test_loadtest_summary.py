"""The load-test verdict refuses summaries no run can produce, with an error naming the figure.

A summary arrives as JSON from the load-test job's results object: anything in it may be wrong
(a buggy or tampered writer, a truncated upload). Judging impossible figures would turn them into a
pass (an empty histogram has no p95 to fail) or a fail: both are refused instead.
"""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from loadtest.summary import InconsistentSummary, Summary, summary_from_dict
from loadtest.verdict import Criteria, MemoryGrowth, judge, memory_growth

ROOT = Path(__file__).resolve().parents[1]


def good() -> dict:
    s = Summary()
    for ms in (20,) * 1990 + (12_345,) * 10:
        s.record("GET", ms, None)
    for _ in range(2):
        s.record("POST", 30, RuntimeError("500 Server Error"))
    s.record("WSCONNECT", 5, None)
    for _ in range(150):
        s.record("WSEVENT", 8, None)
    s.started_at, s.ended_at = 1_790_000_000.0, 1_790_003_600.0
    return s.as_dict()


def mutated(path: str, value) -> dict:
    d = copy.deepcopy(good())
    *parents, leaf = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return d


def test_a_real_summary_round_trips_and_is_judged():
    s = summary_from_dict(json.loads(json.dumps(good())))
    v = judge(s, Criteria(memory_growth_percent=None))
    assert v["figures"]["requests"] == 2153 and v["figures"]["http"]["failures"] == 2
    # 2 / 2002 = 0.0999 % <= 0.1 %, p95 21 ms: every criterion met
    assert (v["decision"], v["reasons"], v["figures"]["http"]["p95Ms"]) == ("pass", [], 21.0)


@pytest.mark.parametrize("path, value, says", [
    ("http.requests", -5, "http.requests: must be a non-negative integer, got -5"),
    ("http.failures", -1, "http.failures: must be a non-negative integer, got -1"),
    ("ws_event.requests", 150.5, "ws_event.requests: must be a non-negative integer, got 150.5"),
    ("http.requests", float("nan"), "http.requests: must be a non-negative integer, got nan"),
    ("http.requests", True, "http.requests: must be a non-negative integer, got True"),
    ("http.requests", "2002", "http.requests: must be a non-negative integer, got '2002'"),
    ("http.failures", 3000, "http: 3000 failures > 2002 requests"),
    ("http.histogram", {}, "http: the histogram holds 0 responses, but 2002 requests - 2 failures = 2000 succeeded"),
    ("ws_event.histogram", {"8": 10}, "ws_event: the histogram holds 10 responses, but 150 requests"),
    ("http.histogram", {"20": 1990, "12345": 10}, "bucket 12345 is not a bucket lower bound"),
    ("http.histogram", {"20": 2010, "-3": -10}, "bucket '-3' is not a bucket lower bound"),
    ("http.histogram", {"20": 1990, "12300": float("nan")}, "http.histogram[12300]: must be a non-negative integer, got nan"),
    ("http.topErrors", {"500 Server Error": 9}, "http: topErrors count 9 failures > failures 2"),
    ("http.requests", KeyError, "missing http.requests"),
    ("startedAt", float("nan"), "startedAt: must be a finite epoch time in seconds, got nan"),
    ("endedAt", 1_789_000_000.0, "endedAt 1789000000.0 is before startedAt 1790000000.0"),
    ("stoppedBy", "whenever", "stoppedBy: must be one of duration, max-requests, got 'whenever'"),
    ("http.histogram", [1, 2], "histogram and topErrors must be JSON objects"),
])
def test_impossible_figures_are_refused_by_name(path, value, says):
    with pytest.raises(InconsistentSummary, match="inconsistent load-test summary") as e:
        summary_from_dict(json.loads(json.dumps(mutated(path, value))))
    assert says in str(e.value)


def test_judge_refuses_a_summary_built_in_memory_too():
    s = summary_from_dict(good())
    s.tallies["http"].failures = -1
    with pytest.raises(InconsistentSummary, match="http.failures"):
        judge(s, Criteria(memory_growth_percent=None))


@pytest.mark.parametrize("points", [
    [(0, 0.5), (60, float("nan")), (120, 0.5), (180, 0.5), (240, 0.5)],
    [(0, 0.5), (60, 0.5), (120, -0.1), (180, 0.5), (240, 0.5)],
    [(0, 0.5), (60, 0.5), (float("inf"), 0.5), (180, 0.5), (240, 0.5)],
    [(0, 0.5), (60, 0.5), (120, 7.0), (180, 0.5), (240, 0.5)],
])
def test_memory_points_must_be_finite_fractions(points):
    with pytest.raises(InconsistentSummary, match="memory utilization points must be finite"):
        memory_growth(points)
    with pytest.raises(InconsistentSummary, match="memory utilization must be fractions"):
        judge(summary_from_dict(good()), Criteria(), memory=MemoryGrowth(float("nan"), 0.5, 5))


def test_the_job_exits_4_on_an_inconsistent_summary(tmp_path):
    """loadtest.run end to end: a fake `locust` writes an impossible summary; the job refuses to judge it."""
    fake = tmp_path / "locust"
    bad = mutated("http.histogram", {})
    fake.write_text("#!" + sys.executable + "\nimport json, os\n"
                    f"open(os.environ['LOADTEST_SUMMARY_FILE'], 'w').write({json.dumps(json.dumps(bad))})\n")
    fake.chmod(0o755)
    p = subprocess.run([sys.executable, "-m", "loadtest.run", "--target", "http://127.0.0.1:9", "--duration", "1",
                        "--results", str(tmp_path / "v.json"), "--locust", str(fake)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 4, p.stderr
    assert "loadtest: error: inconsistent load-test summary: http: the histogram holds 0 responses" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "v.json").exists()


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
                       | st.text(max_size=8), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                       max_leaves=6)
PATHS = [f"{c}.{k}" for c in ("http", "ws_connect", "ws_event") for k in ("requests", "failures", "histogram", "topErrors")] \
    + ["startedAt", "endedAt", "stoppedBy"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=JSONISH)
def test_any_mutation_is_refused_cleanly_or_still_consistent(path, value):
    """Whatever a field holds: InconsistentSummary, or a summary whose invariants hold and that judges."""
    try:
        s = summary_from_dict(mutated(path, value))
    except InconsistentSummary:
        return
    for t in s.tallies.values():
        assert 0 <= t.failures <= t.requests and sum(t.histogram.values()) == t.requests - t.failures
    v = judge(s, Criteria(memory_growth_percent=None))
    assert v["decision"] in ("pass", "fail") and all(
        x is None or math.isfinite(x) for x in (v["figures"]["http"]["p95Ms"],))
