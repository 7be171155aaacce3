"""The emulator against Ashby's documented protocol and the recorded responses."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from ashby_emulator import ALL_PERMISSIONS, Emulator, Faults
from ashby_emulator.catalog import endpoints, objects

EXAMPLES = Path(__file__).parent / "fixtures" / "examples"


def post(
    emu: Emulator,
    path: str,
    body: dict | None = None,
    key: str | None = None,
) -> requests.Response:
    auth = (key if key is not None else emu.key, "")
    return requests.post(f"{emu.url}/{path}", json=body or {}, auth=auth, timeout=10)


def page_all(
    emu: Emulator,
    path: str,
    body: dict,
    send: Callable[[Emulator, str, dict], dict] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Every record of one pass, and every envelope seen (over HTTP, or through ``send``)."""
    call = send or (lambda e, p, b: post(e, p, b).json())
    records, envelopes, cursor = [], [], None
    while True:
        answer = call(emu, path, {**body, **({"cursor": cursor} if cursor else {})})
        assert answer["success"], answer
        envelopes.append(answer)
        records += answer["results"]
        if not answer["moreDataAvailable"]:
            return records, envelopes
        cursor = answer["nextCursor"]


def json_type(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }[type(value)]


def compare_shape(
    example: Any, produced: list[Any], where: str, any_fields: set[str], problems: list[str]
) -> None:
    """Every key of ``example`` appears in some produced value with the same JSON type."""
    if not isinstance(example, dict):
        return
    for key, value in example.items():
        path = f"{where}.{key}"
        present = [p[key] for p in produced if isinstance(p, dict) and key in p]
        if not present:
            problems.append(f"{path}: missing")
            continue
        if value is None or key in any_fields:
            continue
        types = {json_type(v) for v in present if v is not None}
        if types and json_type(value) not in types:
            problems.append(f"{path}: example {json_type(value)}, emulator {sorted(types)}")
            continue
        if isinstance(value, dict) and key not in ("linkedData", "submittedValues"):
            compare_shape(
                value, [v for v in present if isinstance(v, dict)], path, any_fields, problems
            )
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = [i for v in present if isinstance(v, list) for i in v]
            for item in value:
                compare_shape(item, items, path + "[]", any_fields, problems)


def _any_fields() -> set[str]:
    names: set[str] = set()

    def walk(fields: dict) -> None:
        for name, spec in fields.items():
            if spec.get("type") == "any":
                names.add(name)
            walk(spec.get("fields", {}))
            walk(spec.get("items", {}).get("fields", {}))

    for obj in objects().values():
        walk(obj["fields"])
    return names


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_emulator_matches_recorded_example(emulator: Emulator, example: Path) -> None:
    path = example.stem
    recorded = json.loads(example.read_text())
    row = endpoints()[path]
    if row["kind"] == "list":
        body = {
            "includeArchived": True,
            "includeDeactivated": True,
            "includeNonSharedInterviews": True,
        }
        body = {k: v for k, v in body.items() if k in row["params"]}
        if path == "job.list":
            body["status"] = ["Draft", "Open", "Closed", "Archived"]
        answer = post(emulator, path, body).json()
        produced = answer["results"]
        # The envelope keys recorded are the ones the emulator sends.
        assert set(recorded) <= set(answer) | {"nextCursor"}, (set(recorded), set(answer))
        examples = recorded["results"]
    else:
        table = row.get("stream") or row["lookup_of"]
        ids = emulator.org.live_ids(table)[:8]
        param = next(
            p
            for p in row["params"]
            if p not in ("expand", "jobBoardId", "includeUnpublishedJobPostingsIds")
        )
        produced = [post(emulator, path, {param: i}).json()["results"] for i in ids]
        examples = [recorded["results"]]
    problems: list[str] = []
    for rec in examples:
        compare_shape(rec, produced, path, _any_fields(), problems)
    assert not problems, problems


def test_pagination_cursor_limit_and_token(emulator: Emulator) -> None:
    emulator.org.create("candidates")  # 31 live candidates
    records, envelopes = page_all(emulator, "candidate.list", {"limit": 7})
    assert len(envelopes) == math.ceil(31 / 7)
    assert len({r["id"] for r in records}) == 31
    assert all("nextCursor" in e and "syncToken" not in e for e in envelopes[:-1])
    assert "nextCursor" not in envelopes[-1] and envelopes[-1]["syncToken"]
    # limit is capped at 100 and defaults to 100
    big = Emulator(candidates=250, seed=3).start()
    try:
        first = post(big, "candidate.list", {"limit": 500}).json()
        assert len(first["results"]) == 100 and first["moreDataAvailable"]
        assert len(post(big, "candidate.list").json()["results"]) == 100
    finally:
        big.stop()


