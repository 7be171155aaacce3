"""The benchmark cases. Each returns a JSON-able dict; none runs longer than its timeout."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emu import KEY, EmulatorProcess, requests_made
from procs import (
    BENCH,
    BIN,
    REPO,
    Measured,
    TreeSampler,
    busy_cpu_seconds,
    run_measured,
    speed_index,
)
from tapctl import STREAMS, last_state, parse_summary, tap_command, write_catalog, write_config

PAGE = 100


@dataclass
class Ctx:
    """Where a run keeps its files, its overall deadline, and the tap's catalog."""

    tmp: Path
    results: Path
    deadline: float  # time.monotonic() after which no new case starts
    catalog: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print
    _seq: int = 0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, estimate: float) -> float:
        """Generous for one process, never past the run's deadline (plus a grace minute)."""
        return max(10.0, min(estimate, self.remaining() + 60))

    def path(self, stem: str, suffix: str) -> Path:
        self._seq += 1
        return self.tmp / f"{self._seq:03d}-{stem}{suffix}"


def _devnull() -> Any:
    return Path(os.devnull).open("wb")  # closed by the caller's `with`


def _expected_requests(records: int) -> int:
    return max(1, math.ceil(records / PAGE))


def _sync_timeout(n: int) -> float:
    # About 100x the expected time at ~5k records/s, at least two minutes.
    return 120 + n * 0.01


# 1. emulator ceiling ---------------------------------------------------------------------
def ceiling(ctx: Ctx, emu: EmulatorProcess, max_pages: int) -> list[dict[str, Any]]:
    out = []
    for stream, (endpoint, body) in STREAMS.items():
        pages = min(max_pages, _expected_requests(emu.candidates))
        cmd = [
            sys.executable,
            str(BENCH / "ceiling.py"),
            emu.url,
            endpoint,
            KEY,
            json.dumps(body),
            str(pages),
            "60",
        ]
        cpu0 = emu.cpu_seconds()
        stdout_path = ctx.path(f"ceiling-{endpoint}", ".json")
        with stdout_path.open("wb") as fh:
            m = run_measured(
                cmd, stdout=fh, stderr_path=ctx.path("ceiling", ".err"), timeout=ctx.timeout(120)
            )
        emu_cpu = emu.cpu_seconds() - cpu0
        row: dict[str, Any] = {
            "n": emu.candidates,
            "stream": stream,
            "endpoint": endpoint,
            "ok": m.ok,
        }
        if m.ok:
            got = json.loads(stdout_path.read_text())
            row.update(
                pages=got["pages"],
                seconds=round(got["seconds"], 3),
                pages_per_s=round(got["pages"] / got["seconds"], 1),
                records_per_s=round(got["pages"] * PAGE / got["seconds"]),
                bytes_per_page=got["bytes"] // max(1, got["pages"]),
                emulator_cpu_util=round(emu_cpu / got["seconds"], 2),
            )
        else:
            row["error"] = m.stderr_tail()
        out.append(row)
        ctx.log(f"  ceiling {endpoint} n={emu.candidates:,}: {row.get('pages_per_s')} pages/s")
    return out


# 2. floor vs tap -------------------------------------------------------------------------
def _floor_run(ctx: Ctx, emu: EmulatorProcess, stream: str) -> dict[str, Any]:
    endpoint, body = STREAMS[stream]
    n = emu.candidates
    cmd = [
        sys.executable,
        str(BENCH / "floor.py"),
        emu.url,
        endpoint,
        KEY,
        json.dumps(body),
        str(_expected_requests(n) + 10),
    ]
    err = ctx.path(f"floor-{stream}-{n}", ".err")
    emu.reset_stats()
    cpu0, busy0 = emu.cpu_seconds(), busy_cpu_seconds()
    with _devnull() as devnull:
        m = run_measured(
            cmd, stdout=devnull, stderr_path=err, timeout=ctx.timeout(_sync_timeout(n))
        )
    row = _client_row("floor", m, emu, cpu0, busy0)
    for line in err.read_text(errors="replace").splitlines():
        if line.startswith("FLOOR "):
            got = json.loads(line[6:])
            row.update(records=got["records"], sync_s=round(got["seconds"], 3))
    return _rates(row)


