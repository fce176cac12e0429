"""`python -m infra rollout`: drive a release through the traffic ladder, crash-safe (revision.py for
revisions, flag.py for `--flag`). Exit codes: 0 released, 1 rolled back, 2 usage, 3 held, 4 failed."""
from __future__ import annotations

import sys
from typing import Optional

from infra.release.backends import open_backend, stack_raw_config
from infra.release.cli.common import err, int_arg
from infra.release.driver import Driver, simulate
from infra.release.effects import authorized_session, git_tag, make_gate, make_verify, run_migration_job
from infra.release.flag import FlagRelease, make_flag_gate, plan_flag_release, refusals, revision_refusal
from infra.release.ledger import LedgerError
from infra.release.lock import DEFAULT_TTL_S, Lease, LockBusy
from infra.release.revision import Release, plan_release, resume
from infra.release.state import EXIT_FAILED, EXIT_RELEASED, EXIT_USAGE
from infra.release.view import current
from infra.release import sandbox


def register(subparsers) -> None:
    from infra.canary.api import add_gate_arguments

    p = subparsers.add_parser(
        "rollout", help="drive a release through the traffic ladder, crash-safe (Pulumi Automation API)",
        description="Reconcile the stack towards releasing its candidates: migrate, then per stage pulumi up "
                    "(with the policy pack), verify at 0 %, gate above 0, record the approval, climb; finalize "
                    "at 100 %. Restart it after any interruption: it resumes from the journal in netra:release. "
                    "Exit 0 released, 1 rolled back, 2 usage, 3 held, 4 failed.")
    add_gate_arguments(p)
    p.add_argument("--service", help="roll out only this service key (default: every service with a new candidate); "
                                     "with --flag: judge only this service's arms")
    p.add_argument("--flag", metavar="NAME", help="ramp the feature flag NAME (netra:platform.featureFlags.NAME.percent) "
                                                  "along the ladder instead, judged by the gate on its arms")
    p.add_argument("--dry-run", action="store_true",
                   help="walk the real path on a copy of the config (every check promotes) and show the hold and "
                        "rollback branches; change nothing")
    p.add_argument("--tag", metavar="NAME", help="after finalizing, `git tag -a NAME` the current commit")
    p.add_argument("--smoke-requests", default="20", metavar="N", help="smoke requests of the 0 %% verification")
    p.add_argument("--smoke-path", action="append", default=[], metavar="PATH",
                   help="path of a smoke request (repeatable; default: the service's healthCheckPath)")
    p.add_argument("--verify-url", action="append", default=[], metavar="KEY=URL",
                   help="where to reach a candidate for verification (default: a public service through the load "
                        "balancer's canary route, a private one at its canary tagged URL)")
    sandbox.add_argument(p)
    p.set_defaults(func=run_rollout)


def verify_urls(items: list[str]) -> dict[str, str]:
    from infra.canary.api import UsageError

    out = {}
    for item in items:
        key, sep, url = item.partition("=")
        if not sep or not key or not url.startswith(("http://", "https://")):
            raise UsageError(f"--verify-url must be KEY=http(s)://..., got {item!r}")
        out[key] = url
    return out


def print_dry_run(release: Release, config: dict, tag: bool) -> int:
    print(f"rollout {release.stack} (dry run): {release.describe}")
    outcome, _, backend = simulate(release, config, tag=tag, log=lambda line: print("  " + line))
    print(f"=> exit {outcome.exit_code}: {outcome.reason}")
    for stage in release.checked_stages:
        what = "verification" if stage == 0 else "gate"
        for decision in ("hold", "rollback"):
            out, trace, b = simulate(release, config, {stage: decision}, tag=tag)
            ups = [m.removeprefix("netra rollout: ") for m, _ in b.ups]
            print(f"if the {what} at {stage} % answers {decision}: exit {out.exit_code} ({out.reason}); "
                  f"updates: {', '.join(ups)}")
    return EXIT_RELEASED


def print_flag_dry_run(release: FlagRelease, config: dict) -> int:
    problems = refusals(config, release.flag)
    if problems:
        for p in problems:
            print(f"infra rollout: error: {p}", file=sys.stderr)
        return EXIT_USAGE
    return print_dry_run(release, config, False)