def test_incremental_pass_returns_exactly_the_changes(emulator: Emulator) -> None:
    org = emulator.org
    _, env = page_all(emulator, "candidate.list", {})
    token = env[-1]["syncToken"]
    ids = org.live_ids("candidates")
    org.update("candidates", ids[0])
    org.archive("candidates", ids[1])
    created = org.create("candidates").upserted[0][1]
    changed, env2 = page_all(emulator, "candidate.list", {"syncToken": token, "limit": 2})
    assert sorted(r["id"] for r in changed) == sorted([ids[0], ids[1], created])
    assert len(env2) == 2 and env2[-1]["syncToken"] != token
    # nothing changed since: an empty page that still carries a new token
    again = post(emulator, "candidate.list", {"syncToken": env2[-1]["syncToken"]}).json()
    assert again["results"] == [] and again["syncToken"]


def test_archived_records_visible_only_with_include_archived(emulator: Emulator) -> None:
    org = emulator.org
    dept = org.live_ids("departments")[0]
    org.archive("departments", dept)
    hidden = {r["id"] for r in post(emulator, "department.list").json()["results"]}
    shown = post(emulator, "department.list", {"includeArchived": True}).json()["results"]
    assert dept not in hidden
    assert any(r["id"] == dept and r["isArchived"] for r in shown)


@pytest.mark.parametrize("case", ["expired", "too_large", "tampered", "filters_changed"])
def test_sync_token_errors(emulator: Emulator, case: str) -> None:
    _, env = page_all(emulator, "candidate.list", {})
    token, body = env[-1]["syncToken"], {}
    expected = {
        "expired": "sync_token_expired",
        "too_large": "incremental_sync_too_large",
        "tampered": "sync_token_invalid",
        "filters_changed": "sync_token_invalid",
    }[case]
    if case == "expired":
        emulator.org.advance_clock(emulator.api.settings.sync_token_ttl_seconds + 1)
    elif case == "too_large":
        emulator.api.settings.max_sync_changes = 2
        for cid in emulator.org.live_ids("candidates")[:3]:
            emulator.org.update("candidates", cid)
    elif case == "tampered":
        token = token[:-3] + "AAA"
    else:
        body = {"createdAfter": 1}
    answer = post(emulator, "candidate.list", {**body, "syncToken": token}).json()
    assert answer["success"] is False
    assert answer["errorInfo"]["code"] == expected and answer["errors"] == [expected]
    assert answer["errorInfo"]["requestId"]


def test_cursor_errors(emulator: Emulator) -> None:
    first = post(emulator, "candidate.list", {"limit": 5}).json()
    bad = post(emulator, "candidate.list", {"limit": 5, "cursor": "not-a-cursor"}).json()
    assert bad["errorInfo"]["code"] == "invalid_next_cursor"
    emulator.expire_cursors()
    late = post(emulator, "candidate.list", {"limit": 5, "cursor": first["nextCursor"]}).json()
    assert late["errorInfo"]["code"] == "next_cursor_expired"


def test_auth_and_permissions(emulator: Emulator) -> None:
    missing = requests.post(f"{emulator.url}/candidate.list", json={}, timeout=10)
    assert missing.status_code == 401
    assert post(emulator, "candidate.list", key="wrong").status_code == 403
    emulator.add_key("jobs-only", {"jobsRead"})
    denied = post(emulator, "candidate.list", key="jobs-only")
    assert denied.status_code == 403
    assert denied.json()["errorInfo"]["code"] == "missing_endpoint_permission"
    assert post(emulator, "job.list", key="jobs-only").json()["success"] is True
    # the password part is ignored (peers send the key twice)
    both = requests.post(
        f"{emulator.url}/job.list", json={}, timeout=10, auth=(emulator.key, emulator.key)
    )
    assert both.json()["success"] is True


def test_bad_input_answers(emulator: Emulator) -> None:
    assert post(emulator, "nope.list").status_code == 404
    for path in ("interviewStage.list", "candidate.listNotes", "surveySubmission.list"):
        answer = post(emulator, path).json()
        assert answer["errorInfo"]["code"] == "invalid_input", path
    gone = post(
        emulator,
        "application.listHistory",
        {"applicationId": "00000000-0000-4000-8000-000000000000"},
    ).json()
    assert gone["errorInfo"]["code"] == "application_not_found"
    raw = requests.post(
        f"{emulator.url}/candidate.list", data=b"{oops", timeout=10, auth=(emulator.key, "")
    )
    assert raw.json()["errorInfo"]["code"] == "invalid_input"


def test_parent_child_consistency(emulator: Emulator) -> None:
    cands = {r["id"] for r in page_all(emulator, "candidate.list", {})[0]}
    jobs = {
        r["id"]
        for r in post(
            emulator, "job.list", {"status": ["Draft", "Open", "Closed", "Archived"]}
        ).json()["results"]
    }
    apps = page_all(emulator, "application.list", {})[0]
    assert apps and all(a["candidate"]["id"] in cands and a["job"]["id"] in jobs for a in apps)
    assert "applicationHistory" not in apps[0]  # list items lack the info-only fields
    plans = post(emulator, "interviewPlan.list", {"includeArchived": True}).json()["results"]
    for plan in plans:
        stages = post(emulator, "interviewStage.list", {"interviewPlanId": plan["id"]}).json()
        assert stages["results"] and all(
            s["interviewPlanId"] == plan["id"] for s in stages["results"]
        )
    notes = post(emulator, "candidate.listNotes", {"candidateId": next(iter(cands))}).json()
    assert notes["success"] and notes["results"] and "candidateId" not in notes["results"][0]
    app = apps[0]
    info = post(emulator, "application.info", {"applicationId": app["id"]}).json()["results"]
    assert "applicationHistory" in info and info["id"] == app["id"]


