"""``make demo``: emulator -> meltano run (full) -> changes -> meltano run (incremental).

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
    finally:
        if emu is not None:
            emu.stop()


if __name__ == "__main__":
    main()