def _tap_run(
    ctx: Ctx,
    emu: EmulatorProcess,
    stream: str,
    *,
    extra: list[str] | None = None,
    settings: dict[str, Any] | None = None,
    stdout: Any = None,
    on_start: Any = None,
    label: str = "tap",
) -> dict[str, Any]:
    n = emu.candidates
    cfg = write_config(ctx.path(f"config-{n}", ".json"), emu.url, **(settings or {}))
    streams = {stream} if isinstance(stream, str) else set(stream)
    cat = write_catalog(ctx.path("catalog", ".json"), ctx.catalog, streams)
    cmd = [*tap_command(), "--config", str(cfg), "--catalog", str(cat), *(extra or [])]
    err = ctx.path(f"tap-{'+'.join(sorted(streams))}-{n}", ".err")
    emu.reset_stats()
    cpu0, busy0 = emu.cpu_seconds(), busy_cpu_seconds()
    if stdout is None:
        with _devnull() as devnull:
            m = run_measured(
                cmd,
                stdout=devnull,
                stderr_path=err,
                timeout=ctx.timeout(_sync_timeout(n)),
                on_start=on_start,
            )
    else:
        m = run_measured(
            cmd,
            stdout=stdout,
            stderr_path=err,
            timeout=ctx.timeout(_sync_timeout(n)),
            on_start=on_start,
        )
    row = _client_row(label, m, emu, cpu0, busy0)
    summary = parse_summary(err.read_text(errors="replace"))
    row["summary"] = summary
    picked = [summary["streams"][s] for s in streams if s in summary["streams"]]
    if picked:
        row["records"] = sum(s["records"] for s in picked)
        row["sync_s"] = round(sum(s["seconds"] for s in picked), 3)
    return _rates(row)


def _client_row(
    who: str, m: Measured, emu: EmulatorProcess, cpu0: float, busy0: float | None = None
) -> dict[str, Any]:
    busy = busy_cpu_seconds() - busy0 if busy0 is not None else None
    stats = emu.stats()
    row: dict[str, Any] = {
        "who": who,
        **m.as_dict(),
        "ok": m.ok,
        "requests": requests_made(stats),
        "requests_by_endpoint": {k: sum(v.values()) for k, v in stats["endpoints"].items()},
        "max_in_flight": stats["max_in_flight"],
        "max_per_second": stats["max_per_second"],
        "emulator_cpu_s": round(emu.cpu_seconds() - cpu0, 3),
    }
    if m.wall_s:
        row["emulator_cpu_util"] = round(row["emulator_cpu_s"] / m.wall_s, 2)
        if busy is not None:
            # CPU used by everything else on the machine meanwhile (other sessions' work,
            # the harness): noise. 1.0 = one of the cores taken away for the whole run.
            other = busy - m.cpu_s - row["emulator_cpu_s"]
            row["other_cpu_util"] = round(max(0.0, other) / m.wall_s, 2)
    if not m.ok:
        row["error"] = m.stderr_tail()
    return row


def _rates(row: dict[str, Any]) -> dict[str, Any]:
    records = row.get("records") or 0
    if records and row.get("cpu_s") is not None:
        row["cpu_us_per_record"] = round(row["cpu_s"] / records * 1e6, 1)
    if row.get("sync_s"):
        row["records_per_s"] = round(records / row["sync_s"])
    if row.get("wall_s"):
        row["records_per_s_wall"] = round(records / row["wall_s"])
    return row


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None and r.get("ok")]
    return statistics.median(values) if values else None