def test_single_object_endpoints(emulator: Emulator) -> None:
    key = post(emulator, "apiKey.info").json()["results"]
    assert "candidates:read" in key["scopes"]
    job = emulator.org.live_ids("jobs")[0]
    plan = post(emulator, "jobInterviewPlan.info", {"jobId": job}).json()["results"]
    assert plan["jobId"] == job
    names = post(emulator, "hiringTeamRole.list").json()["results"]
    assert all(isinstance(n, str) for n in names)
    full = post(emulator, "hiringTeamRole.list", {"namesOnly": False}).json()["results"]
    assert all(isinstance(r, dict) and r["id"] for r in full)


def test_side_effect_endpoints_are_counted(emulator: Emulator) -> None:
    post(emulator, "referralForm.info")
    assert emulator.api.side_effect_calls == {"referralForm.info": 1}


def statuses(seed: int, n: int = 60) -> list[int]:
    with Emulator(
        candidates=5,
        seed=1,
        faults=Faults(seed=seed, rate_limit=0.2, server_error=0.1, retry_after=0),
    ) as emu:
        session = requests.Session()
        session.auth = (emu.key, "")
        return [session.post(f"{emu.url}/brand.list", json={}).status_code for _ in range(n)]


def test_faults_are_deterministic_under_a_seed() -> None:
    first, second, other = statuses(11), statuses(11), statuses(12)
    assert first == second
    assert first != other
    assert 429 in first and any(s >= 500 for s in first) and 200 in first


def test_fault_kinds_reach_the_client(emulator: Emulator) -> None:
    emulator.faults.update(malformed=1.0)
    with pytest.raises(requests.JSONDecodeError):
        post(emulator, "brand.list").json()
    emulator.faults.update(malformed=0.0, drop=1.0)
    with pytest.raises(requests.ConnectionError):
        post(emulator, "brand.list")
    emulator.faults.update(drop=0.0, rate_limit=1.0, retry_after=2)
    limited = post(emulator, "brand.list")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["errorInfo"]["code"] == "rate_limit_exceeded"


def test_counters_over_http_and_python(emulator: Emulator) -> None:
    emulator.stats.reset()
    post(emulator, "brand.list")
    post(emulator, "brand.list", key="wrong")
    # a call is counted just after its answer is written: wait for it (bounded), then read
    deadline = time.monotonic() + 10
    while emulator.stats.requests("brand.list") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = requests.get(f"{emulator.url}/_emulator/stats", timeout=10).json()["result"]
    assert stats["endpoints"]["brand.list"] == {"200": 1, "403": 1}
    assert emulator.stats.requests("brand.list") == 2


def test_admin_mutations_over_http(emulator: Emulator) -> None:
    cid = emulator.org.live_ids("candidates")[0]
    url = f"{emulator.url}/_emulator/mutate"
    out = requests.post(
        url,
        json={"op": "update", "stream": "candidates", "id": cid, "fields": {"name": "Renamed"}},
        timeout=10,
    ).json()
    assert out["ok"] and out["result"]["upserted"][0] == ["candidates", cid]
    info = post(emulator, "candidate.info", {"id": cid}).json()["results"]
    assert info["name"] == "Renamed"
    out = requests.post(
        url, json={"op": "delete", "stream": "candidates", "id": cid}, timeout=10
    ).json()
    assert ["candidates", cid] in out["result"]["deleted"]
    assert cid not in emulator.org.live_ids("candidates")


def test_merge_moves_applications(emulator: Emulator) -> None:
    org = emulator.org
    keep, gone = org.live_ids("candidates")[:2]
    before = [post(emulator, "candidate.info", {"id": c}).json()["results"] for c in (keep, gone)]
    org.merge_candidates(keep, gone)
    apps = page_all(emulator, "application.list", {})[0]
    assert all(a["candidate"]["id"] != gone for a in apps)
    kept = post(emulator, "candidate.info", {"id": keep}).json()["results"]
    # candidates have 0..n applications: the kept one now has both candidates' applications
    assert kept["applicationIds"] == before[0]["applicationIds"] + before[1]["applicationIds"]


def test_all_permissions_cover_every_endpoint() -> None:
    # version.list: permission undocumented (None), any valid key may call it
    assert {row["permission"] for row in endpoints().values()} - {None} <= ALL_PERMISSIONS


def test_cli_prints_url_and_key() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ashby_emulator.cli",
            "--port",
            "0",
            "--scale",
            "tiny",
            "--key",
            "k1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "http://127.0.0.1:" in line and "k1" in line
        url = (
            line.split()[line.split().index("url") + 1]
            if " url " in line
            else next(w for w in line.split() if w.startswith("http"))
        )
        assert requests.post(f"{url}/brand.list", json={}, auth=("k1", ""), timeout=10).json()[
            "success"
        ]
    finally:
        proc.terminate()
        proc.wait(10)
