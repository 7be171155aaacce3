"""Running and measuring client processes: wall time, CPU, peak RSS, process trees.

CPU comes from ``os.wait4(pid)``: the kernel's rusage of exactly that child (and whatever it
waited for), so ``RUSAGE_CHILDREN`` (a running max over every child, useless as a delta) is
never read. Peak RSS does *not* come from that rusage: a child forked from this harness
carries the harness's own high-water mark into ``ru_maxrss`` (the kernel folds the pre-exec
mm into it), so every client would look at least as big as the harness. Instead the client
runs under GNU ``/usr/bin/time -f %M`` (time forks the client from its own ~2 MB process),
or, where that is missing, ``VmHWM`` of the exec'd client is polled from /proc every 20 ms.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BIN = Path(sys.executable).parent  # the venv that runs the harness (make bench: .venv)
CLK_TCK = os.sysconf("SC_CLK_TCK")
TIME_BIN = Path("/usr/bin/time")


@dataclass
class Measured:
    """What one client process did."""

    cmd: list[str]
    rc: int | None  # None: killed on timeout
    wall_s: float
    cpu_s: float  # user + system of the process (and children it waited for)
    max_rss_kb: int
    stderr_path: Path | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def stderr_tail(self, lines: int = 5) -> str:
        if not self.stderr_path or not self.stderr_path.exists():
            return ""
        text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def as_dict(self) -> dict[str, Any]:
        return {
            "rc": self.rc,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "max_rss_mb": round(self.max_rss_kb / 1024, 1),
            "timed_out": self.timed_out,
        }


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _gnu_time() -> bool:
    if not os.access(TIME_BIN, os.X_OK):
        return False
    probe = subprocess.run(
        [str(TIME_BIN), "-f", "%M", "true"], capture_output=True, text=True, check=False, timeout=30
    )
    return probe.returncode == 0 and probe.stderr.strip().isdigit()


USE_TIME = _gnu_time()
RSS_METHOD = (
    "GNU /usr/bin/time -f %M around the client process (its peak RSS)"
    if USE_TIME
    else "VmHWM of the client process, polled from /proc every 20 ms"
)


class _HwmPoller(threading.Thread):
    """Peak ``VmHWM`` of a process once it runs ``exe`` (before exec it is the harness)."""

    def __init__(self, pid: int, exe: str) -> None:
        super().__init__(daemon=True, name="vmhwm")
        self.pid, self.exe, self.peak_kb = pid, exe, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                argv0 = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0", 1)[0]
                if argv0.decode(errors="replace") == self.exe:
                    for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            self.done.wait(0.02)


def run_measured(
    cmd: list[str],
    *,
    stdout: int | IO[Any],
    stderr_path: Path | None,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    on_start: Any = None,
    rss: bool = True,
) -> Measured:
    """Run ``cmd`` to completion (or kill its process group after ``timeout`` seconds).

    ``on_start(popen)`` runs right after the process started (e.g. to start a sampler).
    ``rss=False`` runs ``cmd`` bare (its pid is then the client's own, for process trees).
    """
    timeout = max(1.0, timeout)
    rss_file = None
    full = list(cmd)
    if rss and USE_TIME:
        fd, name = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        rss_file = Path(name)
        full = [str(TIME_BIN), "-f", "%M", "-o", name, *cmd]
    err: Any = stderr_path.open("wb") if stderr_path else subprocess.DEVNULL
    poller = None
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(
            full,
            stdout=stdout,
            stderr=err,
            stdin=stdin,
            cwd=REPO,
            env=env if env is not None else os.environ.copy(),
            start_new_session=True,
        )
        if rss and not USE_TIME:
            poller = _HwmPoller(proc.pid, cmd[0])
            poller.start()
        if on_start is not None:
            on_start(proc)
        killed = threading.Event()

        def on_timeout() -> None:
            killed.set()
            _kill_group(proc.pid)

        timer = threading.Timer(timeout, on_timeout)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted harness: the client must not outlive it
            _kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        # Leftovers of a killed run (children of the group) must not outlive it.
        if killed.is_set():
            _kill_group(proc.pid)
    finally:
        if stderr_path:
            err.close()
        if poller is not None:
            poller.done.set()
            poller.join(timeout=5)
    peak_kb = 0
    if rss_file is not None:
        text = rss_file.read_text().strip().splitlines()
        rss_file.unlink(missing_ok=True)
        peak_kb = int(text[-1]) if text and text[-1].strip().isdigit() else 0
    elif poller is not None:
        peak_kb = poller.peak_kb
    return Measured(
        cmd=cmd,
        rc=None if killed.is_set() else proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_kb=peak_kb,
        stderr_path=stderr_path,
        timed_out=killed.is_set(),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far (0.0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def speed_index(loops: int = 300_000) -> float:
    """Millions of simple Python operations per second, timed now in this process.

    The box's speed drifts over minutes (other tenants on the host; invisible as steal time):
    sampled right before and after each measured process, it says whether a floor run and the
    tap run it is compared with ran on an equally fast machine.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i * i % 7
        best = min(best, time.perf_counter() - started)
    return round(loops / best / 1e6, 2)


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores, from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


# process trees (meltano run) ------------------------------------------------------------------
@dataclass
class ProcRecord:
    """One process of a tree as seen by the sampler."""

    pid: int
    label: str
    cmdline: str
    first_seen: float
    last_seen: float
    cpu_s: float = 0.0
    peak_rss_kb: int = 0  # VmHWM as last read (the process's own high-water mark)


@dataclass
class TreeSampler:
    """Polls a process tree every ``interval`` s: lifetimes and CPU of each descendant.

    Times are seconds since ``origin`` (perf_counter). A process's CPU is the last value read
    before it exited, so it is short by at most one interval of CPU.
    """

    root_pid: int
    origin: float
    classify: Any  # (cmdline: str) -> label
    interval: float = 0.05
    procs: dict[int, ProcRecord] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tree-sampler")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        now = time.perf_counter() - self.origin
        parents: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
        todo, seen = [self.root_pid], []
        while todo and len(seen) < 1000:
            pid = todo.pop()
            seen.append(pid)
            todo.extend(parents.get(pid, []))
        for pid in seen:
            cpu = cpu_seconds(pid)
            rec = self.procs.get(pid)
            if rec is None:
                try:
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
                label = "meltano" if pid == self.root_pid else self.classify(cmdline)
                rec = self.procs[pid] = ProcRecord(pid, label, cmdline, now, now)
            rec.last_seen = now
            rec.cpu_s = max(rec.cpu_s, cpu)
            rec.peak_rss_kb = max(rec.peak_rss_kb, _vm_hwm_kb(pid))

    def by_label(self) -> dict[str, dict[str, float]]:
        """Per label: first start, last end, summed lifetime and CPU, process count, and the
        largest peak RSS (MB) of its processes."""
        out: dict[str, dict[str, float]] = {}
        for rec in self.procs.values():
            agg = out.setdefault(
                rec.label,
                {
                    "start_s": rec.first_seen,
                    "end_s": rec.last_seen,
                    "cpu_s": 0.0,
                    "processes": 0,
                    "max_rss_mb": 0.0,
                },
            )
            agg["start_s"] = min(agg["start_s"], rec.first_seen)
            agg["end_s"] = max(agg["end_s"], rec.last_seen)
            agg["cpu_s"] += rec.cpu_s
            agg["processes"] += 1
            agg["max_rss_mb"] = max(agg["max_rss_mb"], round(rec.peak_rss_kb / 1024, 1))
        return out


def _vm_hwm_kb(pid: int) -> int:
    """``VmHWM`` of a live process (0 when it is gone or unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
