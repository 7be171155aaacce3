"""Bench case "first sync across CI jobs": a large org, a short deadline per run, repeated.

    .venv/bin/python bench/ci_jobs.py [--candidates 20000] [--deadline 20] [--latency 0.05]

Each run is a fresh ``tap-ashby`` process with ``max_run_seconds`` set, started from the last
STATE of the run before, like a CI job re-run on a schedule. The case stops when a run ends
without being cut. It reports how many runs it took, the requests made against the minimum
(one ``candidate.list`` pass plus one ``candidate.listNotes`` per candidate; the goal is at most
1.02x), how long each run overshot its deadline and its largest STATE line, and writes
``ci_jobs.png`` (parents done per run) and ``ci_jobs.json`` into bench/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path

from emu import EmulatorProcess, requests_made
from procs import BENCH, REPO
from tapctl import discover, last_state, tap_command, write_catalog, write_config

STREAMS = {"candidates", "candidate_notes"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20_000)
    parser.add_argument("--deadline", type=int, default=20, help="max_run_seconds per run")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-runs", type=int, default=50)
    args = parser.parse_args()
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ci-jobs-"))
    with EmulatorProcess(args.candidates, work / "emulator.log", latency=args.latency) as emu:
        config = write_config(
            work / "config.json",
            emu.url,
            max_run_seconds=args.deadline,
            max_concurrency=args.concurrency,
            child_refresh_every_n_runs=0,  # a first sync: nothing to refresh yet
        )
        catalog = write_catalog(work / "catalog.json", discover(config), STREAMS)
        state = None
        runs = []
        for index in range(args.max_runs):
            cmd = [*tap_command(), "--config", str(config), "--catalog", str(catalog)]
            if state is not None:
                (work / "state.json").write_text(json.dumps(state))
                cmd += ["--state", str(work / "state.json")]
            before = emu.stats()
            started = time.monotonic()
            with (work / f"run-{index}.out").open("wb") as stdout:
                proc = subprocess.run(
                    cmd, stdout=stdout, stderr=subprocess.PIPE, cwd=REPO, check=False
                )
            wall = time.monotonic() - started
            after = emu.stats()
            stderr = proc.stderr.decode()
            notes = requests_made(after, "candidate.listNotes") - requests_made(
                before, "candidate.listNotes"
            )
            cut = "stopped at the deadline" in stderr
            with (work / f"run-{index}.out").open("rb") as fh:
                largest_state = max(
                    (len(line) for line in fh if line.startswith(b'{"type":"STATE"')), default=0
                )
            runs.append(
                {
                    "run": index + 1,
                    "exit": proc.returncode,
                    "wall_s": round(wall, 2),
                    "over_deadline_s": round(wall - args.deadline, 2),
                    "requests": requests_made(after) - requests_made(before),
                    "notes_calls": notes,
                    "largest_state_bytes": largest_state,
                    "cut": cut,
                }
            )
            print(json.dumps(runs[-1]), flush=True)
            state = last_state(work / f"run-{index}.out") or state
            if proc.returncode != 0 or not cut:
                break
    pages = math.ceil(args.candidates / 100)
    minimum = pages + args.candidates
    total = sum(r["requests"] for r in runs) - len(runs)  # minus each run's version check
    result = {
        "candidates": args.candidates,
        "deadline_s": args.deadline,
        "latency_s": args.latency,
        "runs": len(runs),
        "requests": total,
        "minimum": minimum,
        "ratio": round(total / minimum, 4),
        "notes_calls": sum(r["notes_calls"] for r in runs),
        "max_over_deadline_s": max(r["over_deadline_s"] for r in runs if r["cut"])
        if any(r["cut"] for r in runs)
        else None,
        "per_run": runs,
    }
    (out / "ci_jobs.json").write_text(json.dumps(result, indent=1))
    plot(runs, args.candidates, out / "ci_jobs.png")
    print(json.dumps({k: v for k, v in result.items() if k != "per_run"}, indent=1))


def plot(runs: list[dict], candidates: int, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    done, cumulative = [], 0
    for r in runs:
        cumulative += r["notes_calls"]
        done.append(min(cumulative, candidates))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["run"] for r in runs], [r["notes_calls"] for r in runs], label="parents this run")
    ax.plot([r["run"] for r in runs], done, marker="o", color="black", label="parents done")
    ax.axhline(candidates, linestyle="--", color="grey", label="all parents")
    ax.set_xlabel("run (one CI job each)")
    ax.set_ylabel("candidate.listNotes calls")
    ax.set_title("First sync across CI jobs")
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
