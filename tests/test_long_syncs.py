"""Long syncs over real HTTP: resumable fan-out, a run deadline, SIGTERM, SIGKILL, the thread
bound, and the rolling child refresh on unchanged parents.

Each test runs the real ``tap-ashby`` process against an emulator whose every answer is a
little slow, so a first sync of candidates with notes is long enough to be cut mid-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from ashby_emulator import Emulator, Faults
from conftest import ROOT, SECRET_KEY, TAP, run_tap, tap_config, write_catalog
from expected import expected_ids

pytestmark = pytest.mark.slow
NOTES = {"candidates", "candidate_notes"}
CANDIDATES = 400
WAIT = 120.0  # generous bound against a hung process (never a speed assertion)


def slow_org(candidates: int = CANDIDATES, latency: float = 0.01) -> Emulator:
    return Emulator(
        candidates=candidates, seed=11, key=SECRET_KEY, faults=Faults(seed=11, latency=latency)
    )


class TapProcess:
    """``tap-ashby`` in the background, its stdout in a file (read after it ended)."""

    def __init__(self, tmp_path: Path, config: dict[str, Any], state: dict | None = None):
        self.dir = tmp_path / f"proc-{time.monotonic_ns()}"
        self.dir.mkdir()
        (self.dir / "config.json").write_text(json.dumps(config))
        cmd = [*TAP, "--config", str(self.dir / "config.json")]
        cmd += ["--catalog", str(write_catalog(self.dir, config, NOTES))]
        if state is not None:
            (self.dir / "state.json").write_text(json.dumps(state))
            cmd += ["--state", str(self.dir / "state.json")]
        self.out = open(self.dir / "stdout", "w")  # noqa: SIM115
        self.err = open(self.dir / "stderr", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, cwd=ROOT)

    def wait(self) -> int:
        code = self.proc.wait(WAIT)
        self.out.close()
        self.err.close()
        return code

    def messages(self) -> list[dict[str, Any]]:
        found = []
        for line in (self.dir / "stdout").read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:  # the line a kill cut in half
                continue
        return found

    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages() if m.get("type") == "STATE"]

    def note_ids(self) -> set[str]:
        return {
            m["record"]["id"]
            for m in self.messages()
            if m.get("type") == "RECORD" and m["stream"] == "candidate_notes"
        }

    @property
    def stderr(self) -> str:
        return (self.dir / "stderr").read_text()


def wait_for_calls(emu: Emulator, path: str, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while emu.stats.requests(path) < count:
        assert time.monotonic() < deadline, f"{path} never reached {count} calls"
        time.sleep(0.01)


def test_sigkill_halfway_then_the_rerun_repeats_few_calls(tmp_path: Path) -> None:
    with slow_org() as emu:
        config = tap_config(emu)
        first = TapProcess(tmp_path, config)
        wait_for_calls(emu, "candidate.listNotes", CANDIDATES // 2)
        first.proc.kill()
        first.wait()
        before = emu.stats.requests("candidate.listNotes")
        assert before < CANDIDATES  # really cut half-way
        last = first.states()[-1]
        assert last["bookmarks"]["candidate_notes"].get("resume")  # a position was kept
        emu.stats.reset()
        second = run_tap(tmp_path, config, state=last, select=NOTES)
        assert second.returncode == 0, second.stderr[-2000:]
        repeated = before + emu.stats.requests("candidate.listNotes") - CANDIDATES
        assert repeated <= CANDIDATES // 10
        assert first.note_ids() | second.ids("candidate_notes") == expected_ids(
            emu, "candidate_notes"
        )
        assert "resume" not in second.bookmarks()["candidate_notes"]


def test_a_deadline_stops_cleanly_and_the_next_run_finishes(tmp_path: Path) -> None:
    with slow_org(latency=0.05) as emu:
        config = tap_config(emu, max_run_seconds=3)
        first = run_tap(tmp_path, config, select=NOTES)
        assert first.returncode == 0, first.stderr[-2000:]
        assert "stopped at the deadline (max_run_seconds=3)" in first.stderr
        assert "the next run resumes" in first.stderr
        notes_state = first.bookmarks()["candidate_notes"]
        assert notes_state.get("resume"), notes_state
        before = emu.stats.requests("candidate.listNotes")
        assert 0 < before < CANDIDATES
        assert notes_state["resume"]["keys"]["path"].startswith("_resume/candidate_notes/")
        emu.stats.reset()
        second = run_tap(tmp_path, tap_config(emu), state=first.state, select=NOTES)
        assert second.returncode == 0, second.stderr[-2000:]
        # the parents left were kept aside: only what changed since is paged, not the list
        assert emu.stats.requests("candidate.list") == 1
        repeated = before + emu.stats.requests("candidate.listNotes") - CANDIDATES
        assert repeated <= CANDIDATES // 10
        assert first.ids("candidate_notes") | second.ids("candidate_notes") == expected_ids(
            emu, "candidate_notes"
        )
        assert "resumed" in second.stderr  # the summary names the pass


def test_sigterm_mid_fan_out_leaves_a_resumable_state(tmp_path: Path) -> None:
    with slow_org() as emu:
        config = tap_config(emu)
        first = TapProcess(tmp_path, config)
        wait_for_calls(emu, "candidate.listNotes", CANDIDATES // 3)
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait() == 143
        assert "Traceback" not in first.stderr
        assert "stopped by SIGTERM" in first.stderr
        last = first.states()[-1]
        assert last["bookmarks"]["candidate_notes"]["resume"]["after"]
        second = run_tap(tmp_path, config, state=last, select=NOTES)
        assert second.returncode == 0, second.stderr[-2000:]
        assert first.note_ids() | second.ids("candidate_notes") == expected_ids(
            emu, "candidate_notes"
        )


def test_max_concurrency_bounds_the_threads(tmp_path: Path) -> None:
    """max_concurrency: 4 -> at most 8 threads (4 workers + the main thread here)."""
    with slow_org() as emu:
        first = TapProcess(tmp_path, tap_config(emu, max_concurrency=4))
        most = 0
        while first.proc.poll() is None:
            try:
                status = Path(f"/proc/{first.proc.pid}/status").read_text()
            except OSError:
                break
            threads = int(next(x for x in status.splitlines() if x.startswith("Threads:"))[8:])
            most = max(most, threads)
            time.sleep(0.02)
        assert first.wait() == 0, first.stderr[-2000:]
        assert 1 < most <= 8


def test_rolling_refresh_finds_child_changes_on_unchanged_parents(tmp_path: Path) -> None:
    """Default settings, and the case hardest on us: a new note or history entry does not
    bump its parent. Every one arrives within 7 incremental runs; no run lists more than
    about 2/7 of the parents."""
    select = {"candidates", "candidate_notes", "applications", "application_history"}
    with Emulator(candidates=210, seed=5, key=SECRET_KEY) as emu:
        emu.org.child_changes_touch_parent = False
        config = tap_config(emu)
        config.pop("child_refresh_every_n_runs")  # the default
        run = run_tap(tmp_path, config, select=select)
        assert run.returncode == 0, run.stderr[-2000:]
        cands, apps = emu.org.live_ids("candidates"), emu.org.live_ids("applications")
        notes, entries = set(), set()
        for i in range(0, len(cands), 15):
            made = emu.org.create("candidate_notes", parent_id=cands[i]).upserted
            notes |= {k for table, k in made if table == "candidate_notes"}
        for i in range(0, len(apps), 15):
            made = emu.org.create("application_history", parent_id=apps[i]).upserted
            entries |= {k for table, k in made if table == "application_history"}
        got_notes, got_entries, state = set(), set(), run.state
        for _ in range(7):
            emu.stats.reset()
            run = run_tap(tmp_path, config, state=state, select=select)
            assert run.returncode == 0, run.stderr[-2000:]
            state = run.state
            got_notes |= run.ids("candidate_notes")
            got_entries |= run.ids("application_history")
            assert emu.stats.requests("candidate.listNotes") <= 2 * len(cands) / 7
            assert emu.stats.requests("application.listHistory") <= 2 * len(apps) / 7
        assert notes and notes <= got_notes
        assert entries and entries <= got_entries


def test_state_stays_small_during_a_long_fan_out(tmp_path: Path) -> None:
    """The resume position is one key per stream, never one entry per parent."""
    with slow_org() as emu:
        first = TapProcess(tmp_path, tap_config(emu))
        assert first.wait() == 0
        largest = max(len(json.dumps(s)) for s in first.states())
        assert largest < 4096
        assert os.path.getsize(first.dir / "stdout") > 0


def test_a_sync_cut_twice_resumes_from_the_kept_parents_each_time(tmp_path: Path) -> None:
    """Three runs with a short deadline: each later run reads the parents the run before
    kept aside (one incremental page of candidate.list, not the whole list), and together
    they deliver every note with few repeats."""
    with slow_org(latency=0.05) as emu:
        config = tap_config(emu, max_run_seconds=2)
        state, notes, calls, lists = None, set(), 0, []
        for _ in range(10):
            emu.stats.reset()
            run = run_tap(tmp_path, config, state=state, select=NOTES)
            assert run.returncode == 0, run.stderr[-2000:]
            notes |= run.ids("candidate_notes")
            calls += emu.stats.requests("candidate.listNotes")
            lists.append(emu.stats.requests("candidate.list"))
            state = run.state
            if "resume" not in run.bookmarks()["candidate_notes"]:
                break
        assert len(lists) >= 3  # really cut more than once
        assert all(n == 1 for n in lists[1:])
        assert notes == expected_ids(emu, "candidate_notes")
        assert calls - CANDIDATES <= CANDIDATES // 10
