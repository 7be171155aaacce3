"""The emulator's records agree with each other (emulator/ashby_emulator/hiring.py)."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest
from ashby_emulator.hiring import PLAN_STAGES
from ashby_emulator.org import Org

STAGE_TYPES = {"Lead", "PreInterviewScreen", "Active", "Offer", "Hired", "Archived"}


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rows(org: Org, name: str) -> list[dict[str, Any]]:
    """Live rows; history entries get the applicationId the tap injects from the parent."""
    table, apps = org.tables[name], org.tables["applications"]
    out = [(i, r) for i in table.live_indices() if (r := table.get(i)) is not None]
    if name == "application_history":
        return [{**r, "applicationId": apps.id_of(table.parent_index(i))} for i, r in out]
    return [r for _, r in out]


def by_id(org: Org, name: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows(org, name)}


@pytest.fixture(scope="module")
def org() -> Org:
    return Org(candidates=400, seed=5)


def test_embedded_copies_equal_their_records(org: Org) -> None:
    jobs, cands, sources = by_id(org, "jobs"), by_id(org, "candidates"), by_id(org, "sources")
    stages = by_id(org, "interview_stages")
    for app in rows(org, "applications"):
        job = jobs[app["job"]["id"]]
        assert app["job"] == {k: job.get(k) for k in app["job"]}
        cand = cands[app["candidate"]["id"]]
        assert app["candidate"]["name"] == cand["name"]
        assert app["id"] in cand["applicationIds"]
        if app.get("source") is not None:
            assert app["source"]["title"] == sources[app["source"]["id"]]["title"]
        stage = stages[app["currentInterviewStage"]["id"]]
        assert app["currentInterviewStage"]["title"] == stage["title"]
        assert stage["interviewPlanId"] == job["defaultInterviewPlanId"]


def test_plans_have_the_real_stage_types(org: Org) -> None:
    by_plan: dict[str, list[tuple[int, str]]] = {}
    for stage in rows(org, "interview_stages"):
        by_plan.setdefault(stage["interviewPlanId"], []).append(
            (stage["orderInInterviewPlan"], stage["type"])
        )
    assert by_plan
    for stages in by_plan.values():
        assert {t for _, t in stages} == STAGE_TYPES
        assert sorted(stages) == [(k + 1, t) for k, (_, t) in enumerate(PLAN_STAGES)]


def test_history_is_a_timeline_and_status_agrees(org: Org) -> None:
    history: dict[str, list[dict[str, Any]]] = {}
    for entry in rows(org, "application_history"):
        history.setdefault(entry["applicationId"], []).append(entry)
    apps = rows(org, "applications")
    assert set(history) == {a["id"] for a in apps}
    for app in apps:
        entries = sorted(history[app["id"]], key=lambda e: e["enteredStageAt"])
        open_ = [e for e in entries if e["leftStageAt"] is None]
        assert len(open_) == 1 and open_[0] is entries[-1]
        assert all(e["enteredStageAt"] <= e["leftStageAt"] for e in entries[:-1])
        assert all(a["leftStageAt"] == b["enteredStageAt"] for a, b in pairwise(entries))
        assert open_[0]["stageId"] == app["currentInterviewStage"]["id"]
        kind = app["currentInterviewStage"]["type"]
        expected = kind if kind in ("Hired", "Archived", "Lead") else "Active"
        assert app["status"] == expected
        assert (app["archiveReason"] is not None) == (app["status"] == "Archived")


def test_offers_feedback_and_interviews_belong_together(org: Org) -> None:
    history: dict[str, set[str]] = {}
    for entry in rows(org, "application_history"):
        history.setdefault(entry["applicationId"], set()).add(entry["title"])
    apps = by_id(org, "applications")
    offers = rows(org, "offers")
    assert offers
    for offer in offers:
        assert "Offer" in history[offer["applicationId"]]
        if apps[offer["applicationId"]]["status"] == "Hired":
            assert offer["offerStatus"] == "CandidateAccepted"
    schedules = by_id(org, "interview_schedules")
    events = {e["id"]: e for s in schedules.values() for e in s["interviewEvents"]}
    with_event = 0
    for fb in rows(org, "application_feedback"):
        if fb["interviewEventId"] is None:
            continue
        with_event += 1
        schedule = schedules[events[fb["interviewEventId"]]["interviewScheduleId"]]
        assert schedule["applicationId"] == fb["applicationId"]
        assert events[fb["interviewEventId"]]["hasSubmittedFeedback"]
    assert with_event > 0


def test_funnel_narrows_and_days_vary(org: Org) -> None:
    entered: Counter[str] = Counter()
    days: dict[str, list[float]] = {}
    for entry in rows(org, "application_history"):
        entered[entry["title"]] += 1
        if entry["leftStageAt"]:
            t0 = ts(entry["enteredStageAt"])
            days.setdefault(entry["title"], []).append((ts(entry["leftStageAt"]) - t0) / 86400)
    pipeline = [t for t, kind in PLAN_STAGES if kind not in ("Hired", "Archived")]
    counts = [entered[t] for t in pipeline]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1] > 0
    assert entered["Hired"] > 0 and entered["Archived"] > 0
    assert all(statistics.pstdev(v) > 0.5 for v in days.values())


def test_candidates_have_zero_or_more_applications(org: Org) -> None:
    per = Counter(len(c["applicationIds"]) for c in rows(org, "candidates"))
    assert per[0] > 0 and per[1] > 0 and sum(n for k, n in per.items() if k >= 2) > 0
    assert sum(k * n for k, n in per.items()) == len(rows(org, "applications"))


def test_custom_field_values_carry_the_field_titles(org: Org) -> None:
    fields = by_id(org, "custom_fields")
    for app in rows(org, "applications")[:50]:
        for value in app["customFields"]:
            assert fields[value["id"]]["title"] == value["title"]
            assert fields[value["id"]]["objectType"] == "Application"
