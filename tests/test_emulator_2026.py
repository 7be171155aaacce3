"""The emulator against Ashby's 2026 API (protocol.md section 15): new endpoints, strict bodies,
versions, job boards, survey types, the incremental page cap, partner 429s and random ids."""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid
import zlib
from datetime import datetime
from typing import Any

import pytest
import requests
from ashby_emulator import Emulator, Org
from ashby_emulator.catalog import endpoints
from ashby_emulator.org import IdCodec
from test_emulator import page_all as page_pass

SERVED_ROLES = ("stream", "optional_stream", "lookup")


@pytest.fixture(scope="module")
def shared() -> Any:
    """One emulator for the read-only per-endpoint tests."""
    with Emulator(candidates=30, seed=7, key="k") as emu:
        yield emu


def post(
    emu: Emulator, path: str, body: dict | None = None, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{emu.url}/{path}", json=body or {}, auth=(emu.key, ""), headers=headers, timeout=10
    )


def answer(emu: Emulator, path: str, body: dict | None = None) -> dict[str, Any]:
    return post(emu, path, body).json()


def page_all(emu: Emulator, path: str, body: dict) -> tuple[list[dict], list[dict]]:
    """One pass through the in-process API (no HTTP), as ``test_emulator.page_all``."""
    return page_pass(emu, path, body, send=answer)


def code(emu: Emulator, path: str, body: dict | None = None) -> str | None:
    out = answer(emu, path, body)
    return None if out["success"] else out["errorInfo"]["code"]


def valid_body(emu: Emulator, row: dict) -> dict[str, Any]:
    """A minimal body the catalog row accepts (ids of live rows for id params)."""
    org, body = emu.org, {}
    if row.get("parent"):
        parent = endpoints()[row["parent"]["path"]]
        own = org.tables.get(row["stream"])
        table = own.spec.parent if own and own.spec.parent else parent["stream"]
        body[row["parent"]["param"]] = org.live_ids(table)[0]
    for name, spec in row["params"].items():
        if name in body or not spec.get("required"):
            continue
        if spec.get("values"):
            body[name] = spec["values"][0]
        elif row["kind"] == "info" and row.get("lookup_of") in org.tables:
            body[name] = org.live_ids(row["lookup_of"])[0]
        else:
            body[name] = "x"
    if row["path"] in ("candidate.info", "job.search", "project.search"):
        body = (
            {"id": org.live_ids("candidates")[0]}
            if row["path"] == "candidate.info"
            else {"title": "1"}
        )
    if row["path"] == "candidate.search":
        body = {"name": "Candidate 1"}
    if row["path"] == "application.info":
        body = {"applicationId": org.live_ids("applications")[0]}
    return body


def prefix_length(a: str, b: str) -> int:
    """How many leading characters two strings share."""
    return next((k for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))


# -- 1. catalog and new endpoints --------------------------------------------------------
def test_catalog_is_the_2026_one() -> None:
    rows = endpoints()
    assert len(rows) == 82
    for path in (
        "sequence.list",
        "sequenceTemplate.list",
        "takeHomeAssignment.list",
        "user.listInterviewerPauses",
        "version.list",
        "emailSender.list",
        "auditLog.list",
        "interviewBriefing.info",
        "sequence.info",
        "sequenceTemplate.info",
        "takeHomeAssignment.info",
    ):
        assert path in rows


@pytest.mark.parametrize(
    "path", sorted(p for p, r in endpoints().items() if r["role"] in SERVED_ROLES)
)
def test_every_served_endpoint_answers(shared: Emulator, path: str) -> None:
    row = endpoints()[path]
    out = answer(shared, path, valid_body(shared, row))
    assert out["success"], (path, out)
    if row["kind"] in ("list", "child_list") and path != "hiringTeamRole.list":
        assert isinstance(out["results"], list)
    assert ("moreDataAvailable" in out) == (
        row["paginated"]
        or path in ("source.list", "interviewStage.list", "archiveReason.list", "jobBoard.list")
    )


def test_never_endpoints_are_counted(emulator: Emulator) -> None:
    for path, row in endpoints().items():
        if row["role"] == "never":
            post(emulator, path, {"reportId": "r1"} if path.startswith("report") else {})
    assert emulator.api.side_effect_calls == {"referralForm.info": 1, "report.generate": 1}