def run_rollout(args, *, backend=None, gate=None, verify=None, migrate=None, tagger=None, notifier=None,
                log=None, lease_s: Optional[float] = None, backup=None, load_test=None) -> int:
    """`rollout`. The keyword hooks let tests inject a backend, checks and effects; `lease_s`: the lease's
    time to live with no heartbeat thread (tests)."""
    from infra.canary.api import UsageError, gate_settings, quiet_google_warnings
    from infra.canary.stack import PROJECT_ROOT, StackError
    from infra.notify import Notifier
    from infra.verify import VerifySettings

    quiet_google_warnings()
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if not args.stack:
        return err("rollout", "--stack is required (a stack name such as prod or staging)")
    if getattr(args, "flag", None):
        return run_flag_ramp(args, backend=backend, gate=gate, notifier=notifier, log=log, lease_s=lease_s)
    try:
        settings = gate_settings(args)
        smoke = int_arg(args.smoke_requests, "--smoke-requests", 1, 1000)
        urls = verify_urls(args.verify_url)
        release, outputs, cfg, every = plan_release(args.stack, args.service)
    except (UsageError, StackError, ValueError) as exc:
        return err("rollout", str(exc))
    if args.dry_run:
        if not release.targets:
            print("nothing to roll out: every service's candidate is already its stable revision")
            return EXIT_RELEASED
        return print_dry_run(release, stack_raw_config(args.stack), bool(args.tag))
    if backend is None:
        backend = open_backend("rollout", args.stack, log)
        if backend is None:
            return EXIT_FAILED
    try:
        release = resume(release, current(backend)[0], every)
    except LedgerError as exc:
        print(f"infra rollout: error: {exc}; nothing was done", file=sys.stderr)
        return EXIT_FAILED
    if not release.targets:
        print("nothing to roll out: every service's candidate is already its stable revision")
        return EXIT_RELEASED
    job = outputs.get("migrationJob")
    # tests inject the checks and effects: then no real cloud call is made by default either
    injected = any(x is not None for x in (migrate, gate, verify))
    if sandbox.running() is not None:  # no database and no load generator in the offline sandbox
        effects = sandbox.sandbox_effects(log)
        backup, load_test = backup or effects["backup"], load_test or effects["load_test"]
    if injected:
        backup = backup or (lambda: "not taken: effects injected")
        load_test = load_test or (lambda t: {"decision": "pass", "reason": "not run: effects injected"})
    if migrate is None:
        migrate = (lambda: run_migration_job(job, release.project, log=log)) if job else (lambda: None)
    if backup is None:
        def backup():
            from infra.release.backup import take_backup

            return take_backup(authorized_session(), release.project, outputs["platform"]["database"]["instance"],
                               f"netra rollout {args.stack}: before migrations for "
                               f"{', '.join(release.candidates.values())}", log=log)
    if load_test is None and release.load_test_service:
        from infra.release.load_test import LoadTestStep
        from loadtest.verdict import Criteria

        step = LoadTestStep(args.stack, release.project, release.region, outputs["loadTestJob"],
                            Criteria.from_dict(cfg.verification.load_test.criteria.model_dump(by_alias=True)), log=log)

        def load_test(t):
            return step.run(t.service_name, t.candidate)
    if tagger is None and args.tag:
        def tagger():
            git_tag(args.tag, f"netra {args.stack}: released {', '.join(release.candidates.values())}", PROJECT_ROOT)
    thresholds = cfg.observability.thresholds
    verify = verify or make_verify(VerifySettings(smoke, tuple(args.smoke_path), thresholds.error_rate_percent,
                                                  thresholds.p95_latency_ms), urls, outputs, release.project)
    between: list = []  # the gate looks at the ledger between intervals: a rollback stops it within one
    gate = gate or make_gate(settings, release, log, between=lambda: between[0]())
    notifier = notifier or Notifier.from_env(args.stack)
    driver = Driver(release, backend, gate=gate, verify=verify, migrate=migrate, tag=tagger, notifier=notifier, log=log,
                    backup=backup, **({"load_test": load_test} if load_test else {}))
    between.append(driver.guard)

    def refusal(config: dict) -> list[str]:
        found = revision_refusal(config)
        return [found] if found else []

    return drive("rollout", args.stack, driver, refusal, f"rollout {args.stack}", lease_s)


def run_flag_ramp(args, *, backend=None, gate=None, notifier=None, log=None, lease_s: Optional[float] = None) -> int:
    """`rollout --flag`. The keyword hooks let tests inject a backend, the gate and the notifier."""
    from infra.canary.api import UsageError, gate_settings, quiet_google_warnings
    from infra.canary.stack import StackError
    from infra.notify import Notifier

    quiet_google_warnings()
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    for name in ("tag", "verify_url", "smoke_path"):
        if getattr(args, name, None):
            return err("rollout", f"--{name.replace('_', '-')} belongs to a revision rollout, not to --flag "
                                      f"(a flag ramp is judged by the gate on the flag's arms)")
    try:
        settings = gate_settings(args)
        if args.dry_run:
            config = stack_raw_config(args.stack)
            return print_flag_dry_run(plan_flag_release(args.stack, args.flag, args.service, config), config)
        if backend is None:
            backend = open_backend("rollout", args.stack, log)
            if backend is None:
                return EXIT_FAILED
        release = plan_flag_release(args.stack, args.flag, args.service, current(backend)[0])
    except (UsageError, StackError, ValueError) as exc:
        return err("rollout", str(exc))
    between: list = []
    gate = gate or make_flag_gate(settings, release, log, between=lambda: between[0]())
    driver = Driver(release, backend, gate=gate, verify=gate, notifier=notifier or Notifier.from_env(args.stack),
                    log=log, actor="rollout --flag")
    between.append(driver.guard)
    return drive("rollout", args.stack, driver, lambda config: refusals(config, release.flag),
                 f"rollout {args.stack} --flag {release.flag}", lease_s)


def drive(cmd: str, stack: str, driver: Driver, refusals, label: str, lease_s: Optional[float]) -> int:
    """Run the driver under the stack's lease: a live lease of another actor is exit 4 naming it; the
    refusals are checked under the lease, on the ledger's view (what the driver will really see)."""
    try:
        with Lease(driver.backend.ledger, label, ttl_s=lease_s or DEFAULT_TTL_S, heartbeat=lease_s is None) as lease:
            problems = refusals(current(driver.backend)[0])
            if problems:
                for p in problems:
                    print(f"infra {cmd}: error: {p}", file=sys.stderr)
                return EXIT_USAGE
            driver.lease = lease
            outcome = driver.run()
    except LockBusy as exc:
        print(f"infra {cmd}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LedgerError as exc:
        print(f"infra {cmd}: error: {exc}; nothing more was done", file=sys.stderr)
        return EXIT_FAILED
    print(f"{label}: {outcome.reason} (exit {outcome.exit_code})", file=sys.stderr)
    return outcome.exit_code
