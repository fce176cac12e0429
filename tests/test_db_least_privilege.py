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


@pytest.fixture
def two_services(postgres):
    """(migrate_dsn, {service: app_dsn}) of a fresh Cloud SQL-like database with one user per service."""
    name, suffix = f"t_{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:6]
    migrator = f"netra_migrate_{suffix}"
    apps = {svc: f"netra_app_{svc}_{suffix}" for svc in ("auth", "backend")}
    with psycopg.connect(postgres, autocommit=True) as c:
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloudsqlsuperuser') THEN "
                  "CREATE ROLE cloudsqlsuperuser NOLOGIN CREATEDB CREATEROLE; END IF; END $$")
        for role in (migrator, *apps.values()):
            c.execute(f"CREATE ROLE {role} LOGIN CREATEDB CREATEROLE IN ROLE cloudsqlsuperuser")
        c.execute(f"CREATE DATABASE {name} OWNER cloudsqlsuperuser")
    base = postgres.replace("dbname=postgres", f"dbname={name}")
    yield base.replace("user=postgres", f"user={migrator}"), apps, {k: base.replace("user=postgres", f"user={u}")
                                                                     for k, u in apps.items()}
    with psycopg.connect(postgres, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for role in (*apps.values(), migrator):
            c.execute(f"DROP ROLE IF EXISTS {role}")


def test_every_service_user_is_restricted_to_rows(two_services):
    """One database user per service (issue 21 item 6a): DB_APP_USER names them all, comma separated; each
    ends with row access only, and what one created before moves to the migration user."""
    migrate_dsn, apps, dsns = two_services
    assert not refused(dsns["auth"], "CREATE TABLE auth_scratch (x int)")
    migrate.up(migrate.with_app_user(migrate_dsn, ",".join(apps.values())), ROOT / "migrations", log=lambda _: None)
    for svc, dsn in dsns.items():
        with psycopg.connect(dsn, autocommit=True) as c:
            assert c.execute("SELECT current_user").fetchone()[0] == apps[svc]
            c.execute("INSERT INTO auth_scratch VALUES (1)")
            member = c.execute("SELECT pg_has_role(current_user, 'cloudsqlsuperuser', 'MEMBER')").fetchone()[0]
            assert member is False
        for sql in ("CREATE TABLE t (x int)", "DROP TABLE auth_scratch", "ALTER TABLE token_usage_tracking ADD COLUMN x int",
                    "CREATE ROLE sneaky", f"GRANT {apps['backend' if svc == 'auth' else 'auth']} TO current_user"):
            assert refused(dsn, sql), (svc, sql)


def test_the_program_gives_each_database_client_its_own_user_and_password(prod_plan):
    """auth and backend no longer share a database user or password: each has a Cloud SQL user, a random
    password in its own Secret Manager secret, read by it alone; the migration job restricts both."""
    from tests.conftest import resources_of

    users = {r["inputs"]["name"] for r in resources_of(prod_plan, "gcp:sql/user:User")}
    assert users == {"netra_app_auth", "netra_app_backend", "netra_migrate"}
    services = {r["name"]: r["inputs"] for r in resources_of(prod_plan, "gcp:cloudrunv2/service:Service")}
    grants = {(r["inputs"]["secretId"], r["inputs"]["member"].split(":")[1].split("@")[0])
              for r in resources_of(prod_plan, "gcp:secretmanager/secretIamMember:SecretIamMember")}
    for svc in ("auth", "backend"):
        envs = services[svc]["template"]["containers"][0]["envs"]
        env = {e["name"]: e.get("value") or e["valueSource"]["secretKeyRef"]["secret"] for e in envs}
        assert env["DB_USER"] == f"netra_app_{svc}" and env["DB_PASSWORD"] == f"prod-{svc}-db-password"
        readers = {who for sid, who in grants if sid == f"prod-{svc}-db-password"}
        assert readers == {f"netra-{svc}-prod"}
    assert not any(sid == "prod-db-password" for sid, _ in grants)
    job = next(r["inputs"] for r in resources_of(prod_plan, "gcp:cloudrunv2/job:Job") if r["name"] == "migrate")
    env = {e["name"]: e.get("value") for e in job["template"]["template"]["containers"][0]["envs"]}
    assert env["DB_APP_USER"] == "netra_app_auth,netra_app_backend" and env["DB_USER"] == "netra_migrate"
    dsn = migrate.conninfo_from_env({"DB_HOST": "h", "DB_USER": "netra_migrate", "DB_APP_USER": env["DB_APP_USER"]})
    assert psycopg.conninfo.conninfo_to_dict(dsn)["options"] == "-c netra.app_user=netra_app_auth,netra_app_backend"
    with pytest.raises(migrate.UsageError, match="comma-separated"):
        migrate.with_app_user("host=h", "netra_app_auth,")
