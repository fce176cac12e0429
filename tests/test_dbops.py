"""Seed 001's database rollback as a tested command sequence on a real PostgreSQL 15: backup before the
release's migrations, then either migrate down (refused while rows would be lost) or restore the backup."""
from __future__ import annotations

import shutil
import subprocess
import sys

import psycopg
import pytest

from infra import dbops, migrate

from .conftest import ROOT

MIGRATIONS = ROOT / "migrations"


def count(dsn: str, sql: str):
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchone()[0]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.dbops", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_backup_release_then_rollback_by_restore(db, tmp_path):
    release = tmp_path / "migrations"
    release.mkdir()
    for m in migrate.discover(MIGRATIONS):
        shutil.copy(m.up, release / m.up.name)
        shutil.copy(m.down, release / m.down.name)
    migrate.up(db, release, log=lambda _: None)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO token_usage_tracking (id, user_id, session_key) "
                     "SELECT gen_random_uuid(), gen_random_uuid(), 's' || g FROM generate_series(1, 100) g")

    # 1. backup before the release (command line, as the runbook does it)
    dump = tmp_path / "backups" / "pre-release.dump"
    proc = cli("backup", str(dump), "--dsn", db)
    assert proc.returncode == 0 and "migrations 001, 002" in proc.stdout, proc.stderr
    assert cli("backup", str(dump), "--dsn", db).returncode == 1  # never overwritten
    info = dbops.BackupInfo.load(dump)
    assert info.versions == ("001", "002") and info.size_bytes > 0

    # 2. the release: a migration adds a table the new revision fills
    (release / "003_sessions.up.sql").write_text("CREATE TABLE IF NOT EXISTS optimization_sessions (id int PRIMARY KEY);")
    (release / "003_sessions.down.sql").write_text("DROP TABLE IF EXISTS optimization_sessions;")
    assert migrate.up(db, release, log=lambda _: None) == ["003"]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO optimization_sessions SELECT generate_series(1, 7)")

    # 3a. migrate down would drop 7 rows: refused, nothing changed
    proc = cli("rollback", "--to", "002", "--dir", str(release), "--dsn", db)
    assert proc.returncode == 3 and "drops table public.optimization_sessions holding 7 row(s)" in proc.stderr
    assert dbops.applied_versions(db) == ("001", "002", "003")

    # 3b. restore the backup: the database as it was before the release, the replaced one kept aside
    proc = cli("restore", str(dump), "--dsn", db)
    assert proc.returncode == 0, proc.stderr
    assert dbops.applied_versions(db) == ("001", "002")
    assert count(db, "SELECT count(*) FROM token_usage_tracking") == 100
    assert count(db, "SELECT to_regclass('public.optimization_sessions')") is None
    safety = sorted((tmp_path / "backups").glob("*-before-restore-*.dump"))
    assert len(safety) == 1
    listing = subprocess.run([dbops.pg_tool("pg_restore"), "--list", str(safety[0])], capture_output=True, text=True).stdout
    assert "optimization_sessions" in listing  # the release's rows are not destroyed, only set aside
    assert migrate.up(db, MIGRATIONS, log=lambda _: None) == []  # schema and bookkeeping agree again


def test_a_changed_backup_is_refused(db, tmp_path):
    migrate.up(db, MIGRATIONS, log=lambda _: None)
    info = dbops.backup(db, tmp_path / "b.dump")
    with info.path.open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(dbops.DbOpsError, match="changed since the backup"):
        dbops.restore(db, info)
    assert dbops.applied_versions(db) == ("001", "002")  # untouched


def test_restore_refuses_the_maintenance_database(postgres, tmp_path):
    info = dbops.backup(postgres, tmp_path / "p.dump")
    with pytest.raises(dbops.DbOpsError, match="cannot replace the maintenance database"):
        dbops.restore(postgres, info)
