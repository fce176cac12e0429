"""Backup before migrate, and the restore drill (seed 000 "Backup & Rollback Preparation": database backup
created, restore procedures tested; seed 001 "Database Rollback").

Cloud (Cloud SQL Admin API v1, an authorized session):

* `take_backup`: `backupRuns.insert` on the stack's instance, then `operations.get` until DONE; returns
  the backup id. The rollout calls it before the migration job and records the id in its journal.
* `restore_drill`: the latest successful backup of the instance -> a temporary instance (same version,
  tier and private network, ZONAL, no backups, no deletion protection, label purpose=restore-drill)
  -> `instances.restoreBackup` -> the migration job executed against it (DB_HOST overridden to the
  temporary instance's private IP: the restored database has the same users and passwords) -> the
  temporary instance deleted, whatever happened.

    python -m infra restore-drill --stack prod [--dry-run]
    python -m infra restore-drill --local-dsn 'host=127.0.0.1 dbname=netra user=postgres'

Offline (`--local-dsn`, and the tests): the same sequence on PostgreSQL with `infra.dbops` (pg_dump,
restore into a new database), then `infra.migrate.up` on the copy and the checks: every migration
applied, and every table of the source has the same row count in the copy. The drill database is
dropped at the end. Exit codes: 0 drill passed, 1 a check failed, 4 an operation failed, 2 usage.
"""
from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SQLADMIN = "https://sqladmin.googleapis.com/v1"
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 4
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class BackupError(Exception):
    """An Admin API call or a step of the drill failed; one line naming the step."""


class CheckFailed(BackupError):
    """The restored copy failed a check (a migration not applied, rows lost)."""


def _json(r, what: str) -> dict:
    if r.status_code >= 300:
        raise BackupError(f"{what}: HTTP {r.status_code}: {r.text[:200]}")
    return r.json() if r.content else {}


def wait_operation(session, project: str, op: dict, what: str, *, timeout_s: float = 3600.0, poll_s: float = 10.0,
                   sleep=time.sleep, api: str = SQLADMIN) -> dict:
    """Poll a Cloud SQL operation until DONE; raise with its error message if it failed."""
    waited = 0.0
    while op.get("status") != "DONE":
        if waited >= timeout_s:
            raise BackupError(f"{what}: operation {op.get('name')} not done after {timeout_s:.0f} s")
        sleep(poll_s)
        waited += poll_s
        op = _json(session.get(f"{api}/projects/{project}/operations/{op['name']}"), f"{what}: poll")
    errors = (op.get("error") or {}).get("errors") or []
    if errors:
        raise BackupError(f"{what} failed: {'; '.join(e.get('message', e.get('code', '?')) for e in errors)}")
    return op


def take_backup(session, project: str, instance: str, description: str, *, api: str = SQLADMIN,
                sleep=time.sleep, poll_s: float = 10.0, log=print) -> str:
    """An on-demand backup (backupRuns.insert); returns its id once the backup is done."""
    op = _json(session.post(f"{api}/projects/{project}/instances/{instance}/backupRuns",
                            json={"description": description[:200]}), f"backup of {instance}")
    log(f"backup of {instance}: started ({op.get('name')})")
    op = wait_operation(session, project, op, f"backup of {instance}", sleep=sleep, poll_s=poll_s, api=api)
    backup_id = str((op.get("backupContext") or {}).get("backupId") or "")
    if not backup_id:  # older API answers: the newest ON_DEMAND run of the instance is ours
        runs = _json(session.get(f"{api}/projects/{project}/instances/{instance}/backupRuns", params={"maxResults": 5}),
                     f"list backups of {instance}").get("items", [])
        ours = [b for b in runs if b.get("type") == "ON_DEMAND" and b.get("status") == "SUCCESSFUL"]
        if not ours:
            raise BackupError(f"backup of {instance}: done, but no successful ON_DEMAND backup is listed")
        backup_id = str(max(ours, key=lambda b: b.get("endTime", ""))["id"])
    log(f"backup of {instance}: {backup_id}")
    return backup_id


def latest_backup(session, project: str, instance: str, *, api: str = SQLADMIN) -> dict:
    runs = _json(session.get(f"{api}/projects/{project}/instances/{instance}/backupRuns", params={"maxResults": 50}),
                 f"list backups of {instance}").get("items", [])
    ok = [b for b in runs if b.get("status") == "SUCCESSFUL"]
    if not ok:
        raise BackupError(f"restore drill: {instance} has no successful backup to restore")
    return max(ok, key=lambda b: b.get("endTime", ""))


def drill_instance_body(source: dict, name: str) -> dict:
    """A temporary instance like `source` (version, tier, edition, private network, flags), cheap and disposable."""
    s = source.get("settings", {})
    ip = s.get("ipConfiguration", {})
    return {
        "name": name, "region": source["region"], "databaseVersion": source["databaseVersion"],
        "settings": {
            "tier": s["tier"], "edition": s.get("edition", "ENTERPRISE"), "availabilityType": "ZONAL",
            "dataDiskSizeGb": s.get("dataDiskSizeGb"), "dataDiskType": s.get("dataDiskType", "PD_SSD"),
            "databaseFlags": s.get("databaseFlags", []),
            "ipConfiguration": {"ipv4Enabled": False, "privateNetwork": ip.get("privateNetwork"),
                                "sslMode": ip.get("sslMode", "ENCRYPTED_ONLY")},
            "backupConfiguration": {"enabled": False},
            "deletionProtectionEnabled": False,
            "userLabels": {**s.get("userLabels", {}), "purpose": "restore-drill"},
        },
    }


