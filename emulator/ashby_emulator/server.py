"""The emulator over real HTTP: faults, counters and the admin interface around ``Api``."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .api import ALL_PERMISSIONS, Api, ApiError, Settings
from .faults import FaultPicker, Faults, as_bool
from .org import Org

ADMIN_PREFIX = "/_emulator/"
LIFECYCLE = ("pre-release", "active", "deprecated", "unsupported", "removed")
ORG_SETTINGS = ("child_changes_touch_parent",)  # knobs of the Org, set like Settings fields


class Stats:
    """Request counters: per endpoint and status, per second, and peak requests in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.by_endpoint: dict[str, Counter[str]] = defaultdict(Counter)
            self.per_second: Counter[int] = Counter()
            self.in_flight = 0
            self.max_in_flight = 0
            self.faults: Counter[str] = Counter()

    def enter(self) -> int:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.in_flight

    def leave(self, endpoint: str, status: str) -> None:
        with self.lock:
            self.in_flight -= 1
            self.by_endpoint[endpoint][status] += 1
            self.per_second[int(time.time())] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "endpoints": {k: dict(v) for k, v in self.by_endpoint.items()},
                "total": sum(sum(v.values()) for v in self.by_endpoint.values()),
                "max_in_flight": self.max_in_flight,
                "max_per_second": max(self.per_second.values(), default=0),
                "faults": dict(self.faults),
            }

    def requests(self, endpoint: str, status: str | None = None) -> int:
        """How many calls an endpoint got (with one status, e.g. "200", or any)."""
        with self.lock:
            counts = self.by_endpoint.get(endpoint, Counter())
            return counts[status] if status else sum(counts.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, every small answer on a
    # keep-alive connection waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server
    version_headers: dict[str, str] = {}  # Ashby-Version(-Status) of the current API request

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet

    def _send(
        self,
        status: int,
        payload: Any,
        extra: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        body = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**self.version_headers, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.version_headers = {}
        if self.path.startswith(ADMIN_PREFIX):
            self._admin("GET", b"")
        else:
            self._send(405, {"success": False, "errors": ["method_not_allowed"]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.version_headers = {}
        if self.path.startswith(ADMIN_PREFIX):
            self._admin("POST", body)
            return
        emu = self.server.emulator
        # 15.1: every API answer, errors included, names the version that processed it.
        version, lifecycle = emu.api.version(self.headers.get("Ashby-Version"))
        self.version_headers = {"Ashby-Version": version, "Ashby-Version-Status": lifecycle}
        endpoint = self.path.lstrip("/")
        inflight = emu.stats.enter()
        status = "dropped"
        try:
            status = self._api(endpoint, body, inflight)
        finally:
            emu.stats.leave(endpoint, status)

    def _api(self, endpoint: str, body: bytes, inflight: int) -> str:
        emu = self.server.emulator
        faults = emu.faults
        if faults.latency:
            time.sleep(faults.latency)
        if faults.concurrent_limit and inflight > faults.concurrent_limit:
            emu.stats.faults["concurrent_limit"] += 1
            self._send(
                429,
                _error(
                    "concurrent_limit_exceeded", "Too many concurrent requests for this API key"
                ),
                {"Retry-After": "1"},
            )
            return "429"
        fault = emu.picker.pick(endpoint, has_cursor=b'"cursor"' in body)
        if fault:
            emu.stats.faults[fault] += 1
        if fault in ("rate_limit", "partner_rate_limit"):
            headers = {"Retry-After": _seconds(faults.retry_after)} if faults.retry_after else {}
            message = "Rate limit exceeded"
            if fault == "partner_rate_limit":  # 15.2: the integration's traffic, all orgs
                headers["X-RateLimit-Scope"] = "integration-partner"
                message = "Rate limit exceeded for this integration partner across organizations"
            self._send(429, _error("rate_limit_exceeded", message), headers)
            return "429"
        if fault == "server_error":
            code = random.Random(emu.api.request_seq).choice([500, 502, 503])
            self._send(code, raw=b"<html><body>upstream error</body></html>", payload=None)
            return str(code)
        if fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return "dropped"
        if fault == "slow":
            time.sleep(faults.slow_seconds)
        if fault == "unknown_error":
            self._send(200, _error("unexpected_internal_state", "Something unexpected"))
            return "200"
        if fault == "cursor_expired":
            self._send(200, _error("next_cursor_expired", "The cursor expired"))
            return "200"
        try:  # before auth: which check Ashby makes first is not documented
            emu.api.check_version(self.headers.get("Ashby-Version"))
        except ApiError as err:
            self._send(err.status, emu.api.error_payload(err))
            return str(err.status)
        status, payload = emu.api.call(endpoint, self.headers.get("Authorization"), body)
        raw = json.dumps(payload, separators=(",", ":")).encode()
        if fault == "malformed":
            raw = b"<html>Service temporarily unavailable</html>"
        elif fault == "truncated":
            raw = raw[: max(1, len(raw) // 2)]
        self._send(status, None, raw=raw)
        return str(status)

    def _admin(self, method: str, body: bytes) -> None:
        emu = self.server.emulator
        url = urlparse(self.path)
        action = url.path[len(ADMIN_PREFIX) :]
        try:
            args = json.loads(body or b"{}")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            result = emu.admin(action, {**query, **args})
            self._send(200, {"ok": True, "result": result})
        except (KeyError, ValueError, TypeError) as err:
            self._send(400, {"ok": False, "error": str(err)})


def _error(code: str, message: str) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [code],
        "errorInfo": {"code": code, "message": message, "requestId": "req_fault"},
    }


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (a killed tap) is normal here: no traceback."""
        import sys  # noqa: PLC0415

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Emulator:
    """A running (or runnable) emulated Ashby: org + protocol + faults + counters + HTTP."""

    def __init__(
        self,
        candidates: int = 40,
        seed: int = 1,
        key: str = "demo",
        faults: Faults | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.org = Org(candidates=candidates, seed=seed)
        self.api = Api(self.org, {key: ALL_PERMISSIONS}, settings)
        self.key = key
        self.faults = faults or Faults(seed=seed)
        self.picker = FaultPicker(self.faults)
        self.stats = Stats()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ----------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        """Serve on ``host:port`` (0 = a free port) in a background thread."""
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ashby-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Emulator:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "emulator not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # python API ---------------------------------------------------------------------------
    def add_key(self, key: str, permissions: set[str] | frozenset[str]) -> None:
        """Accept another API key with only some permissions."""
        self.api.keys[key] = frozenset(permissions)

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change ``Settings`` fields and org knobs (``child_changes_touch_parent``); returns
        all of them."""
        for key in ORG_SETTINGS:
            if key in changes:
                setattr(self.org, key, as_bool(changes.pop(key)))
        self.api.settings.update(**changes)
        return {
            **self.api.settings.as_dict(),
            **{key: getattr(self.org, key) for key in ORG_SETTINGS},
        }

    def set_version(self, version: str, status: str) -> dict[str, str]:
        """Add an API version or change its lifecycle status (``removed`` ones are refused)."""
        if status not in LIFECYCLE:
            raise ValueError(f"unknown version status {status!r}; known: {LIFECYCLE}")
        self.api.settings.versions[version] = status
        return dict(self.api.settings.versions)

    def expire_cursors(self) -> None:
        """Make every outstanding pagination cursor answer next_cursor_expired."""
        with self.org.lock:
            self.org.cursor_epoch += 1

    def admin(self, action: str, args: dict[str, Any]) -> Any:
        """The admin interface, shared by HTTP (``/_emulator/<action>``) and Python."""
        org = self.org
        if action == "stats":
            return {**self.stats.snapshot(), "side_effect_calls": dict(self.api.side_effect_calls)}
        if action == "reset_stats":
            self.stats.reset()
            return None
        if action == "faults":
            self.faults.update(**args)
            return self.faults.as_dict()
        if action == "settings":
            return self.configure(**args)
        if action == "version":
            return self.set_version(args["version"], args["status"])
        if action == "clock":
            org.advance_clock(float(args.get("advance_seconds", 0)))
            return org.clock_ms
        if action == "expire_cursors":
            self.expire_cursors()
            return None
        if action == "ids":
            return org.live_ids(args["stream"])
        if action == "keys":
            self.add_key(args["key"], set(args.get("permissions", [])))
            return None
        if action == "mutate":
            op = args["op"]
            if op == "create":
                out = org.create(args["stream"], args.get("fields"), args.get("parent_id"))
            elif op == "update":
                out = org.update(args["stream"], args["id"], args.get("fields"))
            elif op == "archive":
                out = org.archive(args["stream"], args["id"])
            elif op == "delete":
                out = org.delete(args["stream"], args["id"])
            elif op == "merge":
                out = org.merge_candidates(args["keep_id"], args["gone_id"])
            else:
                raise ValueError(f"unknown op {op!r}")
            return {"upserted": out.upserted, "deleted": out.deleted}
        raise ValueError(f"unknown admin action {action!r}")
