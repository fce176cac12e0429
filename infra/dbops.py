"""Database backup, restore and the seed's database rollback, on any PostgreSQL reachable by libpq.

Seed 001, "Database Rollback (< 15 minutes)": restore the pre-release backup, then roll the migrations
back if necessary. In the cloud the backup is a Cloud SQL backup (`gcloud sql backups create` before the
migration job, `gcloud sql backups restore` to roll back); this module is the same sequence with
pg_dump / pg_restore (Debian's postgresql package), so it runs against the tests' local PostgreSQL and
against a Cloud SQL instance through its private IP or the Auth Proxy alike:

    info = backup(dsn, Path("pre-release.dump"))       # 1. before `migrate up`
    migrate.up(dsn, "migrations")                       # 2. the release's migrations
    ...                                                 #    the release misbehaves
    rollback(dsn, "migrations", to="001")               # 3a. schema back, refused if rows would be lost
    restore(dsn, info.path)                             # 3b. or: the whole database back to the backup

Nothing here deletes data without a copy: `restore` first saves the database it replaces (returned as
`RestoreResult.safety_backup`), and `rollback` refuses to drop tables or columns holding rows unless
`force=True`. Each function raises DbOpsError with one line naming the step and the cause.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from infra import migrate

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)


class DbOpsError(Exception):
    pass


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    sha256: str
    size_bytes: int
    database: str
    versions: tuple[str, ...]  # schema_migrations at backup time (empty if none)

    @property
    def manifest(self) -> Path:
        """`<dump>.json`, written beside the dump: what `restore` checks the file against."""
        return self.path.with_name(self.path.name + ".json")

    @classmethod
    def load(cls, path: Path | str) -> "BackupInfo":
        path = Path(path)
        try:
            doc = json.loads(path.with_name(path.name + ".json").read_text())
            return cls(path, str(doc["sha256"]), int(doc["sizeBytes"]), str(doc["database"]), tuple(doc["versions"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DbOpsError(f"{path}: no readable manifest {path.name}.json beside it ({e})") from None


@dataclass(frozen=True)
class RestoreResult:
    backup: BackupInfo
    safety_backup: BackupInfo | None  # the database as it was just before the restore
    versions: tuple[str, ...]  # schema_migrations after the restore


def pg_tool(name: str) -> str:
    """Path of pg_dump / pg_restore: $PG_BIN, Debian's PostgreSQL 15 directory, then PATH."""
    for directory in (os.environ.get("PG_BIN"), *PG_BIN_DIRS):
        if directory and (Path(directory) / name).is_file():
            return str(Path(directory) / name)
    found = shutil.which(name)
    if not found:
        raise DbOpsError(f"{name} not found: install the postgresql client (Debian: postgresql-client-15) or set PG_BIN")
    return found


