"""Lossless under faults, crashes and long runs: the warehouse always ends equal to Ashby.

Through `meltano run` into DuckDB: a fault storm over a 100k-record org, and SIGKILL of the
whole pipeline at many points followed by a rerun. At tap level: a property test over random
changes and runs, and a soak of 50 incremental runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ashby_emulator import Emulator
from conftest import SECRET_KEY, run_tap, tap_config
from expected import expected_ids
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support.pipeline import MELTANO, ROOT, DuckDBWarehouse, Pipeline, secret_forms
from test_deletes import apply, live_ids

from tap_ashby.endpoints import ENDPOINTS

pytestmark = pytest.mark.slow
KEY = "reliability-secret-key-42"


def assert_warehouse_equals_source(
    warehouse: DuckDBWarehouse, emu: Emulator, streams: tuple[str, ...]
) -> None:
    for stream in streams:
        keys = ENDPOINTS[stream].primary_keys
        rows = warehouse.rows(stream, list(keys))
        ids = [r[keys[-1]] for r in rows]
        assert len(ids) == len(set(ids)), f"duplicate keys in {stream}"
        assert set(ids) == expected_ids(emu, stream), stream
    names = {r["id"]: r["name"] for r in warehouse.rows("candidates", ["id", "name"])}
    cands = emu.org.tables["candidates"]
    assert names == {cands.id_of(i): cands.get(i)["name"] for i in cands.live_indices()}


def assert_no_secret(texts: list[str], key: str) -> None:
    for text in texts:
        for form in secret_forms(key):
            assert form not in text


# -- fault storm ---------------------------------------------------------------------------
def test_fault_storm_over_100k_records_loses_nothing(tmp_path: Path) -> None:
    streams = ("candidates", "applications", "departments", "brands")
    emu = Emulator(candidates=50_000, seed=21, key=KEY).start()
    try:
        emu.faults.update(
            rate_limit=0.2,
            retry_after=0.05,
            server_error=0.05,
            drop=0.02,
            slow=0.02,
            slow_seconds=0.2,
            truncated=0.01,
            seed=21,
        )
        warehouse = DuckDBWarehouse(tmp_path / "storm.duckdb")
        pipeline = Pipeline(
            emu,
            warehouse,
            tmp_path,
            streams,
            extra_env={
                "TAP_ASHBY_MAX_RETRIES": "15",
                "TAP_ASHBY_RETRY_BASE_DELAY_MS": "20",
                "TAP_ASHBY_RECONCILE_EVERY_N_RUNS": "0",
            },
        )
        full = pipeline.run()
        assert_warehouse_equals_source(warehouse, emu, streams)
        rng = random.Random(3)
        for cid in emu.org.random_ids("candidates", 500, rng):  # 1%
            emu.org.update("candidates", cid)
        for aid in emu.org.random_ids("applications", 200, rng):
            emu.org.archive("applications", aid)
        emu.org.create("candidates")
        incremental = pipeline.run()
        assert_warehouse_equals_source(warehouse, emu, streams)
        faults = emu.stats.snapshot()["faults"]
        assert faults.get("rate_limit", 0) > 100 and faults.get("drop", 0) > 5
        print(
            f"storm: {sum(faults.values())} faults injected {faults}; records "
            f"{sum(len(expected_ids(emu, s)) for s in streams)}; full run "
            f"{full.seconds:.0f}s, incremental {incremental.seconds:.0f}s"
        )
        assert_no_secret([full.output, incremental.output, pipeline.state_file.read_text()], KEY)
    finally:
        emu.stop()


# -- crash and rerun -------------------------------------------------------------------------
def run_and_kill(pipeline: Pipeline, emu: Emulator, after_requests: int) -> int:
    """Start `meltano run` and SIGKILL its whole process group after N API requests."""
    cmd = [
        str(MELTANO),
        "run",
        "--no-install",
        "--state-id-suffix",
        pipeline.suffix,
        "tap-ashby",
        pipeline.warehouse.target,
    ]
    start = emu.stats.snapshot()["total"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=pipeline.env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if emu.stats.snapshot()["total"] - start >= after_requests:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(30)
    return proc.returncode


def assert_bookmark_not_ahead(
    pipeline: Pipeline, warehouse: DuckDBWarehouse, emu: Emulator
) -> None:
    """Every candidate the stored token claims (changed at or before it) is loaded as is."""
    if not pipeline.state_file.exists():
        return
    state = json.loads(pipeline.state_file.read_text())
    bookmark = state.get("completed", {}).get("singer_state", {}).get("bookmarks", {})
    token = bookmark.get("candidates", {}).get("sync_token")
    if not token:
        return
    seq = emu.api._open(token)["s"]
    names = {r["id"]: r["name"] for r in warehouse.rows("candidates", ["id", "name"])}
    table = emu.org.tables["candidates"]
    for i in table.live_indices():
        if table.changed.get(i, 0) <= seq:
            assert names.get(table.id_of(i)) == table.get(i)["name"], (
                "the stored syncToken is ahead of what was loaded"
            )


def test_sigkill_at_many_points_then_rerun_loses_nothing(tmp_path: Path) -> None:
    streams = ("candidates", "candidate_notes", "applications", "departments")
    emu = Emulator(candidates=120, seed=31, key=KEY).start()
    emu.faults.update(latency=0.004)  # a steady pace, so kill points land where aimed
    warehouse = DuckDBWarehouse(tmp_path / "crash.duckdb")
    pipeline = Pipeline(
        emu,
        warehouse,
        tmp_path,
        streams,
        extra_env={"TAP_ASHBY_RECONCILE_EVERY_N_RUNS": "1", "TAP_ASHBY_PAGE_SIZE": "20"},
    )
    rng = random.Random(8)
    try:
        # A clean run measures how many requests one run makes (about 270 here).
        emu.stats.reset()
        pipeline.run()
        per_run = emu.stats.snapshot()["total"]
        # first page, mid candidates, between streams, mid notes fan-out, late, last request
        points = [1, 3, 7, 12, 20, 45, per_run // 2, per_run - 30, per_run - 2, per_run]
        for n, point in enumerate(points):
            for cid in emu.org.random_ids("candidates", 4, rng):
                emu.org.update("candidates", cid, {"name": f"kill {n} {cid[-4:]}"})
            emu.org.create("candidates")
            if n % 3 == 0:
                emu.org.delete("candidates", emu.org.random_ids("candidates", 1, rng)[0])
            run_and_kill(pipeline, emu, point)
            assert_bookmark_not_ahead(pipeline, warehouse, emu)
            pipeline.run(force=True)  # Meltano keeps a killed run's job lock for a while
            assert_warehouse_equals_source(warehouse, emu, streams)
        print(f"crash: {len(points)} kill points {points}, {per_run} requests per run")
    finally:
        emu.stop()


# -- property test: random changes and runs --------------------------------------------------
OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["create", "update", "archive", "delete", "merge", "expire", "too_large", "run"]
        ),
        st.integers(min_value=0, max_value=10_000),
    ),
    min_size=3,
    max_size=12,
)
PROP_STREAMS = {"candidates", "candidate_notes", "applications", "departments"}


# No shrinking phase: it can take minutes; a failure still prints the operations it ran.
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(ops=OPS)
def test_any_sequence_of_changes_and_runs_keeps_warehouse_equal(tmp_path_factory, ops) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    with Emulator(candidates=15, seed=4, key=SECRET_KEY) as emu:
        config = tap_config(emu, reconcile_every_n_runs=1)
        warehouse: dict = {}
        state = None
        org = emu.org
        for op, pick in [*ops, ("run", 0)]:
            stream = ["candidates", "applications", "departments"][pick % 3]
            ids = org.live_ids(stream)
            if op == "create":
                org.create(stream)
            elif op == "update" and ids:
                org.update(stream, ids[pick % len(ids)])
            elif op == "archive" and ids:
                org.archive(stream, ids[pick % len(ids)])
            elif op == "delete" and len(ids) > 2:
                org.delete(stream, ids[pick % len(ids)])
            elif op == "merge":
                cands = org.live_ids("candidates")
                if len(cands) > 3:
                    keep = pick % len(cands)
                    org.merge_candidates(cands[keep], cands[(keep + 1) % len(cands)])
            elif op == "expire":
                org.advance_clock(emu.api.settings.sync_token_ttl_seconds + 1)
            elif op == "too_large":
                emu.api.settings.max_sync_changes = 1
            elif op == "run":
                run = run_tap(tmp, config, state=state, select=PROP_STREAMS)
                assert run.returncode == 0, run.stderr[-2000:]
                emu.api.settings.max_sync_changes = 100_000
                apply(warehouse, run)
                state = run.state
                for name in PROP_STREAMS:
                    assert live_ids(warehouse, name) == expected_ids(emu, name), (name, ops)


# -- soak -------------------------------------------------------------------------------------
RSS_WRAPPER = (
    "import atexit, resource, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write("
    "f'MAXRSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n'))\n"
    "sys.argv[0] = 'tap-ashby'\n"
    "runpy.run_module('tap_ashby.tap', run_name='__main__')\n"
)


def test_soak_fifty_incremental_runs_do_not_grow(tmp_path: Path) -> None:
    select = {"candidates", "candidate_notes", "applications", "departments"}
    with Emulator(candidates=200, seed=9, key=SECRET_KEY) as emu:
        config = tap_config(emu)
        (tmp_path / "config.json").write_text(json.dumps(config))
        first = run_tap(tmp_path, config, select=select)
        state = first.state
        catalog = tmp_path / "catalog.json"
        rng = random.Random(1)
        state_sizes, rss, threads = [], [], []
        baseline_threads = threading.active_count()
        for n in range(50):
            for cid in emu.org.random_ids("candidates", 5, rng):
                emu.org.update("candidates", cid)
            emu.org.create("candidates")
            (tmp_path / "state.json").write_text(json.dumps(state))
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    RSS_WRAPPER,
                    "--config",
                    str(tmp_path / "config.json"),
                    "--state",
                    str(tmp_path / "state.json"),
                    "--catalog",
                    str(catalog),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            states = [
                json.loads(line)["value"]
                for line in proc.stdout.splitlines()
                if line.startswith('{"type":"STATE"')
            ]
            state = states[-1]
            assert SECRET_KEY not in proc.stdout + proc.stderr, n
            state_sizes.append(len(json.dumps(state)))
            rss.append(int(proc.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0]))
            settle = time.monotonic() + 3  # connection threads end when the tap's sockets close
            while threading.active_count() > baseline_threads and time.monotonic() < settle:
                time.sleep(0.02)
            threads.append(threading.active_count())
        # state is a fixed set of tokens and ledger references: it does not grow with the
        # 50 new candidates (and their rows), nor with the run count
        assert max(state_sizes) - min(state_sizes) < 200
        assert max(rss[-10:]) < max(rss[:10]) * 1.15  # no memory creep across runs
        assert max(threads[-10:]) <= max(threads[:10])  # emulator connections are released
        # old ledger generations are pruned: at most the committed one and the newest
        lineages = {b["ledger"]["lineage"] for b in state["bookmarks"].values()}
        files = [
            p
            for p in Path(os.environ["XDG_DATA_HOME"]).rglob("*.ledger")
            if p.parent.name in lineages
        ]
        assert 0 < len(files) <= 2 * len(lineages)
        print(
            f"soak: 50 runs, state {min(state_sizes)}-{max(state_sizes)} bytes, "
            f"{len(files)} ledger files, max RSS {min(rss)}-{max(rss)} KB"
        )
