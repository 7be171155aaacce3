"""No false deletes, end to end: moves between parents, overlapping runs, a trailing slash.

Over real HTTP against the emulator, the tap as a process; ledgers on a directory, a
``file://`` URL and a real S3 API on loopback (moto).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ashby_emulator import Emulator
from conftest import ROOT, TAP, TapRun, run_tap, tap_config, write_catalog
from expected import expected_ids
from s3_server import new_bucket, s3_env  # noqa: F401 (a fixture)
from test_deletes import apply, live_ids


def deleted(run: TapRun, stream: str, key: str = "id") -> set[str]:
    return {r[key] for r in run.records.get(stream, []) if r.get("_sdc_deleted_at")}


def test_a_posting_moved_to_another_board_is_not_deleted(
    tmp_path: Path, emulator: Emulator
) -> None:
    select = {"job_boards", "job_postings"}
    config = tap_config(emulator)
    warehouse: dict = {}
    first = run_tap(tmp_path, config, select=select)
    assert first.returncode == 0, first.stderr[-2000:]
    apply(warehouse, first)
    org = emulator.org
    postings, boards = org.tables["job_postings"], org.tables["job_boards"]
    moved, erased = postings.id_of(0), postings.id_of(1)
    assert org.job_board_of(0) == 0
    org.move_posting(moved, boards.id_of(2))
    org.delete("job_postings", erased)
    second = run_tap(tmp_path, config, state=first.state, select=select)
    assert second.returncode == 0, second.stderr[-2000:]
    assert deleted(second, "job_postings") == {erased}  # the moved one is an update
    assert moved in {r["id"] for r in second.records["job_postings"]}
    apply(warehouse, second)
    assert live_ids(warehouse, "job_postings") == expected_ids(emulator, "job_postings")
    assert second.bookmarks()["job_postings"]["ledger"]["rows"] == len(
        expected_ids(emulator, "job_postings")
    )


def test_a_stage_moved_to_another_plan_is_not_deleted(tmp_path: Path, emulator: Emulator) -> None:
    """A child whose parent changes and whose parent list is incremental: the move is seen
    in an incremental run (both plans changed), then a reconcile lists every plan."""
    emulator.org.child_changes_touch_parent = True  # a moved stage changes both plans
    select = {"interview_plans", "interview_stages"}
    config = tap_config(emulator, reconcile_every_n_runs=0)
    warehouse: dict = {}
    first = run_tap(tmp_path, config, select=select)
    assert first.returncode == 0, first.stderr[-2000:]
    apply(warehouse, first)
    org = emulator.org
    stages, plans = org.tables["interview_stages"], org.tables["interview_plans"]
    moved, erased = stages.id_of(0), stages.id_of(6)
    org.move("interview_stages", moved, plans.id_of(1))
    org.delete("interview_stages", erased)
    second = run_tap(tmp_path, config, state=first.state, select=select)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.bookmarks()["interview_stages"].get("parent_sync_token")
    assert deleted(second, "interview_stages") == {erased}
    apply(warehouse, second)
    third = run_tap(tmp_path, {**config, "reconcile_now": True}, state=second.state, select=select)
    assert third.returncode == 0, third.stderr[-2000:]
    assert deleted(third, "interview_stages") == set()  # the old plan no longer lists it
    apply(warehouse, third)
    assert live_ids(warehouse, "interview_stages") == expected_ids(emulator, "interview_stages")


def test_a_trailing_slash_on_base_url_changes_nothing(tmp_path: Path, emulator: Emulator) -> None:
    select = {"candidates", "candidate_notes"}
    first = run_tap(tmp_path, tap_config(emulator), select=select)
    assert first.returncode == 0, first.stderr[-2000:]
    emulator.stats.reset()
    slashed = tap_config(emulator, base_url=emulator.url + "/")
    second = run_tap(tmp_path, slashed, state=first.state, select=select)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "unavailable" not in second.stderr
    assert emulator.stats.requests("candidate.list") == 1  # incremental: one page, no scan
    for stream in select:
        before, after = first.bookmarks()[stream]["ledger"], second.bookmarks()[stream]["ledger"]
        assert after["lineage"] == before["lineage"] and after["scope"] == before["scope"]


# overlapping runs ---------------------------------------------------------------------------
STREAMS = {"candidates", "candidate_notes", "applications", "application_history"}


def start_tap(workdir: Path, config: dict[str, Any], state: dict, catalog: Path) -> Any:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "state.json").write_text(json.dumps(state))
    cmd = [*TAP, "--config", str(workdir / "config.json"), "--state", str(workdir / "state.json")]
    return subprocess.Popen(
        [*cmd, "--catalog", str(catalog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
    )


def finished(proc: Any) -> TapRun:
    stdout, stderr = proc.communicate(timeout=300)
    run = TapRun(proc.returncode, stdout, stderr)
    for line in stdout.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            run.records[message["stream"]].append(message["record"])
        elif message["type"] == "STATE":
            run.states.append(message["value"])
    return run


@pytest.mark.slow
@pytest.mark.parametrize("location", ["file", "s3"])
def test_two_overlapping_runs_then_a_reconcile_from_either_state(
    request: pytest.FixtureRequest, tmp_path: Path, location: str
) -> None:
    if location == "s3":
        uri = f"{new_bucket(request.getfixturevalue('s3_env'))}/tap-ashby"
    else:
        uri = (tmp_path / "bucket").as_uri()
    with Emulator(candidates=30, seed=11) as emu:
        config = tap_config(emu, ledger_uri=uri, reconcile_now=True)
        catalog = write_catalog(tmp_path, config, STREAMS)
        first = run_tap(tmp_path, config, select=STREAMS)
        assert first.returncode == 0, first.stderr[-2000:]
        warehouse: dict = {}
        apply(warehouse, first)
        org = emu.org
        before = org.live_ids("candidates")
        org.delete("candidates", before[0])
        # two runs at once, from the same state, on the same ledger location
        procs = [start_tap(tmp_path / f"run{k}", config, first.state, catalog) for k in (1, 2)]
        runs = [finished(p) for p in procs]
        for run in runs:
            assert run.returncode == 0, run.stderr[-2000:]
            assert "unavailable" not in run.stderr
            assert deleted(run, "candidates") == {before[0]}
            apply(warehouse, run)
        org.delete("candidates", before[1])
        org.merge_candidates(before[2], before[3])
        for k, run in enumerate(runs, 1):  # the next reconcile, from each final STATE
            target = copy.deepcopy(warehouse)
            nxt = run_tap(tmp_path / f"run{k}", config, state=run.state, select=STREAMS)
            assert nxt.returncode == 0, nxt.stderr[-2000:]
            assert "unavailable" not in nxt.stderr, k
            assert deleted(nxt, "candidates") == {before[1], before[3]}, k
            apply(target, nxt)
            for stream in STREAMS:
                assert live_ids(target, stream) == expected_ids(emu, stream), (k, stream)