def full_sync(ctx: Ctx, emu: EmulatorProcess, stream: str, reps: int) -> dict[str, Any]:
    """Floor and tap, interleaved ``reps`` times; medians per client."""
    n = emu.candidates
    runs: dict[str, list[dict[str, Any]]] = {"floor": [], "tap": []}
    for rep in range(reps):
        for who in ("floor", "tap"):
            if ctx.remaining() <= 0:
                break
            speed = speed_index()
            row = _floor_run(ctx, emu, stream) if who == "floor" else _tap_run(ctx, emu, stream)
            row.update(
                rep=rep,
                speed_before=speed,
                speed_after=speed_index(),
                endpoint_requests=row["requests_by_endpoint"].get(STREAMS[stream][0]),
            )
            runs[who].append(row)
            ctx.log(
                f"  {who:5} {stream} n={n:,} rep {rep + 1}/{reps}: "
                f"{row.get('wall_s')} s wall, {row.get('records_per_s')} rec/s, "
                f"{row.get('requests')} requests, rss {row.get('max_rss_mb')} MB"
                + ("" if row["ok"] else f"  FAILED: {row.get('error')}")
            )
    out: dict[str, Any] = {
        "n": n,
        "stream": stream,
        "endpoint": STREAMS[stream][0],
        "expected_records": n,
        "expected_requests": _expected_requests(n),
        "reps": reps,
        "runs": runs,
    }
    for who, rows in runs.items():
        out[who] = {
            key: _median(rows, key)
            for key in (
                "wall_s",
                "sync_s",
                "records_per_s",
                "records_per_s_wall",
                "cpu_s",
                "cpu_us_per_record",
                "max_rss_mb",
                "requests",
                "endpoint_requests",
                "records",
                "emulator_cpu_util",
                "other_cpu_util",
            )
        }
        out[who]["ok"] = bool(rows) and all(r["ok"] for r in rows)
        out[who]["records_ok"] = bool(rows) and all(r.get("records") == n for r in rows)
    speeds = [
        r[k]
        for rows in runs.values()
        for r in rows
        for k in ("speed_before", "speed_after")
        if r.get(k)
    ]
    if speeds:
        # How much faster the box was at its fastest than at its slowest during this case.
        out["speed_drift_pct"] = round(100 * (max(speeds) / min(speeds) - 1), 1)
    f, t = out["floor"], out["tap"]
    if f.get("records_per_s") and t.get("records_per_s"):
        out["ratio"] = round(t["records_per_s"] / f["records_per_s"], 2)
    if f.get("wall_s") and t.get("wall_s"):
        out["ratio_wall"] = round(f["wall_s"] / t["wall_s"], 2)
    if f.get("cpu_us_per_record") and t.get("cpu_us_per_record"):
        out["ratio_cpu"] = round(f["cpu_us_per_record"] / t["cpu_us_per_record"], 2)
    return out


# 3. incremental ----------------------------------------------------------------------------
def _tap_with_states(
    ctx: Ctx,
    emu: EmulatorProcess,
    stream: str | set[str],
    state: dict | None,
    label: str,
    settings: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict | None]:
    """A tap run whose STATE lines are kept (stdout piped through grep into a file).

    The row gets ``state_lines``: how many STATE messages, the largest line and the total
    bytes (newlines excluded)."""
    extra = []
    if state is not None:
        state_path = ctx.path("state", ".json")
        state_path.write_text(json.dumps(state))
        extra = ["--state", str(state_path)]
    states = ctx.path(f"states-{label}", ".jsonl")
    grep: list[subprocess.Popen] = []
    with states.open("wb") as sink:

        def start_grep(proc: subprocess.Popen) -> None:
            grep.append(
                subprocess.Popen(["grep", "-F", '"type":"STATE"'], stdin=proc.stdout, stdout=sink)
            )
            assert proc.stdout is not None
            proc.stdout.close()

        row = _tap_run(
            ctx,
            emu,
            stream,
            extra=extra,
            stdout=subprocess.PIPE,
            on_start=start_grep,
            label=label,
            settings=settings,
        )
        for g in grep:
            g.wait(timeout=120)
    row["state_lines"] = state_line_stats(states)
    return row, last_state(states)


def state_line_stats(path: Path) -> dict[str, int]:
    """STATE messages in a file of grepped Singer lines: count, largest and total bytes."""
    sizes = [len(line.rstrip(b"\n")) for line in path.open("rb") if line.startswith(b"{")]
    return {"count": len(sizes), "max_bytes": max(sizes, default=0), "total_bytes": sum(sizes)}


