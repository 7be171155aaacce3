"""End to end through Meltano: emulator -> `meltano run tap-ashby target-duckdb|target-postgres`.

Nothing here calls the tap's code: each test starts the emulator in this process, runs the
real ``meltano`` of the project venv as a subprocess (cwd = the repository) and then reads the
warehouse, the state Meltano stored and the emulator's request log.

How a run is isolated and configured offline (see tests/support/pipeline.py):

- the settings go in as environment variables of settings declared in meltano.yml
  (``TAP_ASHBY_API_KEY``, ``TAP_ASHBY_BASE_URL``, ``TAP_ASHBY_REQUESTS_PER_MINUTE=0``,
  ``TARGET_DUCKDB_PATH``, ``TARGET_DUCKDB_BATCH_SIZE_ROWS``, ``TARGET_POSTGRES_HOST`` ...);
  ``MELTANO_HUB_URL`` points at a dead port and telemetry is off, so nothing leaves the machine;
- the streams are chosen with ``TAP_ASHBY__SELECT`` (Meltano's variable for the extractor's
  ``select`` extra, a JSON list of ``<stream>.*`` patterns), because Meltano's own default
  selection is ``*.*`` (every stream), not the tap's ``selected_by_default`` set;
- state: ``MELTANO_STATE_BACKEND_URI=file:///<tmp>/state`` plus ``--state-id-suffix``, so the
  state is ``<tmp>/state/dev:tap-ashby-to-<target>:<suffix>/state.json``;
- ``MELTANO_SYS_DIR_ROOT`` = a private ``.meltano`` whose ``extractors``/``loaders`` link to the
  repo's installed plugin venvs, so the catalog and state files Meltano writes under fixed
  names in ``.meltano/run`` are never shared with another ``meltano run`` (``make demo``);
- ``meltano run --no-install``: missing plugins fail the test (run ``make install``).

The scenario (per target, once per module): full run; then 3 candidates updated (one renamed),
2 created, a note added to a 4th candidate and a department archived; then an incremental run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ashby_emulator import Emulator
from expected import expected_ids
from support.pipeline import (
    Call,
    DuckDBWarehouse,
    MeltanoRun,
    Pipeline,
    PostgresWarehouse,
    RequestSpy,
    TableSnapshot,
    Warehouse,
    bodies,
    expected_keys,
    secret_forms,
    snapshot,
)
from support.postgres import running_postgres

from tap_ashby.endpoints import ROWS

pytestmark = pytest.mark.slow

KEY = "e2e-secret-key-123"
CANDIDATES = 30
# Small, but covers: syncToken lists, a child stream with a composite key (candidate_notes),
# archiving (departments), a filtered list (jobs) and a full-table stream (brands).
STREAMS = ("candidates", "applications", "candidate_notes", "departments", "jobs", "brands")
INCREMENTAL = ("candidates", "applications", "departments", "jobs")
EXTRA_COLUMNS = {"candidates": ("name", "position", "company"), "departments": ("isArchived",)}
NEW_NAME = "Renamed Through Meltano"
NEW_POSITION = "Position changed by e2e"
NEW_COMPANY = "Company changed by e2e"


# -- the scenario ---------------------------------------------------------------------------
@dataclass
class Changes:
    """What the test changed in the emulator between the two runs."""

    renamed: str
    updated: list[str]  # renamed first
    created: list[str]
    note_parent: str
    note: str
    department: str

    @property
    def changed_candidates(self) -> set[str]:
        """Candidates an incremental candidate.list must return (a new note touches its parent)."""
        return {*self.updated, *self.created, self.note_parent}


@dataclass
class Pass:
    """One meltano run and what it left: warehouse rows, emulator truth, requests, state."""

    run: MeltanoRun
    tables: set[str]
    rows: dict[str, TableSnapshot]
    expected: dict[str, set[tuple[str, ...]]]
    calls: list[Call]
    counts: dict[str, dict[str, int]]
    state: dict[str, Any]

    def bookmarks(self) -> dict[str, Any]:
        return self.state["completed"]["singer_state"]["bookmarks"]


@dataclass
class Scenario:
    pipeline: Pipeline
    emu: Emulator
    warehouse: Warehouse
    first: Pass
    second: Pass
    changes: Changes
    state_get: dict[str, Any] = field(default_factory=dict)
    ledgers: list[Path] = field(default_factory=list)


def _run_pass(pipeline: Pipeline, spy: RequestSpy, emu: Emulator, *options: str) -> Pass:
    emu.stats.reset()
    spy.take()
    run = pipeline.run(*options)
    warehouse = pipeline.warehouse
    expected = {s: expected_keys(emu, s, expected_ids(emu, s)) for s in STREAMS}
    return Pass(
        run,
        warehouse.tables(),
        snapshot(warehouse, STREAMS, EXTRA_COLUMNS),
        expected,
        spy.take(),
        emu.stats.snapshot()["endpoints"],
        pipeline.stored_state(),
    )


def _mutate(emu: Emulator) -> Changes:
    org = emu.org
    cands = org.live_ids("candidates")
    renamed, position, company, note_parent = cands[2], cands[5], cands[8], cands[11]
    org.update("candidates", renamed, {"name": NEW_NAME})
    org.update("candidates", position, {"position": NEW_POSITION})
    org.update("candidates", company, {"company": NEW_COMPANY})
    created = []
    for _ in range(2):
        upserted = org.create("candidates").upserted
        assert upserted[0][0] == "candidates"
        created.append(upserted[0][1])
    upserted = org.create("candidate_notes", parent_id=note_parent).upserted
    note = next(i for table, i in upserted if table == "candidate_notes")
    depts = org.tables["departments"]
    department = next(
        d for d in org.live_ids("departments") if not depts.get(depts.index_of(d))["isArchived"]
    )  # type: ignore[index]
    org.archive("departments", department)
    return Changes(renamed, [renamed, position, company], created, note_parent, note, department)


@pytest.fixture(
    scope="module",
    params=[
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def scenario(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """Full run, changes, incremental run: once per target for every test of this module."""
    workdir = tmp_path_factory.mktemp(f"pipeline-{request.param}")
    with ExitStack() as stack:
        warehouse: Warehouse
        if request.param == "duckdb":
            warehouse = DuckDBWarehouse(workdir / "warehouse.duckdb")
        else:
            # running_postgres() raises if PostgreSQL can't start: the tests error, never skip.
            warehouse = PostgresWarehouse(stack.enter_context(running_postgres()))
        emu = stack.enter_context(Emulator(candidates=CANDIDATES, seed=7, key=KEY))
        # This scenario checks one pass per parent list and token hand-off: Ashby lists the
        # parent of a changed child here (the refresh for when it does not: test_long_syncs)
        emu.org.child_changes_touch_parent = True
        spy = RequestSpy(emu)
        pipeline = Pipeline(emu, warehouse, workdir, STREAMS, ledger_in_project=True)
        first = _run_pass(pipeline, spy, emu)
        changes = _mutate(emu)
        # debug logging on the second run: the key must not leak even then
        second = _run_pass(pipeline, spy, emu, "--log-level=debug")
        ledgers = pipeline.project_ledger_dirs()
        yield Scenario(
            pipeline, emu, warehouse, first, second, changes, pipeline.meltano_state(), ledgers
        )
        for path in ledgers:
            shutil.rmtree(path, ignore_errors=True)


# -- 0. configuration -----------------------------------------------------------------------
def test_settings_reach_the_plugins(scenario: Scenario) -> None:
    """The environment variables arrive as plugin settings (only declared settings do)."""
    pipeline, emu = scenario.pipeline, scenario.emu
    printed = pipeline.meltano("config", "print", "tap-ashby").check()
    tap = json.loads(printed.stdout)
    assert tap["base_url"] == emu.url and tap["requests_per_minute"] == 0
    assert tap["api_key"] == "*****" and KEY not in printed.output
    target = pipeline.warehouse.target
    config = json.loads(pipeline.meltano("config", "print", target).check().stdout)
    expected: dict[str, Any]
    if isinstance(scenario.warehouse, DuckDBWarehouse):
        expected = {"path": str(scenario.warehouse.path)}
    else:
        server = scenario.warehouse.server  # type: ignore[attr-defined]
        expected = {
            "host": server.host,
            "port": server.port,
            "user": server.user,
            "database": server.database,
            "password": "*****",
        }
    assert {k: config.get(k) for k in expected} == expected
    assert config["default_target_schema"] == "ashby"


# -- 1. full run ----------------------------------------------------------------------------
def assert_exactly_the_live_rows(done: Pass) -> None:
    """Each stream's table = the emulator's live rows: same keys, no duplicates, no loss."""
    assert done.tables == set(STREAMS), "the selection did not reach the tap"
    for stream in STREAMS:
        keys = done.rows[stream].key_tuples()
        expected = done.expected[stream]
        assert expected, f"the emulator has no {stream}: the test proves nothing"
        assert len(keys) == len(set(keys)), f"duplicate keys in {stream}"
        missing, extra = expected - set(keys), set(keys) - expected
        assert not missing and not extra, f"{stream}: missing {missing}, unexpected {extra}"
        assert len(keys) == len(expected), stream


def test_full_run_loads_exactly_the_live_ids(scenario: Scenario) -> None:
    """After the first run every table holds exactly the emulator's live rows."""
    first = scenario.first
    assert_exactly_the_live_rows(first)
    counts = {s: len(first.rows[s].rows) for s in STREAMS}
    assert counts["candidates"] == CANDIDATES
    assert counts["candidate_notes"] == CANDIDATES  # one note per seeded candidate
    # a full pass: no token sent, notes listed once per candidate
    lists = bodies(first.calls, "candidate.list")
    # one pass (CANDIDATES < page size: one page) serves candidates and candidate_notes
    assert len(lists) == 1 and not any("syncToken" in b for b in lists)
    notes = bodies(first.calls, "candidate.listNotes")
    assert sorted(b["candidateId"] for b in notes) == sorted(first.rows["candidates"].ids())
    assert first.counts["candidate.listNotes"] == {"200": CANDIDATES}
    assert "summary total" in first.run.stderr  # the tap's log reached Meltano's


