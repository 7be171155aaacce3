"""Deletes and merges through `meltano run`: DuckDB removes the rows, PostgreSQL marks them.

target-duckdb runs with ``hard_delete: true`` (meltano.yml), so a tombstone record deletes the
row. target-postgres stores the tombstone: the row keeps only its key and ``_sdc_deleted_at``
(every other column is overwritten with NULL, so erased candidate data is gone too).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ashby_emulator import Emulator
from expected import expected_ids
from support.pipeline import DuckDBWarehouse, Pipeline, PostgresWarehouse, Warehouse
from support.postgres import running_postgres

from tap_ashby.endpoints import ENDPOINTS

pytestmark = pytest.mark.slow
STREAMS = ("candidates", "applications", "candidate_notes", "application_history")


def erase_and_merge(emu: Emulator) -> tuple[str, str, str]:
    org = emu.org
    cands = org.live_ids("candidates")
    org.delete("candidates", cands[0])  # erasure: its applications, notes, history go too
    org.merge_candidates(cands[1], cands[2])
    org.update("candidates", cands[3], {"name": "Still here"})
    return cands[0], cands[2], cands[3]


def rows_by_id(warehouse: Warehouse, stream: str, extra: tuple[str, ...] = ()) -> dict:
    keys = ENDPOINTS[stream].primary_keys
    return {r[keys[-1]]: r for r in warehouse.rows(stream, [*keys, "_sdc_deleted_at", *extra])}


def run_scenario(tmp_path: Path, warehouse: Warehouse) -> tuple[Emulator, tuple[str, str, str]]:
    emu = Emulator(candidates=20, seed=13, key="deletes-e2e-key").start()
    pipeline = Pipeline(emu, warehouse, tmp_path, STREAMS)
    pipeline.run()
    changed = erase_and_merge(emu)
    pipeline.extra_env["TAP_ASHBY_RECONCILE_NOW"] = "true"
    pipeline.run()
    return emu, changed


def test_duckdb_rows_of_deleted_records_are_removed(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "deletes.duckdb")
    emu, (erased, merged_away, kept) = run_scenario(tmp_path, warehouse)
    try:
        for stream in STREAMS:
            rows = rows_by_id(warehouse, stream)
            assert set(rows) == expected_ids(emu, stream), stream
        cands = rows_by_id(warehouse, "candidates", ("name",))
        assert erased not in cands and merged_away not in cands
        assert cands[kept]["name"] == "Still here"
    finally:
        emu.stop()


@pytest.mark.postgres
def test_postgres_rows_of_deleted_records_are_marked_and_erased(tmp_path: Path) -> None:
    with running_postgres() as server:
        warehouse = PostgresWarehouse(server)
        emu, (erased, merged_away, kept) = run_scenario(tmp_path, warehouse)
        try:
            for stream in STREAMS:
                rows = rows_by_id(warehouse, stream)
                live = {i for i, r in rows.items() if r["_sdc_deleted_at"] is None}
                assert live == expected_ids(emu, stream), stream
            cands = rows_by_id(warehouse, "candidates", ("name", "primaryEmailAddress"))
            for gone in (erased, merged_away):
                assert cands[gone]["_sdc_deleted_at"] is not None
                assert cands[gone]["name"] is None  # the candidate's data is erased
                assert cands[gone]["primaryEmailAddress"] in (None, "null")
            assert cands[kept]["name"] == "Still here"
        finally:
            emu.stop()