def _run(step: str, cmd: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DbOpsError(f"{step}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise DbOpsError(f"{step}: {Path(cmd[0]).name} exited {proc.returncode}: {lines[-1] if lines else 'no output'}")


def _dbname(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(dsn).get("dbname") or os.environ.get("PGDATABASE")
    if not name:
        raise DbOpsError("the DSN names no database (dbname=...)")
    return str(name)


def _with_dbname(dsn: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(dsn), "dbname": name})


def applied_versions(dsn: str) -> tuple[str, ...]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0] is None:
            return ()
        return tuple(v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup(dsn: str, dest: Path | str, timeout: float = 3600) -> BackupInfo:
    """A full logical backup (pg_dump custom format) of the DSN's database to `dest`; never overwrites."""
    dest = Path(dest)
    if dest.exists():
        raise DbOpsError(f"backup: {dest} exists; backups are never overwritten")
    dest.parent.mkdir(parents=True, exist_ok=True)
    versions = applied_versions(dsn)
    partial = dest.with_name(dest.name + ".partial")
    _run("backup", [pg_tool("pg_dump"), "--format=custom", "--no-password", f"--file={partial}", f"--dbname={dsn}"], timeout)
    partial.rename(dest)  # only a complete dump ever has the final name
    info = BackupInfo(dest, _sha256(dest), dest.stat().st_size, _dbname(dsn), versions)
    info.manifest.write_text(json.dumps({"sha256": info.sha256, "sizeBytes": info.size_bytes,
                                         "database": info.database, "versions": list(versions)}, indent=2) + "\n")
    verify(info)
    return info


def verify(info: BackupInfo) -> None:
    """The file is the one recorded and pg_restore can read its table of contents."""
    if not info.path.is_file() or _sha256(info.path) != info.sha256:
        raise DbOpsError(f"verify: {info.path} is missing or changed since the backup (sha256 differs)")
    _run("verify", [pg_tool("pg_restore"), "--list", str(info.path)], 300)


def restore(dsn: str, info: BackupInfo, *, safety_dir: Path | str | None = None, maintenance_db: str = "postgres",
            timeout: float = 3600) -> RestoreResult:
    """Replace the DSN's database by the backup: verify it, save the current database to `safety_dir`
    (default: beside the backup), recreate the database empty and pg_restore into it in one transaction.
    Objects created after the backup are gone afterwards, as with `gcloud sql backups restore`."""
    import psycopg
    from psycopg import sql

    verify(info)
    name = _dbname(dsn)
    if name == maintenance_db:
        raise DbOpsError(f"restore: cannot replace the maintenance database {maintenance_db!r}; use a database of its own")
    safety_dir = Path(safety_dir) if safety_dir is not None else info.path.parent
    safety = backup(dsn, safety_dir / f"{name}-before-restore-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.dump", timeout)
    with psycopg.connect(_with_dbname(dsn, maintenance_db), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    _run("restore", [pg_tool("pg_restore"), "--exit-on-error", "--single-transaction", "--no-password",
                     f"--dbname={dsn}", str(info.path)], timeout)
    return RestoreResult(info, safety, applied_versions(dsn))


def rollback(dsn: str, directory: Path | str, to: str, *, force: bool = False, log=print,
             timeouts: migrate.Timeouts = migrate.Timeouts()) -> list[str]:
    """Migrations back to version `to` (required); refused if rows would be lost unless `force`."""
    return migrate.down(dsn, directory, to, log=log, force=force, timeouts=timeouts)


def main(argv: list[str] | None = None) -> int:
    """python -m infra.dbops backup FILE | restore FILE | rollback --to VERSION [--force]  (--dsn or DB_*/PG*)"""
    p = argparse.ArgumentParser(prog="python -m infra.dbops", description="Seed 001's database rollback, step by step")
    p.add_argument("command", choices=("backup", "restore", "rollback"))
    p.add_argument("file", nargs="?", help="backup/restore: the dump file (its manifest is FILE.json)")
    p.add_argument("--dsn", default=None, help="libpq connection string; default from DB_* / PG* variables")
    p.add_argument("--dir", default="migrations", help="rollback: the migrations directory")
    p.add_argument("--to", default=None, help="rollback: keep migrations up to this version (000: none)")
    p.add_argument("--force", action="store_true", help="rollback: even if rows would be lost")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return migrate.EXIT_USAGE if e.code else migrate.EXIT_OK
    dsn = args.dsn if args.dsn is not None else migrate.conninfo_from_env()
    if args.command in ("backup", "restore") and not args.file:
        print(f"error: {args.command} needs FILE", file=sys.stderr)
        return migrate.EXIT_USAGE
    try:
        if args.command == "backup":
            info = backup(dsn, args.file)
            print(f"backup {info.path} ({info.size_bytes} bytes, sha256 {info.sha256}, migrations {', '.join(info.versions) or 'none'})")
        elif args.command == "restore":
            result = restore(dsn, BackupInfo.load(args.file))
            print(f"restored {result.backup.path}; the replaced database is saved in {result.safety_backup.path}; "
                  f"migrations {', '.join(result.versions) or 'none'}")
        else:
            done = rollback(dsn, args.dir, args.to, force=args.force)
            print(f"{len(done)} migration(s) reverted")
    except migrate.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return migrate.EXIT_USAGE
    except migrate.Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return migrate.EXIT_REFUSED
    except Exception as e:  # DbOpsError, MigrationError, connection errors: one line
        print(f"error: {e}".rstrip(), file=sys.stderr)
        return migrate.EXIT_FAILED
    return migrate.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["BackupInfo", "DbOpsError", "RestoreResult", "applied_versions", "backup", "pg_tool", "restore",
           "rollback", "verify"]
