"""Schema migrations against a real PostgreSQL 15 server (Debian's postgresql package; `make test` installs it).

The server runs on 127.0.0.1 in a temporary directory for this module and is stopped at teardown.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from infra import migrate

from .conftest import ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MIGRATIONS = ROOT / "migrations"


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run the server tools as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> str:
    """A PostgreSQL 15 server of its own; yields a libpq DSN."""
    if not (PG_BIN / "postgres").exists():
        pytest.fail(f"PostgreSQL 15 not found in {PG_BIN}: run `make system-packages` (apt package postgresql)")
    base = Path(tempfile.mkdtemp(prefix="netra-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    port = _free_port()
    subprocess.run(_as_server_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                    "-E", "UTF8", "--no-sync", "--no-instructions"]),
                   check=True, capture_output=True)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"),
                                    "-w", "-t", "60", "start"]), check=True, capture_output=True)
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


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


def test_up_twice_then_down(postgres):
    log: list[str] = []
    assert migrate.up(postgres, MIGRATIONS, log=log.append) == ["001", "002"]
    assert migrate.up(postgres, MIGRATIONS, log=log.append) == []  # bookkeeping: nothing left to apply
    # the files themselves are idempotent too: run every up again, bypassing the bookkeeping
    with psycopg.connect(postgres, autocommit=True) as conn:
        for m in migrate.discover(MIGRATIONS):
            conn.execute(m.up.read_text())
    state = catalog(postgres)
    assert state["table"] == "token_usage_tracking"
    assert state["index"] == ("CREATE INDEX idx_token_usage_user_date ON public.token_usage_tracking "
                              "USING btree (user_id, created_at)")
    assert state["pk"] == ["id"]
    assert state["columns"] == {
        "id": "uuid", "user_id": "uuid", "session_key": "character varying", "agent_name": "character varying",
        "tokens_used": "integer", "cost_usd": "numeric", "optimization_applied": "boolean",
        "created_at": "timestamp without time zone"}
    assert state["versions"] == ["001", "002"]
    assert migrate.status(postgres, MIGRATIONS) == [("001", "token_usage_tracking", True), ("002", "pgaudit", True)]
    with psycopg.connect(postgres, autocommit=True) as conn:  # the seed's defaults hold
        conn.execute("INSERT INTO token_usage_tracking (id, user_id, session_key) VALUES (gen_random_uuid(), gen_random_uuid(), 's')")
        assert conn.execute("SELECT optimization_applied, created_at IS NOT NULL FROM token_usage_tracking").fetchone() == (False, True)

    assert migrate.down(postgres, MIGRATIONS, log=log.append) == ["002", "001"]
    state = catalog(postgres)
    assert state["table"] is None and state["index"] is None and state["versions"] == []
    # downs are idempotent as well
    assert migrate.down(postgres, MIGRATIONS, log=log.append) == ["002", "001"]
    assert catalog(postgres)["table"] is None
    assert log == ["applied 001_token_usage_tracking.up.sql", "applied 002_pgaudit.up.sql",
                   *["reverted 002_pgaudit.down.sql", "reverted 001_token_usage_tracking.down.sql"] * 2]


def test_down_to_a_version_keeps_the_older_ones(postgres):
    migrate.up(postgres, MIGRATIONS, log=lambda _: None)
    assert migrate.down(postgres, MIGRATIONS, to="001", log=lambda _: None) == ["002"]
    state = catalog(postgres)
    assert state["table"] == "token_usage_tracking" and state["versions"] == ["001"]
    # downs run whether or not the bookkeeping lists them (they are idempotent): a half-reverted schema heals
    assert migrate.down(postgres, MIGRATIONS, log=lambda _: None) == ["002", "001"]
    assert catalog(postgres)["table"] is None


def test_edited_migration_is_refused_and_cli_reads_db_env(postgres, tmp_path):
    for m in migrate.discover(MIGRATIONS):
        shutil.copy(m.up, tmp_path / m.up.name)
        shutil.copy(m.down, tmp_path / m.down.name)
    env = {**os.environ, "DB_HOST": "127.0.0.1", "DB_PORT": postgres.split("port=")[1].split()[0],
           "DB_USER": "postgres", "DB_NAME": "postgres", "DB_SSLMODE": "disable"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "infra.migrate", *a, "--dir", str(tmp_path)],  # noqa: E731
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    first = run("up")
    assert first.returncode == 0 and "2 migration(s) applied" in first.stdout, first.stderr
    (tmp_path / "001_token_usage_tracking.up.sql").write_text("-- edited\n" + MIGRATIONS.joinpath(
        "001_token_usage_tracking.up.sql").read_text())
    edited = run("up")
    assert edited.returncode == 1 and "changed after it was applied" in edited.stderr
    down = run("down")
    assert down.returncode == 0 and "2 migration(s) reverted" in down.stdout


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
