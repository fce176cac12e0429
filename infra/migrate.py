"""Schema migrations: `migrations/NNN_name.up.sql` in order, `NNN_name.down.sql` in reverse.

    python -m infra.migrate up     [--dir migrations] [--dsn DSN] [--expect-digest HEX] [--force]
    python -m infra.migrate down   --to VERSION [--dir migrations] [--dsn DSN] [--force]
    python -m infra.migrate status [--dir migrations] [--dsn DSN]
    python -m infra.migrate digest [--dir migrations]

Without --dsn the connection comes from DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_SSLMODE,
DB_SSLROOTCERT (what the Cloud Run migration job sets) or libpq's PG* variables; DB_APP_USER names the
services' roles (see below).

Safety rules (every table is assumed to hold customer data):
- Before it touches the database the runner checks the files against the digest it was built with
  (--expect-digest, or MIGRATIONS_DIGEST which the Cloud Run job sets from the plan): whoever can write
  the migrations bucket cannot run a schema change of their own.
- `schema_migrations (version, name, checksum, down_checksum, applied_at)` records each applied file; a
  changed up or down file of an applied migration is refused.
- Each file runs in its own transaction with `lock_timeout` and `statement_timeout`; a lock timeout
  (another transaction holds the table) rolls back and retries with backoff, so a waiting ALTER TABLE
  never queues the application's reads behind it for longer than one lock_timeout.
- A file is first run inside a savepoint to see what it would remove: a dropped table or column holding
  rows, or rows deleted or truncated, refuses the migration (naming each table/column and the row count)
  unless --force. Only then does it run for real.
- `down` needs an explicit `--to VERSION` (000 = revert everything) and reverts only versions recorded as
  applied, newest first.
- A file may not manage its own transaction (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...). A file whose first
  line is `-- migrate:no-transaction` runs outside a transaction, one statement at a time, and may only
  contain CREATE/DROP INDEX CONCURRENTLY and REINDEX ... CONCURRENTLY (an INVALID index left by a failed
  CREATE INDEX CONCURRENTLY is dropped before the retry).
- An applied migration whose files were deleted is listed by `status` (exit 1) and `up` refuses to run
  (exit 3) until the files are back: newer migrations would build on a schema nobody can read or revert.
Exit codes: 0 done, 1 the database or a migration failed (status: applied migrations without files),
2 usage error, 3 refused to protect data.
Standalone: standard library and psycopg 3, so the runner image (migrations/Dockerfile) is just this file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.(up|down)\.sql$")
VERSION = re.compile(r"^\d{3}$")
NO_TRANSACTION = "-- migrate:no-transaction"
LOCK_ID = 0x6E657472  # "netr": pg_advisory_lock key shared by every runner
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS down_checksum TEXT"""
# Least privilege, run by `up` after the migrations whenever the application's users are named (--app-user /
# DB_APP_USER, one role or a comma-separated list, one per service -> the session setting netra.app_user):
# the migration user (who runs this) owns the schema; each application user may only read and write rows.
# Idempotent.
APP_PRIVILEGES = """
DO $$
DECLARE
    users text := current_setting('netra.app_user', true);
    app text;
BEGIN
    IF users IS NULL OR users = '' THEN
        RAISE NOTICE 'netra.app_user is not set: no application user to restrict';
        RETURN;
    END IF;
    FOREACH app IN ARRAY string_to_array(users, ',') LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app) THEN
        RAISE EXCEPTION 'application user % does not exist', app;
    END IF;
    IF app = current_user THEN
        RAISE EXCEPTION 'the application user % must not be the migration user', app;
    END IF;
    -- Cloud SQL makes every user created through its API a member of cloudsqlsuperuser, which may
    -- create in the database's schemas: the application's user leaves it.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloudsqlsuperuser')
       AND pg_has_role(app, 'cloudsqlsuperuser', 'MEMBER') THEN
        EXECUTE format('REVOKE cloudsqlsuperuser FROM %I', app);
    END IF;
    EXECUTE format('ALTER ROLE %I NOCREATEDB NOCREATEROLE', app);
    -- whatever the application's user still owns (tables an earlier run created as that user) moves to
    -- the migration user; an owner could ALTER or DROP it
    EXECUTE format('GRANT %I TO %I', app, current_user);
    EXECUTE format('REASSIGN OWNED BY %I TO %I', app, current_user);
    EXECUTE format('REVOKE %I FROM %I', app, current_user);
    EXECUTE 'REVOKE CREATE ON SCHEMA public FROM PUBLIC';
    EXECUTE format('REVOKE CREATE ON SCHEMA public FROM %I', app);
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), app);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I', app);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', app);
    -- tables and sequences later migrations create (as the migration user) get the same grants
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', app);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO %I', app);
    -- the runner's bookkeeping is not the application's
    EXECUTE format('REVOKE ALL ON schema_migrations FROM %I', app);
    END LOOP;
END
$$;"""
# First words of statements that manage the transaction (PREPARE alone is a prepared statement: harmless)
TRANSACTION_CONTROL = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|END|ABORT|START\s+TRANSACTION|SAVEPOINT|RELEASE|"
                                 r"PREPARE\s+TRANSACTION|SET\s+(SESSION\s+)?TRANSACTION|SET\s+SESSION\s+CHARACTERISTICS)\b",
                                 re.IGNORECASE)
