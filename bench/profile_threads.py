"""cProfile of a module in *every* thread, on CPU time, merged into one stats file.

    python bench/profile_threads.py OUT.prof -m tap_ashby.tap --config ... --catalog ...

``python -m cProfile`` only sees the main thread, but the tap reads pages (HTTP, JSON
decoding) on prefetch worker threads and child calls on a thread pool. Here every thread,
the main one included, runs under its own ``cProfile.Profile(time.thread_time)``: each
function's time is the CPU time of the thread that ran it, so time blocked in a lock, a queue
or a socket costs ~nothing and the merged total is close to the process's CPU time. Threads
still running when the module returns are joined for a few seconds (the tap stops its
workers at the end); one that does not end by then is left out, and counted.
Also writes OUT.prof.json: how many threads were profiled and left out.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import runpy
import sys
import threading
import time

_profiles: list[tuple[threading.Thread, cProfile.Profile, threading.Event]] = []
_lock = threading.Lock()
_original_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    done = threading.Event()
    with _lock:
        _profiles.append((self, profile, done))
    profile.enable()
    try:
        _original_run(self)
    finally:
        profile.disable()
        done.set()


def main() -> int:
    out = sys.argv[1]
    if sys.argv[2] != "-m":
        raise SystemExit("usage: profile_threads.py OUT.prof -m MODULE [ARGS...]")
    module = sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile(time.thread_time)
    code = 0
    main_profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        main_profile.disable()
    deadline = time.monotonic() + 5
    with _lock:
        entries = list(_profiles)
    for _, _, done in entries:
        done.wait(max(0.0, deadline - time.monotonic()))
    finished = [p for _, p, done in entries if done.is_set()]
    stats = pstats.Stats(main_profile)
    for profile in finished:
        stats.add(profile)
    stats.dump_stats(out)
    with open(out + ".json", "w", encoding="utf-8") as fh:
        json.dump(
            {
                "threads_profiled": len(finished) + 1,
                "threads_left_out": len(entries) - len(finished),
                "timer": "time.thread_time (CPU time of each thread)",
            },
            fh,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
