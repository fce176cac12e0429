"""Schema migrations against a real PostgreSQL 15 server (tests/pgserver.py: fixtures `postgres`, `db`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from infra import migrate

from .conftest import ROOT

MIGRATIONS = ROOT / "migrations"


def catalog(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        table = conn.execute("SELECT to_regclass('public.token_usage_tracking')::text").fetchone()[0]
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname = 'idx_token_usage_user_date'"
        ).fetchone()
        columns = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'token_usage_tracking'").fetchall())
        pk = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass('public.token_usage_tracking') AND i.indisprimary").fetchall()
        versions = [v for (v,) in conn.execute(
            "SELECT version FROM schema_migrations ORDER BY version").fetchall()] if conn.execute(
            "SELECT to_regclass('public.schema_migrations')").fetchone()[0] else None
    return {"table": table, "index": index[0] if index else None, "columns": columns, "pk": [c for (c,) in pk],
            "versions": versions}


def test_every_migration_has_up_and_down_in_order():
    found = migrate.discover(MIGRATIONS)
    assert [m.version for m in found] == sorted(m.version for m in found) and found[0].version == "001"
    for m in found:
        assert m.up.name == f"{m.version}_{m.name}.up.sql" and m.down.name == f"{m.version}_{m.name}.down.sql"


def quiet(_: str) -> None:
    pass


def copy_migrations(dest: Path) -> Path:
    for m in migrate.discover(MIGRATIONS):
        shutil.copy(m.up, dest / m.up.name)
        shutil.copy(m.down, dest / m.down.name)
    return dest


def insert_usage(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO token_usage_tracking (id, user_id, session_key) "
                     "SELECT gen_random_uuid(), gen_random_uuid(), 's' || g FROM generate_series(1, %s) g", (rows,))


def test_up_twice_then_down(db):
    log: list[str] = []
    assert migrate.up(db, MIGRATIONS, log=log.append) == ["001", "002"]
    assert migrate.up(db, MIGRATIONS, log=log.append) == []  # bookkeeping: nothing left to apply
    # the files themselves are idempotent too: run every up again, bypassing the bookkeeping
    with psycopg.connect(db, autocommit=True) as conn:
        for m in migrate.discover(MIGRATIONS):
            conn.execute(m.up.read_text())
    state = catalog(db)
    assert state["table"] == "token_usage_tracking"
    assert state["index"] == ("CREATE INDEX idx_token_usage_user_date ON public.token_usage_tracking "
                              "USING btree (user_id, created_at)")
    assert state["pk"] == ["id"]
    assert state["columns"] == {
        "id": "uuid", "user_id": "uuid", "session_key": "character varying", "agent_name": "character varying",
        "tokens_used": "integer", "cost_usd": "numeric", "optimization_applied": "boolean",
        "created_at": "timestamp without time zone"}
    assert state["versions"] == ["001", "002"]
    assert migrate.status(db, MIGRATIONS) == [("001", "token_usage_tracking", "applied"), ("002", "pgaudit", "applied")]

    assert migrate.down(db, MIGRATIONS, to="000", log=log.append) == ["002", "001"]  # empty table: nothing lost
    state = catalog(db)
    assert state["table"] is None and state["index"] is None and state["versions"] == []
    # only versions recorded as applied are reverted: a second down has nothing to do
    assert migrate.down(db, MIGRATIONS, to="000", log=log.append) == []
    assert log == ["applied 001_token_usage_tracking.up.sql", "applied 002_pgaudit.up.sql",
                   "reverted 002_pgaudit.down.sql", "reverted 001_token_usage_tracking.down.sql"]


def test_down_to_a_version_keeps_the_older_ones(db):
    migrate.up(db, MIGRATIONS, log=quiet)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO token_usage_tracking (id, user_id, session_key) VALUES (gen_random_uuid(), gen_random_uuid(), 's')")
        assert conn.execute("SELECT optimization_applied, created_at IS NOT NULL FROM token_usage_tracking").fetchone() == (False, True)
    assert migrate.down(db, MIGRATIONS, to="001", log=quiet) == ["002"]
    state = catalog(db)
    assert state["table"] == "token_usage_tracking" and state["versions"] == ["001"]


def test_down_needs_an_explicit_valid_target(db):
    migrate.up(db, MIGRATIONS, log=quiet)
    with pytest.raises(migrate.UsageError, match="explicit --to VERSION: 000 \\(revert everything\\) or one of 001, 002"):
        migrate.down(db, MIGRATIONS, log=quiet)
    for bad in ("abc", "01", "0", "005", "1", "0001", " 001", ""):
        with pytest.raises(migrate.UsageError, match=f"--to: expected 000 .* got {bad!r}"):
            migrate.down(db, MIGRATIONS, to=bad, log=quiet)
    assert catalog(db)["versions"] == ["001", "002"]  # nothing reverted
    proc = run_cli(db, "down", "--to", "01")
    assert proc.returncode == 2 and "--to: expected 000 (revert everything) or one of 001, 002, got '01'" in proc.stderr
    proc = run_cli(db, "down")
    assert proc.returncode == 2 and "down needs an explicit --to" in proc.stderr
    assert catalog(db)["versions"] == ["001", "002"]


def test_down_refuses_to_drop_a_table_holding_rows_without_force(db):
    migrate.up(db, MIGRATIONS, log=quiet)
    insert_usage(db, 1000)
    proc = run_cli(db, "down", "--to", "000")
    assert proc.returncode == 3, proc.stderr
    assert ("001_token_usage_tracking.down.sql would lose data: drops table public.token_usage_tracking "
            "holding 1000 row(s)") in proc.stderr
    # 002 (nothing to lose) was reverted; 001 and its 1,000 rows are untouched
    state = catalog(db)
    assert state["table"] == "token_usage_tracking" and state["versions"] == ["001"]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM token_usage_tracking").fetchone()[0] == 1000
    log: list[str] = []
    assert migrate.down(db, MIGRATIONS, to="000", force=True, log=log.append) == ["001"]
    assert "001_token_usage_tracking.down.sql: --force: drops table public.token_usage_tracking holding 1000 row(s)" in log
    assert catalog(db)["table"] is None


def test_dropped_columns_and_deleted_rows_are_named_with_their_counts(db, tmp_path):
    (tmp_path / "001_t.up.sql").write_text("CREATE TABLE t (a int, b text, c text);")
    (tmp_path / "001_t.down.sql").write_text("DROP TABLE IF EXISTS t;")
    assert migrate.up(db, tmp_path, log=quiet) == ["001"]
    with psycopg.connect(db, autocommit=True) as conn:  # the application fills the table
        conn.execute("INSERT INTO t SELECT g, 'x', NULL FROM generate_series(1, 10) g")
    (tmp_path / "002_slim.up.sql").write_text("ALTER TABLE t DROP COLUMN b; ALTER TABLE t DROP COLUMN c;\n"
                                              "DELETE FROM t WHERE a > 8;")
    (tmp_path / "002_slim.down.sql").write_text("ALTER TABLE t ADD COLUMN IF NOT EXISTS b text, ADD COLUMN IF NOT EXISTS c text;")
    with pytest.raises(migrate.Refused) as e:
        migrate.up(db, tmp_path, log=quiet)
    assert str(e.value) == ("002_slim.up.sql would lose data: deletes 2 row(s) of public.t; drops column public.t.b "
                            "holding 10 value(s); take a backup (infra.dbops.backup) and rerun with --force if that is intended")
    with psycopg.connect(db) as conn:  # nothing of 002 happened
        assert conn.execute("SELECT count(*), count(b) FROM t").fetchone() == (10, 10)


def test_a_file_managing_its_own_transaction_is_refused_before_anything_runs(db, tmp_path):
    (tmp_path / "001_t.up.sql").write_text("CREATE TABLE t (a int);\n-- a comment; BEGIN\nCOMMIT;\n"
                                           "CREATE TABLE u (a int);")
    (tmp_path / "001_t.down.sql").write_text("DROP TABLE IF EXISTS u; DROP TABLE IF EXISTS t;")
    with pytest.raises(migrate.Refused, match="001_t.up.sql: `COMMIT` manages the transaction itself"):
        migrate.up(db, tmp_path, log=quiet)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT to_regclass('t'), to_regclass('schema_migrations')").fetchone() == (None, None)


def test_statements_respect_quotes_comments_and_dollar_bodies():
    sql = ("-- BEGIN;\nCREATE TABLE \"a;b\" (x text DEFAULT 'it''s; fine');\n/* COMMIT; /* nested */ ROLLBACK; */\n"
           "DO $$ BEGIN PERFORM 1; END $$;\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;")
    assert migrate.statements(sql) == [
        "CREATE TABLE \"a;b\" (x text DEFAULT 'it''s; fine')", "DO $$ BEGIN PERFORM 1; END $$",
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql"]
    assert [m for m in migrate.discover(MIGRATIONS) if migrate.file_problems(m.up) + migrate.file_problems(m.down)] == []


def test_concurrent_index_runs_only_in_the_documented_non_transactional_mode(db, tmp_path):
    (tmp_path / "001_t.up.sql").write_text("CREATE TABLE t (a int);")
    (tmp_path / "001_t.down.sql").write_text("DROP TABLE IF EXISTS t;")
    (tmp_path / "002_idx.up.sql").write_text(f"{migrate.NO_TRANSACTION}\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);")
    (tmp_path / "002_idx.down.sql").write_text(f"{migrate.NO_TRANSACTION}\nDROP INDEX CONCURRENTLY IF EXISTS t_a;")
    (tmp_path / "002_idx.up.sql").unlink(), (tmp_path / "002_idx.down.sql").unlink()
    assert migrate.up(db, tmp_path, log=quiet) == ["001"]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (1), (1)")  # the unique index cannot build: it is left INVALID
    (tmp_path / "002_idx.up.sql").write_text(f"{migrate.NO_TRANSACTION}\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);")
    (tmp_path / "002_idx.down.sql").write_text(f"{migrate.NO_TRANSACTION}\nDROP INDEX CONCURRENTLY IF EXISTS t_a;")
    with pytest.raises(Exception, match="could not create unique index"):
        migrate.up(db, tmp_path, log=quiet)
    with psycopg.connect(db, autocommit=True) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass").fetchone() == (False,)
        conn.execute("DELETE FROM t")
    log: list[str] = []
    assert migrate.up(db, tmp_path, log=log.append) == ["002"]
    assert any("dropping INVALID index public.t_a" in line for line in log)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass").fetchone() == (True,)
    (tmp_path / "003_mixed.up.sql").write_text(f"{migrate.NO_TRANSACTION}\nCREATE INDEX CONCURRENTLY t_b ON t (a);\nALTER TABLE t ADD COLUMN b int;")
    (tmp_path / "003_mixed.down.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.Refused, match="may only hold CREATE/DROP INDEX CONCURRENTLY"):
        migrate.up(db, tmp_path, log=quiet)


def test_lock_timeout_retries_instead_of_queueing_app_reads(db):
    """An ALTER TABLE behind an open read transaction times out and retries; meanwhile the application's
    reads keep working (without lock_timeout they would queue behind the waiting ALTER)."""
    import threading

    migrate.up(db, MIGRATIONS, log=quiet)
    insert_usage(db, 10)
    tmp = Path(tempfile.mkdtemp(prefix="netra-mig-"))
    copy_migrations(tmp)
    (tmp / "003_add_column.up.sql").write_text("ALTER TABLE token_usage_tracking ADD COLUMN IF NOT EXISTS model TEXT;")
    (tmp / "003_add_column.down.sql").write_text("ALTER TABLE token_usage_tracking DROP COLUMN IF EXISTS model;")
    reader = psycopg.connect(db)  # a long read transaction: holds ACCESS SHARE until it ends
    reader.execute("SELECT count(*) FROM token_usage_tracking").fetchone()
    log: list[str] = []
    result: dict = {}
    timeouts = migrate.Timeouts(lock_ms=100, statement_ms=10_000, retries=50, backoff_ms=50)
    runner = threading.Thread(target=lambda: result.setdefault("applied", migrate.up(db, tmp, log=log.append, timeouts=timeouts)))
    runner.start()
    try:
        reads = 0
        with psycopg.connect(db, autocommit=True) as app:
            app.execute("SET statement_timeout = 2000")  # a read queued behind the ALTER would fail here
            deadline = time.monotonic() + 30
            while sum("lock timeout" in line for line in log) < 3 and time.monotonic() < deadline:
                assert app.execute("SELECT count(*) FROM token_usage_tracking").fetchone()[0] == 10
                reads += 1
                time.sleep(0.02)
        assert sum("lock timeout" in line for line in log) >= 3 and reads > 0
    finally:
        reader.rollback()
        reader.close()
        runner.join(60)
    assert result["applied"] == ["003"]
    assert "003_add_column.up.sql: lock timeout (100 ms), attempt 1/51" in log[0]


def test_digest_tampering_is_refused_before_touching_the_database(tmp_path):
    copy_migrations(tmp_path)
    expected = migrate.digest(migrate.discover(tmp_path))
    assert expected == migrate.digest(migrate.discover(MIGRATIONS))
    (tmp_path / "002_pgaudit.down.sql").write_text("DROP TABLE token_usage_tracking;")  # whoever can write the bucket
    nowhere = "host=127.0.0.1 port=1 dbname=x connect_timeout=1"  # would fail to connect: it must not try
    with pytest.raises(migrate.Refused, match=f"do not match the expected digest: expected {expected}"):
        migrate.up(nowhere, tmp_path, log=quiet, expect_digest=expected)
    env = {**os.environ, "MIGRATIONS_DIGEST": expected}
    proc = subprocess.run([sys.executable, "-m", "infra.migrate", "up", "--dir", str(tmp_path), "--dsn", nowhere],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "refusing to touch the database" in proc.stderr


def test_changed_down_file_is_refused(db, tmp_path):
    copy_migrations(tmp_path)
    migrate.up(db, tmp_path, log=quiet)
    (tmp_path / "002_pgaudit.down.sql").write_text("-- edited\nDROP EXTENSION IF EXISTS pgaudit;\n")
    with pytest.raises(migrate.Refused, match="002_pgaudit.down.sql changed after 002_pgaudit.up.sql was applied"):
        migrate.up(db, tmp_path, log=quiet)
    with pytest.raises(migrate.Refused, match="002_pgaudit.down.sql changed after"):
        migrate.down(db, tmp_path, to="001", log=quiet)
    assert migrate.down(db, tmp_path, to="001", log=quiet, force=True) == ["002"]


def run_cli(dsn: str, *args: str, directory: Path = MIGRATIONS) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.migrate", *args, "--dir", str(directory), "--dsn", dsn],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_edited_migration_is_refused_and_cli_reads_db_env(postgres, db, tmp_path):
    copy_migrations(tmp_path)
    conninfo = psycopg.conninfo.conninfo_to_dict(db)
    env = {**os.environ, "DB_HOST": "127.0.0.1", "DB_PORT": str(conninfo["port"]),
           "DB_USER": "postgres", "DB_NAME": str(conninfo["dbname"]), "DB_SSLMODE": "disable"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "infra.migrate", *a, "--dir", str(tmp_path)],  # noqa: E731
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    first = run("up")
    assert first.returncode == 0 and "2 migration(s) applied" in first.stdout, first.stderr
    (tmp_path / "001_token_usage_tracking.up.sql").write_text("-- edited\n" + MIGRATIONS.joinpath(
        "001_token_usage_tracking.up.sql").read_text())
    edited = run("up")
    assert edited.returncode == 3 and "changed after it was applied" in edited.stderr
    down = run("down", "--to", "000")
    assert down.returncode == 0 and "2 migration(s) reverted" in down.stdout, down.stderr


def test_discover_refuses_half_migrations(tmp_path):
    (tmp_path / "001_a.up.sql").write_text("SELECT 1;")
    (tmp_path / "002_B.up.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError) as e:
        migrate.discover(tmp_path)
    assert "missing 001_a.down.sql" in str(e.value) and "002_B.up.sql: expected NNN_name" in str(e.value)


def test_conninfo_from_the_job_env():
    dsn = migrate.conninfo_from_env({"DB_HOST": "10.60.0.3", "DB_PORT": "5432", "DB_NAME": "netra", "DB_USER": "netra_app",
                                     "DB_PASSWORD": "pw", "DB_SSLMODE": "require"})
    assert psycopg.conninfo.conninfo_to_dict(dsn) == {"host": "10.60.0.3", "port": "5432", "dbname": "netra",
                                                      "user": "netra_app", "password": "pw", "sslmode": "require"}


def test_statement_timeout_bounds_every_migration(db, tmp_path):
    (tmp_path / "001_slow.up.sql").write_text("SELECT pg_sleep(5);")
    (tmp_path / "001_slow.down.sql").write_text("SELECT 1;")
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        migrate.up(db, tmp_path, log=quiet, timeouts=migrate.Timeouts(statement_ms=200))
    assert catalog(db)["versions"] == []  # rolled back, nothing recorded
    proc = run_cli(db, "up", "--statement-timeout-ms", "200", directory=tmp_path)
    assert proc.returncode == 1 and "canceling statement due to statement timeout" in proc.stderr
    proc = run_cli(db, "up", "--lock-timeout-ms", "0", directory=tmp_path)
    assert proc.returncode == 2 and "--lock-timeout-ms" in proc.stderr
    (tmp_path / "001_slow.up.sql").write_text("SET lock_timeout = 0; CREATE TABLE t (a int);")
    with pytest.raises(migrate.Refused, match="overrides the runner's timeouts"):
        migrate.up(db, tmp_path, log=quiet)


def test_the_job_passes_the_digest_of_the_files_it_uploads(prod_plan):
    """The runner checks MIGRATIONS_DIGEST before connecting; the plan sets it from the repo's files."""
    jobs = [r for r in prod_plan["resources"] if r["type"] == "gcp:cloudrunv2/job:Job" and r["name"] == "migrate"]
    assert len(jobs) == 1
    container = jobs[0]["inputs"]["template"]["template"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["envs"]}
    assert env["MIGRATIONS_DIGEST"] == migrate.digest(migrate.discover(MIGRATIONS))
    assert container["args"][0] == "up" and "--force" not in container["args"]  # the job never forces data loss