OWN_TIMEOUTS = re.compile(r"^(SET|RESET)\s+((SESSION|LOCAL)\s+)?(lock_timeout|statement_timeout|ALL)\b", re.IGNORECASE)
CONCURRENT_INDEX = re.compile(r"^(CREATE\s+(UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\s+\w+)\s+CONCURRENTLY\b|"
                              r"^REINDEX\s*\(.*\)\s*\w+\s+CONCURRENTLY\b", re.IGNORECASE | re.DOTALL)
CREATE_CONCURRENTLY = re.compile(r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
                                 r"(\"[^\"]+\"|[A-Za-z_][\w$]*)(?:\s*\.\s*(\"[^\"]+\"|[A-Za-z_][\w$]*))?\s+ON\b", re.IGNORECASE)


class MigrationError(Exception):
    """A migration or the database failed (exit 1)."""


class UsageError(MigrationError):
    """A bad argument (exit 2)."""


class Refused(MigrationError):
    """Refused to protect data or integrity: digest, changed file, rows that would be lost (exit 3)."""


@dataclass(frozen=True)
class Timeouts:
    lock_ms: int = 5_000  # how long one statement may wait for a lock before the attempt rolls back
    statement_ms: int = 600_000  # how long one statement may run
    retries: int = 10  # attempts after a lock timeout
    backoff_ms: int = 1_000  # first pause between attempts; doubles, capped at 30 s, with jitter


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: Path
    down: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.read_bytes()).hexdigest()

    @property
    def down_checksum(self) -> str:
        return hashlib.sha256(self.down.read_bytes()).hexdigest()


# --- files ------------------------------------------------------------------------------------------

