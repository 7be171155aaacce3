"""Child streams fetched concurrently: same records and state as sequential, within budget."""

from __future__ import annotations

from pathlib import Path

from ashby_emulator import Emulator
from conftest import run_tap, stable_state, tap_config
from expected import delivered_ids, expected_ids

FANOUT = {"candidate_notes", "application_history", "interview_stages", "job_interview_plans"}


def test_concurrent_run_equals_sequential_under_faults(tmp_path: Path, emulator: Emulator) -> None:
    def storm_run(workers: int) -> tuple[dict, dict]:
        emulator.faults.update(
            rate_limit=0.1,
            retry_after=0.05,
            server_error=0.05,
            drop=0.02,
            truncated=0.02,
            seed=workers,
        )
        run = run_tap(
            tmp_path / str(workers),
            tap_config(emulator, max_concurrency=workers, max_retries=12),
            select=FANOUT,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return dict(run.records), run.state

    (tmp_path / "1").mkdir()
    (tmp_path / "8").mkdir()
    sequential, seq_state = storm_run(1)
    concurrent, con_state = storm_run(8)
    assert concurrent == sequential  # same records, same order (parent order is kept)
    assert stable_state(con_state) == stable_state(seq_state)
    for stream in FANOUT:
        assert delivered_ids(concurrent[stream], stream) == expected_ids(emulator, stream)


def test_request_budget_is_never_exceeded(tmp_path: Path, emulator: Emulator) -> None:
    emulator.faults.update(latency=0.02)
    emulator.stats.reset()
    run = run_tap(
        tmp_path,
        tap_config(emulator, max_concurrency=6, requests_per_minute=1200),
        select={"candidate_notes", "application_history"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    stats = emulator.stats.snapshot()
    assert stats["total"] >= 60
    assert stats["max_in_flight"] <= 6
    # Starts are spaced by the budget; the emulator counts completions per calendar second,
    # so a late answer can land in the next second: a little slack, far below unbudgeted.
    assert stats["max_per_second"] <= 1200 / 60 + 3


def test_concurrency_limit_answers_are_retried(tmp_path: Path, emulator: Emulator) -> None:
    emulator.faults.update(concurrent_limit=3, latency=0.01)
    run = run_tap(
        tmp_path,
        tap_config(emulator, max_concurrency=4, max_retries=20),
        select={"candidate_notes"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert emulator.stats.snapshot()["faults"].get("concurrent_limit", 0) > 0
    assert delivered_ids(run.records["candidate_notes"], "candidate_notes") == expected_ids(
        emulator, "candidate_notes"
    )


def test_a_parent_whose_children_fail_fails_the_run(tmp_path: Path, emulator: Emulator) -> None:
    config = tap_config(emulator, page_size=100)
    first = run_tap(tmp_path, config, select={"candidate_notes"})
    emulator.faults.update(server_error=1.0, only_paths="candidate.listNotes")
    for cid in emulator.org.live_ids("candidates")[:3]:
        emulator.org.update("candidates", cid)
    broken = run_tap(
        tmp_path, tap_config(emulator, max_retries=1), state=first.state, select={"candidate_notes"}
    )
    assert broken.returncode != 0
    failure = [line for line in broken.stderr.splitlines() if "tap-ashby failed" in line]
    assert len(failure) == 1 and "could not read the children of candidateId=" in failure[0]
    # the parent token did not move: the rerun fetches the same changed parents again
    assert (
        broken.state.get("bookmarks", {}).get("candidate_notes")
        == first.state["bookmarks"]["candidate_notes"]
    )
    emulator.faults.update(server_error=0.0, only_paths="")
    rerun = run_tap(tmp_path, config, state=first.state, select={"candidate_notes"})
    assert rerun.returncode == 0
    assert {r["candidateId"] for r in rerun.records["candidate_notes"]} == set(
        emulator.org.live_ids("candidates")[:3]
    )