def incremental(
    ctx: Ctx, emu: EmulatorProcess, fractions: list[float], seed: int = 7
) -> dict[str, Any]:
    n = emu.candidates
    stream = "candidates"
    base, state = _tap_with_states(ctx, emu, stream, None, "baseline")
    out: dict[str, Any] = {"n": n, "stream": stream, "baseline": base, "steps": []}
    ctx.log(
        f"  incremental n={n:,}: baseline full run {base.get('wall_s')} s, "
        f"state {'captured' if state else 'MISSING'}"
    )
    if not state:
        out["error"] = "no STATE from the baseline run"
        return out
    ids = emu.ids(stream)
    rng = random.Random(seed)
    for frac in fractions:
        if ctx.remaining() <= 0:
            break
        k = max(1, round(n * frac))
        started = time.perf_counter()
        for record_id in rng.sample(ids, k):
            emu.update(stream, record_id)
        mutate_s = time.perf_counter() - started
        row, new_state = _tap_with_states(ctx, emu, stream, state, f"inc-{frac}")
        row.update(
            fraction=frac,
            changed=k,
            mutate_s=round(mutate_s, 2),
            expected_records=k,
            expected_requests=_expected_requests(k),
            incremental=(
                row.get("summary", {}).get("streams", {}).get(stream, {}).get("status")
                == "incremental pass"
            ),
        )
        out["steps"].append(row)
        ctx.log(
            f"  incremental n={n:,} {frac:.1%} ({k} changed): {row.get('wall_s')} s, "
            f"{row.get('records')} records, {row.get('requests')} requests"
        )
        state = new_state or state
    return out


# 4. meltano run ------------------------------------------------------------------------------
SELECT = ["candidates.*", "applications.*"]


def _classify(cmdline: str) -> str:
    if "target-duckdb" in cmdline:
        return "target"
    if "tap-ashby" in cmdline:
        return "tap discovery" if "--discover" in cmdline else "tap"
    return "other"


def _meltano_env(url: str, mdir: Path, db_name: str = "bench.duckdb") -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_HUB_URL": "http://127.0.0.1:9",
            "TAP_ASHBY_BASE_URL": url,
            "TAP_ASHBY_API_KEY": KEY,
            "TAP_ASHBY_REQUESTS_PER_MINUTE": "0",
            "TARGET_DUCKDB_PATH": str(mdir / db_name),
            "MELTANO_STATE_BACKEND_URI": f"file://{mdir}/state",
            # A private system database: the run never touches the project's .meltano/meltano.db.
            "MELTANO_DATABASE_URI": f"sqlite:///{mdir}/meltano.db",
            "TAP_ASHBY__SELECT": json.dumps(SELECT),
            # the tap's ledger would otherwise go to the project's .meltano/tap-ashby/ledger
            "TAP_ASHBY_LEDGER_URI": str(mdir / "ledger"),
        }
    )
    return env


def _meltano(*args: str) -> list[str]:
    exe = BIN / "meltano"
    return [str(exe) if exe.exists() else "meltano", *args]


def _json_tail(text: str) -> Any:
    start = text.find("{")
    return json.loads(text[start:]) if start >= 0 else None


def _duckdb_counts(path: Path) -> dict[str, int] | str:
    try:
        import duckdb  # noqa: PLC0415 - optional (a dev dependency)

        con = duckdb.connect(str(path), read_only=True)
        try:
            return {
                t: con.execute(f"select count(*) from ashby.{t}").fetchone()[0]
                for t in ("candidates", "applications")
            }
        finally:
            con.close()
    except Exception as err:  # reported, never fatal
        return f"{type(err).__name__}: {err}"