def discover(directory: Path | str) -> list[Migration]:
    """Every migration in `directory`, by version; each must have both an up and a down file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"--dir: {directory} is not a directory")
    found: dict[str, dict[str, Path]] = {}
    names: dict[str, str] = {}
    problems = []
    for path in sorted(directory.iterdir()):
        if not path.name.endswith(".sql"):
            continue
        m = FILE.match(path.name)
        if not m:
            problems.append(f"{path.name}: expected NNN_name.up.sql or NNN_name.down.sql (lowercase name)")
            continue
        version, name, kind = m.groups()
        if version == "000":
            problems.append(f"{path.name}: version 000 is reserved (it means 'before the first migration')")
            continue
        if names.setdefault(version, name) != name:
            problems.append(f"{path.name}: version {version} is already used by {names[version]}")
            continue
        found.setdefault(version, {})[kind] = path
    out = []
    for version in sorted(found):
        files = found[version]
        for kind in ("up", "down"):
            if kind not in files:
                problems.append(f"{version}_{names[version]}: missing {version}_{names[version]}.{kind}.sql")
        if not problems:
            out.append(Migration(version, names[version], files["up"], files["down"]))
    if problems:
        raise MigrationError("; ".join(problems))
    return out


def digest(migrations: list[Migration]) -> str:
    """One hash over every file: changes exactly when a migration is added or edited."""
    h = hashlib.sha256()
    for m in migrations:
        for path in (m.up, m.down):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def verify_digest(migrations: list[Migration], expected: str | None) -> None:
    """Refuse files that are not the ones this runner was built with (checked before connecting)."""
    if not expected:
        return
    actual = digest(migrations)
    if actual != expected.strip().lower():
        raise Refused(f"migration files do not match the expected digest: expected {expected.strip()}, got {actual} "
                      f"({len(migrations)} migration(s)); refusing to touch the database")


def statements(sql: str) -> list[str]:
    """The SQL statements of a file, comments dropped, string/identifier/dollar quoting respected."""
    out, current, i, n = [], [], 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        if sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            current.append(" ")
            continue
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            current.append(sql[i:j + 1])
            i = j + 1
            continue
        if c == "$":
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if m and not (current and re.match(r"[A-Za-z0-9_]", current[-1][-1:] or " ")):
                tag = m.group(0)
                j = sql.find(tag, i + len(tag))
                j = n if j < 0 else j + len(tag)
                current.append(sql[i:j])
                i = j
                continue
        if c == ";":
            text = "".join(current).strip()
            if text:
                out.append(text)
            current, i = [], i + 1
            continue
        current.append(c)
        i += 1
    text = "".join(current).strip()
    if text:
        out.append(text)
    return out


def file_problems(path: Path) -> list[str]:
    """Why `path` cannot run as a migration: it manages its own transaction, or it is a non-transactional
    file with something other than concurrent index statements."""
    text = path.read_text(encoding="utf-8")
    found = []
    non_transactional = text.lstrip().startswith(NO_TRANSACTION)
    for stmt in statements(text):
        if TRANSACTION_CONTROL.match(stmt):
            found.append(f"{path.name}: `{stmt.split()[0]}` manages the transaction itself; the runner runs each "
                         f"file in one transaction (for CREATE INDEX CONCURRENTLY use a file starting with "
                         f"`{NO_TRANSACTION}`)")
        elif OWN_TIMEOUTS.match(stmt):
            found.append(f"{path.name}: `{' '.join(stmt.split()[:3])}` overrides the runner's timeouts; "
                         "use --lock-timeout-ms / --statement-timeout-ms")
        elif non_transactional and not CONCURRENT_INDEX.match(stmt):
            found.append(f"{path.name}: `{NO_TRANSACTION}` files may only hold CREATE/DROP INDEX CONCURRENTLY or "
                         f"REINDEX ... CONCURRENTLY statements, got `{' '.join(stmt.split()[:4])} …`")
    return found


def _text(path: Path) -> str:
    problems = file_problems(path)
    if problems:
        raise Refused("; ".join(problems))
    return path.read_text(encoding="utf-8")


# --- database ---------------------------------------------------------------------------------------

def conninfo_from_env(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ if env is None else env)
    from psycopg.conninfo import make_conninfo

    pairs = {"host": "DB_HOST", "port": "DB_PORT", "dbname": "DB_NAME", "user": "DB_USER",
             "password": "DB_PASSWORD", "sslmode": "DB_SSLMODE", "sslrootcert": "DB_SSLROOTCERT"}
    return with_app_user(make_conninfo("", **{k: env[v] for k, v in pairs.items() if env.get(v)}), env.get("DB_APP_USER"))


def with_app_user(dsn: str, app_user: str | None) -> str:
    """The DSN with the session setting `netra.app_user` (the application's database users, one per
    service, comma separated, which migrations grant row access and nothing more), or unchanged without."""
    if not app_user:
        return dsn
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}(,[a-z_][a-z0-9_]{0,62})*", app_user):
        raise UsageError(f"--app-user / DB_APP_USER: a PostgreSQL role name like netra_app_backend, or a comma-separated "
                         f"list of them, got {app_user!r}")
    options = conninfo_to_dict(dsn).get("options") or ""
    return make_conninfo(dsn, options=f"{options} -c netra.app_user={app_user}".strip())


def _connect(dsn: str):
    import psycopg

    return psycopg.connect(dsn, autocommit=True, application_name="netra-migrate")


class _Session:
    """One connection holding the runners' advisory lock, with the timeouts set."""

    def __init__(self, dsn: str, timeouts: Timeouts, log: Callable[[str], None]):
        self.dsn, self.timeouts, self.log = dsn, timeouts, log

    def __enter__(self):
        self.conn = _connect(self.dsn)
        t = self.timeouts
        self.conn.execute(f"SET lock_timeout = {int(t.lock_ms)}")
        self.conn.execute(f"SET statement_timeout = {int(t.statement_ms)}")
        self._retrying("take the migrations advisory lock (another run holds it?)",
                       lambda: self.conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,)))
        self._retrying("create schema_migrations", lambda: self._in_transaction(BOOKKEEPING))
        return self

    def __exit__(self, *exc):
        try:
            if not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
        finally:
            self.conn.close()

    def _in_transaction(self, sql: str) -> None:
        with self.conn.transaction():
            self.conn.execute(sql)

    def _retrying(self, what: str, attempt: Callable[[], object]) -> object:
        """Run `attempt`; on a lock timeout pause and try again, up to `retries` times."""
        import psycopg.errors

        t = self.timeouts
        for n in range(t.retries + 1):
            try:
                return attempt()
            except psycopg.errors.LockNotAvailable:
                if n == t.retries:
                    raise MigrationError(f"{what}: no lock within {t.lock_ms} ms in {t.retries + 1} attempt(s); "
                                         "a long-running transaction holds the table") from None
                pause = min(30_000, t.backoff_ms * 2 ** n) * random.uniform(0.5, 1.0)
                self.log(f"{what}: lock timeout ({t.lock_ms} ms), attempt {n + 1}/{t.retries + 1}; "
                         f"retrying in {pause / 1000:.1f} s")
                time.sleep(pause / 1000)
        raise AssertionError("unreachable")

    def applied(self) -> dict[str, tuple[str, str | None]]:
        rows = self.conn.execute("SELECT version, checksum, down_checksum FROM schema_migrations").fetchall()
        return {v: (c, d) for v, c, d in rows}

    def run_file(self, path: Path, record: Callable[[], None], force: bool) -> None:
        """Run one migration file and its bookkeeping `record` atomically (or, for a no-transaction file,
        statement by statement), refusing data loss unless `force`."""
        sql = _text(path)
        if sql.lstrip().startswith(NO_TRANSACTION):
            for stmt in statements(sql):
                self._retrying(path.name, lambda s=stmt: self._concurrent_index(s))
            self._retrying(path.name, lambda: self._atomic(record))
            return

        def attempt() -> None:
            with self.conn.transaction():
                if re.search(r"drop|truncate|delete", sql, re.IGNORECASE):
                    losses = self._probe_losses(sql)
                    if losses and not force:
                        raise Refused(f"{path.name} would lose data: {'; '.join(losses)}; "
                                      "take a backup (infra.dbops.backup) and rerun with --force if that is intended")
                    for loss in losses:
                        self.log(f"{path.name}: --force: {loss}")
                self.conn.execute(sql)
                record()

        self._retrying(path.name, attempt)

    def _atomic(self, record: Callable[[], None]) -> None:
        with self.conn.transaction():
            record()

    def _concurrent_index(self, stmt: str) -> None:
        m = CREATE_CONCURRENTLY.match(stmt)
        if m:  # a failed CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS would keep
            name = (m.group(2) or m.group(1)).strip('"')
            invalid = self.conn.execute(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
                "JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = %s AND NOT i.indisvalid", (name,)).fetchone()
            if invalid:
                self.log(f"dropping INVALID index {invalid[0]} left by an interrupted CREATE INDEX CONCURRENTLY")
                self.conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {invalid[0]}")
        self.conn.execute(stmt)

    def _probe_losses(self, sql: str) -> list[str]:
        """Run `sql` in a savepoint and roll it back; what it would remove, as 'table t: N rows' lines."""
        before = self._tables()
        columns_before = self._columns(before)
        deleted_before = self._deleted()
        with self.conn.transaction() as probe:
            self.conn.execute(sql)
            after = self._tables()
            columns_after = self._columns(after)
            deleted = {oid: n - deleted_before.get(oid, 0) for oid, n in self._deleted().items()
                       if n > deleted_before.get(oid, 0)}
            rewritten = {oid: self._count(name) for oid, (name, node) in after.items()
                         if oid in before and before[oid][1] != node}
            from psycopg import Rollback
            raise Rollback(probe)
        losses = []
        for oid, (name, _) in sorted(before.items(), key=lambda kv: kv[1][0]):
            if oid not in after:
                rows = self._count(name)
                if rows:
                    losses.append(f"drops table {name} holding {rows} row(s)")
                continue
            if oid in deleted:
                losses.append(f"deletes {deleted[oid]} row(s) of {name}")
            elif oid in rewritten and rewritten[oid] < self._count(name):
                losses.append(f"truncates or rewrites {name}: {self._count(name)} -> {rewritten[oid]} row(s)")
            for column in sorted(columns_before.get(oid, set()) - columns_after.get(oid, set())):
                values = self.conn.execute(f"SELECT count(*) FROM {name} WHERE {_ident(column)} IS NOT NULL").fetchone()[0]
                if values:
                    losses.append(f"drops column {name}.{column} holding {values} value(s)")
        return losses

    def _deleted(self) -> dict[int, int]:
        # the backend's pending counters may include earlier transactions of this session: use differences
        return dict(self.conn.execute("SELECT relid, n_tup_del FROM pg_stat_xact_user_tables").fetchall())

    def _tables(self) -> dict[int, tuple[str, int]]:
        rows = self.conn.execute(
            "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relfilenode FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'").fetchall()
        return {oid: (name, node) for oid, name, node in rows}

    def _columns(self, tables: dict[int, tuple[str, int]]) -> dict[int, set[str]]:
        rows = self.conn.execute("SELECT attrelid, attname FROM pg_attribute WHERE attrelid = ANY(%s) "
                                 "AND attnum > 0 AND NOT attisdropped", (list(tables),)).fetchall()
        out: dict[int, set[str]] = {}
        for oid, name in rows:
            out.setdefault(oid, set()).add(name)
        return out

    def _count(self, table: str) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- commands ---------------------------------------------------------------------------------------

