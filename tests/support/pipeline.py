"""Run `meltano run tap-ashby <target>` against an in-process emulator, one isolated project.

Everything a test needs to drive the real Meltano pipeline and look at what it left behind:

- ``Pipeline``: builds the environment of one isolated pipeline and runs ``meltano`` in the repo
  (cwd = the repository, so ``pip_url: -e .`` and the installed plugin venvs are used).
  Isolation comes from environment variables only:
  ``MELTANO_STATE_BACKEND_URI`` (a state directory of its own), ``--state-id-suffix`` (a state id
  of its own) and ``MELTANO_SYS_DIR_ROOT``: a private ``.meltano`` whose ``extractors`` and
  ``loaders`` are symlinks to the repo's installed plugin venvs. The private ``.meltano`` matters
  because Meltano writes ``run/tap-ashby/tap.properties.json`` (the catalog, with the selection
  applied) and ``run/tap-ashby/state.json`` under fixed names: two ``meltano run`` at once in
  one ``.meltano`` (e.g. ``make demo`` next to the tests) would read each other's catalog/state.
- Stream selection is passed with ``TAP_ASHBY__SELECT`` (Meltano's environment variable for the
  extractor's ``select`` extra, a JSON list of ``<stream>.*`` patterns); it needs no Hub.
- ``DuckDBWarehouse`` / ``PostgresWarehouse``: the target's settings as environment variables,
  and reading the loaded rows back by Singer property name (DuckDB lower-cases column names,
  PostgreSQL keeps their case).
- ``RequestSpy``: records the JSON body of every API call the emulator answers, so a test can
  see which calls carried a ``syncToken``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
from ashby_emulator import Emulator

from tap_ashby.endpoints import ENDPOINTS

from .postgres import PostgresServer, query

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".venv" / "bin" / "meltano"
PLUGIN_DIRS = ("extractors", "loaders")
SCHEMA = "ashby"
ENVIRONMENT = "dev"  # default_environment of meltano.yml
# Inherited variables that could change what the pipeline does: dropped from the environment.
FOREIGN_PREFIXES = ("MELTANO_", "TAP_ASHBY", "TARGET_DUCKDB", "TARGET_POSTGRES")


def b64(text: str) -> str:
    """Unpadded base64, as it would appear inside a longer base64 string or a header."""
    return base64.b64encode(text.encode()).decode().rstrip("=")


def secret_forms(key: str) -> list[str]:
    """The API key as it may leak: plain, and base64 (the Basic header's ``key:`` and ``key``)."""
    return [key, b64(f"{key}:"), b64(key)]


def select_patterns(streams: Iterable[str]) -> str:
    """``TAP_ASHBY__SELECT`` value selecting exactly ``streams`` (all their properties)."""
    return json.dumps([f"{s}.*" for s in sorted(streams)])


# -- meltano --------------------------------------------------------------------------------
@dataclass
class MeltanoRun:
    """One finished ``meltano`` command."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> MeltanoRun:
        """Raise with the end of the log unless the command succeeded."""
        if self.returncode != 0:
            raise AssertionError(
                f"meltano {' '.join(self.args)} exited {self.returncode} after "
                f"{self.seconds:.1f}s:\n{self.stderr[-6000:]}\n{self.stdout[-2000:]}"
            )
        return self

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def require_installed_plugins(target: str) -> None:
    """Fail loudly (never skip) when the Meltano plugins are not installed."""
    missing = [
        str(p.relative_to(ROOT))
        for p in (
            MELTANO,
            ROOT / ".meltano" / "extractors" / "tap-ashby" / "venv" / "bin" / "tap-ashby",
            ROOT / ".meltano" / "loaders" / target / "venv" / "bin" / target,
        )
        if not p.exists()
    ]
    if missing:
        raise AssertionError(f"missing {', '.join(missing)}: run `make install` first")


class Warehouse(Protocol):
    """Where a target loads, and how to read it back."""

    target: str

    def env(self) -> dict[str, str]: ...

    def tables(self) -> set[str]: ...

    def rows(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]: ...


@dataclass
class Pipeline:
    """One isolated ``tap-ashby -> target`` pipeline (own state, own .meltano run dir)."""

    emu: Emulator
    warehouse: Warehouse
    workdir: Path
    streams: Iterable[str] | None
    extra_env: dict[str, str] = field(default_factory=dict)
    # False: the ledger goes to workdir/ledger; True: the tap's default under Meltano
    # (<project>/.meltano/tap-ashby/ledger), removed again by ``remove_project_ledgers``
    ledger_in_project: bool = False
    suffix: str = field(default_factory=lambda: f"e2e{uuid.uuid4().hex[:10]}")
    runs: list[MeltanoRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        require_installed_plugins(self.warehouse.target)
        self.state_dir = self.workdir / "state"
        self.sys_dir = self.workdir / "dot-meltano"
        self.sys_dir.mkdir(parents=True, exist_ok=True)
        for name in PLUGIN_DIRS:
            link = self.sys_dir / name
            if not link.exists():
                link.symlink_to(ROOT / ".meltano" / name, target_is_directory=True)

    @property
    def state_id(self) -> str:
        return f"{ENVIRONMENT}:tap-ashby-to-{self.warehouse.target}:{self.suffix}"

    @property
    def state_file(self) -> Path:
        """Where the file state backend keeps this pipeline's state."""
        return self.state_dir / self.state_id / "state.json"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
        env.update(
            {
                "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                "MELTANO_HUB_URL": "http://127.0.0.1:9",  # any Hub lookup fails at once
                "MELTANO_SYS_DIR_ROOT": str(self.sys_dir),
                "MELTANO_STATE_BACKEND_URI": self.state_dir.as_uri(),
                "TAP_ASHBY_API_KEY": self.emu.key,
                "TAP_ASHBY_BASE_URL": self.emu.url,
                "TAP_ASHBY_REQUESTS_PER_MINUTE": "0",
                # exact call counts: the rolling child refresh is tested on its own
                # (tests/test_long_syncs.py); a scenario can turn it back on in extra_env
                "TAP_ASHBY_CHILD_REFRESH_EVERY_N_RUNS": "0",
                **(
                    {}
                    if self.ledger_in_project
                    else {"TAP_ASHBY_LEDGER_URI": str(self.workdir / "ledger")}
                ),
                **self.warehouse.env(),
                **self.extra_env,
            }
        )
        if self.streams is not None:
            env["TAP_ASHBY__SELECT"] = select_patterns(self.streams)
        return env

    def meltano(self, *args: str, timeout: float = 300) -> MeltanoRun:
        """Run one ``meltano`` command in the repository with this pipeline's environment."""
        started = time.monotonic()
        proc = subprocess.run(
            [str(MELTANO), *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return MeltanoRun(
            list(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started
        )

    def run(self, *options: str, force: bool = False) -> MeltanoRun:
        """``meltano [options] run tap-ashby <target>`` (no auto-install); must succeed.

        ``force`` runs even though Meltano still holds the job lock of a killed run.
        """
        flags = ["--force"] if force else []
        result = self.meltano(
            *options,
            "run",
            "--no-install",
            *flags,
            "--state-id-suffix",
            self.suffix,
            "tap-ashby",
            self.warehouse.target,
        ).check()
        self.runs.append(result)
        return result

    def stored_state(self) -> dict[str, Any]:
        """The state file the file backend wrote (``{"completed": ..., "partial": ...}``)."""
        assert self.state_file.is_file(), (
            f"no state at {self.state_file}; state dir holds "
            f"{sorted(str(p.relative_to(self.state_dir)) for p in self.state_dir.rglob('*'))}"
        )
        return json.loads(self.state_file.read_text())

    def meltano_state(self) -> dict[str, Any]:
        """The state as ``meltano state get <state id>`` reports it."""
        got = self.meltano("state", "get", self.state_id).check()
        return json.loads(got.stdout)

    def project_ledger_dirs(self) -> list[Path]:
        """This pipeline's ledger lineages in the project's default ledger location."""
        bookmarks = self.stored_state()["completed"]["singer_state"]["bookmarks"]
        root = ROOT / ".meltano" / "tap-ashby" / "ledger"
        return [
            root / stream / mark["ledger"]["lineage"]
            for stream, mark in bookmarks.items()
            if "ledger" in mark
        ]

    def private_files(self) -> list[Path]:
        """Files Meltano wrote into the private ``.meltano`` (run dir, logs, system db)."""
        return [
            p
            for p in self.sys_dir.rglob("*")
            if p.is_file() and not any(p.is_relative_to(self.sys_dir / d) for d in PLUGIN_DIRS)
        ]


# -- warehouses -----------------------------------------------------------------------------
def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class DuckDBWarehouse:
    """target-duckdb writing one file. Its stem must be a plain identifier, not the schema."""

    path: Path
    target: str = "target-duckdb"

    def env(self) -> dict[str, str]:
        return {"TARGET_DUCKDB_PATH": str(self.path)}

    def _sql(self, sql: str) -> list[tuple[Any, ...]]:
        # Open and close per query: the target needs the file's write lock between runs.
        with duckdb.connect(str(self.path), read_only=True) as conn:
            return conn.execute(sql).fetchall()

    def tables(self) -> set[str]:
        rows = self._sql(
            f"select table_name from information_schema.tables where table_schema = '{SCHEMA}'"
        )
        return {r[0] for r in rows}

    def rows(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        cols = ", ".join(_quoted(c.lower()) for c in columns)  # DuckDB lower-cases names
        return [
            dict(zip(columns, r, strict=True))
            for r in self._sql(f"select {cols} from {SCHEMA}.{_quoted(table)}")
        ]


@dataclass
class PostgresWarehouse:
    """target-postgres into a throw-away server; column names keep their case."""

    server: PostgresServer
    target: str = "target-postgres"

    def env(self) -> dict[str, str]:
        return {
            "TARGET_POSTGRES_HOST": self.server.host,
            "TARGET_POSTGRES_PORT": str(self.server.port),
            "TARGET_POSTGRES_USER": self.server.user,
            "TARGET_POSTGRES_DATABASE": self.server.database,
            # target-postgres 0.8.1 asserts that a password is set; the server trusts any.
            "TARGET_POSTGRES_PASSWORD": "unused",
        }

    def tables(self) -> set[str]:
        rows = query(
            self.server,
            f"select table_name from information_schema.tables where table_schema = '{SCHEMA}'",
        )
        return {r[0] for r in rows}

    def rows(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        cols = ", ".join(_quoted(c) for c in columns)
        return [
            dict(zip(columns, r, strict=True))
            for r in query(self.server, f"select {cols} from {SCHEMA}.{_quoted(table)}")
        ]


# -- what the warehouse holds, next to what the emulator holds ------------------------------
EXTRACTED_AT = "_sdc_extracted_at"


def key_columns(stream: str) -> tuple[str, ...]:
    return ENDPOINTS[stream].primary_keys


@dataclass
class TableSnapshot:
    """The rows of one stream's table: their keys, extraction times and a few columns."""

    rows: list[dict[str, Any]]
    keys: tuple[str, ...]

    def key_tuples(self) -> list[tuple[Any, ...]]:
        return [tuple(r[k] for k in self.keys) for r in self.rows]

    def ids(self) -> set[Any]:
        return {r[self.keys[-1]] for r in self.rows}

    def by_id(self) -> dict[Any, dict[str, Any]]:
        return {r[self.keys[-1]]: r for r in self.rows}

    def max_extracted_at(self) -> datetime:
        return max(r[EXTRACTED_AT] for r in self.rows)

    def extracted_after(self, moment: datetime) -> set[Any]:
        """Ids of rows (re)loaded after ``moment``."""
        return {r[self.keys[-1]] for r in self.rows if r[EXTRACTED_AT] > moment}


def snapshot(
    warehouse: Warehouse, streams: Iterable[str], extra: dict[str, Sequence[str]] | None = None
) -> dict[str, TableSnapshot]:
    """Read every stream's table: keys + ``_sdc_extracted_at`` + ``extra[stream]`` columns."""
    out = {}
    for stream in streams:
        keys = key_columns(stream)
        cols = [*keys, EXTRACTED_AT, *((extra or {}).get(stream, ()))]
        out[stream] = TableSnapshot(warehouse.rows(stream, cols), keys)
    return out


def expected_keys(emu: Emulator, stream: str, ids: set[str]) -> set[tuple[str, ...]]:
    """Full primary keys the emulator's rows should have (child keys lead with the parent id)."""
    keys = key_columns(stream)
    if len(keys) == 1:
        return {(i,) for i in ids}
    parent = ENDPOINTS[stream].parent
    assert parent is not None and len(keys) == 2, stream
    table, parents = emu.org.tables[stream], emu.org.tables[parent.stream]
    out = set()
    for index in table.live_indices():
        record_id = table.id_of(index)
        if record_id in ids:
            out.add((parents.id_of(table.parent_index(index)), record_id))
    return out


# -- the emulator side --------------------------------------------------------------------
@dataclass
class Call:
    path: str
    body: dict[str, Any]


class RequestSpy:
    """Records every API call's path and JSON body (wraps ``emu.api.call``; HTTP unchanged)."""

    def __init__(self, emu: Emulator) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        inner = emu.api.call

        def call(path: str, authorization: str | None, body: bytes) -> tuple[int, dict]:
            try:
                parsed = json.loads(body or b"{}")
            except ValueError:
                parsed = {"<unparsable>": True}
            with self._lock:
                self.calls.append(Call(path, parsed if isinstance(parsed, dict) else {}))
            return inner(path, authorization, body)

        emu.api.call = call  # type: ignore[method-assign]

    def take(self) -> list[Call]:
        """The calls since the last ``take`` (and forget them)."""
        with self._lock:
            calls, self.calls = self.calls, []
        return calls


def bodies(calls: list[Call], path: str) -> list[dict[str, Any]]:
    return [c.body for c in calls if c.path == path]
