"""tap-ashby against the emulator over real HTTP: coverage, incremental state, errors."""

from __future__ import annotations

import base64
import json
import math
import subprocess
from pathlib import Path

import jsonschema
import pytest
from ashby_emulator import Emulator
from ashby_emulator.catalog import endpoints as catalog_endpoints
from conftest import SECRET_KEY, TAP, discover, run_tap, tap_config
from expected import delivered_ids, expected_ids

from tap_ashby.endpoints import ENDPOINTS, ROWS

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
CHILD_STREAMS = {r.stream for r in ROWS if r.parent}


def test_discovery_lists_every_stream_with_its_schema(tmp_path: Path, emulator: Emulator) -> None:
    catalog = discover(tmp_path, tap_config(emulator))
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(streams) == set(ENDPOINTS)
    # every stream and optional_stream endpoint of the 2026 catalog, nothing else
    rows = [r for r in catalog_endpoints().values() if r["role"] in ("stream", "optional_stream")]
    assert set(streams) == {r["stream"] for r in rows} and len(streams) == 57
    for row in rows:
        ours = ENDPOINTS[row["stream"]]
        assert ours.path == row["path"], row["stream"]
        if row["role"] == "optional_stream" or not ours.selected_by_default:
            # unselected by default, with the reason shown in the README's streams table
            assert not ours.selected_by_default and ours.note, row["stream"]
    for name, entry in streams.items():
        assert entry["schema"] == json.loads((SCHEMAS / f"{name}.json").read_text())
        top = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
        assert top["table-key-properties"] == list(ENDPOINTS[name].primary_keys)
        assert top["selected-by-default"] == ENDPOINTS[name].selected_by_default


def test_full_sync_of_every_stream_matches_the_emulator(tmp_path: Path, emulator: Emulator) -> None:
    run = run_tap(tmp_path, tap_config(emulator, report_ids=["r1"]), select="all")
    assert run.returncode == 0, run.stderr[-2000:]
    for stream in ENDPOINTS:
        records = run.records.get(stream, [])
        if stream == "report_results":
            assert [r["reportId"] for r in records] == ["r1"]
            continue
        assert delivered_ids(records, stream) == expected_ids(emulator, stream), stream
        keys = [tuple(r[k] for k in ENDPOINTS[stream].primary_keys) for r in records]
        assert len(keys) == len(set(keys)), f"duplicate keys in {stream}"
        validator = jsonschema.Draft7Validator(
            json.loads((SCHEMAS / f"{stream}.json").read_text()),
            format_checker=jsonschema.FormatChecker(),
        )
        for record in records:
            validator.validate(record)
    # children carry their parent's id where Ashby leaves it out
    assert all(r["candidateId"] for r in run.records["candidate_notes"])
    assert all(r["applicationId"] for r in run.records["application_history"])
    assert emulator.api.side_effect_calls == {}  # never referralForm.info / report.generate
    assert SECRET_KEY not in run.stdout + run.stderr


def test_default_selection_skips_optional_and_costly_streams(
    tmp_path: Path, emulator: Emulator
) -> None:
    run = run_tap(tmp_path, tap_config(emulator))
    assert run.returncode == 0, run.stderr[-2000:]
    defaults = {r.stream for r in ROWS if r.selected_by_default}
    assert set(run.schemas) == defaults
    assert "summary candidates" in run.stderr and "summary total" in run.stderr


