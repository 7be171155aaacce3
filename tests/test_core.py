"""The one-way core without a server: the planner (pure) and the scheduler (a thread pool).

Planner tests run in milliseconds on the endpoint table; each of the three decisions that
used to be taken twice (and wrongly) has a test here. Scheduler tests use plain callables.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tap_ashby.endpoints import ROWS
from tap_ashby.plan import bucket_of, make_plan
from tap_ashby.scheduler import Scheduler
from tap_ashby.settings import Settings
from tap_ashby.throttle import RequestBudget, Stopped

WAIT = 10.0  # generous bound for "eventually happens" (never a speed assertion)


def settings(**overrides: Any) -> Settings:
    return Settings.from_config({"api_key": "k", **overrides})


def plan_for(selected: set[str], states: dict[str, Any] | None = None, **kw: Any) -> Any:
    ledger_ok = kw.pop("ledger_ok", {})
    return make_plan(ROWS, selected, states or {}, settings(**kw), ledger_ok)


def test_settings_has_every_setting_of_the_schema() -> None:
    """The typed view and the config schema name the same settings, and every default comes
    from the schema (so a new setting is one schema property plus one field)."""
    from dataclasses import fields  # noqa: PLC0415

    from tap_ashby.settings import CONFIG_SCHEMA  # noqa: PLC0415

    assert {f.name for f in fields(Settings)} == set(CONFIG_SCHEMA["properties"])
    typed = settings()
    for name, spec in CONFIG_SCHEMA["properties"].items():
        if "default" in spec:
            assert getattr(typed, name) == spec["default"], name


# =========================================================================================
# plan.py
# =========================================================================================
class TestPlan:
    def test_report_results_without_report_ids_makes_no_call(self) -> None:
        plan = plan_for({"report_results"})
        assert plan["report_results"].skip == "no report_ids configured"
        assert plan["report_results"].passes == ()
        with_ids = plan_for({"report_results"}, report_ids=["r1", "r2"])
        assert with_ids["report_results"].skip is None
        assert [p.partition for p in with_ids["report_results"].passes] == [
            {"reportId": "r1"},
            {"reportId": "r2"},
        ]

    def test_a_grandchild_reads_the_keys_of_its_parents_pass(self) -> None:
        """job_posting_details lists the postings of job_postings' pass of this run: no
        second read of job_boards and job_postings."""
        plan = plan_for({"job_boards", "job_postings", "job_posting_details"})
        assert plan["job_postings"].children == ("job_posting_details",)
        fan = plan["job_posting_details"].fanout
        assert fan is not None and fan.shared and fan.parent == "job_postings"
        assert not fan.needs_scan  # postings are listed whole every run
        alone = plan_for({"job_posting_details"})["job_posting_details"].fanout
        assert alone is not None and not alone.shared  # its own read, only when alone

    def test_a_ledger_rebuild_is_decided_before_any_fan_out(self) -> None:
        """An unusable ledger makes the child pass list every parent: known at plan time,
        so children fetched ahead are never the wrong ones (and never fetched twice)."""
        states = {
            "candidates": {"sync_token": "t1", "token_since": "2026-12-01"},
            "candidate_notes": {"parent_sync_token": "t1", "token_since": "2026-12-01"},
        }
        sel = {"candidates", "candidate_notes"}
        good = plan_for(sel, states, child_refresh_every_n_runs=0)["candidate_notes"].fanout
        assert good is not None and good.token == "t1" and not good.every_parent
        assert not good.needs_scan
        lost = plan_for(
            sel, states, child_refresh_every_n_runs=0, ledger_ok={"candidate_notes": False}
        )["candidate_notes"].fanout
        assert lost is not None and lost.every_parent and lost.needs_scan

    def test_one_parent_pass_starts_from_the_oldest_bookmark(self) -> None:
        states = {
            "candidates": {"sync_token": "new", "token_since": "2026-12-05"},
            "candidate_notes": {"parent_sync_token": "old", "token_since": "2026-12-01"},
        }
        plan = plan_for({"candidates", "candidate_notes"}, states)
        assert plan["candidates"].passes[0].token == "old"
        assert plan["candidates"].children == ("candidate_notes",)
        fresh = plan_for({"candidates", "candidate_notes"}, {"candidates": states["candidates"]})
        assert fresh["candidates"].passes[0].token is None  # a new child: one full pass

    def test_rolling_refresh_slices_cover_every_parent_every_n_runs(self) -> None:
        states = {
            "candidates": {"sync_token": "t", "token_since": "2026-12-01"},
            "candidate_notes": {"parent_sync_token": "t", "token_since": "2026-12-01"},
        }
        buckets = set()
        for run in range(7):
            states["candidate_notes"]["refresh_run"] = run
            fan = plan_for({"candidates", "candidate_notes"}, states)["candidate_notes"].fanout
            assert fan is not None and fan.refresh is not None and fan.needs_scan
            buckets.add(fan.refresh)
        assert buckets == {(b, 7) for b in range(7)}
        off = plan_for({"candidates", "candidate_notes"}, states, child_refresh_every_n_runs=0)
        assert off["candidate_notes"].fanout is not None
        assert off["candidate_notes"].fanout.refresh is None

    def test_refresh_slices_are_even(self) -> None:
        sizes = Counter(bucket_of(str(uuid.uuid4()), 7) for _ in range(70_000))
        assert set(sizes) == set(range(7))
        assert max(sizes.values()) < 1.1 * 10_000 and min(sizes.values()) > 0.9 * 10_000

    def test_an_unfinished_child_pass_resumes_where_it_stopped(self) -> None:
        pending = {"after": "k-500", "token": None, "since": "", "every": False, "refresh": None}
        states = {
            "candidates": {"sync_token": "t2", "token_since": "2026-12-02"},
            "candidate_notes": {"resume": pending},
        }
        plan = plan_for({"candidates", "candidate_notes"}, states)
        fan = plan["candidate_notes"].fanout
        assert fan is not None and fan.resume_after == "k-500" and plan["candidate_notes"].resumed
        # the interrupted pass was a first (full) one: the parent pass is full again
        assert plan["candidates"].passes[0].token is None

    def test_a_resume_reads_the_kept_parents_and_only_changes_since(self) -> None:
        kept = {"path": "_resume/candidate_notes/x.parents", "token": "t1", "since": "s1"}
        pending = {"after": "k-9", "token": None, "since": "", "every": False, "keys": kept}
        states = {
            "candidates": {"sync_token": "t1", "token_since": "s1"},
            "candidate_notes": {"resume": pending},
        }
        sel = {"candidates", "candidate_notes"}
        plan = make_plan(ROWS, sel, states, settings(), {}, None, {"candidate_notes": True})
        fan = plan["candidate_notes"].fanout
        assert fan is not None and fan.resume_keys == kept["path"] and fan.token == "t1"
        assert fan.resume_after == "k-9" and fan.refresh is None and not fan.every_parent
        assert plan["candidates"].passes[0].token == "t1"  # incremental, not a full pass
        lost = make_plan(ROWS, sel, states, settings(), {}, None, {"candidate_notes": False})
        fan = lost["candidate_notes"].fanout
        assert fan is not None and fan.resume_keys is None and fan.token is None
        assert lost["candidates"].passes[0].token is None  # starts that pass over

    def test_partitions_and_unselected_streams(self) -> None:
        plan = plan_for({"survey_submissions"})
        assert len(plan["survey_submissions"].passes) == 3
        assert plan.order == ["survey_submissions"]

    def test_the_plan_is_pure(self) -> None:
        """Same inputs, same plan (no clock, no I/O): made twice, equal."""
        sel = {r.stream for r in ROWS}
        assert plan_for(sel, report_ids=["r"]) == plan_for(sel, report_ids=["r"])


# =========================================================================================
# scheduler.py
# =========================================================================================
def scheduler(workers: int = 2) -> Scheduler:
    return Scheduler(workers, RequestBudget(0, workers), None)


def counting(n: int, made: list[int] | None = None) -> Iterator[list[int]]:
    for i in range(n):
        if made is not None:
            made.append(i)
        yield [i]


class TestScheduler:
    def test_workers_are_the_only_threads_and_daemons(self) -> None:
        before = threading.active_count()
        sched = scheduler(4)
        try:
            assert threading.active_count() - before == 4
            assert all(t.daemon for t in sched._threads)
        finally:
            sched.close()

    def test_a_pass_hands_out_pages_in_order_and_stays_bounded(self) -> None:
        sched = scheduler(2)
        try:
            made: list[int] = []
            job = sched.pass_job(0, counting(1000, made), depth=3)
            deadline = time.monotonic() + WAIT
            while len(made) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            assert len(made) == 3  # nobody reads: it stops at its buffer
            assert [rows[0] for rows in job] == list(range(1000))
        finally:
            sched.close()

    def test_a_fan_out_hands_results_back_in_key_order(self) -> None:
        sched = scheduler(4)

        def fetch(key: int) -> int:
            time.sleep(0.001 * (key % 5))  # finishes out of order
            return key * 10

        try:
            job = sched.fan_out(0, iter(range(200)), fetch)
            assert list(job) == [(k, k * 10) for k in range(200)]
            assert not job.cut
        finally:
            sched.close()

    def test_errors_reach_the_consumer(self) -> None:
        sched = scheduler(2)

        def fetch(key: int) -> int:
            if key == 7:
                raise ValueError("parent 7 exploded")
            return key

        try:
            job = sched.fan_out(0, iter(range(20)), fetch)
            with pytest.raises(ValueError, match="parent 7 exploded"):
                list(job)
        finally:
            sched.close()

    def test_halt_finishes_what_is_in_flight_and_starts_nothing_new(self) -> None:
        sched = scheduler(2)
        started: list[int] = []
        gate = threading.Event()

        def fetch(key: int) -> int:
            started.append(key)
            if key == 5:
                gate.wait(WAIT)
            return key

        try:
            job = sched.fan_out(0, iter(range(10_000)), fetch)
            seen = []
            for key, _ in job:
                seen.append(key)
                if key == 3:
                    sched.halt("deadline")
                    gate.set()
            assert job.cut and sched.reason == "deadline"
            assert seen == list(range(len(seen)))  # a prefix, in order, no gap
            assert len(started) <= 4 + sched.workers * 4 + 2  # nothing after the halt
        finally:
            sched.close()

    def test_the_most_urgent_job_goes_first(self) -> None:
        sched = scheduler(1)
        order: list[str] = []
        gate = threading.Event()
        try:
            sched.submit(0, lambda: gate.wait(WAIT))  # hold the only worker
            sched.submit(5, lambda: order.append("later stream"))
            sched.submit(1, lambda: order.append("current stream"))
            gate.set()
            deadline = time.monotonic() + WAIT
            while len(order) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert order == ["current stream", "later stream"]
        finally:
            sched.close()

    def test_a_stopped_budget_refuses_waiting_requests(self) -> None:
        budget = RequestBudget(60, 1)  # one request a second
        results: list[str] = []

        def request() -> None:
            try:
                with budget.slot():
                    results.append("sent")
            except Stopped:
                results.append("stopped")

        request()
        waiter = threading.Thread(target=request)
        waiter.start()
        budget.stop.set()
        waiter.join(WAIT)
        assert results == ["sent", "stopped"]


def test_no_import_circle_in_the_tap() -> None:
    """Each module of tap_ashby imports only modules below it (type-only imports too)."""
    import ast  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    root = Path(__file__).resolve().parent.parent / "tap_ashby"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = path.relative_to(root).with_suffix("").as_posix().replace("/", ".")
        name = name.removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                deps.add(".".join([*base, node.module] if node.module else base))
        graph[name] = deps

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for dep in graph.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    circles = [name for name in graph if name in reach(name)]
    assert circles == []