def test_small_batches_lose_no_rows(tmp_path: Path) -> None:
    """target-duckdb with duckdb >= 1.3 drops the first row of every batch: 7 rows a batch."""
    with Emulator(candidates=CANDIDATES, seed=11, key=KEY) as emu:
        warehouse = DuckDBWarehouse(tmp_path / "batches.duckdb")
        pipeline = Pipeline(
            emu, warehouse, tmp_path, STREAMS, extra_env={"TARGET_DUCKDB_BATCH_SIZE_ROWS": "7"}
        )
        config = json.loads(pipeline.meltano("config", "print", "target-duckdb").check().stdout)
        assert config["batch_size_rows"] == 7 and config["path"] == str(warehouse.path)
        run = pipeline.run()
        expected = {s: expected_keys(emu, s, expected_ids(emu, s)) for s in STREAMS}
        done = Pass(run, warehouse.tables(), snapshot(warehouse, STREAMS), expected, [], {}, {})
        assert_exactly_the_live_rows(done)
        # candidates and notes: 30 rows each = 5 batches each, every batch would lose a row
        assert len(done.rows["candidates"].rows) == CANDIDATES
        assert len(done.rows["candidate_notes"].rows) == CANDIDATES


# -- 2. incremental run ---------------------------------------------------------------------
def test_incremental_run_updates_in_place_and_adds(scenario: Scenario) -> None:
    """Changed rows are updated in place, new rows added, and only they are (re)loaded."""
    first, second, changes = scenario.first, scenario.second, scenario.changes
    assert_exactly_the_live_rows(second)
    cands = second.rows["candidates"]
    assert len(cands.rows) == CANDIDATES + 2
    by_id = cands.by_id()
    before = first.rows["candidates"].by_id()
    assert by_id[changes.renamed]["name"] == NEW_NAME != before[changes.renamed]["name"]
    assert by_id[changes.updated[1]]["position"] == NEW_POSITION
    assert by_id[changes.updated[2]]["company"] == NEW_COMPANY
    assert by_id[changes.updated[1]]["name"] == before[changes.updated[1]]["name"]
    assert set(changes.created) <= set(by_id)
    notes = second.rows["candidate_notes"]
    assert len(notes.rows) == CANDIDATES + 1
    assert (changes.note_parent, changes.note) in set(notes.key_tuples())
    depts = second.rows["departments"]
    assert len(depts.rows) == len(first.rows["departments"].rows)
    assert first.rows["departments"].by_id()[changes.department]["isArchived"] is False
    assert depts.by_id()[changes.department]["isArchived"] is True

    # Exactly the changed rows were (re)loaded by the second run; full-table brands: all.
    changed = changes.changed_candidates
    notes_of_changed = {i for c, i in second.expected["candidate_notes"] if c in changed}
    reloaded = {
        s: second.rows[s].extracted_after(first.rows[s].max_extracted_at()) for s in STREAMS
    }
    assert reloaded == {
        "candidates": changed,
        "candidate_notes": notes_of_changed,
        "departments": {changes.department},
        "applications": set(),
        "jobs": set(),
        "brands": second.rows["brands"].ids(),
    }


