"""Streams split over two `meltano run` jobs (each with its own state id) load what one job does.

This is the README's "Splitting streams across jobs": disjoint selections, separate bookmarks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ashby_emulator import Emulator
from support.pipeline import DuckDBWarehouse, Pipeline

from tap_ashby.endpoints import ENDPOINTS

pytestmark = pytest.mark.slow
PEOPLE = ("candidates", "candidate_notes")
HIRING = ("applications", "departments", "jobs")


def table_keys(warehouse: DuckDBWarehouse, streams: tuple[str, ...]) -> dict[str, set]:
    out = {}
    for stream in streams:
        keys = ENDPOINTS[stream].primary_keys
        out[stream] = {tuple(r[k] for k in keys) for r in warehouse.rows(stream, list(keys))}
    return out


def bookmarks(pipeline: Pipeline) -> dict:
    return pipeline.stored_state()["completed"]["singer_state"]["bookmarks"]


def test_two_jobs_with_disjoint_streams_equal_one_job(tmp_path: Path) -> None:
    with Emulator(candidates=25, seed=17, key="split-jobs-key") as emu:
        split = DuckDBWarehouse(tmp_path / "split.duckdb")
        whole = DuckDBWarehouse(tmp_path / "whole.duckdb")
        people = Pipeline(emu, split, tmp_path / "people", PEOPLE, suffix="people")
        hiring = Pipeline(emu, split, tmp_path / "hiring", HIRING, suffix="hiring")
        single = Pipeline(emu, whole, tmp_path / "single", PEOPLE + HIRING, suffix="single")
        for _ in range(2):
            for pipeline in (people, hiring, single):
                pipeline.run()
            assert table_keys(split, PEOPLE + HIRING) == table_keys(whole, PEOPLE + HIRING)
            assert set(bookmarks(people)) == set(PEOPLE)
            assert set(bookmarks(hiring)) == set(HIRING)
            # second round: changes in both halves, read incrementally by each job
            for cid in emu.org.live_ids("candidates")[:3]:
                emu.org.update("candidates", cid)
            emu.org.create("applications")
            emu.org.archive("departments", emu.org.live_ids("departments")[0])
