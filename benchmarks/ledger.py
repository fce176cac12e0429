"""Benchmark of the release ledger (docs/release-ledger.md quotes its output).

1. How soon a running rollout stops after a rollback: the gate looks at the ledger between intervals
   (infra.release.effects.between_intervals). A gate with real sleeps of INTERVAL seconds; a rollback
   (`python -m infra rollback`'s run_rollback) fired from another thread at a random moment of the
   gate at 10 %; measured: time from the rollback's fence write to the rollout's exit, in intervals.
2. What the ledger costs per stage: the same release (one service, 0 -> 10 -> 50 -> 100) driven with the
   ledger in memory, and in GCS through the real google-cloud-storage client against tests/gcsfake.py on
   127.0.0.1 (loopback, no injected latency); wall time and GCS requests per stage.

    .venv/bin/python -m benchmarks.ledger [--trials N]
"""
from __future__ import annotations

import argparse
import io
import random
import statistics
import threading
import time

from infra.release import effects, model as rel, view
from infra.release.backends import MemoryBackend
from infra.release.cli import rollback as rollback_cli
from infra.release.driver import Driver
from infra.release.ledger import GcsStore, Ledger, MemoryStore
from infra.release.revision import Release
from infra.release.state import Target

INTERVAL = 0.2
CONFIG = {
    "gcp:project": "netra-bench", "netra:environment": "prod",
    "netra:services": {"backend": {"stableRevision": "netra-backend-prod-00000001"}},
}
RELEASE = Release("prod", (Target("backend", "netra-backend-prod", "netra-backend-prod-00000002",
                                  "netra-backend-prod-00000001"),), (0, 10, 50, 100), "service")


def promote(t, stage):
    return rel.Verdict("promote", t.candidate, stage, rel.evidence_digest([stage]), "bench", by="gate")


def stop_delay(rng: random.Random) -> float:
    backend = MemoryBackend(CONFIG, stack="prod")
    fired: list[float] = []

    def gate(t, stage):
        progress = effects.between_intervals(lambda line: None, lambda: driver.guard())
        if stage == 10:
            def rollback():
                time.sleep(rng.uniform(0.5, 2.5) * INTERVAL)
                args = argparse.Namespace(stack="prod", dry_run=False, direct=False, api_endpoint="https://x")
                rollback_cli.run_rollback(args, backend=backend, out=io.StringIO(), log=lambda line: None)
                fired.append(time.perf_counter())
            threading.Thread(target=rollback, daemon=True).start()
            for _ in range(100):
                time.sleep(INTERVAL)
                progress("interval")
        return promote(t, stage)

    driver = Driver(RELEASE, backend, gate=gate, verify=promote, log=lambda line: None)
    outcome = driver.run()
    stopped = time.perf_counter()
    assert outcome.reason.startswith("superseded"), outcome
    return (stopped - fired[0]) / INTERVAL


def release_time(ledger: Ledger) -> tuple[float, int]:
    backend = MemoryBackend(CONFIG, ledger=ledger)
    start = time.perf_counter()
    outcome = Driver(RELEASE, backend, gate=promote, verify=promote, log=lambda line: None).run()
    assert outcome.exit_code == 0, outcome
    return time.perf_counter() - start, len(backend.ups)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(7)
    delays = [stop_delay(rng) for _ in range(args.trials)]
    print(f"rollback -> rollout stopped, in gate intervals ({INTERVAL} s each, {args.trials} trials): "
          f"min {min(delays):.2f}, median {statistics.median(delays):.2f}, max {max(delays):.2f}")

    from tests.gcsfake import FakeGcs

    stages = len(RELEASE.stages)
    mem = [release_time(Ledger(MemoryStore(view.adopt(CONFIG, "prod")), "prod"))[0] for _ in range(args.trials)]
    with FakeGcs() as gcs:
        client = gcs.client()
        runs = []
        for i in range(args.trials):
            store = GcsStore("netra-bench-release-ledger", f"prod-{i}", client=client)
            before = len(gcs.requests)
            seconds, ups = release_time(Ledger(store, "prod", seed=lambda: view.adopt(CONFIG, "prod")))
            runs.append((seconds, len(gcs.requests) - before))
    gcs_s = [s for s, _ in runs]
    requests = statistics.median(n for _, n in runs)
    print(f"release 0 -> 10 -> 50 -> 100 ({stages} stages + finalize), median of {args.trials}: ledger in memory "
          f"{statistics.median(mem) * 1000:.1f} ms, in GCS (real client, fake on loopback) "
          f"{statistics.median(gcs_s) * 1000:.1f} ms; extra per stage "
          f"{(statistics.median(gcs_s) - statistics.median(mem)) / stages * 1000:.1f} ms; "
          f"{requests / stages:.1f} GCS requests per stage")


if __name__ == "__main__":
    main()
