"""``make demo``: emulator -> meltano run (full) -> changes -> meltano run (incremental) ->
dbt marts, with the funnel of the busiest job printed and charted (output/demo_funnel.png).

Prints per-stream row counts, how many rows each run moved, and a few changed rows. It reads
the emulator unless asked for the real account explicitly (``make demo ASHBY=real``, with
``TAP_ASHBY_API_KEY`` set): then it runs the same two commands against Ashby (no emulator, no
changes made). An exported ``TAP_ASHBY_API_KEY`` alone never switches it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import duckdb  # a dev dependency, pinned like the target's (see pyproject.toml)
from ashby_emulator import Emulator
from matplotlib.figure import Figure  # a dev dependency

ROOT = Path.cwd()
MELTANO = str(Path(sys.executable).with_name("meltano"))
SUFFIX = "demo"
WAREHOUSE = ROOT / "output" / "demo.duckdb"


def meltano(*args: str, env: dict[str, str]) -> float:
    """Run a meltano command (output shown); returns its wall time."""
    started = time.monotonic()
    proc = subprocess.run(
        [MELTANO, *args],
        env=env,
        cwd=ROOT,
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if "summary" in line or "rror" in line]
    for line in lines[-60:]:
        print("   ", line.split("| ")[-1][:150])
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise SystemExit(f"meltano {' '.join(args)} failed with exit code {proc.returncode}")
    return time.monotonic() - started


def table_counts(since: float | None = None) -> dict[str, int]:
    """Rows per table in the demo warehouse (only rows loaded after ``since``, if given)."""
    con = duckdb.connect(str(WAREHOUSE), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'ashby' "
                "order by 1"
            ).fetchall()
        ]
        counts = {}
        for table in tables:
            sql = f'select count(*) from ashby."{table}"'
            if since is not None:
                sql += f" where _sdc_batched_at >= to_timestamp({since})"
            row = con.execute(sql).fetchone()
            counts[table] = row[0] if row else 0
        return counts
    finally:
        con.close()


def changed_rows(ids: list[str]) -> list[tuple]:
    con = duckdb.connect(str(WAREHOUSE), read_only=True)
    try:
        marks = ",".join(f"'{i}'" for i in ids)
        return con.execute(
            f"select id, name, updatedat from ashby.candidates where id in "
            f"({marks}) order by name like 'Renamed%' desc, updatedat desc "
            "limit 6"
        ).fetchall()
    finally:
        con.close()


def change_org(emu: Emulator, seed: int = 42) -> list[str]:
    """A few dozen changes: renames, new candidates, archived departments, moved apps."""
    org, rng = emu.org, random.Random(seed)
    touched = []
    for cid in org.random_ids("candidates", 20, rng):
        org.update("candidates", cid, {"name": f"Renamed in demo {cid[-4:]}"})
        touched.append(cid)
    for _ in range(10):
        touched.append(org.create("candidates").upserted[0][1])
    for dep in org.random_ids("departments", 2, rng):
        org.archive("departments", dep)
    for app in org.random_ids("applications", 8, rng):
        org.update("applications", app, {"status": "Hired"})
    return touched


def choose_account(environ: dict[str, str]) -> bool:
    """True for the real Ashby account: only on ``ASHBY=real``, never on a key alone. Prints
    which account the demo reads and what it changes about the tap's defaults."""
    wanted = environ.get("ASHBY", "emulator").strip().lower()
    if wanted not in ("emulator", "real"):
        raise SystemExit(f"ASHBY={wanted!r}: use ASHBY=real (your account) or leave it unset")
    real = wanted == "real"
    if real and not environ.get("TAP_ASHBY_API_KEY"):
        raise SystemExit("ASHBY=real needs TAP_ASHBY_API_KEY: export your Ashby API key first")
    if real:
        url = environ.get("TAP_ASHBY_BASE_URL") or "https://api.ashbyhq.com"
        print(f"demo: reading YOUR Ashby account at {url} (ASHBY=real); nothing is changed in it;")
        print("      the request budget stays at the default (900 requests/minute).")
    else:
        if environ.get("TAP_ASHBY_API_KEY"):
            print("demo: TAP_ASHBY_API_KEY is set but ignored; `make demo ASHBY=real` reads it")
        print("demo: reading a local Ashby emulator (a made-up org), not your account.")
        print("      It lifts the request budget (requests_per_minute=0): the emulator has no rate")
        print("      limit, and at the default 900/minute 1,000 candidates take about 146 s.")
    return real


