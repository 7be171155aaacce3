"""A throw-away PostgreSQL server for tests, built from Debian's `postgresql` package.

The server runs from a fresh temporary directory, listens on a free TCP port on 127.0.0.1,
trusts every connection (no password) and has a database named `ashby`. PostgreSQL refuses to
run as root, so when the tests run as root every server command goes through
`runuser -u postgres --`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

PG_LIB = Path("/usr/lib/postgresql")
INSTALL_HINT = "run `apt-get install -y postgresql`"
SUPERUSER = "postgres"
DATABASE = "ashby"


@dataclass(frozen=True)
class PostgresServer:
    """Connection details of a running server (any password is accepted)."""

    host: str
    port: int
    user: str
    database: str
    dsn: str


def find_bin_dir() -> Path:
    """Return the newest `/usr/lib/postgresql/<version>/bin` that has initdb and pg_ctl."""
    candidates = [
        d for d in PG_LIB.glob("*/bin") if (d / "initdb").is_file() and (d / "pg_ctl").is_file()
    ]
    if not candidates:
        raise RuntimeError(f"PostgreSQL binaries not found in {PG_LIB}/*/bin: {INSTALL_HINT}")

    def version(d: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", d.parent.name))

    return max(candidates, key=version)


def _free_port() -> int:
    """Ask the kernel for a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(cmd: list[str], as_root: bool) -> list[str]:
    """Prefix a command with `runuser -u postgres --` when we are root."""
    return ["runuser", "-u", SUPERUSER, "--", *cmd] if as_root else cmd


def _run(cmd: list[str], as_root: bool, cwd: Path) -> None:
    """Run a server command (as the postgres OS user when we are root); raise on failure."""
    cmd = _as_postgres(cmd, as_root)
    # cwd: the postgres user may not be allowed into the caller's working directory.
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL server, yield its details, then stop it and delete its files."""
    bin_dir = find_bin_dir()
    as_root = os.geteuid() == 0
    # As root, use /tmp: the postgres user must be able to reach the directory.
    workdir = Path(tempfile.mkdtemp(prefix="ashby-pg-", dir="/tmp" if as_root else None))
    data, log = workdir / "data", workdir / "server.log"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = False  # True once `pg_ctl start` was tried: from then on, always stop
    try:
        if as_root:
            shutil.chown(workdir, user=SUPERUSER, group=SUPERUSER)
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust"]
        _run([*initdb, "-E", "UTF8", "--no-locale"], as_root, workdir)
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = True
        try:
            start = [*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
            _run(start, as_root, workdir)
        except RuntimeError as exc:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{server_log}") from exc
        admin_dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"create database {DATABASE}")
        yield PostgresServer(
            host="127.0.0.1",
            port=port,
            user=SUPERUSER,
            database=DATABASE,
            dsn=f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}",
        )
    finally:
        if started:
            stop = _as_postgres([*pg_ctl, "-m", "fast", "stop"], as_root)
            subprocess.run(stop, capture_output=True, check=False, cwd=workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def query(server: PostgresServer, sql: str) -> list[tuple[Any, ...]]:
    """Run one SQL statement on the server's database; return its rows ([] if it has none)."""
    with psycopg.connect(server.dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)  # type: ignore[arg-type]  # test-only SQL written by the tests
        return cur.fetchall() if cur.description else []
