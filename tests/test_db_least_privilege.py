"""The application's database user can read and write rows and nothing more (real PostgreSQL 15).

The server is set up as Cloud SQL sets one up: users created through its API (both `netra_migrate` and
`netra_app`) are members of `cloudsqlsuperuser` with CREATEROLE/CREATEDB, and the database belongs to
`cloudsqlsuperuser`, so before the migrations `netra_app` may create tables. The migrations run as
`netra_migrate` with DB_APP_USER=netra_app; afterwards `netra_app` can SELECT/INSERT/UPDATE/DELETE but
not CREATE, ALTER or DROP anything (`infra/migrate.py` APP_PRIVILEGES, after every `up`).
"""
from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from infra import migrate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cloudsql_like(postgres):
    """(migrate_dsn, app_dsn, admin_dsn) of a fresh database arranged like Cloud SQL's."""
    name, suffix = f"t_{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:6]
    migrator, app = f"netra_migrate_{suffix}", f"netra_app_{suffix}"
    with psycopg.connect(postgres, autocommit=True) as c:
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloudsqlsuperuser') THEN "
                  "CREATE ROLE cloudsqlsuperuser NOLOGIN CREATEDB CREATEROLE; END IF; END $$")
        for role in (migrator, app):
            c.execute(f"CREATE ROLE {role} LOGIN CREATEDB CREATEROLE IN ROLE cloudsqlsuperuser")
        c.execute(f"CREATE DATABASE {name} OWNER cloudsqlsuperuser")
    base = postgres.replace("dbname=postgres", f"dbname={name}")
    yield base.replace("user=postgres", f"user={migrator}"), base.replace("user=postgres", f"user={app}"), base, app
    with psycopg.connect(postgres, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for role in (app, migrator):
            c.execute(f"DROP ROLE IF EXISTS {role}")


def refused(dsn: str, sql: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as c:
        try:
            c.execute(sql)
        except (errors.InsufficientPrivilege, errors.UndefinedTable) as e:
            return isinstance(e, errors.InsufficientPrivilege)
    return False


def test_app_user_has_rows_only_after_migrations(cloudsql_like, tmp_path):
    migrate_dsn, app_dsn, _, app = cloudsql_like
    # before: Cloud SQL's defaults let the application's user change the schema
    assert not refused(app_dsn, "CREATE TABLE before_migrations (x int)")
    log: list[str] = []
    migrate.up(migrate.with_app_user(migrate_dsn, app), ROOT / "migrations", log=log.append)
    assert log[-1] == "application user restricted to row access"
    row = "('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002', 's', 1, 0.5)"
    with psycopg.connect(app_dsn, autocommit=True) as c:
        c.execute(f"INSERT INTO token_usage_tracking (id, user_id, session_key, tokens_used, cost_usd) VALUES {row}")
        c.execute("UPDATE token_usage_tracking SET tokens_used = 2")
        assert c.execute("SELECT tokens_used FROM token_usage_tracking").fetchone() == (2,)
        c.execute("DELETE FROM token_usage_tracking")
        # the table it created before now belongs to the migration user: rows yes, schema no
        c.execute("INSERT INTO before_migrations VALUES (1)")
        member = c.execute("SELECT pg_has_role(%s, 'cloudsqlsuperuser', 'MEMBER')", (app,)).fetchone()[0]
        assert member is False
    for sql in ("CREATE TABLE t (x int)", "CREATE SCHEMA s", "ALTER TABLE token_usage_tracking ADD COLUMN x int",
                "DROP TABLE token_usage_tracking", "CREATE INDEX i ON token_usage_tracking (session_key)",
                "DROP TABLE before_migrations", "TRUNCATE token_usage_tracking",
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ('999', 'x', 'x')",
                "CREATE ROLE sneaky", "CREATE DATABASE sneaky"):
        assert refused(app_dsn, sql), sql


def test_tables_of_later_migrations_get_row_grants(cloudsql_like, tmp_path):
    migrate_dsn, app_dsn, _, app = cloudsql_like
    for f in (ROOT / "migrations").glob("00*.sql"):
        (tmp_path / f.name).write_text(f.read_text())
    migrate.up(migrate.with_app_user(migrate_dsn, app), tmp_path, log=lambda _: None)
    (tmp_path / "004_notes.up.sql").write_text("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text);")
    (tmp_path / "004_notes.down.sql").write_text("DROP TABLE IF EXISTS notes;")
    migrate.up(migrate.with_app_user(migrate_dsn, app), tmp_path, log=lambda _: None)
    with psycopg.connect(app_dsn, autocommit=True) as c:
        c.execute("INSERT INTO notes (body) VALUES ('x')")  # the serial's sequence too
        assert c.execute("SELECT count(*) FROM notes").fetchone() == (1,)
    assert refused(app_dsn, "ALTER TABLE notes ADD COLUMN y int") and refused(app_dsn, "DROP TABLE notes")


def test_without_an_app_user_nothing_is_restricted(cloudsql_like):
    migrate_dsn, _, _, _ = cloudsql_like
    log: list[str] = []
    migrate.up(migrate_dsn, ROOT / "migrations", log=log.append)
    assert "application user restricted to row access" not in log


def test_the_runner_names_the_app_user_from_env_or_flag():
    dsn = migrate.conninfo_from_env({"DB_HOST": "h", "DB_USER": "netra_migrate", "DB_APP_USER": "netra_app",
                                     "DB_SSLMODE": "verify-ca", "DB_SSLROOTCERT": "/secrets/db/server-ca.pem"})
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    assert info["options"] == "-c netra.app_user=netra_app" and info["user"] == "netra_migrate"
    assert info["sslmode"] == "verify-ca" and info["sslrootcert"] == "/secrets/db/server-ca.pem"
    with pytest.raises(migrate.UsageError, match="DB_APP_USER"):
        migrate.with_app_user("host=h", "netra_app; DROP")