def up(dsn: str, directory: Path | str, log=print, *, expect_digest: str | None = None, force: bool = False,
       timeouts: Timeouts = Timeouts()) -> list[str]:
    """Apply every migration not yet applied, in version order. Returns the versions applied."""
    migrations = discover(directory)
    verify_digest(migrations, expect_digest)
    for m in migrations:
        _text(m.up), _text(m.down)  # refuse a bad file before any of them runs
    applied_now = []
    with _Session(dsn, timeouts, log) as session:
        done = session.applied()
        lost = without_files(done, migrations)
        if lost:  # the files no longer describe the schema: applying newer ones builds on what nobody can read
            raise Refused(f"applied migration(s) {', '.join(lost)} have no files in {directory}; restore them "
                          "(git history) before migrating: `status` lists them")
        for m in migrations:
            if m.version in done:
                up_sum, down_sum = done[m.version]
                if up_sum != m.checksum:
                    raise Refused(f"{m.up.name} changed after it was applied; add a new migration instead")
                if down_sum is not None and down_sum != m.down_checksum:
                    raise Refused(f"{m.down.name} changed after {m.up.name} was applied; add a new migration instead")
                continue

            def record(m: Migration = m) -> None:
                session.conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, down_checksum) VALUES (%s, %s, %s, %s)",
                    (m.version, m.name, m.checksum, m.down_checksum))

            session.run_file(m.up, record, force)
            log(f"applied {m.up.name}")
            applied_now.append(m.version)
        if session.conn.execute("SELECT current_setting('netra.app_user', true)").fetchone()[0]:
            # after every run, so tables of new migrations are covered and a stray grant is taken back
            session._retrying("restrict the application user", lambda: session._in_transaction(APP_PRIVILEGES))
            log("application user restricted to row access")
    return applied_now


