"""State and memory at scale: a full sync, a few deletes, then a reconcile run.

Two jobs per row count N (each against an emulator of its own, started fresh, so the deletes
never touch another case's org):

* ``candidates``: the candidates stream against an emulator with N candidates;
* ``applications + application_history``: against an emulator with min(N, apps cap)
  candidates. The emulator gives every candidate exactly one application (org.py sizes the
  applications table as the candidates table) and three history entries per application,
  so 1M candidates would mean 1M applications and 1M application.listHistory calls; the
  issue's "1M candidates plus 100k applications with their history" is measured as the 1M
  candidates job plus this job at 100k (run once and shared by the rows that cap to it).

Each job: run 1 = full sync (no state); then ``deletes`` records of the job's top-level
stream are hard-deleted through ``POST /_emulator/mutate {"op": "delete"}`` (the emulator
deletes their child rows too); run 2 = the state of run 1 with ``reconcile_now: true``.
Both runs: budget lifted, stdout piped through grep to keep the STATE lines, the ledger in a
directory of its own, peak RSS of the tap process.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

from cases import Ctx, _tap_with_states
from emu import EmulatorProcess

JOBS = {
    "candidates": {"streams": ["candidates"], "delete_from": "candidates"},
    "applications": {
        "streams": ["applications", "application_history"],
        "delete_from": "applications",
    },
}
PER_PARENT = {"application_history": 3}  # emulator rows per application (org.py)


def ledger_files(root: Path, state: dict[str, Any] | None) -> dict[str, Any]:
    """Bytes of the ledger generations the final STATE names, per stream, and of every
    ``*.ledger`` file under ``root`` (the previous generation is kept until the next run)."""
    named: dict[str, dict[str, Any]] = {}
    for stream, mark in ((state or {}).get("bookmarks") or {}).items():
        refs = []
        if isinstance(mark, dict) and isinstance(mark.get("ledger"), dict):
            refs.append(mark["ledger"])
        for part in (mark or {}).get("partitions", []) if isinstance(mark, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("ledger"), dict):
                refs.append(part["ledger"])
        for ref in refs:
            path = root / stream / str(ref.get("lineage")) / f"{ref.get('gen')}.ledger"
            agg = named.setdefault(stream, {"bytes": 0, "rows": 0, "files": 0})
            agg["bytes"] += path.stat().st_size if path.exists() else 0
            agg["rows"] += int(ref.get("rows") or 0)
            agg["files"] += 1
    for agg in named.values():
        agg["bytes_per_row"] = round(agg["bytes"] / agg["rows"], 2) if agg["rows"] else None
    on_disk = sum(p.stat().st_size for p in root.rglob("*.ledger")) if root.exists() else 0
    total = sum(a["bytes"] for a in named.values())
    rows = sum(a["rows"] for a in named.values())
    return {
        "streams": named,
        "bytes": total,
        "rows": rows,
        "bytes_per_row": round(total / rows, 2) if rows else None,
        "on_disk_bytes": on_disk,
    }


def _summarise(row: dict[str, Any], state: dict | None, ledger_dir: Path) -> dict[str, Any]:
    keep = (
        "ok",
        "rc",
        "wall_s",
        "cpu_s",
        "max_rss_mb",
        "requests",
        "requests_by_endpoint",
        "records",
        "emulator_cpu_util",
        "other_cpu_util",
        "state_lines",
        "error",
        "timed_out",
    )
    out = {k: row.get(k) for k in keep if k in row}
    streams = (row.get("summary") or {}).get("streams") or {}
    out["streams"] = {
        name: {k: v for k, v in s.items() if k in ("records", "requests", "status", "deleted")}
        for name, s in streams.items()
    }
    out["ledger"] = ledger_files(ledger_dir, state)
    return out


def job(ctx: Ctx, kind: str, size: int, deletes: int, seed: int = 11) -> dict[str, Any]:
    """One job (see the module doc) against a fresh emulator with ``size`` candidates."""
    spec = JOBS[kind]
    streams = set(spec["streams"])
    ledger_dir = ctx.tmp / f"ledger-scale-{kind}-{size}"
    out: dict[str, Any] = {
        "job": kind,
        "streams": spec["streams"],
        "candidates": size,
        "parent_rows": size,
        "deletes": deletes,
    }
    with EmulatorProcess(size, ctx.path(f"emulator-scale-{kind}-{size}", ".log")) as emu:
        settings: dict[str, Any] = {"ledger_uri": str(ledger_dir)}
        full, state = _tap_with_states(
            ctx, emu, streams, None, f"scale-full-{kind}-{size}", settings
        )
        out["full"] = _summarise(full, state, ledger_dir)
        ctx.log(
            f"  scale {kind} {size:,}: full {full.get('wall_s')} s, rss "
            f"{full.get('max_rss_mb')} MB, state max "
            f"{full['state_lines']['max_bytes']} B, ledger "
            f"{out['full']['ledger']['bytes']:,} B"
            + ("" if full.get("ok") else f"  FAILED: {full.get('error')}")
        )
        if not full.get("ok") or state is None or ctx.remaining() <= 0:
            out["error"] = (
                "full sync failed or left no STATE" if ctx.remaining() > 0 else "deadline"
            )
            return out
        started = time.perf_counter()
        ids = emu.ids(spec["delete_from"])
        victims = random.Random(seed).sample(ids, min(deletes, len(ids)))
        del ids
        gone: dict[str, int] = {}
        for record_id in victims:
            for table, _ in emu.delete(spec["delete_from"], record_id)["deleted"]:
                gone[table] = gone.get(table, 0) + 1
        out["deleted_in_emulator"] = gone
        out["expected_tombstones"] = {s: gone.get(s, 0) for s in spec["streams"]}
        out["mutate_s"] = round(time.perf_counter() - started, 2)
        settings = {"ledger_uri": str(ledger_dir), "reconcile_now": True}
        rec, rec_state = _tap_with_states(
            ctx, emu, streams, state, f"scale-reconcile-{kind}-{size}", settings
        )
        out["reconcile"] = _summarise(rec, rec_state, ledger_dir)
        got = {
            s: (out["reconcile"]["streams"].get(s) or {}).get("deleted") for s in spec["streams"]
        }
        out["tombstones"] = got
        out["tombstones_ok"] = got == out["expected_tombstones"]
        ctx.log(
            f"  scale {kind} {size:,}: reconcile {rec.get('wall_s')} s, rss "
            f"{rec.get('max_rss_mb')} MB, tombstones {got} (expected "
            f"{out['expected_tombstones']})"
            + ("" if rec.get("ok") else f"  FAILED: {rec.get('error')}")
        )
    expected_records = {
        "candidates": size,
        "applications": size,
        "application_history": size * PER_PARENT["application_history"],
    }
    out["expected_records"] = sum(expected_records[s] for s in spec["streams"])
    out["expected_full_requests"] = 1 + sum(
        math.ceil(size / 100) if s != "application_history" else size for s in spec["streams"]
    )
    return out


def run(
    ctx: Ctx,
    rows: list[int],
    apps_cap: int,
    deletes: int,
    results: list[dict[str, Any]],
    attempt: Any,
) -> None:
    """Every job of every row count, appended to ``results`` as it finishes."""
    done_apps: set[int] = set()
    for n in rows:
        got = attempt(f"scale candidates {n:,}", lambda n=n: job(ctx, "candidates", n, deletes))
        if got:
            got["row"] = n
            results.append(got)
        size = min(n, apps_cap)
        if size in done_apps:
            for prev in list(results):
                if prev["job"] == "applications" and prev["candidates"] == size:
                    prev.setdefault("also_for_rows", []).append(n)
            continue
        done_apps.add(size)
        got = attempt(
            f"scale applications {size:,}", lambda s=size: job(ctx, "applications", s, deletes)
        )
        if got:
            got["row"] = n
            results.append(got)