def test_interviewer_pauses_are_an_unpaginated_child_of_users(emulator: Emulator) -> None:
    user = emulator.org.live_ids("users")[0]
    out = answer(emulator, "user.listInterviewerPauses", {"userId": user})
    assert out["results"] and all(p["userId"] == user for p in out["results"])
    assert set(out) == {"success", "results"}
    for extra in ({"limit": 10}, {"cursor": "c"}, {"syncToken": "t"}):
        bad = answer(emulator, "user.listInterviewerPauses", {"userId": user, **extra})
        assert bad["errorInfo"]["code"] == "invalid_input"
        assert next(iter(extra)) in bad["errorInfo"]["message"]


def test_interview_stage_groups_are_org_wide_and_take_no_body(emulator: Emulator) -> None:
    out = answer(emulator, "interviewStageGroup.list")
    assert len(out["results"]) == 6 and "moreDataAvailable" not in out
    assert all("interviewPlanId" not in g for g in out["results"])
    plan = emulator.org.live_ids("interview_plans")[0]
    for body in ({"interviewPlanId": plan}, {"limit": 100}, {"cursor": "x"}):
        bad = answer(emulator, "interviewStageGroup.list", body)
        assert bad["errorInfo"]["code"] == "invalid_input"
        assert next(iter(body)) in bad["errorInfo"]["message"]


def test_version_list_and_email_senders(emulator: Emulator) -> None:
    versions = answer(emulator, "version.list")["results"]
    assert {"version": "2026-01-01", "status": "active"} in versions
    emulator.add_key("bare", set())  # version.list names no permission: any key may call it
    bare = requests.post(f"{emulator.url}/version.list", json={}, auth=("bare", ""), timeout=10)
    assert bare.json()["success"]
    senders = answer(emulator, "emailSender.list")
    assert senders["results"] and all(s["email"] for s in senders["results"])
    assert code(emulator, "emailSender.list", {"limit": 5}) == "invalid_input"


def test_sequences_templates_and_take_homes(emulator: Emulator) -> None:
    org = emulator.org
    seqs, env = page_all(emulator, "sequence.list", {"limit": 3})
    assert len(seqs) == len(org.live_ids("sequences")) and env[-1]["syncToken"]
    cand = seqs[0]["candidateId"]
    only = answer(emulator, "sequence.list", {"candidateId": cand})["results"]
    assert only and all(s["candidateId"] == cand for s in only)
    assert answer(emulator, "sequence.info", {"sequenceId": seqs[0]["id"]})["results"] == seqs[0]
    assert (
        code(emulator, "sequence.info", {"sequenceId": str(uuid.uuid4())}) == "sequence_not_found"
    )
    shown = page_all(emulator, "sequenceTemplate.list", {"includeArchived": True})[0]
    hidden = page_all(emulator, "sequenceTemplate.list", {})[0]
    assert len(hidden) < len(shown) == 6 and not any(t["isArchived"] for t in hidden)
    assert answer(emulator, "sequenceTemplate.info", {"sequenceTemplateId": shown[0]["id"]})[
        "success"
    ]
    homes = page_all(emulator, "takeHomeAssignment.list", {})[0]
    apps = {a["id"]: a for a in page_all(emulator, "application.list", {})[0]}
    assert homes and all(
        apps[h["applicationId"]]["candidate"]["id"] == h["candidateId"] for h in homes
    )
    assert (
        answer(emulator, "takeHomeAssignment.info", {"takeHomeAssignmentId": homes[0]["id"]})[
            "results"
        ]["id"]
        == homes[0]["id"]
    )
    assert (
        code(emulator, "takeHomeAssignment.info", {"takeHomeAssignmentId": "nope"})
        == "take_home_assignment_not_found"
    )


def test_interview_briefing_is_keyed_by_the_event(emulator: Emulator) -> None:
    event = emulator.org.live_ids("interview_events")[3]
    out = answer(emulator, "interviewBriefing.info", {"interviewEventId": event})
    assert out["results"]["id"] == event
    assert (
        code(
            emulator,
            "interviewBriefing.info",
            {"interviewEventId": event, "interviewScheduleId": "x"},
        )
        == "invalid_input"
    )


