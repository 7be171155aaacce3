"""The Ashby emulator in its own process (so it never shares the GIL with a measured client)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import selectors
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from procs import REPO, cpu_seconds

KEY = "bench-key"


class EmulatorProcess:
    """``python -m ashby_emulator.cli --port 0 --candidates N``, plus its admin API."""

    def __init__(
        self, candidates: int, log_path: Path, latency: float = 0.0, seed: int = 1
    ) -> None:
        self.candidates = candidates
        self.latency = latency
        cmd = [
            sys.executable,
            "-m",
            "ashby_emulator.cli",
            "--port",
            "0",
            "--candidates",
            str(candidates),
            "--seed",
            str(seed),
            "--key",
            KEY,
            "--latency",
            str(latency),
        ]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, cwd=REPO)
        self.url = self._read_url(timeout=60)
        parsed = urlparse(self.url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80

    def _read_url(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = self.proc.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                break
            line += chunk
        sel.close()
        match = re.search(r"http://[\w.\-]+:\d+", line.decode(errors="replace"))
        if not match:
            self.stop()
            raise RuntimeError(f"emulator did not print its URL: {line!r}")
        return match.group(0)

    # admin --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None) -> Any:
        """One admin call on a fresh connection (so that a Nagle/delayed-ACK stall of an
        emulator that lost its TCP_NODELAY cannot slow the harness; see bench/README.md)."""
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        data: dict[str, Any] = {}
        for attempt in range(3):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                conn.request(method, path, payload, headers)
                data = json.loads(conn.getresponse().read())
                break
            except (OSError, http.client.HTTPException):
                if attempt == 2:
                    raise
            finally:
                conn.close()
        if not data.get("ok"):
            raise RuntimeError(f"emulator admin {path}: {data.get('error')}")
        return data.get("result")

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/_emulator/stats")  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        self._request("POST", "/_emulator/reset_stats", {})

    def ids(self, stream: str) -> list[str]:
        return self._request("GET", f"/_emulator/ids?stream={quote(stream)}")  # type: ignore

    def update(self, stream: str, record_id: str) -> None:
        self._request(
            "POST", "/_emulator/mutate", {"op": "update", "stream": stream, "id": record_id}
        )

    def delete(self, stream: str, record_id: str) -> dict[str, Any]:
        """Hard-delete a record (and, in the emulator, its child rows)."""
        return self._request(
            "POST",
            "/_emulator/mutate",  # type: ignore[no-any-return]
            {"op": "delete", "stream": stream, "id": record_id},
        )

    def probe(self, count: int = 20) -> dict[str, float]:
        """ms per small API answer (candidate.list, limit 1): keep-alive vs a new connection."""
        headers = {
            "Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
            "Content-Type": "application/json",
        }
        body = json.dumps({"limit": 1})

        def one(conn: http.client.HTTPConnection) -> None:
            conn.request("POST", "/candidate.list", body, headers)
            conn.getresponse().read()

        kept = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            one(kept)  # connect and warm up
            started = time.perf_counter()
            for _ in range(count):
                one(kept)
            keep_alive = (time.perf_counter() - started) / count
        finally:
            kept.close()
        started = time.perf_counter()
        for _ in range(count):
            fresh = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                one(fresh)
            finally:
                fresh.close()
        new_conn = (time.perf_counter() - started) / count
        return {
            "keep_alive_ms": round(keep_alive * 1000, 1),
            "new_connection_ms": round(new_conn * 1000, 1),
        }

    def id_kind(self) -> dict[str, Any]:
        """The form of the ids this emulator hands out (from one candidate.list answer)."""
        headers = {
            "Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
            "Content-Type": "application/json",
        }
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("POST", "/candidate.list", json.dumps({"limit": 3}), headers)
            rows = json.loads(conn.getresponse().read()).get("results") or []
        finally:
            conn.close()
        ids = [str(r.get("id")) for r in rows]
        kinds = set()
        for value in ids:
            try:
                parsed = uuid.UUID(value)
            except ValueError:
                kinds.add("not a UUID")
                continue
            kinds.add(f"UUIDv{parsed.version}" if str(parsed) == value else "UUID, other form")
        return {"examples": ids, "kind": ", ".join(sorted(kinds)) or "?"}

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            self._log.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def requests_made(stats: dict[str, Any], endpoint: str | None = None) -> int:
    """Calls an endpoint got (any status), or all API calls."""
    if endpoint is None:
        return int(stats.get("total", 0))
    return sum(stats.get("endpoints", {}).get(endpoint, {}).values())
