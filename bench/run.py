"""tap-ashby benchmarks: floor vs tap, incremental, meltano, fan-out, profile. One run, one report.

    .venv/bin/python bench/run.py            # full run (10k, 100k, 1M candidates; ~35 min)
    .venv/bin/python bench/run.py --quick    # small scales, a smoke test (~3 min)

Writes bench/results/report.md and report.json, and prints the Markdown (a cProfile dump,
tap.prof, is written beside them for inspection but never committed: see .gitignore).
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import cases
import latency
import plots
import prof
import snapshot
import state_scale
from emu import EmulatorProcess
from procs import BENCH, REPO, RSS_METHOD
from report import render
from tapctl import STREAMS, discover, write_config

SECTIONS = (
    "ceiling",
    "full",
    "incremental",
    "meltano",
    "fanout",
    "profile",
    "cpu",
    "latency",
    "scale",
)
MODES: dict[str, dict[str, Any]] = {
    "full": {
        "scales": [10_000, 100_000, 1_000_000],
        "reps": {10_000: 3},  # interleaved floor/tap repetitions; 1 elsewhere
        "incremental": [10_000, 100_000],
        "fractions": [0.001, 0.01],
        "meltano": 10_000,
        "profile": 100_000,
        "fanout_apps": 2_000,
        "concurrency": [1, 4, 8, 16],
        "budget_rpm": 6_000,
        "latency": 0.05,
        "ceiling_pages": 300,
        "cpu_scale": 100_000,  # floor vs tap, interleaved, median (also the full rows there)
        "cpu_reps": 5,
        "meltano_batch_sizes": [10_000, 5_000, 2_000],  # target-duckdb batch_size_rows
        "meltano_reps": 2,
        "latency_candidates": 300,
        "latencies": [0.0, 0.1, 0.5, 1.0],
        "scale_rows": [10_000, 100_000, 1_000_000],
        "scale_apps_cap": 100_000,
        "scale_deletes": 5,
        "deadline_min": 60,
    },
    "quick": {
        "scales": [1_000, 5_000],
        "reps": {},
        "incremental": [5_000],
        "fractions": [0.001, 0.01],
        "meltano": 1_000,
        "profile": 5_000,
        "fanout_apps": 60,
        "concurrency": [1, 4, 8, 16],
        "budget_rpm": 6_000,
        "latency": 0.05,
        "ceiling_pages": 30,
        "cpu_scale": 5_000,
        "cpu_reps": 3,
        "meltano_batch_sizes": [500],
        "meltano_reps": 1,
        "latency_candidates": 40,
        "latencies": [0.0, 0.5],
        "scale_rows": [1_000, 5_000],
        "scale_apps_cap": 1_000,
        "scale_deletes": 3,
        "deadline_min": 8,
    },
}


def _log(started: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def _versions() -> dict[str, str]:
    out = {}
    for name in ("singer-sdk", "requests", "msgspec", "meltano", "tap-ashby"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def _git() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return rev + (" + uncommitted changes" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scales (smoke test)")
    parser.add_argument(
        "--scales",
        type=lambda s: [int(x) for x in s.split(",")],
        help="candidates per scale, comma-separated (overrides the mode)",
    )
    parser.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=list(SECTIONS),
        help=f"sections to run, comma-separated: {','.join(SECTIONS)}",
    )
    parser.add_argument("--fanout-apps", type=int, help="applications in the fan-out case")
    parser.add_argument(
        "--streams",
        type=lambda s: s.split(","),
        default=list(STREAMS),
        help="streams of the full-sync case (candidates,applications)",
    )
    parser.add_argument(
        "--deadline-minutes",
        type=float,
        help="start no new case after this (default: 60 full, 8 quick)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=BENCH / "results",
        help="where report.md, report.json and tap.prof go",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="run the live tap_ashby/ instead of a copy taken at the start",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    return args


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C, or `kill <pid>` (a background job ignores SIGINT), unwinds through the finally
    # blocks: the running client's process group is killed, emulators stop, reports are saved.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop)
    mode = "quick" if args.quick else "full"
    plan = dict(MODES[mode])
    if args.scales:
        plan["scales"] = sorted(args.scales)
    plan["streams"] = [s for s in args.streams if s in STREAMS]
    if args.fanout_apps:
        plan["fanout_apps"] = args.fanout_apps
    deadline_min = args.deadline_minutes or plan["deadline_min"]
    started = time.monotonic()
    log = _log(started)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tap-ashby-bench-"))
    ctx = cases.Ctx(tmp=tmp, results=args.out, deadline=started + deadline_min * 60, log=log)
    results: dict[str, Any] = {
        "meta": {
            "mode": mode,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "versions": _versions(),
            "git": _git(),
            "rss_method": RSS_METHOD,
            "plan": plan,
            "emulator": "python -m ashby_emulator.cli, as shipped",
            "skipped": [],
            "errors": [],
        },
        "ceiling": [],
        "probe": [],
        "full_sync": [],
        "incremental": [],
        "cpu": [],
        "scale": [],
        "latency": {},
    }
    only = set(args.only)
    code = results["meta"]["code"] = {"tree_at_start": snapshot.digest()}
    if not args.no_snapshot:
        code["snapshot"] = snapshot.freeze(tmp / "snapshot")
        log(f"measuring a copy of tap_ashby/ and schemas/ (digest {code['snapshot']})")

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        if ctx.remaining() <= 0:
            results["meta"]["skipped"].append(name)
            log(f"SKIP {name}: past the {deadline_min:g} min deadline")
            return None
        log(f"{name} ...")
        try:
            return fn()
        except Exception as err:  # one failing case must not end the run
            log(f"ERROR in {name}: {err}\n{traceback.format_exc()}")
            results["meta"]["errors"].append(f"{name}: {type(err).__name__}: {err}")
            return None
        finally:
            save(results, args.out, started)

    try:
        ctx.catalog = discover(write_config(tmp / "discover.json", "http://127.0.0.1:9"))
        with EmulatorProcess(40, tmp / "emulator-ids.log") as emu:
            results["meta"]["ids"] = emu.id_kind()
        log(f"emulator ids: {results['meta']['ids']}")
        scales = plan["scales"]
        for i, n in enumerate(scales):
            if "fanout" in only and i == len(scales) - 1:  # before the largest (longest) scale
                _fan_out(attempt, ctx, plan, results)
            if not _needs_emulator(n, plan, only):
                continue
            if ctx.remaining() <= 0:
                results["meta"]["skipped"].append(f"scale {n:,}")
                continue
            log(f"emulator with {n:,} candidates")
            with EmulatorProcess(n, tmp / f"emulator-{n}.log") as emu:
                _scale(attempt, ctx, emu, plan, only, results, args.out)
        if "fanout" in only and len(scales) == 0:
            _fan_out(attempt, ctx, plan, results)
        if "cpu" in only and plan["cpu_scale"] not in scales:
            results["meta"]["skipped"].append(f"cpu: {plan['cpu_scale']:,} not in the scales")
        if "latency" in only:
            latency.run(
                ctx, plan["latency_candidates"], plan["latencies"], results["latency"], attempt
            )
            plots.latency_plot(results, args.out)
        if "scale" in only:
            state_scale.run(
                ctx,
                plan["scale_rows"],
                plan["scale_apps_cap"],
                plan["scale_deletes"],
                results["scale"],
                attempt,
            )
            plots.scale_plot(results, args.out)
    finally:
        code["tree_at_end"] = snapshot.digest()
        save(results, args.out, started)
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(render(results))
    log(f"done: {args.out / 'report.md'}")
    return 0 if not results["meta"]["errors"] else 1


def _needs_emulator(n: int, plan: dict[str, Any], only: set[str]) -> bool:
    """Whether any selected per-scale section runs at ``n`` candidates."""
    return (
        bool({"ceiling", "full"} & only)
        or ("incremental" in only and n in plan["incremental"])
        or any(
            s in only and n == plan[key]
            for s, key in (("meltano", "meltano"), ("profile", "profile"), ("cpu", "cpu_scale"))
        )
    )


def _scale(
    attempt: Any,
    ctx: cases.Ctx,
    emu: EmulatorProcess,
    plan: dict[str, Any],
    only: set[str],
    results: dict[str, Any],
    out: Path,
) -> None:
    n = emu.candidates
    if "ceiling" in only:
        got = attempt(f"ceiling {n:,}", lambda: cases.ceiling(ctx, emu, plan["ceiling_pages"]))
        results["ceiling"] += got or []
        probe = attempt(f"small-answer probe {n:,}", emu.probe)
        if probe:
            results["probe"].append({"n": n, **probe})
    cpu = "cpu" in only and n == plan["cpu_scale"]
    if "full" in only or cpu:
        for stream in plan["streams"]:
            # At the cpu scale one set of interleaved runs serves both tables.
            reps = plan["cpu_reps"] if cpu else plan["reps"].get(n, 1)
            got = attempt(
                f"full sync {stream} {n:,}" + (" (cpu)" if cpu else ""),
                lambda s=stream, r=reps: cases.full_sync(ctx, emu, s, r),
            )
            if got and "full" in only:
                results["full_sync"].append(got)
            if got and cpu:
                results["cpu"].append(got)
    if "meltano" in only and n == plan["meltano"]:
        variants = [
            {"label": f"batch_size_rows={b}", "env": {"TARGET_DUCKDB_BATCH_SIZE_ROWS": str(b)}}
            for b in plan["meltano_batch_sizes"]
        ]
        results["meltano"] = attempt(
            f"meltano {n:,}", lambda: cases.meltano_run(ctx, emu, variants, plan["meltano_reps"])
        )
    if "profile" in only and n == plan["profile"]:
        prof_path = out / "tap.prof"

        def run_profile() -> dict[str, Any]:
            run = cases.profile(ctx, emu, prof_path)
            return {
                "run": run,
                "analysis": prof.analyse(prof_path, records=run["records"]) if run["ok"] else None,
            }

        results["profile"] = attempt(f"profile {n:,}", run_profile)
    if "incremental" in only and n in plan["incremental"]:
        got = attempt(f"incremental {n:,}", lambda: cases.incremental(ctx, emu, plan["fractions"]))
        if got:
            results["incremental"].append(got)


def _fan_out(attempt: Any, ctx: cases.Ctx, plan: dict[str, Any], results: dict[str, Any]) -> None:
    results["fan_out"] = attempt(
        f"fan-out {plan['fanout_apps']:,} applications",
        lambda: cases.fan_out(
            ctx, plan["fanout_apps"], plan["concurrency"], [plan["budget_rpm"], 0], plan["latency"]
        ),
    )


def save(results: dict[str, Any], out: Path, started: float) -> None:
    """Write report.json and report.md (after every case, so a killed run leaves a report)."""
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    (out / "report.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "report.md").write_text(render(results))


if __name__ == "__main__":
    sys.exit(main())
