"""A real PostgreSQL 15 server for tests (Debian's postgresql package; `make test` installs it).

`postgres`: one server per test session on 127.0.0.1 (a free port, a temporary directory, stopped at
teardown), as a libpq DSN. `db`: a fresh database of its own on it per test.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run the server tools as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
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


@pytest.fixture
def db(postgres) -> str:
    """A fresh database of its own on the module's server, so each test starts empty."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
