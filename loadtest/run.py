"""`python -m loadtest.run`: one load run with Locust, judged, the verdict written where the rollout reads it.

The load-test Cloud Run job's command. Every setting has an environment variable (what the job sets
from `netra:loadTest`; the rollout overrides the target and the results location per execution) and a
flag of the same meaning (local runs, tests):

    --target      LOADTEST_TARGET_URL     base URL (the candidate's tagged URL), http(s)://host[:port]
    --users       LOADTEST_USERS          concurrent users (seed 001: 150)
    --spawn-rate  LOADTEST_SPAWN_RATE     users started per second
    --duration    LOADTEST_DURATION_S     seconds (seed 001: 3600)
    --criteria    LOADTEST_CRITERIA       JSON of loadtest.verdict.Criteria (camelCase keys)
    --results     LOADTEST_RESULTS_URI    gs://bucket/object.json or a local path for the verdict JSON
    scenarios: the LOADTEST_* variables the locustfile reads (see loadtest/locustfile.py)

The memory criterion needs Cloud Monitoring, so this run leaves it out (the rollout adds it when it
reads the verdict). Exit 0 pass, 1 fail, 2 usage, 4 Locust did not produce a summary, or an inconsistent one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from loadtest.summary import InconsistentSummary, summary_from_dict
from loadtest.verdict import Criteria, judge

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
EXIT_USAGE, EXIT_NO_SUMMARY = 2, 4


def parse(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default=env("LOADTEST_TARGET_URL"))
    p.add_argument("--users", type=int, default=int(env("LOADTEST_USERS", "150")))
    p.add_argument("--spawn-rate", type=float, default=float(env("LOADTEST_SPAWN_RATE", "10")))
    p.add_argument("--duration", type=int, default=int(env("LOADTEST_DURATION_S", "3600")))
    p.add_argument("--criteria", default=env("LOADTEST_CRITERIA", "{}"))
    p.add_argument("--results", default=env("LOADTEST_RESULTS_URI"))
    p.add_argument("--locust", default=env("LOADTEST_LOCUST", "locust"), help="the locust executable")
    args = p.parse_args(argv)
    problems = []
    if not args.target or not args.target.startswith(("http://", "https://")):
        problems.append(f"--target / LOADTEST_TARGET_URL: must be an http(s):// URL, got {args.target!r}")
    if args.users < 1:
        problems.append(f"--users / LOADTEST_USERS: must be >= 1, got {args.users}")
    if args.duration < 1:
        problems.append(f"--duration / LOADTEST_DURATION_S: must be >= 1 second, got {args.duration}")
    try:
        args.criteria = Criteria.from_dict(json.loads(args.criteria))
    except (ValueError, TypeError) as exc:
        problems.append(f"--criteria / LOADTEST_CRITERIA: must be a JSON object of Criteria keys: {exc}")
    return args, problems


def run_locust(args, summary_file: Path, csv_prefix: Path) -> subprocess.CompletedProcess:
    cmd = [args.locust, "-f", str(LOCUSTFILE), "--headless", "--host", args.target, "--users", str(args.users),
           "--spawn-rate", str(args.spawn_rate), "--run-time", f"{args.duration}s", "--stop-timeout", "5",
           "--csv", str(csv_prefix), "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    env = {**os.environ, "LOADTEST_SUMMARY_FILE": str(summary_file)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.duration + 120)


def write_results(uri: str, doc: dict) -> None:
    body = json.dumps(doc, indent=1)
    if uri.startswith("gs://"):
        from loadtest.gcs import upload_json

        upload_json(uri, body)
    else:
        Path(uri).write_text(body)


def main(argv=None) -> int:
    args, problems = parse(argv)
    if problems:
        for line in problems:
            print(f"loadtest: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        summary_file = Path(tmp) / "summary.json"
        proc = run_locust(args, summary_file, Path(tmp) / "locust")
        if not summary_file.exists():
            print(f"loadtest: error: Locust exited {proc.returncode} without a summary:\n{proc.stderr[-2000:]}",
                  file=sys.stderr)
            return EXIT_NO_SUMMARY
        try:
            summary = summary_from_dict(json.loads(summary_file.read_text()))
        except (InconsistentSummary, ValueError) as exc:  # a summary no run can produce is judged by nobody
            print(f"loadtest: error: {exc}", file=sys.stderr)
            return EXIT_NO_SUMMARY
    ws_expected = int(os.environ.get("LOADTEST_WS_USER_PERCENT", "50")) > 0
    verdict = judge(summary, replace(args.criteria, memory_growth_percent=None), websocket_expected=ws_expected)
    verdict["target"] = args.target
    verdict["websocketExpected"] = ws_expected
    verdict["profile"] = {"users": args.users, "spawnRate": args.spawn_rate, "durationSeconds": args.duration}
    verdict["summary"] = summary.as_dict()  # with histograms: the rollout re-judges with the memory figure
    if args.results:
        write_results(args.results, verdict)
    print(json.dumps({k: verdict[k] for k in ("decision", "reason", "figures")}))  # one log line in Cloud Logging
    return verdict["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