def test_audit_log_is_newest_first_within_a_window(emulator: Emulator) -> None:
    org = emulator.org
    start = "2025-11-01T00:00:00.000Z"  # 30 days before the org's clock start, and more
    entries, env = page_all(emulator, "auditLog.list", {"startDate": start, "limit": 7})
    stamps = [e["timestamp"] for e in entries]
    assert len(entries) == len(org.live_ids("audit_log_entries")) == 20 and len(env) == 3
    assert stamps == sorted(stamps, reverse=True) and "syncToken" not in env[-1]
    recent = answer(emulator, "auditLog.list")["results"]  # default: the last 24 hours
    assert len(recent) < 20 and all(e["timestamp"] >= stamps[0][:10] for e in recent)
    created = org.create("audit_log_entries").upserted[0][1]
    assert answer(emulator, "auditLog.list")["results"][0]["id"] == created
    cursor = env[0]["nextCursor"]
    moved = answer(
        emulator,
        "auditLog.list",
        {"startDate": "2025-10-01T00:00:00Z", "limit": 7, "cursor": cursor},
    )
    assert moved["errorInfo"]["code"] == "cursor_invalid"
    assert code(emulator, "auditLog.list", {"cursor": "junk"}) == "cursor_invalid"
    for body in (
        {"startDate": "2026-01-02T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"},
        {"startDate": "2023-01-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"},
        {"startDate": "yesterday"},
        {"syncToken": "t"},
    ):
        assert code(emulator, "auditLog.list", body) == "invalid_input", body
    category = entries[0]["category"]
    same = answer(emulator, "auditLog.list", {"startDate": start, "categories": [category]})
    assert same["results"] and all(e["category"] == category for e in same["results"])


# -- 2. strict request bodies ------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(endpoints()))
def test_every_endpoint_refuses_undeclared_fields(shared: Emulator, path: str) -> None:
    row = endpoints()[path]
    out = post(shared, path, {**valid_body(shared, row), "notAField": 1})
    assert out.status_code == 200  # like the emulator's other invalid_input answers
    assert out.json()["errorInfo"]["code"] == "invalid_input", out.json()
    assert "notAField" in out.json()["errorInfo"]["message"]


def test_declared_fields_and_coercion(emulator: Emulator) -> None:
    assert len(answer(emulator, "candidate.list", {"limit": "5"})["results"]) == 5
    dept = emulator.org.live_ids("departments")[0]
    emulator.org.archive("departments", dept)
    shown = answer(emulator, "department.list", {"includeArchived": "true"})["results"]
    assert dept in {d["id"] for d in shown}
    for path, body in [
        ("candidate.list", {"limit": "many"}),
        ("department.list", {"includeArchived": "yes"}),
        ("surveySubmission.list", {"surveyType": "Bogus"}),
        ("job.list", {"status": "Open"}),  # an array in the catalog
        ("brand.list", {"syncToken": "t"}),  # paginated, no token
        ("jobBoard.list", {"limit": 10}),
        ("jobPosting.list", {"cursor": "c"}),
        ("candidate.list", {"createdAfter": 5, "createdBefore": 1}),
    ]:
        assert code(emulator, path, body) == "invalid_input", (path, body)
    for path, body in [
        ("user.list", {"cursor": None, "syncToken": None}),
        ("jobPosting.list", {"jobBoardId": None, "listedOnly": "false"}),
        ("surveySubmission.list", {"surveyType": "HiringManagerExperience"}),
    ]:
        assert answer(emulator, path, body)["success"], (path, body)


def test_created_before_is_an_inclusive_bound(emulator: Emulator) -> None:
    cands = page_all(emulator, "candidate.list", {})[0]
    pivot = sorted(c["createdAt"] for c in cands)[9]
    ms = int(datetime.fromisoformat(pivot.replace("Z", "+00:00")).timestamp() * 1000)
    assert len(page_all(emulator, "candidate.list", {"createdBefore": ms})[0]) == 10


def test_strictness_can_be_turned_off(emulator: Emulator) -> None:
    plan = emulator.org.live_ids("interview_plans")[0]
    emulator.configure(strict_bodies=False)
    out = answer(emulator, "interviewStageGroup.list", {"interviewPlanId": plan, "limit": 1})
    assert out["success"] and len(out["results"]) == 6  # ignored, not a filter
    requests.post(f"{emulator.url}/_emulator/settings", json={"strict_bodies": "true"}, timeout=10)
    assert emulator.api.settings.strict_bodies is True


# -- 3. versions -------------------------------------------------------------------------
def test_version_headers_on_every_answer(emulator: Emulator) -> None:
    plain = post(emulator, "brand.list")
    assert plain.headers["Ashby-Version"] == "2026-01-01"
    assert plain.headers["Ashby-Version-Status"] == "active"
    pinned = post(emulator, "brand.list", headers={"Ashby-Version": "2026-01-01"})
    assert pinned.headers["Ashby-Version"] == "2026-01-01" and pinned.json()["success"]
    unauth = requests.post(f"{emulator.url}/brand.list", json={}, timeout=10)
    assert unauth.status_code == 401 and unauth.headers["Ashby-Version"] == "2026-01-01"
    emulator.faults.update(rate_limit=1.0)
    limited = post(emulator, "brand.list")
    assert limited.status_code == 429 and limited.headers["Ashby-Version-Status"] == "active"