def test_requests_per_full_sync_are_one_per_page(tmp_path: Path, emulator: Emulator) -> None:
    for _ in range(13):
        emulator.org.create("candidates")  # 43 candidates
    emulator.stats.reset()
    run = run_tap(
        tmp_path,
        tap_config(emulator, page_size=10),
        select={"candidates", "departments", "candidate_notes"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    # one pass over candidate.list serves candidates and candidate_notes
    assert emulator.stats.requests("candidate.list") == math.ceil(43 / 10)
    assert emulator.stats.requests("department.list") == 1
    assert emulator.stats.requests("candidate.listNotes") == 43


def test_incremental_run_emits_exactly_the_changes(tmp_path: Path, emulator: Emulator) -> None:
    config = tap_config(emulator)
    select = {"candidates", "applications", "candidate_notes", "departments", "brands"}
    first = run_tap(tmp_path, config, select=select)
    assert first.returncode == 0, first.stderr[-2000:]
    token = first.bookmarks()["candidates"]["sync_token"]
    org = emulator.org
    cands = org.live_ids("candidates")
    org.update("candidates", cands[0])
    org.update("candidates", cands[1], {"name": "Renamed"})
    new = org.create("candidates").upserted[0][1]
    dept = org.live_ids("departments")[0]
    org.archive("departments", dept)
    emulator.stats.reset()
    second = run_tap(tmp_path, config, state=first.state, select=select)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.ids("candidates") == {cands[0], cands[1], new}
    renamed = next(r for r in second.records["candidates"] if r["id"] == cands[1])
    assert renamed["name"] == "Renamed"
    assert [(r["id"], r["isArchived"]) for r in second.records["departments"]] == [(dept, True)]
    assert second.ids("applications") == set()
    assert second.bookmarks()["candidates"]["sync_token"] != token
    # children only for the changed parents (3 calls, not one per candidate)
    assert emulator.stats.requests("candidate.listNotes") == 3
    assert {r["candidateId"] for r in second.records["candidate_notes"]} == {cands[0], cands[1]}
    # full-table streams re-read every run
    assert len(second.records["brands"]) == len(first.records["brands"])
    # nothing changed: empty passes, and the bookmarks move on
    third = run_tap(tmp_path, config, state=second.state, select=select)
    assert third.returncode == 0 and not third.records.get("candidates")


@pytest.mark.parametrize("case", ["expired", "too_large"])
def test_refused_token_falls_back_to_a_full_pass(
    tmp_path: Path, emulator: Emulator, case: str
) -> None:
    config = tap_config(emulator)
    first = run_tap(tmp_path, config, select={"candidates"})
    if case == "expired":
        emulator.org.advance_clock(emulator.api.settings.sync_token_ttl_seconds + 60)
    else:
        emulator.api.settings.max_sync_changes = 1
        for cid in emulator.org.live_ids("candidates")[:2]:
            emulator.org.update("candidates", cid)
    second = run_tap(tmp_path, config, state=first.state, select={"candidates"})
    assert second.returncode == 0, second.stderr[-2000:]
    code = "sync_token_expired" if case == "expired" else "incremental_sync_too_large"
    assert code in second.stderr and "doing a full pass" in second.stderr
    assert second.ids("candidates") == set(emulator.org.live_ids("candidates"))
    assert (
        second.bookmarks()["candidates"]["sync_token"]
        != first.bookmarks()["candidates"]["sync_token"]
    )


def test_interrupted_run_keeps_the_old_bookmark(tmp_path: Path, emulator: Emulator) -> None:
    config = tap_config(emulator, page_size=5)
    first = run_tap(tmp_path, config, select={"candidates"})
    old = first.bookmarks()["candidates"]["sync_token"]
    for cid in emulator.org.live_ids("candidates")[:12]:
        emulator.org.update("candidates", cid)
    emulator.faults.update(server_error=0.5, seed=3)
    broken = run_tap(
        tmp_path,
        tap_config(emulator, page_size=5, max_retries=0),
        state=first.state,
        select={"candidates"},
    )
    assert broken.returncode != 0
    assert all(
        s.get("bookmarks", {}).get("candidates", {}).get("sync_token") == old for s in broken.states
    )
    emulator.faults.update(server_error=0.0)
    rerun = run_tap(tmp_path, config, state=broken.state or first.state, select={"candidates"})
    assert rerun.returncode == 0
    assert len(rerun.ids("candidates")) == 12  # the changes arrive on the rerun


def test_missing_permission_skips_the_stream(tmp_path: Path, emulator: Emulator) -> None:
    emulator.add_key("no-offers", {"candidatesRead", "organizationRead"})
    config = tap_config(emulator, api_key="no-offers")
    run = run_tap(tmp_path, config, select={"offers", "departments", "candidates"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "skipping stream offers" in run.stderr and "offersRead" in run.stderr
    assert run.ids("departments") and run.ids("candidates") and not run.ids("offers")
    strict = run_tap(
        tmp_path, {**config, "on_missing_permission": "fail"}, select={"offers", "departments"}
    )
    assert strict.returncode != 0
    assert "offersRead" in strict.stderr and "Traceback" not in strict.stderr


def test_fault_storm_completes_with_the_right_records(tmp_path: Path, emulator: Emulator) -> None:
    emulator.faults.update(
        rate_limit=0.2,
        retry_after=0,
        server_error=0.05,
        drop=0.02,
        malformed=0.02,
        truncated=0.02,
        seed=5,
    )
    select = {"candidates", "applications", "candidate_notes", "application_history", "jobs"}
    run = run_tap(tmp_path, tap_config(emulator, max_retries=12, page_size=7), select=select)
    assert run.returncode == 0, run.stderr[-3000:]
    for stream in select:
        assert delivered_ids(run.records[stream], stream) == expected_ids(emulator, stream)
    assert sum(emulator.stats.snapshot()["faults"].values()) > 10


def test_retry_after_is_honoured(tmp_path: Path, emulator: Emulator) -> None:
    emulator.faults.update(rate_limit=0.5, retry_after=1, seed=2)
    run = run_tap(
        tmp_path, tap_config(emulator, page_size=10), select={"brands", "departments", "candidates"}
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert emulator.stats.snapshot()["faults"]["rate_limit"] > 0
    waits = [
        float(line.split(" in ")[1].split("s:")[0])
        for line in run.stderr.splitlines()
        if "retry " in line and " in " in line
    ]
    assert waits and all(w >= 1.0 for w in waits)


BAD_CONFIGS = {
    "missing key": ({"api_key": None}, "api_key"),
    "empty key": ({"api_key": ""}, "api_key"),
    "page_size 500": ({"page_size": 500}, "page_size"),
    "bad start_date": ({"start_date": "last tuesday"}, "start_date"),
    "bad url": ({"base_url": "ftp//nowhere"}, "base_url"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_any_request(tmp_path: Path, emulator: Emulator, case: str) -> None:
    change, setting = BAD_CONFIGS[case]
    config = {k: v for k, v in {**tap_config(emulator), **change}.items() if v is not None}
    emulator.stats.reset()
    run = run_tap(tmp_path, config)
    assert run.returncode != 0
    assert setting in run.stderr and "Traceback" not in run.stderr
    assert emulator.stats.snapshot()["total"] == 0


@pytest.mark.parametrize(
    "case", ["wrong key", "not ashby", "refused", "tls", "unknown code", "keyless record"]
)
def test_unusable_endpoint_fails_with_one_line(
    tmp_path: Path, emulator: Emulator, case: str
) -> None:
    config = tap_config(emulator, max_retries=1)
    if case == "wrong key":
        config["api_key"] = "wrong-" + SECRET_KEY
    elif case == "not ashby":
        emulator.faults.update(malformed=1.0)
    elif case == "refused":
        config["base_url"] = "http://127.0.0.1:9"
    elif case == "tls":  # an https URL answered by a plain-HTTP server
        config["base_url"] = emulator.url.replace("http://", "https://")
    elif case == "unknown code":
        emulator.faults.update(unknown_error=1.0)
    else:
        dept = emulator.org.live_ids("departments")[1]
        emulator.org.update("departments", dept, {"id": None})
    run = run_tap(tmp_path, config, select={"departments"})
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "tap-ashby failed" in line]
    assert len(errors) == 1, run.stderr[-2000:]
    expected = {
        "wrong key": "HTTP 403",
        "not ashby": "not valid JSON",
        "refused": "cannot reach",
        "tls": "cannot reach",
        "unknown code": "unexpected_internal_state",
        "keyless record": "has no 'id'",
    }[case]
    assert expected in errors[0]
    assert not run.bookmarks().get("departments", {}).get("sync_token")
    assert SECRET_KEY not in run.stdout + run.stderr
    basic = base64.b64encode(f"{config['api_key']}:".encode()).decode()
    assert basic not in run.stdout + run.stderr


def test_one_stream_resyncs_while_the_others_stay_incremental(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = tap_config(emulator)
    select = {"candidates", "departments"}
    first = run_tap(tmp_path, config, select=select)
    state = json.loads(json.dumps(first.state))
    del state["bookmarks"]["candidates"]  # what the README's jq line does
    dept = emulator.org.live_ids("departments")[0]
    emulator.org.update("departments", dept)
    second = run_tap(tmp_path, config, state=state, select=select)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.ids("candidates") == set(emulator.org.live_ids("candidates"))
    assert second.ids("departments") == {dept}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"bookmarks": 7}'])
def test_unusable_state_file_is_one_line(tmp_path: Path, emulator: Emulator, content: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(tap_config(emulator)))
    (tmp_path / "state.json").write_text(content)
    proc = subprocess.run(
        [*TAP, "--config", str(tmp_path / "config.json"), "--state", str(tmp_path / "state.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "state file" in proc.stderr


def test_foreign_state_falls_back_to_full_passes(tmp_path: Path, emulator: Emulator) -> None:
    state = {
        "bookmarks": {
            "candidates": {"sync_token": "not-a-token", "ledger": "garbage"},
            "no_such_stream": {"x": 1},
        }
    }
    run = run_tap(tmp_path, tap_config(emulator), state=state, select={"candidates"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sync_token_invalid" in run.stderr
    assert run.ids("candidates") == set(emulator.org.live_ids("candidates"))


def test_fields_ashby_adds_later_are_dropped(tmp_path: Path, emulator: Emulator) -> None:
    cid = emulator.org.live_ids("candidates")[0]
    emulator.org.update("candidates", cid, {"brandNewField": {"x": 1}})
    run = run_tap(tmp_path, tap_config(emulator), select={"candidates"})
    assert run.returncode == 0, run.stderr[-2000:]
    record = next(r for r in run.records["candidates"] if r["id"] == cid)
    assert "brandNewField" not in record and record["name"]


def test_request_bodies_use_only_documented_fields() -> None:
    """Every field the tap can send is declared by the endpoint in the 2026 catalog."""
    catalog = catalog_endpoints()
    for row in ROWS:
        params = set(catalog[row.path]["params"])
        sent = set(row.body)
        sent |= {row.partition_param} if row.partition_param else set()
        sent |= {"createdAfter"} if row.created_after else set()
        sent |= {row.parent.param} if row.parent else set()
        sent |= {row.window} if row.window else set()
        sent |= {"limit", "cursor"} if row.paginated else set()
        sent |= {"syncToken"} if row.sync_token else set()
        assert sent <= params, f"{row.stream}: undeclared {sorted(sent - params)}"
        if row.partition_values:
            assert set(row.partition_values) == set(
                catalog[row.path]["params"][row.partition_param]["values"]
            ), row.stream
