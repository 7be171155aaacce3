"""Ashby's 2026 API: pinned version, strict bodies, page caps, new fields, boards, surveys.

Against the emulator in its strict mode (undeclared body fields answer invalid_input), over
real HTTP, the tap as a process.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ashby_emulator import Emulator
from conftest import SECRET_KEY, run_tap, tap_config
from expected import expected_ids
from support.pipeline import RequestSpy, bodies
from test_deletes import apply, live_ids


def record_versions(emu: Emulator) -> list[str | None]:
    """The Ashby-Version header of every API request the emulator answers."""
    seen: list[str | None] = []
    inner = emu.api.check_version  # called once per API request

    def check_version(requested: str | None) -> None:
        seen.append(requested)
        inner(requested)

    emu.api.check_version = check_version  # type: ignore[method-assign]
    return seen


def failures(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "tap-ashby failed" in line]


def test_every_request_pins_the_api_version(tmp_path: Path, emulator: Emulator) -> None:
    seen = record_versions(emulator)
    config = tap_config(emulator)
    first = run_tap(tmp_path, config)
    assert first.returncode == 0, first.stderr[-2000:]
    emulator.org.update("candidates", emulator.org.live_ids("candidates")[0])
    second = run_tap(tmp_path, config, state=first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(seen) == emulator.stats.snapshot()["total"] > 100
    assert set(seen) == {"2026-01-01"}


def test_a_deprecated_version_is_named_once(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_version("2026-01-01", "deprecated")
    run = run_tap(tmp_path, tap_config(emulator), select={"candidates", "departments"})
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [line for line in run.stderr.splitlines() if "is deprecated" in line]
    assert len(warnings) == 1 and "2026-01-01" in warnings[0]


def test_a_rejected_version_stops_the_run_before_any_record(
    tmp_path: Path, emulator: Emulator
) -> None:
    run = run_tap(
        tmp_path,
        tap_config(emulator, api_version="2019-01-01"),
        select={"candidates", "departments"},
    )
    assert run.returncode != 0
    lines = failures(run.stderr)
    assert len(lines) == 1 and "api_version '2019-01-01'" in lines[0]
    assert "Traceback" not in run.stderr and not run.records


def test_invalid_input_is_fatal_never_retried_and_named(tmp_path: Path, emulator: Emulator) -> None:
    # Ashby stops accepting a field the tap sends: the run stops at once, naming it.
    emulator.api.endpoints = copy.deepcopy(emulator.api.endpoints)
    del emulator.api.endpoints["department.list"]["params"]["includeArchived"]
    run = run_tap(tmp_path, tap_config(emulator), select={"departments"})
    assert run.returncode != 0
    lines = failures(run.stderr)
    assert len(lines) == 1, run.stderr[-2000:]
    assert "/department.list" in lines[0] and "includeArchived" in lines[0]
    assert emulator.stats.requests("department.list") == 1
    assert "retry" not in run.stderr


def test_only_documented_fields_reach_the_strict_emulator(
    tmp_path: Path, emulator: Emulator
) -> None:
    spy = RequestSpy(emulator)
    run = run_tap(tmp_path, tap_config(emulator, report_ids=["r1"]), select="all")
    assert run.returncode == 0, run.stderr[-2000:]
    assert emulator.stats.snapshot()["endpoints"].get("interviewStageGroup.list") == {"200": 1}
    assert bodies(spy.calls, "interviewStageGroup.list") == [{}]
    assert all(
        "limit" not in b and "cursor" not in b
        for b in bodies(spy.calls, "user.listInterviewerPauses")
    )
    # no request anywhere was refused
    for endpoint, statuses in emulator.stats.snapshot()["endpoints"].items():
        assert set(statuses) == {"200"}, (endpoint, statuses)


def test_postings_of_every_board_and_every_survey_type(tmp_path: Path, emulator: Emulator) -> None:
    spy = RequestSpy(emulator)
    run = run_tap(
        tmp_path, tap_config(emulator), select={"job_boards", "job_postings", "survey_submissions"}
    )
    assert run.returncode == 0, run.stderr[-2000:]
    boards = {r["id"] for r in run.records["job_boards"]}
    assert len(boards) > 1
    assert {b["jobBoardId"] for b in bodies(spy.calls, "jobPosting.list")} == boards
    postings = [r["id"] for r in run.records["job_postings"]]
    assert len(postings) == len(set(postings))
    assert set(postings) == expected_ids(emulator, "job_postings")
    types = {r["surveyType"] for r in run.records["survey_submissions"]}
    assert types == {"CandidateExperience", "Questionnaire", "HiringManagerExperience"}
    assert (
        set(
            run.bookmarks()["survey_submissions"]["partitions"][i]["context"]["surveyType"]
            for i in range(3)
        )
        == types
    )


def test_page_cap_mid_incremental_pass_falls_back_to_a_full_pass(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = tap_config(emulator, page_size=5)
    select = {"candidates", "candidate_notes"}
    warehouse: dict = {}
    first = run_tap(tmp_path, config, select=select)
    assert first.returncode == 0, first.stderr[-2000:]
    apply(warehouse, first)
    org = emulator.org
    for n, cid in enumerate(org.live_ids("candidates")[:17]):
        org.update("candidates", cid, {"name": f"bulk edit {n}"})
    emulator.api.settings.max_incremental_pages = 2  # the 17 changes need 4 pages
    second = run_tap(tmp_path, config, state=first.state, select=select)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "incremental_sync_too_large" in second.stderr
    apply(warehouse, second)
    for stream in select:
        assert live_ids(warehouse, stream) == expected_ids(emulator, stream), stream
    names = {k[0]: v["name"] for k, v in warehouse["candidates"].items()}
    assert sum(1 for name in names.values() if name.startswith("bulk edit")) == 17
    token = second.bookmarks()["candidates"]["sync_token"]
    assert token != first.bookmarks()["candidates"]["sync_token"]
    third = run_tap(tmp_path, config, state=second.state, select=select)  # the new token works
    assert third.returncode == 0 and "incremental_sync_too_large" not in third.stderr
    assert not third.records.get("candidates")


def test_a_new_field_is_named_not_dropped_silently(tmp_path: Path, emulator: Emulator) -> None:
    for cid in emulator.org.live_ids("candidates")[:3]:
        emulator.org.update("candidates", cid, {"favouriteColour": "teal"})
    run = run_tap(tmp_path, tap_config(emulator), select={"candidates"})
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [
        line for line in run.stderr.splitlines() if "favouriteColour" in line and "WARNING" in line
    ]
    assert len(warnings) == 1 and "candidates" in warnings[0]
    summary = next(line for line in run.stderr.splitlines() if "summary candidates" in line)
    assert "favouriteColour" in summary
    assert all("favouriteColour" not in r for r in run.records["candidates"])


def test_cleartext_base_url_is_refused_before_any_request(tmp_path: Path) -> None:
    run = run_tap(
        tmp_path, {"api_key": SECRET_KEY, "base_url": "http://ashby.example.com"}, args=[]
    )
    assert run.returncode != 0
    assert "https://" in run.stderr and "Traceback" not in run.stderr
    assert SECRET_KEY not in run.stdout + run.stderr and not run.stdout.strip()


def test_partner_scope_rate_limit_backs_off_with_its_own_warning(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.faults.update(partner_rate_limit=0.2, retry_after=0.02, seed=3)
    run = run_tap(
        tmp_path,
        tap_config(emulator, max_retries=12, page_size=5),
        select={"candidates", "candidate_notes", "departments"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert emulator.stats.snapshot()["faults"].get("partner_rate_limit", 0) > 0
    faults = emulator.stats.snapshot()["faults"]["partner_rate_limit"]
    lines = run.stderr.splitlines()
    # its own warning, once per run; and each retry names the scope
    assert sum("backing off longer" in line for line in lines) == 1
    assert sum("retry" in line and "integration-partner" in line for line in lines) == faults
    assert run.ids("candidates") == expected_ids(emulator, "candidates")


def test_child_changes_on_an_unchanged_parent_arrive_at_the_next_refresh(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.org.child_changes_touch_parent = False  # hardest case: Ashby lists no parent
    select = {"candidates", "candidate_notes"}
    config: dict[str, Any] = tap_config(emulator)
    first = run_tap(tmp_path, config, select=select)
    assert first.returncode == 0, first.stderr[-2000:]
    parent = emulator.org.live_ids("candidates")[4]
    created = emulator.org.create("candidate_notes", parent_id=parent).upserted
    note = next(i for table, i in created if table == "candidate_notes")
    quiet = run_tap(tmp_path, config, state=first.state, select=select)
    assert quiet.returncode == 0 and note not in quiet.ids("candidate_notes")
    refresh = run_tap(
        tmp_path, {**config, "child_refresh_every_n_runs": 1}, state=quiet.state, select=select
    )
    assert refresh.returncode == 0, refresh.stderr[-2000:]
    assert note in refresh.ids("candidate_notes")
    assert emulator.stats.requests("candidate.listNotes") >= len(
        expected_ids(emulator, "candidates")
    )