def meltano_run(
    ctx: Ctx,
    emu: EmulatorProcess,
    variants: list[dict[str, Any]] | None = None,
    reps: int = 1,
) -> dict[str, Any]:
    """Environment check, the sampled pipeline (current settings), then the target-duckdb
    tuning variants interleaved with the current settings, then the tap and the target
    alone."""
    n = emu.candidates
    mdir = ctx.tmp / "meltano"
    mdir.mkdir(exist_ok=True)
    env = _meltano_env(emu.url, mdir)
    out: dict[str, Any] = {"n": n, "select": SELECT}
    # Does TAP_ASHBY__SELECT reach meltano? (and the settings through TAP_ASHBY_*)
    sel = subprocess.run(
        _meltano("select", "tap-ashby", "--list"),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=ctx.timeout(180),
        check=False,
    )
    lines = sel.stdout.splitlines()
    patterns: list[str] = []
    if "Enabled patterns:" in [ln.strip() for ln in lines]:
        start = [ln.strip() for ln in lines].index("Enabled patterns:") + 1
        for ln in lines[start:]:
            if not ln.strip():
                break
            patterns.append(ln.strip())
    selected_streams = sorted(
        {
            ln.split("]", 1)[1].strip().split(".")[0]
            for ln in lines
            if ln.strip().startswith("[selected")
        }
    )
    cfg = subprocess.run(
        _meltano("config", "print", "tap-ashby"),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=ctx.timeout(120),
        check=False,
    )
    printed = _json_tail(cfg.stdout) or {}
    out["env_check"] = {
        "select_patterns": patterns,
        "selected_streams": selected_streams,
        "select_ok": patterns == SELECT and selected_streams == ["applications", "candidates"],
        "config_base_url_ok": printed.get("base_url") == emu.url,
        "config_rpm_ok": printed.get("requests_per_minute") in (0, "0"),
    }
    ctx.log(f"  meltano env check: {out['env_check']}")

    run = _pipeline(ctx, emu, mdir, "current", {})
    out["run"] = run
    ctx.log(f"  meltano run n={n:,}: {run['wall_s']:.1f} s, rc {run['rc']}, rows {run['rows']}")
    if variants:
        out["tuning"] = _tuning(ctx, emu, mdir, run, variants, reps)

    # the tap alone, same selection, stdout to /dev/null
    alone = _tap_run(ctx, emu, {"candidates", "applications"}, label="tap alone")  # type: ignore
    out["tap_alone"] = alone
    ctx.log(f"  tap alone (same selection): {alone.get('wall_s')} s")

    # the target alone, fed the same Singer stream from a file, with meltano's own config
    out["target_alone"] = _target_alone(ctx, emu, mdir)
    return out


def _pipeline(
    ctx: Ctx, emu: EmulatorProcess, mdir: Path, label: str, extra_env: dict[str, str]
) -> dict[str, Any]:
    """One sampled ``meltano run tap-ashby target-duckdb``: a fresh DuckDB file, state
    backend and ledger (so every run is a first, full load), the shared system database."""
    n = emu.candidates
    slot = mdir / f"run-{ctx.path(label, '').name}"
    slot.mkdir(parents=True)
    env = _meltano_env(emu.url, mdir)
    env.update(
        {
            "TARGET_DUCKDB_PATH": str(slot / "bench.duckdb"),
            "MELTANO_STATE_BACKEND_URI": f"file://{slot}/state",
            "TAP_ASHBY_LEDGER_URI": str(slot / "ledger"),
            **extra_env,
        }
    )
    origin = time.perf_counter()
    samplers: list[TreeSampler] = []

    def sample(proc: subprocess.Popen) -> None:
        samplers.append(TreeSampler(proc.pid, origin, _classify).start())

    emu.reset_stats()
    busy0, emu0 = busy_cpu_seconds(), emu.cpu_seconds()
    with _devnull() as devnull:
        m = run_measured(
            _meltano("run", "tap-ashby", "target-duckdb"),
            stdout=devnull,
            stderr_path=ctx.path(f"meltano-run-{label}", ".log"),
            env=env,
            timeout=ctx.timeout(600 + n * 0.05),
            on_start=sample,
            rss=False,
        )
    for s in samplers:
        s.stop()
    busy, emu_cpu = busy_cpu_seconds() - busy0, emu.cpu_seconds() - emu0
    stats = emu.stats()
    phases = samplers[0].by_label() if samplers else {}
    run: dict[str, Any] = {
        "label": label,
        "env": extra_env,
        **m.as_dict(),
        "ok": m.ok,
        "requests": requests_made(stats),
        "processes": phases,
        "rows": _duckdb_counts(slot / "bench.duckdb"),
    }
    if not m.ok:
        run["error"] = m.stderr_tail(10)
    tap, target = phases.get("tap"), phases.get("target")
    if tap and target:
        total = m.wall_s
        run["breakdown"] = {
            "meltano_start_and_discovery_s": round(tap["start_s"], 2),
            "tap_running_s": round(tap["end_s"] - tap["start_s"], 2),
            "target_only_after_tap_exit_s": round(max(0.0, target["end_s"] - tap["end_s"]), 2),
            "meltano_after_target_exit_s": round(max(0.0, total - target["end_s"]), 2),
            "tap_cpu_s": round(tap["cpu_s"], 2),
            "target_cpu_s": round(target["cpu_s"], 2),
            "meltano_cpu_s": round(phases.get("meltano", {}).get("cpu_s", 0.0), 2),
            "discovery_cpu_s": round(phases.get("tap discovery", {}).get("cpu_s", 0.0), 2),
            "target_rss_mb": target.get("max_rss_mb"),
            "tap_rss_mb": tap.get("max_rss_mb"),
        }
    if m.wall_s:
        # CPU of everything but the pipeline's processes and the emulator, per second
        pipeline_cpu = sum(p.get("cpu_s", 0.0) for p in phases.values())
        run["other_cpu_util"] = round(max(0.0, busy - pipeline_cpu - emu_cpu) / m.wall_s, 2)
    return run