def test_incremental_run_sends_tokens_and_lists_only_changed_children(scenario: Scenario) -> None:
    """The second run resumes from the stored bookmarks and calls children of changes only."""
    first, second, changes = scenario.first, scenario.second, scenario.changes
    marks = first.bookmarks()
    lists = bodies(second.calls, "candidate.list")
    # one pass over candidate.list serves candidates and candidate_notes (issue 15): every
    # page carries the shared bookmark, and only the first page comes without a cursor
    assert marks["candidates"]["sync_token"] == marks["candidate_notes"]["parent_sync_token"]
    assert {b.get("syncToken") for b in lists} == {marks["candidates"]["sync_token"]}
    assert sum(1 for b in lists if "cursor" not in b) == 1
    for stream, path in (
        ("applications", "application.list"),
        ("departments", "department.list"),
        ("jobs", "job.list"),
    ):
        assert [b.get("syncToken") for b in bodies(second.calls, path)] == [
            marks[stream]["sync_token"]
        ], path
    assert [b.get("syncToken") for b in bodies(second.calls, "brand.list")] == [None]
    # notes are listed for the changed candidates only, once each
    notes = [b["candidateId"] for b in bodies(second.calls, "candidate.listNotes")]
    assert sorted(notes) == sorted(changes.changed_candidates)
    assert second.counts["candidate.listNotes"] == {"200": len(changes.changed_candidates)}
    pages = len(lists)
    # + version.list: the run's one check of the pinned Ashby-Version
    assert sum(sum(c.values()) for c in second.counts.values()) == 1 + pages + 1 + 1 + 1 + 1 + len(
        changes.changed_candidates
    )