def main() -> None:
    real = choose_account(dict(os.environ))
    WAREHOUSE.parent.mkdir(exist_ok=True)
    WAREHOUSE.unlink(missing_ok=True)
    env = {
        **os.environ,
        "TARGET_DUCKDB_PATH": str(WAREHOUSE),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    state_id = f"dev:tap-ashby-to-target-duckdb:{SUFFIX}"
    run = ("run", "--state-id-suffix", SUFFIX, "tap-ashby", "target-duckdb")
    emu = None
    if not real:
        emu = Emulator(
            candidates=int(os.environ.get("DEMO_CANDIDATES", "1000")), seed=1, key="demo"
        ).start()
        env.update(
            TAP_ASHBY_API_KEY=emu.key, TAP_ASHBY_BASE_URL=emu.url, TAP_ASHBY_REQUESTS_PER_MINUTE="0"
        )
        print(f"Ashby emulator at {emu.url} ({emu.org.candidates:,} candidates)")
    try:
        subprocess.run(
            [MELTANO, "state", "clear", "--force", state_id],
            env=env,
            cwd=ROOT,
            check=False,
            capture_output=True,
        )
        print("\n1) full run: meltano " + " ".join(run))
        t0 = time.time()
        full_seconds = meltano(*run, env=env)
        moved_full = table_counts(since=t0)
        touched: list[str] = []
        if emu is not None:
            requests_full = emu.stats.snapshot()["total"]
            emu.stats.reset()
            touched = change_org(emu)
            print(
                f"\n2) changed {len(touched)} candidates, 2 departments, 8 applications "
                "in the emulator"
            )
        print("\n3) incremental run: meltano " + " ".join(run))
        t1 = time.time()
        inc_seconds = meltano(*run, env=env)
        moved_inc = table_counts(since=t1)
        totals = table_counts()
        print(f"\n{'table':34} {'rows':>8} {'run 1 moved':>12} {'run 2 moved':>12}")
        for table, rows in totals.items():
            print(
                f"{table:34} {rows:8d} {moved_full.get(table, 0):12d} {moved_inc.get(table, 0):12d}"
            )
        print(
            f"{'total':34} {sum(totals.values()):8d} {sum(moved_full.values()):12d} "
            f"{sum(moved_inc.values()):12d}"
        )
        print(f"\nrun 1: {full_seconds:.1f}s, run 2: {inc_seconds:.1f}s", end="")
        if emu is not None:
            print(f"; API requests run 1: {requests_full}, run 2: {emu.stats.snapshot()['total']}")
            print("\nsome changed rows (id, name, updatedAt):")
            for row in changed_rows(touched):
                print("   ", row)
        print(f"\nwarehouse: {WAREHOUSE} (schema ashby); state id: {state_id}")
        analytics(env)
    finally:
        if emu is not None:
            emu.stop()


# -- analytics: the dbt marts, and the funnel of the busiest job ---------------------------------
CHART = WAREHOUSE.with_name("demo_funnel.png")


def analytics(env: dict[str, str]) -> None:
    """Build the dbt marts in the demo warehouse, print and chart the busiest job's funnel."""
    print("\n4) analytics: meltano run dbt-duckdb:build (staging views, marts, dbt tests)")
    seconds = meltano("run", "dbt-duckdb:build", env={**env, "DBT_DUCKDB_PATH": str(WAREHOUSE)})
    con = duckdb.connect(str(WAREHOUSE), read_only=True)
    try:
        busiest = con.execute(
            "select job_id, job_title, application_count from ashby_analytics.ashby__job_enhanced "
            "order by application_count desc, job_id limit 1"
        ).fetchone()
        if busiest is None:
            print("no jobs in the warehouse: nothing to chart")
            return
        funnel = con.execute(
            "select stage_title, applications_entered, median_days_in_stage "
            "from ashby_analytics.ashby__hiring_funnel where job_id = ? order by stage_order",
            [busiest[0]],
        ).fetchall()
    finally:
        con.close()
    first = funnel[0][1] if funnel else 0
    print(
        f"\nfunnel of the busiest job, {busiest[1]} ({busiest[2]} applications), built in "
        f"{seconds:.1f}s; conversion = entered / entered the first stage:"
    )
    print(f"{'stage':22} {'entered':>8} {'conversion':>11} {'median days':>12}")
    for title, entered, median in funnel:
        shown = f"{median:12.1f}" if median is not None else f"{'-':>12}"
        print(f"{title:22} {entered:8d} {entered / first:11.0%} {shown}")
    chart(busiest[1], funnel)
    print(f"\nwarehouse: {WAREHOUSE} (marts in schema ashby_analytics)\nfunnel chart: {CHART}")


def chart(job_title: str, funnel: list[tuple]) -> None:
    """A horizontal bar per stage (applications entered), labelled with the median days."""
    titles = [row[0] for row in funnel][::-1]
    entered = [row[1] for row in funnel][::-1]
    fig = Figure(figsize=(7, 4))  # no pyplot: no GUI backend, nothing global
    ax = fig.subplots()
    bars = ax.barh(titles, entered, color="#4C72B0")
    for bar, row in zip(bars, funnel[::-1], strict=True):
        label = f" {row[1]}" + (f"  (median {row[2]:.1f} d)" if row[2] is not None else "")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center")
    ax.set_xlabel("applications that entered the stage")
    ax.set_title(f"Hiring funnel: {job_title}")
    ax.set_xlim(0, max(entered or [1]) * 1.4)
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)


if __name__ == "__main__":
    main()