def _tuning(
    ctx: Ctx,
    emu: EmulatorProcess,
    mdir: Path,
    first: dict[str, Any],
    variants: list[dict[str, Any]],
    reps: int,
) -> dict[str, Any]:
    """``meltano run`` with the current settings and with each variant (extra environment,
    i.e. a setting declared in meltano.yml), interleaved ``reps`` times; the first run of
    the current settings is the sampled pipeline run above."""
    runs: dict[str, list[dict[str, Any]]] = {"current": [first]}
    labels = ["current"] + [v["label"] for v in variants]
    envs = {"current": {}, **{v["label"]: v["env"] for v in variants}}
    for rep in range(reps):
        for label in labels:
            if rep == 0 and label == "current":
                continue
            if ctx.remaining() <= 0:
                break
            row = _pipeline(ctx, emu, mdir, label, envs[label])
            row["rep"] = rep
            runs.setdefault(label, []).append(row)
            b = row.get("breakdown", {})
            ctx.log(
                f"  meltano tuning {label} rep {rep + 1}/{reps}: {row['wall_s']:.1f} s, "
                f"target tail {b.get('target_only_after_tap_exit_s')} s, target rss "
                f"{b.get('target_rss_mb')} MB, rows {row['rows']}"
            )
    summary = []
    for label in labels:
        rows = [r for r in runs.get(label, []) if r.get("ok")]
        if not rows:
            summary.append({"label": label, "runs": 0})
            continue

        def med(key: str, rows: list[dict[str, Any]] = rows) -> float | None:
            vals = [
                r["breakdown"][key] for r in rows if r.get("breakdown", {}).get(key) is not None
            ]
            return round(statistics.median(vals), 2) if vals else None

        summary.append(
            {
                "label": label,
                "env": envs[label],
                "runs": len(rows),
                "wall_s": round(statistics.median(r["wall_s"] for r in rows), 2),
                "walls": [r["wall_s"] for r in rows],
                "tap_running_s": med("tap_running_s"),
                "target_tail_s": med("target_only_after_tap_exit_s"),
                "target_cpu_s": med("target_cpu_s"),
                "target_rss_mb": med("target_rss_mb"),
                "rows": rows[-1].get("rows"),
                "other_cpu_util": statistics.median(r.get("other_cpu_util") or 0.0 for r in rows),
            }
        )
    return {"reps": reps, "runs": runs, "summary": summary}