# -- 3. state and secrets -------------------------------------------------------------------
def test_ledgers_live_in_the_meltano_project_and_state_stays_small(scenario: Scenario) -> None:
    """Under Meltano the ledger files default to <project>/.meltano/tap-ashby/ledger; the
    state only points at them."""
    assert len(scenario.ledgers) == len(STREAMS)
    for lineage in scenario.ledgers:
        assert 1 <= len(list(lineage.glob("*.ledger"))) <= 2, lineage
    assert len(json.dumps(scenario.second.state)) < 64 * 1024


def test_state_holds_tokens_and_never_the_key(scenario: Scenario) -> None:
    """Meltano stores syncToken bookmarks; the key is in no state, log or file it wrote."""
    pipeline, first, second = scenario.pipeline, scenario.first, scenario.second
    assert pipeline.state_file.parent.name == pipeline.state_id
    for done in (first, second):
        assert done.state["partial"] == {}
        marks = done.bookmarks()
        assert set(marks) == set(STREAMS)
        for stream in INCREMENTAL:
            token = marks[stream].get("sync_token")
            assert isinstance(token, str) and token, stream
        token = marks["candidate_notes"].get("parent_sync_token")
        assert isinstance(token, str) and token
        assert "sync_token" not in marks["brands"]
    # the bookmarks moved on where something changed
    for stream, name in (
        ("candidates", "sync_token"),
        ("departments", "sync_token"),
        ("candidate_notes", "parent_sync_token"),
    ):
        assert second.bookmarks()[stream][name] != first.bookmarks()[stream][name], stream
    # Meltano itself reports the same state under the pipeline's state id
    assert scenario.state_get == second.state["completed"]

    texts = {
        "state file": pipeline.state_file.read_text(),
        "meltano state get": json.dumps(scenario.state_get),
        **{
            f"run {n} {part}": getattr(done.run, part)
            for n, done in enumerate((first, second), 1)
            for part in ("stdout", "stderr")
        },
    }
    files = pipeline.private_files()
    assert any(p.name == "meltano.db" for p in files)
    if isinstance(scenario.warehouse, DuckDBWarehouse):
        files.append(scenario.warehouse.path)
    for path in files:
        texts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    for form in secret_forms(KEY):
        leaks = [where for where, text in texts.items() if form in text]
        assert not leaks, f"the API key ({form!r}) appears in {leaks}"


# -- Meltano's default selection --------------------------------------------------------------
def test_meltano_default_selection_is_the_taps_default(tmp_path: Path) -> None:
    """Without TAP_ASHBY__SELECT, Meltano selects what meltano.yml's `select:` lists; with no
    `select:` it would be `*.*` (every stream: PII client info, expiring file URLs, reports)."""
    with Emulator(candidates=2, seed=3, key=KEY) as emu:
        pipeline = Pipeline(emu, DuckDBWarehouse(tmp_path / "unused.duckdb"), tmp_path, None)
        dumped = pipeline.meltano("invoke", "--no-install", "--dump=catalog", "tap-ashby")
    catalog = json.loads(dumped.check().stdout)
    selected = {
        entry["tap_stream_id"]
        for entry in catalog["streams"]
        for meta in entry["metadata"]
        if meta["breadcrumb"] == [] and meta["metadata"].get("selected")
    }
    assert selected == {r.stream for r in ROWS if r.selected_by_default}
