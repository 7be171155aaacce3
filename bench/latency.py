"""Latency: the tap's default full sync of a small org, with the default request budget.

For each added latency the emulator is started fresh with ``--latency L``; the tap runs with
a config of only api_key, base_url and ledger_uri (so the defaults apply: 900 requests per
minute, max_concurrency 16) and no catalog (so the tap's default selection). The budget
allows at best 15 requests/s: ideal = requests / 15 s, utilisation = ideal / wall.
"""

from __future__ import annotations

import math
from typing import Any

from cases import Ctx, _client_row, _devnull
from emu import EmulatorProcess
from procs import busy_cpu_seconds, run_measured
from tapctl import parse_summary, tap_command, write_config

BUDGET_PER_S = 900 / 60  # the tap's default requests_per_minute
AIRBYTE_REQ_PER_S = 1.31  # Airbyte's Ashby source, sequential (from the issue)
PARENTS = ("candidate.list", "application.list")


def run_one(ctx: Ctx, candidates: int, latency: float) -> dict[str, Any]:
    log = ctx.path(f"emulator-latency-{latency}", ".log")
    with EmulatorProcess(candidates, log, latency=latency) as emu:
        cfg = write_config(
            ctx.path(f"config-latency-{latency}", ".json"),
            emu.url,
            requests_per_minute=None,
            ledger_uri=str(ctx.tmp / f"ledger-latency-{latency}"),
        )
        cmd = [*tap_command(), "--config", str(cfg)]  # no --catalog: default selection
        err = ctx.path(f"tap-latency-{latency}", ".err")
        emu.reset_stats()
        cpu0, busy0 = emu.cpu_seconds(), busy_cpu_seconds()
        with _devnull() as devnull:
            m = run_measured(
                cmd, stdout=devnull, stderr_path=err, timeout=ctx.timeout(900 + 60 * latency * 30)
            )
        row = _client_row("tap", m, emu, cpu0, busy0)
    summary = parse_summary(err.read_text(errors="replace"))
    requests = row["requests"]
    pages = math.ceil(candidates / 100)
    row.update(
        latency_s=latency,
        latency_ms=round(latency * 1000),
        candidates=candidates,
        records=summary["records"],
        sync_s=summary["seconds"],
        tap_requests=summary.get("requests"),
        streams=len(summary["streams"]),
        ideal_s=round(requests / BUDGET_PER_S, 1),
        utilisation=round(requests / BUDGET_PER_S / m.wall_s, 3) if m.wall_s else None,
        airbyte_s=round(requests / AIRBYTE_REQ_PER_S, 1),
        expected_parent_pages=pages,
        parent_list_requests={ep: row["requests_by_endpoint"].get(ep, 0) for ep in PARENTS},
    )
    row["parents_read_once"] = all(v == pages for v in row["parent_list_requests"].values())
    # Bound by concurrency instead of the budget only once latency > max_concurrency / 15 s
    # (1.07 s at the defaults): the concurrency-bound ideal, for comparison.
    if latency:
        row["concurrency_bound_ideal_s"] = round(requests * latency / 16, 1)
    if summary["seconds"]:
        row["utilisation_sync"] = round(requests / BUDGET_PER_S / summary["seconds"], 3)
    ctx.log(
        f"  latency {latency * 1000:.0f} ms: {requests} requests in {m.wall_s:.1f} s "
        f"(ideal {row['ideal_s']} s, utilisation {row['utilisation']}), in flight "
        f"{row['max_in_flight']}, parent lists {row['parent_list_requests']}"
        + ("" if m.ok else f"  FAILED: {row.get('error')}")
    )
    return row


def run(
    ctx: Ctx, candidates: int, latencies: list[float], results: dict[str, Any], attempt: Any
) -> None:
    results.update(
        candidates=candidates,
        budget_rpm=900,
        max_concurrency=16,
        airbyte_req_per_s=AIRBYTE_REQ_PER_S,
    )
    rows = results.setdefault("rows", [])
    for latency in latencies:
        got = attempt(
            f"latency {latency * 1000:.0f} ms", lambda lat=latency: run_one(ctx, candidates, lat)
        )
        if got:
            rows.append(got)
