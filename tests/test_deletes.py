"""Rows deleted or merged away in Ashby leave the warehouse: ledger, reconcile, tombstones."""

from __future__ import annotations

from pathlib import Path

from ashby_emulator import Emulator
from conftest import TapRun, run_tap, tap_config
from expected import expected_ids

from tap_ashby.endpoints import ENDPOINTS

STREAMS = {
    "candidates",
    "applications",
    "candidate_notes",
    "application_history",
    "offers",
    "departments",
}


def apply(warehouse: dict[str, dict[tuple, dict]], run: TapRun) -> None:
    """What an upserting target with hard deletes does with a run's records."""
    for stream, records in run.records.items():
        table = warehouse.setdefault(stream, {})
        keys = ENDPOINTS[stream].primary_keys
        for record in records:
            key = tuple(record[k] for k in keys)
            if record.get("_sdc_deleted_at"):
                table.pop(key, None)
            else:
                table[key] = record


def live_ids(warehouse: dict[str, dict[tuple, dict]], stream: str) -> set[str]:
    return {key[-1] for key in warehouse.get(stream, {})}


def test_reconcile_removes_deleted_and_merged_rows(tmp_path: Path, emulator: Emulator) -> None:
    warehouse: dict[str, dict[tuple, dict]] = {}
    config = tap_config(emulator)
    first = run_tap(tmp_path, config, select=STREAMS)
    assert first.returncode == 0, first.stderr[-2000:]
    apply(warehouse, first)
    assert all(
        first.bookmarks()[s].get("ledger")
        for s in ("candidates", "applications", "candidate_notes", "application_history")
    )

    org = emulator.org
    table = org.tables["candidates"]
    # candidates have 0..n applications: erase and merge away candidates that have some
    cands = [
        c for c in org.live_ids("candidates") if table.get(table.index_of(c))["applicationIds"]
    ]
    erased_apps = table.get(table.index_of(cands[0]))["applicationIds"]
    erased = org.delete("candidates", cands[0])  # cascades to applications, notes, history
    org.merge_candidates(cands[1], cands[2])
    org.delete("offers", org.live_ids("offers")[0])
    org.update("candidates", cands[3], {"name": "Changed meanwhile"})
    assert {("applications", a) for a in erased_apps} <= set(erased.deleted)

    second = run_tap(tmp_path, {**config, "reconcile_now": True}, state=first.state, select=STREAMS)
    assert second.returncode == 0, second.stderr[-2000:]
    apply(warehouse, second)
    for stream in STREAMS:
        assert live_ids(warehouse, stream) == expected_ids(emulator, stream), stream
    gone = {r["id"] for r in second.records["candidates"] if r.get("_sdc_deleted_at")}
    assert gone == {cands[0], cands[2]}
    tomb = next(r for r in second.records["candidates"] if r["id"] == cands[0])
    assert set(tomb) == {"id", "_sdc_deleted_at"}  # a tombstone carries no candidate data
    assert "reconciled (2 deleted)" in second.stderr
    # the merged-away candidate's applications now point at the survivor
    moved = [r for r in second.records["applications"] if not r.get("_sdc_deleted_at")]
    assert {r["candidate"]["id"] for r in moved} == {cands[1]}


def test_incremental_runs_between_reconciles_still_load_every_change(
    tmp_path: Path, emulator: Emulator
) -> None:
    warehouse: dict[str, dict[tuple, dict]] = {}
    config = tap_config(emulator, reconcile_every_n_runs=2)  # runs 1 and 3 reconcile
    select = {"candidates", "candidate_notes"}
    run = run_tap(tmp_path, config, select=select)
    apply(warehouse, run)
    org = emulator.org
    victim = org.live_ids("candidates")[5]
    org.delete("candidates", victim)
    renamed = org.live_ids("candidates")[6]
    org.update("candidates", renamed, {"name": "Between reconciles"})
    emulator.stats.reset()
    run = run_tap(tmp_path, config, state=run.state, select=select)  # run 2: incremental only
    apply(warehouse, run)
    assert emulator.stats.requests("candidate.list") == 1  # one shared incremental page, no scan
    assert warehouse["candidates"][(renamed,)]["name"] == "Between reconciles"
    assert victim in live_ids(warehouse, "candidates")  # not detected yet, as documented
    assert run.bookmarks()["candidates"]["runs_since_reconcile"] == 1
    created = org.create("candidates").upserted[0][1]
    run = run_tap(tmp_path, config, state=run.state, select=select)  # run 3: reconcile
    apply(warehouse, run)
    assert created in live_ids(warehouse, "candidates")
    for stream in select:
        assert live_ids(warehouse, stream) == expected_ids(emulator, stream), stream
    assert run.bookmarks()["candidates"]["runs_since_reconcile"] == 0


def test_a_full_pass_is_a_reconcile(tmp_path: Path, emulator: Emulator) -> None:
    """An expired token forces a full pass; the ledger still finds what disappeared."""
    warehouse: dict[str, dict[tuple, dict]] = {}
    config = tap_config(emulator, reconcile_every_n_runs=0)
    run = run_tap(tmp_path, config, select={"candidates"})
    apply(warehouse, run)
    victim = emulator.org.live_ids("candidates")[2]
    emulator.org.delete("candidates", victim)
    emulator.org.advance_clock(emulator.api.settings.sync_token_ttl_seconds + 1)
    run = run_tap(tmp_path, config, state=run.state, select={"candidates"})
    apply(warehouse, run)
    assert live_ids(warehouse, "candidates") == expected_ids(emulator, "candidates")


def test_deletes_can_be_turned_off(tmp_path: Path, emulator: Emulator) -> None:
    run = run_tap(
        tmp_path,
        tap_config(emulator, reconcile_streams=[]),
        select={"candidates", "candidate_notes"},
    )
    assert run.returncode == 0
    assert all("ledger" not in b for b in run.bookmarks().values())