@dataclass
class DrillReport:
    backup_id: str = ""
    instance: str = ""
    steps: list[str] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    passed: bool = False

    def as_dict(self) -> dict:
        return {"backupId": self.backup_id, "instance": self.instance, "steps": self.steps, "checks": self.checks,
                "passed": self.passed}


def restore_drill(session, project: str, instance: str, run_checks, *, api: str = SQLADMIN, sleep=time.sleep,
                  poll_s: float = 10.0, log=print, suffix: str | None = None) -> DrillReport:
    """Latest backup -> temporary instance -> restoreBackup -> run_checks(private_ip) -> delete the instance.

    `run_checks(host)` raises on failure (the rollout's migration job with DB_HOST=host); the instance is
    deleted in every case."""
    report = DrillReport()
    wait = lambda op, what: wait_operation(session, project, op, what, sleep=sleep, poll_s=poll_s, api=api)  # noqa: E731
    source = _json(session.get(f"{api}/projects/{project}/instances/{instance}"), f"get {instance}")
    backup = latest_backup(session, project, instance, api=api)
    report.backup_id = str(backup["id"])
    name = f"{instance}-drill-{suffix or time.strftime('%m%d%H%M')}"[:98]
    report.instance = name
    log(f"restore drill: backup {report.backup_id} of {instance} ({backup.get('endTime', '?')}) into {name}")
    created = False
    try:
        wait(_json(session.post(f"{api}/projects/{project}/instances", json=drill_instance_body(source, name)),
                   f"create {name}"), f"create {name}")
        created = True
        report.steps.append(f"created {name}")
        wait(_json(session.post(f"{api}/projects/{project}/instances/{name}/restoreBackup",
                                json={"restoreBackupContext": {"backupRunId": report.backup_id, "instanceId": instance,
                                                               "project": project}}),
                   f"restore into {name}"), f"restore into {name}")
        report.steps.append(f"restored backup {report.backup_id}")
        drill = _json(session.get(f"{api}/projects/{project}/instances/{name}"), f"get {name}")
        host = next((a["ipAddress"] for a in drill.get("ipAddresses", []) if a.get("type") == "PRIVATE"), None)
        if not host:
            raise BackupError(f"restore drill: {name} has no private IP address")
        run_checks(host)
        report.steps.append(f"migrations applied and checked on {host}")
        report.checks["migrations"] = "ok"
        report.passed = True
    finally:
        if created:
            wait(_json(session.delete(f"{api}/projects/{project}/instances/{name}"), f"delete {name}"), f"delete {name}")
            report.steps.append(f"deleted {name}")
            log(f"restore drill: deleted {name}")
    return report


# ---------------------------------------------------------------------------------------------------
# offline: the same sequence on PostgreSQL (infra.dbops), and the migrations' checks


def table_counts(dsn: str) -> dict[str, int]:
    """Rows per table of the public schema (the drill's data check)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                for t in tables}


def check_restored(source_counts: dict[str, int], dsn: str, directory: Path | str) -> dict:
    """The migrations' checks on a restored copy: every migration applied (and unchanged), and no table
    lost rows relative to the source. Returns the figures; raises BackupError naming what failed."""
    from infra import migrate

    pending = [f"{v}_{n}" for v, n, state in migrate.status(dsn, directory) if state == migrate.PENDING]
    counts = table_counts(dsn)
    lost = {t: (n, counts.get(t)) for t, n in source_counts.items() if counts.get(t, -1) < n}
    checks = {"pending": pending, "tables": counts, "lost": lost}
    problems = ([f"migrations not applied on the copy: {', '.join(pending)}"] if pending else []) + [
        f"table {t}: {n} rows in the source, {'missing' if m is None else m} in the copy" for t, (n, m) in lost.items()]
    if problems:
        raise CheckFailed("restore drill: " + "; ".join(problems))
    return checks


def local_drill(dsn: str, directory: Path | str = MIGRATIONS_DIR, *, workdir: Path | str | None = None,
                log=print) -> DrillReport:
    """dump (dbops.backup) -> restore into a new database (dbops.restore) -> migrate up -> checks -> drop it."""
    import psycopg
    from psycopg import sql

    from infra import dbops, migrate

    report = DrillReport()
    tmp = Path(workdir or tempfile.mkdtemp(prefix="restore-drill-"))
    source_counts = table_counts(dsn)
    info = dbops.backup(dsn, tmp / f"{dbops._dbname(dsn)}-{uuid.uuid4().hex[:8]}.dump")
    report.backup_id = f"{info.path.name} sha256:{info.sha256[:12]}"
    report.steps.append(f"backup {info.path.name} ({info.size_bytes} bytes, migrations {', '.join(info.versions) or 'none'})")
    drill_db = f"{dbops._dbname(dsn)}_drill_{uuid.uuid4().hex[:8]}"
    report.instance = drill_db
    admin = dbops._with_dbname(dsn, "postgres")
    drill_dsn = dbops._with_dbname(dsn, drill_db)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(drill_db)))
    try:
        dbops.restore(drill_dsn, info, safety_dir=tmp)
        report.steps.append(f"restored into {drill_db}")
        try:
            applied = migrate.up(drill_dsn, directory, log=log)
        except migrate.MigrationError as exc:  # refused (would lose data) or failed on the restored data
            raise CheckFailed(f"restore drill: the migrations fail on the restored copy: {exc}") from None
        report.steps.append(f"migrate up on the copy: {', '.join(applied) or 'nothing pending'}")
        report.checks = check_restored(source_counts, drill_dsn, directory)
        report.steps.append("checks passed: every migration applied, no table lost rows")
        report.passed = True
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(drill_db)))
        report.steps.append(f"dropped {drill_db}")
    return report
