"""Wall time and peak memory of `python -m infra plan --stack S`, as a user runs it (fresh process).

    python -m benchmarks.plan --stack prod --runs 5 [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(stack: str) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MiB of the child, exit code, CPU seconds of the child and the policy pack
    it waited for) of one plan run. CPU time is less sensitive than wall time to a busy shared host."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "infra", "plan", "--stack", stack, "--json"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plan")
    p.add_argument("--stack", default="prod")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    runs = [measure(args.stack) for _ in range(args.runs)]
    walls, rss = [r[0] for r in runs], [r[1] for r in runs]
    result = {"stack": args.stack, "runs": args.runs, "exit_codes": sorted({r[2] for r in runs}),
              "wall_s_min": round(min(walls), 3), "wall_s_median": round(statistics.median(walls), 3),
              "wall_s_max": round(max(walls), 3), "cpu_s_median": round(statistics.median(r[3] for r in runs), 3),
              "peak_rss_mib_max": round(max(rss), 1), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"plan --stack {args.stack}: median {result['wall_s_median']} s "
              f"(min {result['wall_s_min']} s, max {result['wall_s_max']} s), CPU median {result['cpu_s_median']} s, "
              f"peak RSS {result['peak_rss_mib_max']} MiB over {args.runs} runs (exit {result['exit_codes']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
