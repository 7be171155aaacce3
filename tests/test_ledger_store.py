"""The ledger lives outside Singer state: small state, crash-safe generations, lost ledgers.

Over real HTTP against the emulator, the tap as a process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ashby_emulator import Emulator
from conftest import ROOT, TapRun, run_tap, tap_config
from expected import expected_ids
from test_deletes import apply, live_ids

STREAMS = {"candidates", "applications", "candidate_notes", "application_history", "departments"}

# Runs the tap, but SIGKILLs it right after its Nth ledger generation was published: the
# generation is in the store, the STATE naming it never left the process.
KILL_AFTER_PUBLISH = (
    "import os, runpy, signal, sys\n"
    "import tap_ashby.ledger as ledger\n"
    "limit = int(os.environ['KILL_AFTER_PUBLISH'])\n"
    "original = ledger.LedgerStore.publish\n"
    "count = [0]\n"
    "def publish(self, *args, **kwargs):\n"
    "    ref = original(self, *args, **kwargs)\n"
    "    count[0] += 1\n"
    "    if count[0] >= limit:\n"
    "        sys.stdout.flush()\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return ref\n"
    "ledger.LedgerStore.publish = publish\n"
    "sys.argv[0] = 'tap-ashby'\n"
    "runpy.run_module('tap_ashby.tap', run_name='__main__')\n"
)


def largest_state_line(run: TapRun) -> int:
    return max(len(line) for line in run.stdout.splitlines() if '"type":"STATE"' in line)


def ledger_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ledger"))


def test_state_holds_a_reference_not_the_keys(tmp_path: Path) -> None:
    sizes = {}
    for candidates in (50, 1500):
        with Emulator(candidates=candidates, seed=3) as emu:
            store = tmp_path / f"ledger-{candidates}"
            run = run_tap(tmp_path, tap_config(emu, ledger_uri=str(store)), select=STREAMS)
            assert run.returncode == 0, run.stderr[-2000:]
            sizes[candidates] = largest_state_line(run)
            ref = run.bookmarks()["candidates"]["ledger"]
            assert set(ref) == {"lineage", "gen", "rows", "sha256", "scope"}
            assert ref["rows"] == len(expected_ids(emu, "candidates"))
            # one generation per ledgered stream, 17 bytes per UUID key plus a small header
            gens = ledger_files(store / "candidates")
            assert len(gens) == 1
            assert gens[0].stat().st_size <= 17 * ref["rows"] + 200
    # 30x the rows, (almost) the same state: only digits of row counts differ
    assert abs(sizes[1500] - sizes[50]) < 100, sizes


def test_ledger_in_an_object_store_url(tmp_path: Path, emulator: Emulator) -> None:
    uri = (tmp_path / "bucket").as_uri()  # file://, as s3:// or gs:// would be given
    config = tap_config(emulator, ledger_uri=uri)
    first = run_tap(tmp_path, config, select=STREAMS)
    assert first.returncode == 0, first.stderr[-2000:]
    emulator.org.delete("candidates", emulator.org.live_ids("candidates")[0])
    second = run_tap(tmp_path, {**config, "reconcile_now": True}, state=first.state, select=STREAMS)
    assert second.returncode == 0, second.stderr[-2000:]
    assert sum(1 for r in second.records["candidates"] if r.get("_sdc_deleted_at")) == 1
    assert ledger_files(tmp_path / "bucket")


def test_kill_after_a_generation_is_written_then_rerun_is_exact(tmp_path: Path) -> None:
    with Emulator(candidates=40, seed=5) as emu:
        config = tap_config(emu, ledger_uri=str(tmp_path / "ledger"), reconcile_every_n_runs=1)
        (tmp_path / "config.json").write_text(json.dumps(config))
        warehouse: dict = {}
        first = run_tap(tmp_path, config, select=STREAMS)
        assert first.returncode == 0, first.stderr[-2000:]
        apply(warehouse, first)
        state = first.state
        org = emu.org
        for kill_at in (1, 2, 3, 5):
            cands = org.live_ids("candidates")
            org.delete("candidates", cands[kill_at])
            org.merge_candidates(cands[kill_at + 1], cands[kill_at + 2])
            org.update("candidates", cands[kill_at + 3], {"name": f"kill {kill_at}"})
            (tmp_path / "state.json").write_text(json.dumps(state))
            killed = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    KILL_AFTER_PUBLISH,
                    "--config",
                    str(tmp_path / "config.json"),
                    "--state",
                    str(tmp_path / "state.json"),
                    "--catalog",
                    str(tmp_path / "catalog.json"),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
                check=False,
                env={**os.environ, "KILL_AFTER_PUBLISH": str(kill_at)},
            )
            assert killed.returncode == -9, killed.stderr[-2000:]
            # what a target loaded from the killed run, and the last state it confirmed
            partial = TapRun(killed.returncode, killed.stdout, killed.stderr)
            for line in killed.stdout.splitlines():
                message = json.loads(line)
                if message["type"] == "RECORD":
                    partial.records[message["stream"]].append(message["record"])
                elif message["type"] == "STATE":
                    partial.states.append(message["value"])
            apply(warehouse, partial)
            state = partial.state or state
            rerun = run_tap(tmp_path, config, state=state, select=STREAMS)
            assert rerun.returncode == 0, rerun.stderr[-2000:]
            assert "unavailable" not in rerun.stderr  # the old generation was kept
            apply(warehouse, rerun)
            state = rerun.state
            for stream in STREAMS:
                assert live_ids(warehouse, stream) == expected_ids(emu, stream), (kill_at, stream)
        # pruning keeps the committed generation, its base, and at most one generation of a
        # killed run beside each: its STATE never left, but it cannot be told apart from the
        # output of an overlapping run, whose STATE may be the next run's (see store.py)
        for stream_dir in (tmp_path / "ledger").iterdir():
            for lineage in stream_dir.iterdir():
                assert len(list(lineage.glob("*.ledger"))) <= 4, lineage


def test_a_lost_ledger_warns_and_deletes_nothing(tmp_path: Path, emulator: Emulator) -> None:
    store = tmp_path / "ledger"
    config = tap_config(emulator, ledger_uri=str(store))
    first = run_tap(tmp_path, config, select=STREAMS)
    assert first.returncode == 0, first.stderr[-2000:]
    for path in ledger_files(store):
        path.unlink()
    emulator.org.delete("candidates", emulator.org.live_ids("candidates")[0])
    second = run_tap(tmp_path, config, state=first.state, select=STREAMS)
    assert second.returncode == 0, second.stderr[-2000:]
    warnings = [
        line for line in second.stderr.splitlines() if "ledger" in line and "unavailable" in line
    ]
    assert len(warnings) == len(STREAMS), "one warning per ledgered stream"
    assert not any(r.get("_sdc_deleted_at") for recs in second.records.values() for r in recs)
    # rebuilt complete, children of unchanged parents included (one call per parent)
    for stream in STREAMS:
        assert second.bookmarks()[stream]["ledger"]["rows"] == len(
            expected_ids(emulator, stream)
        ), stream
    # rebuilt: the next reconcile finds the deletion again from the new generation
    emulator.org.delete("candidates", emulator.org.live_ids("candidates")[0])
    third = run_tap(tmp_path, {**config, "reconcile_now": True}, state=second.state, select=STREAMS)
    assert third.returncode == 0 and "unavailable" not in third.stderr
    assert sum(1 for r in third.records["candidates"] if r.get("_sdc_deleted_at")) == 1


def test_a_foreign_ledger_warns_and_deletes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "ledger"
    with Emulator(candidates=20, seed=1) as org_a:
        first = run_tap(tmp_path, tap_config(org_a, ledger_uri=str(store)), select=STREAMS)
        assert first.returncode == 0, first.stderr[-2000:]
    with Emulator(candidates=20, seed=2) as org_b:  # another org behind another base_url
        second = run_tap(
            tmp_path,
            tap_config(org_b, ledger_uri=str(store), reconcile_now=True),
            state=first.state,
            select=STREAMS,
        )
    assert second.returncode == 0, second.stderr[-2000:]
    assert "other settings" in second.stderr
    assert not any(r.get("_sdc_deleted_at") for recs in second.records.values() for r in recs)
