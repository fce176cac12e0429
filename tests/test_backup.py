"""Backup before migrate and the restore drill.

Offline: the drill's whole sequence on a real PostgreSQL 15 (dump, restore into a new database, migrate
up the release's migrations, check, drop). Cloud: the Cloud SQL Admin API calls against an in-memory
stand-in that answers as the API does (operations PENDING -> RUNNING -> DONE, backupContext, errors).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import psycopg
import pytest

from infra import migrate
from infra.release import backup
from infra.release.cli import restore_drill as drill_cli

ROOT = Path(__file__).resolve().parents[1]


def _release_migrations(tmp_path: Path, extra_up: str) -> Path:
    """The repo's migrations plus the release's new one (999)."""
    d = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", d, ignore=shutil.ignore_patterns("Dockerfile", "*.md"))
    (d / "999_drill_release.up.sql").write_text(extra_up)
    (d / "999_drill_release.down.sql").write_text("ALTER TABLE token_usage_tracking DROP COLUMN IF EXISTS drill_note;\n")
    return d


def _seed(db: str, rows: int = 25) -> None:
    migrate.up(db, ROOT / "migrations", log=lambda *_: None)
    with psycopg.connect(db, autocommit=True) as conn:
        for i in range(rows):
            conn.execute("INSERT INTO token_usage_tracking (id, user_id, session_key, tokens_used, cost_usd) "
                         "VALUES (gen_random_uuid(), gen_random_uuid(), %s, %s, 0.01)", (f"s{i}", i))


def _databases(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {n for (n,) in conn.execute("SELECT datname FROM pg_database")}


def test_local_drill_restores_migrates_checks_and_drops_the_copy(db, tmp_path):
    _seed(db)
    directory = _release_migrations(tmp_path, "ALTER TABLE token_usage_tracking ADD COLUMN IF NOT EXISTS drill_note TEXT;\n")
    before = _databases(db)
    report = backup.local_drill(db, directory, workdir=tmp_path / "work", log=lambda *_: None)
    assert report.passed
    assert report.checks["pending"] == [] and report.checks["lost"] == {}
    assert report.checks["tables"]["token_usage_tracking"] == 25
    assert any(s.startswith("migrate up on the copy: 999") for s in report.steps), report.steps
    assert report.steps[-1] == f"dropped {report.instance}"
    assert _databases(db) == before  # the drill database is gone
    # the source was only read: the release's migration is not applied there
    assert [v for v, _, state in migrate.status(db, directory) if state == migrate.PENDING] == ["999"]


def test_local_drill_fails_when_the_release_would_lose_rows(db, tmp_path):
    _seed(db)
    directory = _release_migrations(tmp_path, "DELETE FROM token_usage_tracking WHERE tokens_used < 10;\n")
    with pytest.raises(backup.CheckFailed, match=r"the migrations fail on the restored copy: .*would lose data"):
        backup.local_drill(db, directory, workdir=tmp_path / "work", log=lambda *_: None)
    assert not [n for n in _databases(db) if "_drill_" in n]


def test_row_check_names_the_table_that_lost_rows(db):
    _seed(db, rows=5)
    counts = backup.table_counts(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM token_usage_tracking WHERE tokens_used < 2")
    with pytest.raises(backup.CheckFailed, match=r"table token_usage_tracking: 5 rows in the source, 3 in the copy"):
        backup.check_restored(counts, db, ROOT / "migrations")


def test_restore_drill_command_local_and_usage(db, tmp_path, capsys):
    _seed(db, rows=3)
    args = argparse.Namespace(stack=None, local_dsn=db, dry_run=False)
    assert drill_cli.run_drill_command(args, log=lambda *_: None) == backup.EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["checks"]["tables"]["token_usage_tracking"] == 3
    both = argparse.Namespace(stack="prod", local_dsn=db, dry_run=False)
    assert drill_cli.run_drill_command(both) == backup.EXIT_USAGE
    assert "exactly one of --stack" in capsys.readouterr().err


# ---- the Cloud SQL Admin API path -------------------------------------------------------------------

class _Response:
    def __init__(self, code: int, body: dict):
        self.status_code, self._body = code, body
        self.text = json.dumps(body)
        self.content = self.text.encode()

    def json(self):
        return self._body


class FakeSqlAdmin:
    """Cloud SQL Admin API v1 in memory: instances, backupRuns, restoreBackup, operations (two polls each)."""

    API = backup.SQLADMIN

    def __init__(self, fail_restore: bool = False):
        self.calls: list[tuple[str, str]] = []
        self.ops: dict[str, dict] = {}
        self.instances = {"netra-production-db": {
            "name": "netra-production-db", "region": "us-central1", "databaseVersion": "POSTGRES_15",
            "settings": {"tier": "db-custom-8-32768", "edition": "ENTERPRISE", "dataDiskSizeGb": "100",
                         "ipConfiguration": {"ipv4Enabled": False, "privateNetwork": "projects/p/global/networks/netra-prod-vpc"},
                         "databaseFlags": [{"name": "cloudsql.enable_pgaudit", "value": "on"}], "userLabels": {"env": "prod"}}}}
        self.backups = [{"id": "1700000000001", "status": "SUCCESSFUL", "type": "AUTOMATED", "endTime": "2026-11-23T03:20:00Z"},
                        {"id": "1700000000000", "status": "SUCCESSFUL", "type": "AUTOMATED", "endTime": "2026-11-22T03:20:00Z"}]
        self.fail_restore = fail_restore

    def _op(self, kind: str, **extra) -> _Response:
        name = f"op-{len(self.ops) + 1}"
        self.ops[name] = {"name": name, "operationType": kind, "status": "PENDING", "polls": 0, **extra}
        return _Response(200, {k: v for k, v in self.ops[name].items() if k != "polls"})

    def _path(self, url: str) -> str:
        assert url.startswith(self.API + "/projects/netra-production/"), url
        return url[len(self.API + "/projects/netra-production/"):]

    def get(self, url, params=None, timeout=None):
        path = self._path(url)
        self.calls.append(("GET", path))
        if path.startswith("operations/"):
            op = self.ops[path.split("/")[1]]
            op["polls"] += 1
            op["status"] = "DONE" if op["polls"] >= 2 else "RUNNING"
            if op["status"] == "DONE" and op["operationType"] == "RESTORE_VOLUME" and self.fail_restore:
                op["error"] = {"errors": [{"code": "INTERNAL_ERROR", "message": "restore failed on the drill instance"}]}
            return _Response(200, {k: v for k, v in op.items() if k != "polls"})
        parts = path.split("/")
        if parts[-1] == "backupRuns":
            return _Response(200, {"items": self.backups})
        inst = self.instances.get(parts[1])
        return _Response(200, inst) if inst else _Response(404, {"error": {"code": 404}})

    def post(self, url, json=None):
        path = self._path(url)
        self.calls.append(("POST", path))
        if path.endswith("/backupRuns"):
            new_id = "1700000000099"
            self.backups.insert(0, {"id": new_id, "status": "SUCCESSFUL", "type": "ON_DEMAND", "endTime": "2026-11-23T12:00:00Z",
                                    "description": json["description"]})
            return self._op("BACKUP_VOLUME", backupContext={"backupId": new_id, "kind": "sql#backupContext"})
        if path == "instances":
            self.instances[json["name"]] = {**json, "ipAddresses": [{"type": "PRIVATE", "ipAddress": "10.60.0.9"}]}
            return self._op("CREATE")
        if path.endswith("/restoreBackup"):
            self.restore_request = json
            return self._op("RESTORE_VOLUME")
        raise AssertionError(path)

    def delete(self, url):
        path = self._path(url)
        self.calls.append(("DELETE", path))
        self.instances.pop(path.split("/")[1])
        return self._op("DELETE")


def test_take_backup_waits_for_the_operation_and_returns_the_id():
    api = FakeSqlAdmin()
    lines = []
    backup_id = backup.take_backup(api, "netra-production", "netra-production-db", "netra rollout prod: before migrations",
                                   sleep=lambda s: None, log=lines.append)
    assert backup_id == "1700000000099"
    assert api.calls[0] == ("POST", "instances/netra-production-db/backupRuns")
    assert [c for c in api.calls if c[1].startswith("operations/")] == [("GET", "operations/op-1")] * 2
    assert lines[-1] == "backup of netra-production-db: 1700000000099"


def test_cloud_drill_restores_the_latest_backup_checks_and_deletes():
    api = FakeSqlAdmin()
    hosts = []
    report = backup.restore_drill(api, "netra-production", "netra-production-db", hosts.append, sleep=lambda s: None,
                                  log=lambda *_: None, suffix="1123")
    assert report.passed and report.backup_id == "1700000000001"  # the newest successful backup
    assert hosts == ["10.60.0.9"]
    assert api.restore_request == {"restoreBackupContext": {"backupRunId": "1700000000001",
                                                            "instanceId": "netra-production-db", "project": "netra-production"}}
    created = api.ops["op-1"]
    assert created["operationType"] == "CREATE"
    assert "netra-production-db-drill-1123" not in api.instances  # deleted
    assert report.steps == ["created netra-production-db-drill-1123", "restored backup 1700000000001",
                            "migrations applied and checked on 10.60.0.9", "deleted netra-production-db-drill-1123"]
    body = backup.drill_instance_body(api.instances["netra-production-db"], "x")
    assert body["settings"]["availabilityType"] == "ZONAL" and body["settings"]["deletionProtectionEnabled"] is False
    assert body["settings"]["ipConfiguration"]["privateNetwork"].endswith("netra-prod-vpc")


def test_cloud_drill_deletes_the_instance_when_a_step_fails():
    api = FakeSqlAdmin(fail_restore=True)
    with pytest.raises(backup.BackupError, match="restore into netra-production-db-drill-x failed: restore failed"):
        backup.restore_drill(api, "netra-production", "netra-production-db", lambda host: None, sleep=lambda s: None,
                             log=lambda *_: None, suffix="x")
    assert ("DELETE", "instances/netra-production-db-drill-x") in api.calls
    assert set(api.instances) == {"netra-production-db"}