def test_unknown_deprecated_and_removed_versions(emulator: Emulator) -> None:
    unknown = post(emulator, "brand.list", headers={"Ashby-Version": "2024-01-01"})
    assert unknown.status_code == 400
    assert unknown.json()["errorInfo"]["code"] == "invalid_input"
    assert "2024-01-01" in unknown.json()["errorInfo"]["message"]
    assert unknown.headers["Ashby-Version"] == "2024-01-01"
    emulator.set_version("2026-01-01", "deprecated")
    old = post(emulator, "brand.list")
    assert old.json()["success"] and old.headers["Ashby-Version-Status"] == "deprecated"
    url = f"{emulator.url}/_emulator/version"
    assert requests.post(
        url, json={"version": "2026-09-01", "status": "pre-release"}, timeout=10
    ).json()["ok"]
    new = post(emulator, "brand.list", headers={"Ashby-Version": "2026-09-01"})
    assert new.json()["success"] and new.headers["Ashby-Version-Status"] == "pre-release"
    listed = answer(emulator, "version.list")["results"]
    assert {"version": "2026-09-01", "status": "pre-release"} in listed
    emulator.set_version("2026-01-01", "removed")
    gone = post(emulator, "brand.list")  # the key's default was removed
    assert gone.status_code == 400 and gone.headers["Ashby-Version-Status"] == "removed"
    with pytest.raises(ValueError):
        emulator.set_version("2026-01-01", "retired")


# -- 4. job boards -----------------------------------------------------------------------
def test_postings_belong_to_one_board_each(emulator: Emulator) -> None:
    boards = answer(emulator, "jobBoard.list")["results"]
    assert len(boards) == 3 and boards[0]["title"].endswith("(primary)")
    assert not boards[0]["isInternal"] and any(b["isInternal"] for b in boards)
    default = {p["id"] for p in answer(emulator, "jobPosting.list")["results"]}
    per_board = [
        {p["id"] for p in answer(emulator, "jobPosting.list", {"jobBoardId": b["id"]})["results"]}
        for b in boards
    ]
    every = set(emulator.org.live_ids("job_postings"))
    assert default == per_board[0] and set().union(*per_board) == every
    assert sum(len(s) for s in per_board) == len(every)  # disjoint
    assert len(every - default) >= len(every) // 3  # a real share off the primary board
    assert (
        code(emulator, "jobPosting.list", {"jobBoardId": str(uuid.uuid4())})
        == "job_board_not_found"
    )
    internal = next(iter(per_board[1]))
    wrong_board = code(
        emulator, "jobPosting.info", {"jobPostingId": internal, "jobBoardId": boards[0]["id"]}
    )
    assert wrong_board == "job_posting_detail_not_found"
    assert answer(
        emulator, "jobPosting.info", {"jobPostingId": internal, "jobBoardId": boards[1]["id"]}
    )["success"]


# -- 5. survey types ---------------------------------------------------------------------
def test_survey_submissions_span_three_types(emulator: Emulator) -> None:
    values = endpoints()["surveySubmission.list"]["params"]["surveyType"]["values"]
    assert "HiringManagerExperience" in values and len(values) == 3
    seen: set[str] = set()
    for value in values:
        rows = page_all(emulator, "surveySubmission.list", {"surveyType": value})[0]
        assert rows and all(r["surveyType"] == value for r in rows), value
        seen |= {r["id"] for r in rows}
    assert seen == set(emulator.org.live_ids("survey_submissions"))


# -- 6. incremental page cap -------------------------------------------------------------
def test_incremental_page_cap_comes_mid_pass(emulator: Emulator) -> None:
    org = emulator.org
    token = page_all(emulator, "candidate.list", {"limit": 3})[1][-1]["syncToken"]
    for cid in org.live_ids("candidates")[:10]:
        org.update("candidates", cid)
    out = requests.post(
        f"{emulator.url}/_emulator/settings", json={"max_incremental_pages": 2}, timeout=10
    ).json()
    assert out["result"]["max_incremental_pages"] == 2
    first = answer(emulator, "candidate.list", {"syncToken": token, "limit": 3})
    second = answer(
        emulator, "candidate.list", {"syncToken": token, "limit": 3, "cursor": first["nextCursor"]}
    )
    assert first["success"] and second["success"] and second["moreDataAvailable"]
    third = answer(
        emulator, "candidate.list", {"syncToken": token, "limit": 3, "cursor": second["nextCursor"]}
    )
    assert third["errorInfo"]["code"] == "incremental_sync_too_large"
    assert len(page_all(emulator, "candidate.list", {"limit": 3})[1]) > 2  # full passes: no cap


