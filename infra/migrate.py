"""Schema migrations: `migrations/NNN_name.up.sql` in order, `NNN_name.down.sql` in reverse.

    python -m infra.migrate up   [--dir migrations] [--dsn DSN]
    python -m infra.migrate down [--dir migrations] [--dsn DSN] [--to VERSION]
    python -m infra.migrate status [--dir migrations] [--dsn DSN]

Without --dsn the connection comes from DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_SSLMODE
(what the Cloud Run migration job sets) or libpq's PG* variables. Every file is idempotent by itself
(IF [NOT] EXISTS); the runner also keeps `schema_migrations` (version, name, checksum, applied_at),
applies each file in its own transaction, holds an advisory lock so two runs never interleave, and
refuses an applied migration whose file changed since. Standalone: standard library and psycopg 3, so
the runner image (migrations/Dockerfile) is just this file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.(up|down)\.sql$")
LOCK_ID = 0x6E657472  # "netr": pg_advisory_lock key shared by every runner
BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: Path
    down: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.read_bytes()).hexdigest()


def discover(directory: Path | str) -> list[Migration]:
    """Every migration in `directory`, by version; each must have both an up and a down file."""
    directory = Path(directory)
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


def conninfo_from_env(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ if env is None else env)
    from psycopg.conninfo import make_conninfo

    pairs = {"host": "DB_HOST", "port": "DB_PORT", "dbname": "DB_NAME", "user": "DB_USER",
             "password": "DB_PASSWORD", "sslmode": "DB_SSLMODE"}
    return make_conninfo("", **{k: env[v] for k, v in pairs.items() if env.get(v)})


def _connect(dsn: str):
    import psycopg

    return psycopg.connect(dsn, autocommit=True, application_name="netra-migrate")


def up(dsn: str, directory: Path | str, log=print) -> list[str]:
    """Apply every migration not yet applied, in version order. Returns the versions applied."""
    migrations = discover(directory)
    applied_now = []
    with _connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute(BOOKKEEPING)
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for m in migrations:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(f"{m.up.name} changed after it was applied; add a new migration instead")
                    continue
                with conn.transaction():
                    conn.execute(m.up.read_text())
                    conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                                 (m.version, m.name, m.checksum))
                log(f"applied {m.up.name}")
                applied_now.append(m.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now


def down(dsn: str, directory: Path | str, to: str = "000", log=print) -> list[str]:
    """Revert every migration above version `to`, newest first. Down files are idempotent, so they run
    whether or not the bookkeeping records the version. Returns the versions reverted."""
    migrations = [m for m in discover(directory) if m.version > to]
    reverted = []
    with _connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute(BOOKKEEPING)
            for m in reversed(migrations):
                with conn.transaction():
                    conn.execute(m.down.read_text())
                    conn.execute("DELETE FROM schema_migrations WHERE version = %s", (m.version,))
                log(f"reverted {m.down.name}")
                reverted.append(m.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return reverted


def status(dsn: str, directory: Path | str) -> list[tuple[str, str, bool]]:
    migrations = discover(directory)
    with _connect(dsn) as conn:
        conn.execute(BOOKKEEPING)
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    return [(m.version, m.name, m.version in done) for m in migrations]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("up", "down", "status"))
    p.add_argument("--dir", default=os.environ.get("MIGRATIONS_DIR", "migrations"))
    p.add_argument("--dsn", default=None, help="libpq connection string; default from DB_* / PG* variables")
    p.add_argument("--to", default="000", help="down: keep migrations up to and including this version")
    args = p.parse_args(argv)
    dsn = args.dsn if args.dsn is not None else conninfo_from_env()
    try:
        if args.command == "up":
            done = up(dsn, args.dir)
            print(f"{len(done)} migration(s) applied" if done else "schema up to date")
        elif args.command == "down":
            done = down(dsn, args.dir, args.to)
            print(f"{len(done)} migration(s) reverted")
        else:
            for version, name, applied in status(dsn, args.dir):
                print(f"{version} {name}: {'applied' if applied else 'pending'}")
    except MigrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # connection or SQL error: one line, non-zero, the job execution fails
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
