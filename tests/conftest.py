"""Shared fixtures: an emulator on a free loopback port, and running the tap as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ashby_emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
TAP = [sys.executable, "-m", "tap_ashby.tap"]
SECRET_KEY = "ashby-secret-KEY-0123456789"


@pytest.fixture(scope="session", autouse=True)
def _ledgers_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tap processes keep their ledgers in the default location, moved under pytest's
    temporary directory (never the developer's ~/.local/share)."""
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if old is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = old


@pytest.fixture
def emulator() -> Any:
    """A small seeded org served over real HTTP; stopped after the test."""
    with Emulator(candidates=30, seed=7, key=SECRET_KEY) as emu:
        yield emu


def tap_config(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    """Tap config pointing at ``emu``: no request budget, fast retries, and no rolling
    child refresh (tests count calls exactly; the refresh has tests of its own)."""
    config = {
        "api_key": emu.key,
        "base_url": emu.url,
        "requests_per_minute": 0,
        "retry_base_delay_ms": 10,
        "max_concurrency": 4,
        "child_refresh_every_n_runs": 0,
    }
    config.update(overrides)
    return config


@dataclass
class TapRun:
    """What one tap process did: its messages, exit code and logs."""

    returncode: int
    stdout: str
    stderr: str
    records: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    schemas: dict[str, dict] = field(default_factory=dict)
    states: list[dict] = field(default_factory=list)

    @property
    def state(self) -> dict:
        """The last STATE emitted (what a target would store)."""
        return self.states[-1] if self.states else {}

    def ids(self, stream: str, key: str = "id") -> set[str]:
        return {r[key] for r in self.records.get(stream, [])}

    def bookmarks(self) -> dict[str, Any]:
        return self.state.get("bookmarks", {})


def run_tap(
    tmp_path: Path,
    config: dict[str, Any],
    *,
    state: dict | None = None,
    select: set[str] | str | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> TapRun:
    """Run ``tap-ashby`` as a process against the emulator and parse its output.

    ``select``: None = the tap's default selection, ``"all"`` = every stream, or a set of
    stream names.
    """
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    cmd = [*TAP, "--config", str(cfg)]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        cmd += ["--state", str(tmp_path / "state.json")]
    if select is not None:
        cmd += ["--catalog", str(write_catalog(tmp_path, config, select))]
    cmd += args or []
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    run = TapRun(proc.returncode, proc.stdout, proc.stderr)
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg["type"] == "RECORD":
            run.records[msg["stream"]].append(msg["record"])
        elif msg["type"] == "SCHEMA":
            run.schemas[msg["stream"]] = msg
        elif msg["type"] == "STATE":
            run.states.append(msg["value"])
    return run


def discover(tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The tap's --discover catalog."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    out = subprocess.run(
        [*TAP, "--config", str(cfg), "--discover"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def write_catalog(tmp_path: Path, config: dict[str, Any], select: set[str] | str) -> Path:
    """A catalog file selecting exactly ``select`` (or every stream for ``"all"``)."""
    catalog = discover(tmp_path, config)
    for entry in catalog["streams"]:
        chosen = select == "all" or entry["tap_stream_id"] in select
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = chosen
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def stable_state(state: dict) -> dict:
    """State without what differs between equal runs: ledger file names, token times."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v) for k, v in value.items() if k not in ("lineage", "gen", "token_since")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(state)