# -- 7. child changes and the parent -----------------------------------------------------
@pytest.mark.parametrize("touch", [True, False])
def test_child_changes_touch_parent_or_not(emulator: Emulator, touch: bool) -> None:
    org = emulator.org
    token = page_all(emulator, "candidate.list", {})[1][-1]["syncToken"]
    emulator.admin("settings", {"child_changes_touch_parent": str(touch).lower()})
    cand = org.live_ids("candidates")[4]
    note = org.create("candidate_notes", parent_id=cand).upserted[0][1]
    changed = {c["id"] for c in page_all(emulator, "candidate.list", {"syncToken": token})[0]}
    assert (cand in changed) is touch
    notes = page_all(emulator, "candidate.listNotes", {"candidateId": cand})[0]
    assert note in {n["id"] for n in notes}


# -- 8. partner-scope 429 ----------------------------------------------------------------
def test_partner_rate_limit_names_its_scope(emulator: Emulator) -> None:
    emulator.faults.update(partner_rate_limit=1.0, retry_after=3)
    limited = post(emulator, "brand.list")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert limited.headers["X-RateLimit-Scope"] == "integration-partner"
    assert limited.json()["errorInfo"]["code"] == "rate_limit_exceeded"
    emulator.faults.update(partner_rate_limit=0.0, rate_limit=1.0)
    assert "X-RateLimit-Scope" not in post(emulator, "brand.list").headers


# -- 9. ids ------------------------------------------------------------------------------
def test_ids_look_random_and_are_uuid4() -> None:
    table = Org(candidates=2_000, seed=3).tables["candidates"]
    ids = [table.id_of(i) for i in range(2_000)]
    assert len(set(ids)) == len(ids)
    assert {text[0] for text in ids} == set("0123456789abcdef")  # no prefix per table
    assert max(prefix_length(a, b) for a, b in itertools.pairwise(ids)) < 6
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122

    # compresses like real uuid4s: nothing sequential for a codec to exploit
    def ratio(texts: list[str]) -> float:
        raw = "\n".join(texts).encode()
        return len(zlib.compress(raw, 9)) / len(raw)

    assert ratio(ids) > 0.97 * ratio([str(uuid.uuid4()) for _ in ids])


def test_ids_are_reversible_and_private_to_table_and_seed() -> None:
    org = Org(candidates=300, seed=5)
    cands, apps = org.tables["candidates"], org.tables["applications"]
    assert all(cands.index_of(cands.id_of(i)) == i for i in range(300))
    assert cands.index_of(apps.id_of(3)) is None
    assert cands.index_of(Org(candidates=300, seed=6).tables["candidates"].id_of(3)) is None
    assert cands.index_of(cands.id_of(300)) is None  # not created (yet)
    assert cands.index_of("not-a-uuid") is None and cands.index_of(str(uuid.uuid4())) is None
    codec = IdCodec("5:candidates")
    for index in (0, 1, 2**40 + 7, 2**63 + 5, 2**64 - 1):
        assert codec.decode(codec.encode(index)) == index
    every = [
        t.id_of(i)
        for t in org.tables.values()
        if not t.spec.same_id_as_parent
        for i in range(t.count)
    ]
    assert len(every) == len(set(every))  # no collisions between tables
    events = org.tables["interview_events"]
    assert org.tables["interview_briefings"].id_of(7) == events.id_of(7)  # same_id_as_parent


# -- CLI ---------------------------------------------------------------------------------
def test_cli_sets_settings_faults_and_versions() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ashby_emulator.cli",
            "--port",
            "0",
            "--scale",
            "tiny",
            "--set",
            "max_incremental_pages=7",
            "--set",
            "child_changes_touch_parent=false",
            "--fault",
            "partner_rate_limit=0",
            "--api-version",
            "2026-01-01=deprecated",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = next(w for w in line.split() if w.startswith("http"))
        got = requests.post(f"{url}/brand.list", json={}, auth=("demo", ""), timeout=10)
        assert got.headers["Ashby-Version-Status"] == "deprecated"
        settings = requests.post(f"{url}/_emulator/settings", json={}, timeout=10).json()
        assert settings["result"]["max_incremental_pages"] == 7
        assert settings["result"]["child_changes_touch_parent"] is False
    finally:
        proc.terminate()
        proc.wait(10)