def _target_alone(ctx: Ctx, emu: EmulatorProcess, mdir: Path) -> dict[str, Any]:
    exe = REPO / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "target-duckdb"
    if not exe.exists():
        return {"ok": False, "error": f"{exe} missing (meltano install)"}
    env = _meltano_env(emu.url, mdir, "alone.duckdb")
    printed = subprocess.run(
        _meltano("config", "print", "target-duckdb"),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=ctx.timeout(120),
        check=False,
    )
    config = _json_tail(printed.stdout)
    if not isinstance(config, dict):
        return {"ok": False, "error": "meltano config print target-duckdb gave no JSON"}
    cfg_path = ctx.path("target-config", ".json")
    cfg_path.write_text(json.dumps(config))
    singer = ctx.path("singer-stream", ".jsonl")
    with singer.open("wb") as fh:
        _tap_run(
            ctx,
            emu,
            {"candidates", "applications"},
            stdout=fh,  # type: ignore[arg-type]
            label="tap to file",
        )
    with singer.open("rb") as fin, _devnull() as devnull:
        m = run_measured(
            [str(exe), "--config", str(cfg_path)],
            stdin=fin,
            stdout=devnull,
            stderr_path=ctx.path("target-alone", ".err"),
            env=env,
            timeout=ctx.timeout(600),
        )
    out = {
        **m.as_dict(),
        "ok": m.ok,
        "input_mb": round(singer.stat().st_size / 2**20, 1),
        "rows": _duckdb_counts(mdir / "alone.duckdb"),
        "config": {k: v for k, v in config.items() if k != "path"},
    }
    if not m.ok:
        out["error"] = m.stderr_tail()
    singer.unlink()
    ctx.log(f"  target alone: {m.wall_s:.1f} s, rows {out['rows']}")
    return out


# 5. fan-out -----------------------------------------------------------------------------------
def fan_out(
    ctx: Ctx, apps: int, concurrencies: list[int], budgets: list[int], latency: float
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "applications": apps,
        "latency_s": latency,
        "rows": [],
        "expected_records": apps * 3,
        "expected_requests": apps + _expected_requests(apps),
    }
    with EmulatorProcess(apps, ctx.path("emulator-fanout", ".log"), latency=latency) as emu:
        out["probe"] = emu.probe(5)
        for budget in budgets:
            for conc in concurrencies:
                if ctx.remaining() <= 0:
                    break
                row = _tap_run(
                    ctx,
                    emu,
                    "application_history",
                    settings={"max_concurrency": conc, "requests_per_minute": budget},
                )
                row.update(concurrency=conc, budget_rpm=budget)
                if row.get("sync_s"):
                    row["requests_per_s"] = round(row["requests"] / row["sync_s"], 1)
                if budget:
                    row["budget_per_s"] = round(budget / 60, 1)
                out["rows"].append(row)
                ctx.log(
                    f"  fan-out c={conc} budget={budget or 'none'}: "
                    f"{row.get('sync_s')} s, {row.get('requests_per_s')} req/s, "
                    f"max/s {row['max_per_second']}, in flight {row['max_in_flight']}"
                )
    return out


# profile ---------------------------------------------------------------------------------------
PROFILE_STREAMS = ("candidates", "applications")


def profile(ctx: Ctx, emu: EmulatorProcess, prof_path: Path) -> dict[str, Any]:
    """The tap under cProfile in every thread, on CPU time (bench/profile_threads.py)."""
    n = emu.candidates
    cfg = write_config(ctx.path(f"config-{n}", ".json"), emu.url)
    cat = write_catalog(ctx.path("catalog", ".json"), ctx.catalog, set(PROFILE_STREAMS))
    cmd = [
        sys.executable,
        str(BENCH / "profile_threads.py"),
        str(prof_path),
        "-m",
        "tap_ashby.tap",
        "--config",
        str(cfg),
        "--catalog",
        str(cat),
    ]
    err = ctx.path("profile", ".err")
    emu.reset_stats()
    with _devnull() as devnull:
        m = run_measured(
            cmd, stdout=devnull, stderr_path=err, timeout=ctx.timeout(_sync_timeout(n) * 8)
        )
    summary = parse_summary(err.read_text(errors="replace"))
    out = {
        "n": n,
        "streams": list(PROFILE_STREAMS),
        **m.as_dict(),
        "ok": m.ok and prof_path.exists(),
        "records": summary["records"],
        "requests": requests_made(emu.stats()),
    }
    if not m.ok:
        out["error"] = m.stderr_tail()
    ctx.log(f"  profile n={n:,}: {m.wall_s:.1f} s under cProfile (all threads)")
    return out