def check_target(to: str | None, migrations: list[Migration]) -> str:
    """`--to`: 000 (revert everything) or the version of a migration; anything else is a usage error."""
    known = [m.version for m in migrations]
    allowed = f"000 (revert everything) or one of {', '.join(known)}" if known else "000"
    if to is None:
        raise UsageError(f"down needs an explicit --to VERSION: {allowed}")
    if not VERSION.match(to) or (to != "000" and to not in known):
        raise UsageError(f"--to: expected {allowed}, got {to!r}")
    return to


def down(dsn: str, directory: Path | str, to: str | None = None, log=print, *, force: bool = False,
         expect_digest: str | None = None, timeouts: Timeouts = Timeouts()) -> list[str]:
    """Revert the applied migrations above version `to` (required: 000 reverts everything), newest first.
    Refuses to drop tables or columns holding rows unless `force`. Returns the versions reverted."""
    migrations = discover(directory)
    to = check_target(to, migrations)
    verify_digest(migrations, expect_digest)
    by_version = {m.version: m for m in migrations}
    reverted = []
    with _Session(dsn, timeouts, log) as session:
        done = session.applied()
        targets = sorted((v for v in done if v > to), reverse=True)
        missing = [v for v in targets if v not in by_version]
        if missing:
            raise Refused(f"applied version(s) {', '.join(missing)} have no files in {directory}; cannot revert them")
        for version in targets:
            m = by_version[version]
            _, down_sum = done[version]
            if down_sum is not None and down_sum != m.down_checksum:
                if not force:
                    raise Refused(f"{m.down.name} changed after {m.up.name} was applied (checksum recorded then); "
                                  "review it and rerun with --force to run the new file")
                log(f"{m.down.name}: --force: running a down file that changed after it was applied")

            def record(m: Migration = m) -> None:
                session.conn.execute("DELETE FROM schema_migrations WHERE version = %s", (m.version,))

            session.run_file(m.down, record, force)
            log(f"reverted {m.down.name}")
            reverted.append(version)
    return reverted


def without_files(done: dict[str, tuple[str, str | None]], migrations: list[Migration]) -> list[str]:
    """Versions recorded as applied whose files are gone."""
    have = {m.version for m in migrations}
    return sorted(v for v in done if v not in have)


APPLIED, PENDING, MISSING = "applied", "pending", "applied, files missing"


def status(dsn: str, directory: Path | str) -> list[tuple[str, str, str]]:
    """(version, name, APPLIED | PENDING | MISSING) of every migration in the files or in the database,
    in version order: an applied migration whose files were deleted is listed with the name it was applied as."""
    migrations = discover(directory)
    with _Session(dsn, Timeouts(), lambda _: None) as session:
        done = session.applied()
        names = dict(session.conn.execute("SELECT version, name FROM schema_migrations").fetchall())
    rows = [(m.version, m.name, APPLIED if m.version in done else PENDING) for m in migrations]
    rows += [(v, names.get(v, "?"), MISSING) for v in without_files(done, migrations)]
    return sorted(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("up", "down", "status", "digest"))
    p.add_argument("--dir", default=os.environ.get("MIGRATIONS_DIR", "migrations"))
    p.add_argument("--dsn", default=None, help="libpq connection string; default from DB_* / PG* variables")
    p.add_argument("--app-user", default=None,
                   help="the application's database users (one per service, comma separated): migrations grant "
                        "them row access only (default DB_APP_USER)")
    p.add_argument("--to", default=None, help="down: keep migrations up to and including this version (000: none)")
    p.add_argument("--force", action="store_true", help="run even if rows would be lost or a down file changed")
    p.add_argument("--expect-digest", default=os.environ.get("MIGRATIONS_DIGEST") or None,
                   help="refuse unless the files hash to this (default: MIGRATIONS_DIGEST)")
    p.add_argument("--lock-timeout-ms", type=int, default=Timeouts.lock_ms)
    p.add_argument("--statement-timeout-ms", type=int, default=Timeouts.statement_ms)
    p.add_argument("--retries", type=int, default=Timeouts.retries, help="attempts after a lock timeout")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_OK
    if args.to is not None and args.command != "down":
        print("error: --to applies to down only", file=sys.stderr)
        return EXIT_USAGE
    if min(args.lock_timeout_ms, args.statement_timeout_ms) < 1 or args.retries < 0:
        print("error: --lock-timeout-ms and --statement-timeout-ms must be >= 1, --retries >= 0", file=sys.stderr)
        return EXIT_USAGE
    timeouts = Timeouts(args.lock_timeout_ms, args.statement_timeout_ms, args.retries)
    try:
        base = args.dsn if args.dsn is not None else conninfo_from_env({**os.environ, "DB_APP_USER": ""})
        dsn = with_app_user(base, args.app_user or os.environ.get("DB_APP_USER"))
        if args.command == "up":
            done = up(dsn, args.dir, expect_digest=args.expect_digest, force=args.force, timeouts=timeouts)
            print(f"{len(done)} migration(s) applied" if done else "schema up to date")
        elif args.command == "down":
            done = down(dsn, args.dir, args.to, force=args.force, expect_digest=args.expect_digest, timeouts=timeouts)
            print(f"{len(done)} migration(s) reverted")
        elif args.command == "digest":
            print(digest(discover(args.dir)))
        else:
            rows = status(dsn, args.dir)
            for version, name, state in rows:
                print(f"{version} {name}: {state}" + (f" (no {version}_{name}.up/down.sql in {args.dir})"
                                                       if state == MISSING else ""))
            if any(state == MISSING for _, _, state in rows):
                print(f"error: applied migrations have no files in {args.dir}; `up` refuses until they are restored",
                      file=sys.stderr)
                return EXIT_FAILED
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except MigrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # connection or SQL error: one line, non-zero, the job execution fails
        print(f"error: {type(e).__name__}: {e}".rstrip(), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
