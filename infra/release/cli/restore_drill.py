"""`python -m infra restore-drill`: the restore drill (backup.py says what it does).
Exit codes: 0 drill passed, 1 a check failed, 4 an operation failed, 2 usage."""
from __future__ import annotations

import sys

from infra.release.backup import (EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, BackupError, CheckFailed,
                                  local_drill, restore_drill)
from infra.release.effects import authorized_session


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "restore-drill",
        help="restore the latest Cloud SQL backup into a temporary instance, run the migrations' checks, delete it",
        description="Exit 0 drill passed, 1 a check failed, 4 an operation failed, 2 usage.")
    p.add_argument("--stack", help="stack name (the instance, project and migration job come from its plan)")
    p.add_argument("--local-dsn", metavar="DSN", help="drill on this PostgreSQL database instead (pg_dump/pg_restore)")
    p.add_argument("--dry-run", action="store_true", help="print the steps; change nothing")
    p.set_defaults(func=run_drill_command)


def run_drill_command(args, *, session=None, run_job=None, log=None) -> int:
    import json

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if bool(args.stack) == bool(args.local_dsn):
        print("infra restore-drill: error: give exactly one of --stack (Cloud SQL) or --local-dsn (PostgreSQL)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.local_dsn:
            report = local_drill(args.local_dsn, log=log)
        else:
            from infra.canary.stack import StackError, plan_outputs

            try:
                outputs = plan_outputs(args.stack)
            except StackError as exc:
                print(f"infra restore-drill: error: {exc}", file=sys.stderr)
                return EXIT_USAGE
            project, instance = outputs["gcpProject"], outputs["platform"]["database"]["instance"]
            job = outputs.get("migrationJob")
            if args.dry_run:
                for step in (f"latest successful backup of {project}/{instance}",
                             f"create {instance}-drill-<time> (ZONAL, same version/tier/network)",
                             "restoreBackup into it", f"execute {job['name'] if job else 'the migration job'} with DB_HOST=<its private IP>",
                             "delete the temporary instance"):
                    print(step)
                return EXIT_OK
            session = session or authorized_session()
            if run_job is None:
                from infra.release.effects import run_migration_job

                def run_job(host):
                    run_migration_job(job, project, session=session, log=log,
                                      overrides={"containerOverrides": [{"env": [{"name": "DB_HOST", "value": host}]}]})
            report = restore_drill(session, project, instance, run_job, log=log)
    except BackupError as exc:
        print(f"infra restore-drill: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED if isinstance(exc, CheckFailed) else EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - an operation (job, pg tool, API) failed: one line, exit 4
        print(f"infra restore-drill: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(report.as_dict(), indent=2))
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED
