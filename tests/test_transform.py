"""The dbt project (transform/): marts built through Meltano equal values computed here.

Every expected value is computed in this file from the emulator's own records (its Python API),
never from SQL. The end-to-end tests run ``meltano run tap-ashby <target> dbt-<adapter>:build``
against a small org, then erase and merge candidates, reconcile, and build again on the same
warehouse (a load after a build, a build after a load).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from ashby_emulator import Emulator
from ashby_emulator.org import Org
from support.pipeline import ROOT, DuckDBWarehouse, MeltanoRun, Pipeline, PostgresWarehouse
from support.postgres import PostgresServer, running_postgres

sys.path.insert(0, str(ROOT / "scripts"))
import generate_staging

MARTS_SCHEMA = "ashby_analytics"
# Streams the marts read. openings is left out of the DuckDB run: a stream not selected.
STREAMS = (
    "applications",
    "candidates",
    "jobs",
    "departments",
    "locations",
    "sources",
    "archive_reasons",
    "application_history",
    "interview_plans",
    "interview_stages",
    "offers",
    "interview_schedules",
    "application_feedback",
    "openings",
)
CUSTOM_FIELDS = ["Referral", "Expected salary", "Work authorization"]
KEYS = {
    "ashby__application_enhanced": ("application_id",),
    "ashby__application_history": ("history_id",),
    "ashby__interview_enhanced": ("interview_event_id",),
    "ashby__job_enhanced": ("job_id",),
    "ashby__hiring_funnel": ("job_id", "stage_id"),
    "ashby__source_performance": ("source_id",),
}


# -- expected marts, from the emulator's records -----------------------------------------------
def ts(text: str | None) -> datetime | None:
    """An Ashby timestamp as both targets store it: naive UTC."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def days(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds() / 86400


def live(org: Org, name: str) -> list[dict[str, Any]]:
    table = org.tables[name]
    out = []
    for i in table.live_indices():
        rec = table.get(i)
        if rec is None:
            continue
        if name == "application_history":  # the tap injects the parent's id
            rec = {**rec, "applicationId": org.tables["applications"].id_of(table.parent_index(i))}
        out.append(rec)
    return out


def by_id(org: Org, name: str, streams: set[str]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in live(org, name)} if name in streams else {}


def custom_value(rec: dict[str, Any] | None, title: str) -> str | None:
    for field in (rec or {}).get("customFields") or []:
        if field["title"] == title:
            value = field["value"]
            return json.dumps(value) if isinstance(value, bool) else str(value)
    return None


def expected_marts(org: Org, streams: set[str], custom: list[str]) -> dict[str, list[dict]]:
    apps = by_id(org, "applications", streams)
    cands, jobs = by_id(org, "candidates", streams), by_id(org, "jobs", streams)
    depts, locs = by_id(org, "departments", streams), by_id(org, "locations", streams)
    sources, stages = by_id(org, "sources", streams), by_id(org, "interview_stages", streams)
    offers = list(by_id(org, "offers", streams).values())
    schedules = list(by_id(org, "interview_schedules", streams).values())
    feedback = list(by_id(org, "application_feedback", streams).values())
    openings = list(by_id(org, "openings", streams).values())

    offers_of: dict[str, list[dict]] = defaultdict(list)
    for offer in offers:
        offers_of[offer["applicationId"]].append(offer)
    schedules_of = Counter(s["applicationId"] for s in schedules)
    feedback_of = Counter(f["applicationId"] for f in feedback)
    enhanced = []
    for a in apps.values():
        job = jobs.get(a["job"]["id"], {})
        cand = cands.get(a["candidate"]["id"])
        decided = [o for o in offers_of[a["id"]] if o.get("decidedAt")]
        latest = max(decided, key=lambda o: o["decidedAt"]) if decided else None
        row = {
            "application_id": a["id"],
            "candidate_id": a["candidate"]["id"],
            "candidate_name": (cand or a["candidate"])["name"],
            "job_id": a["job"]["id"],
            "job_title": job.get("title"),
            "department_id": job.get("departmentId"),
            "department_name": depts.get(job.get("departmentId"), {}).get("name"),
            "location_id": job.get("locationId"),
            "location_name": locs.get(job.get("locationId"), {}).get("name"),
            "status": a["status"],
            "source_id": (a.get("source") or {}).get("id"),
            "source_title": (a.get("source") or {}).get("title"),
            "current_stage_id": a["currentInterviewStage"]["id"],
            "current_stage_title": a["currentInterviewStage"]["title"],
            "archive_reason_id": (a["archiveReason"] or {}).get("id"),
            "archive_reason_text": (a["archiveReason"] or {}).get("text"),
            "created_at": ts(a["createdAt"]),
            "archived_at": ts(a["archivedAt"]),
            "is_hired": a["status"] == "Hired",
            "offer_count": len(offers_of[a["id"]]),
            "latest_offer_status": latest["offerStatus"] if latest else None,
            "interview_schedule_count": schedules_of[a["id"]],
            "feedback_count": feedback_of[a["id"]],
        }
        for title in custom:
            column = "custom_" + "_".join(title.lower().split())
            row[column] = custom_value(a, title) or custom_value(cand, title)
        enhanced.append(row)

    history = []
    if "application_history" in streams:
        for h in live(org, "application_history"):
            app = apps.get(h["applicationId"])
            if app is None:
                continue
            entered, left = ts(h["enteredStageAt"]), ts(h["leftStageAt"])
            history.append(
                {
                    "history_id": h["id"],
                    "application_id": app["id"],
                    "candidate_id": app["candidate"]["id"],
                    "job_id": app["job"]["id"],
                    "stage_id": h["stageId"],
                    "stage_title": stages.get(h["stageId"], {}).get("title", h["title"]),
                    "stage_number": h["stageNumber"],
                    "entered_stage_at": entered,
                    "left_stage_at": left,
                    "days_in_stage": days(entered, left),
                    "is_current": left is None,
                }
            )

    feedback_of_event = Counter(f["interviewEventId"] for f in feedback if f["interviewEventId"])
    interviews = []
    for s in schedules:
        app = apps.get(s["applicationId"])
        if app is None:
            continue
        for e in s["interviewEvents"] or []:
            start, end = ts(e["startTime"]), ts(e["endTime"])
            interviews.append(
                {
                    "interview_event_id": e["id"],
                    "interview_schedule_id": s["id"],
                    "application_id": app["id"],
                    "candidate_id": app["candidate"]["id"],
                    "job_id": app["job"]["id"],
                    "interview_id": e["interviewId"],
                    "interview_stage_id": s["interviewStageId"],
                    "start_time": start,
                    "end_time": end,
                    "duration_minutes": (days(start, end) or 0) * 1440,
                    "interviewer_count": len(e.get("interviewers") or []),
                    "has_submitted_feedback": e["hasSubmittedFeedback"],
                    "feedback_count": feedback_of_event[e["id"]],
                }
            )

    job_rows = []
    for j in jobs.values():
        mine = [a for a in apps.values() if a["job"]["id"] == j["id"]]
        job_rows.append(
            {
                "job_id": j["id"],
                "job_title": j["title"],
                "status": j["status"],
                "department_name": depts.get(j.get("departmentId"), {}).get("name"),
                "location_name": locs.get(j.get("locationId"), {}).get("name"),
                "opened_at": ts(j.get("openedAt")),
                "closed_at": ts(j.get("closedAt")),
                "application_count": len(mine),
                "active_application_count": sum(a["status"] == "Active" for a in mine),
                "hired_count": sum(a["status"] == "Hired" for a in mine),
                "offer_count": sum(len(offers_of[a["id"]]) for a in mine),
                "opening_count": sum(
                    j["id"] in ((o.get("latestVersion") or {}).get("jobIds") or [])
                    for o in openings
                ),
            }
        )

    funnel: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for h in history:
        funnel[(h["job_id"], h["stage_id"])].append(h)
    funnel_rows = []
    for (job_id, stage_id), entries in funnel.items():
        done = [e["days_in_stage"] for e in entries if e["days_in_stage"] is not None]
        funnel_rows.append(
            {
                "job_id": job_id,
                "stage_id": stage_id,
                "stage_title": max(e["stage_title"] for e in entries),
                "stage_order": min(e["stage_number"] for e in entries),
                "applications_entered": len({e["application_id"] for e in entries}),
                "applications_current": len(
                    {e["application_id"] for e in entries if e["is_current"]}
                ),
                "median_days_in_stage": statistics.median(done) if done else None,
            }
        )

    per_source: dict[str, list[dict]] = defaultdict(list)
    for row in enhanced:
        if row["source_id"] is not None:
            per_source[row["source_id"]].append(row)
    source_rows = [
        {
            "source_id": source_id,
            "source_title": max(r["source_title"] for r in rows),
            "application_count": len(rows),
            "hired_count": sum(r["is_hired"] for r in rows),
            "hire_rate": sum(r["is_hired"] for r in rows) / len(rows),
        }
        for source_id, rows in per_source.items()
    ]
    assert sources or "sources" not in streams
    return {
        "ashby__application_enhanced": enhanced,
        "ashby__application_history": history,
        "ashby__interview_enhanced": interviews,
        "ashby__job_enhanced": job_rows,
        "ashby__hiring_funnel": funnel_rows,
        "ashby__source_performance": source_rows,
    }


# -- reading the marts back ---------------------------------------------------------------------
def plain(value: Any) -> Any:
    """Numbers as floats (DuckDB HUGEINT, PostgreSQL numeric), the rest as loaded."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return float(value)
    return value


def duckdb_marts(path: Path) -> dict[str, list[dict]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {mart: _rows(conn.execute(f"select * from {MARTS_SCHEMA}.{mart}")) for mart in KEYS}


def postgres_marts(server: PostgresServer) -> dict[str, list[dict]]:
    with psycopg.connect(server.dsn) as conn:
        return {mart: _rows(conn.execute(f"select * from {MARTS_SCHEMA}.{mart}")) for mart in KEYS}


def _rows(cursor: Any) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def assert_marts_equal(got: dict[str, list[dict]], want: dict[str, list[dict]]) -> None:
    for mart, keys in KEYS.items():
        got_rows = {tuple(r[k] for k in keys): r for r in got[mart]}
        want_rows = {tuple(r[k] for k in keys): r for r in want[mart]}
        assert len(got_rows) == len(got[mart]), f"{mart}: duplicate keys"
        assert set(got_rows) == set(want_rows), mart
        for key, expected in want_rows.items():
            actual = {c: plain(got_rows[key][c]) for c in expected}
            wanted = {
                c: pytest.approx(plain(v), rel=1e-9) if isinstance(plain(v), float) else v
                for c, v in expected.items()
            }
            assert actual == wanted, (mart, key)


# -- pipelines -----------------------------------------------------------------------------
def with_dbt(pipeline: Pipeline, env: dict[str, str]) -> Pipeline:
    """Let the isolated pipeline use the installed dbt utilities and keep dbt's files private."""
    link = pipeline.sys_dir / "utilities"
    if not link.exists():
        link.symlink_to(ROOT / ".meltano" / "utilities", target_is_directory=True)
    assert (ROOT / ".meltano" / "utilities").is_dir(), "run `make install` first"
    pipeline.extra_env.update(
        {
            "DBT_TARGET_PATH": str(pipeline.workdir / "dbt-target"),
            "DBT_LOG_PATH": str(pipeline.workdir / "dbt-logs"),
            **env,
        }
    )
    return pipeline


def run_and_build(pipeline: Pipeline, utility: str) -> MeltanoRun:
    result = pipeline.meltano(
        "run",
        "--no-install",
        "--state-id-suffix",
        pipeline.suffix,
        "tap-ashby",
        pipeline.warehouse.target,
        f"{utility}:build",
        timeout=600,
    ).check()
    assert "Completed successfully" in result.output, result.output[-3000:]
    return result


def erase_and_merge(org: Org) -> tuple[str, str]:
    """Erase a candidate with an application, merge away another: both disappear."""
    cands = [c for c in live(org, "candidates") if c["applicationIds"]]
    org.delete("candidates", cands[0]["id"])
    org.merge_candidates(cands[1]["id"], cands[2]["id"])
    return cands[0]["applicationIds"][0], cands[2]["id"]


# -- tests ---------------------------------------------------------------------------------
def test_staging_models_are_generated_from_the_schemas() -> None:
    for path, text in generate_staging.expected().items():
        assert path.is_file() and path.read_text() == text, (
            f"{path.relative_to(ROOT)} is stale: run python scripts/generate_staging.py"
        )
    assert len(generate_staging.expected()) == len(list((ROOT / "schemas").glob("*.json"))) + 1


def test_dbt_duckdb_pins_the_duckdb_of_target_duckdb() -> None:
    text = (ROOT / "meltano.yml").read_text()
    pip_urls = [line for line in text.splitlines() if "pip_url:" in line and "duckdb" in line]
    assert len(pip_urls) == 2  # target-duckdb and dbt-duckdb
    pins = {pin for line in pip_urls for pin in re.findall(r"(?<![-\w])duckdb==([\w.]+)", line)}
    assert pins == {"1.2.2"}


def test_expected_marts_are_not_trivial() -> None:
    """The org the end-to-end tests use has something in every mart and every count."""
    org = Emulator(candidates=40, seed=21, key="k").org
    want = expected_marts(org, set(STREAMS), CUSTOM_FIELDS)
    assert all(want[m] for m in KEYS)
    enhanced = want["ashby__application_enhanced"]
    for column in ("offer_count", "interview_schedule_count", "feedback_count", "is_hired"):
        assert {bool(r[column]) for r in enhanced} == {True, False}, column
    assert any(r["latest_offer_status"] for r in enhanced)
    assert any(r["custom_referral"] == "true" for r in enhanced)
    assert any(r["custom_expected_salary"] for r in enhanced)  # a candidate's field
    assert any(r["opening_count"] for r in want["ashby__job_enhanced"])
    assert any(r["median_days_in_stage"] for r in want["ashby__hiring_funnel"])


@pytest.mark.slow
def test_duckdb_marts_equal_the_records_across_loads_and_builds(tmp_path: Path) -> None:
    emu = Emulator(candidates=40, seed=21, key="transform-duckdb-key").start()
    try:
        streams = set(STREAMS) - {"openings"}  # a stream not selected
        warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
        env = {"DBT_DUCKDB_PATH": str(warehouse.path)}
        pipeline = with_dbt(Pipeline(emu, warehouse, tmp_path, sorted(streams)), env)
        run_and_build(pipeline, "dbt-duckdb")
        want = expected_marts(emu.org, streams, [])
        assert all(r["opening_count"] == 0 for r in want["ashby__job_enhanced"])
        assert_marts_equal(duckdb_marts(warehouse.path), want)

        gone_app, merged_away = erase_and_merge(emu.org)
        pipeline.extra_env["TAP_ASHBY_RECONCILE_NOW"] = "true"
        run_and_build(pipeline, "dbt-duckdb")  # a load after a build, a build after a load
        got = duckdb_marts(warehouse.path)
        assert_marts_equal(got, expected_marts(emu.org, streams, []))
        assert gone_app not in {r["application_id"] for r in got["ashby__application_enhanced"]}
        for mart in ("ashby__application_enhanced", "ashby__application_history"):
            assert merged_away not in {r["candidate_id"] for r in got[mart]}

        pipeline.meltano(
            "invoke",
            "dbt-duckdb",
            "build",
            "--vars",
            json.dumps({"ashby_custom_fields": CUSTOM_FIELDS}),
            timeout=600,
        ).check()
        got = duckdb_marts(warehouse.path)
        assert_marts_equal(got, expected_marts(emu.org, streams, CUSTOM_FIELDS))
        pipeline.run()  # target-duckdb (duckdb 1.2.2) still loads the file dbt wrote
    finally:
        emu.stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_marts_equal_the_records_after_soft_deletes(tmp_path: Path) -> None:
    emu = Emulator(candidates=40, seed=22, key="transform-postgres-key").start()
    try:
        with running_postgres() as server:
            warehouse = PostgresWarehouse(server)
            env = {
                "DBT_POSTGRES_HOST": server.host,
                "DBT_POSTGRES_PORT": str(server.port),
                "DBT_POSTGRES_USER": server.user,
                "DBT_POSTGRES_DBNAME": server.database,
                "DBT_POSTGRES_PASSWORD": "unused",
            }
            pipeline = with_dbt(Pipeline(emu, warehouse, tmp_path, STREAMS), env)
            run_and_build(pipeline, "dbt-postgres")
            assert_marts_equal(postgres_marts(server), expected_marts(emu.org, set(STREAMS), []))

            gone_app, merged_away = erase_and_merge(emu.org)
            pipeline.extra_env["TAP_ASHBY_RECONCILE_NOW"] = "true"
            run_and_build(pipeline, "dbt-postgres")
            # target-postgres keeps the tombstones (soft delete): staging filters them out
            tomb = warehouse.rows("candidates", ["id", "_sdc_deleted_at"])
            assert any(r["id"] == merged_away and r["_sdc_deleted_at"] for r in tomb)
            got = postgres_marts(server)
            assert_marts_equal(got, expected_marts(emu.org, set(STREAMS), []))
            assert gone_app not in {r["application_id"] for r in got["ashby__application_enhanced"]}
    finally:
        emu.stop()
