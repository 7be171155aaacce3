"""Fault injection: which request gets which failure, deterministic under a seed."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any


def update_fields(obj: Any, changes: dict[str, Any]) -> None:
    """Set dataclass fields from ``changes`` (strings coerced to the field's type, so
    "false" / "3" from a query string work); unknown names raise ValueError."""
    known = {f.name for f in fields(obj)}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}; known: {sorted(known)}")
    for key, value in changes.items():
        current = getattr(obj, key)
        setattr(obj, key, as_bool(value) if isinstance(current, bool) else type(current)(value))


def as_bool(value: Any) -> bool:
    """A flag from JSON or text: "false", "0", "no", "off" are False."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass
class Faults:
    """Per-run fault rates (fractions of API requests) and latencies.

    The draws come from one seeded generator in request-arrival order, so a sequential client
    sees the same faults on every run with the same seed.
    """

    rate_limit: float = 0.0  # 429 rate_limit_exceeded, with Retry-After
    # 429 rate_limit_exceeded + X-RateLimit-Scope: integration-partner (15.2), with Retry-After
    partner_rate_limit: float = 0.0
    retry_after: float = 1.0  # seconds sent in Retry-After (0 sends no header)
    server_error: float = 0.0  # 500/502/503
    drop: float = 0.0  # connection closed without an answer
    malformed: float = 0.0  # 200 with a body that is not JSON
    truncated: float = 0.0  # 200 with the JSON cut short
    slow: float = 0.0  # answered after slow_seconds
    slow_seconds: float = 0.5
    latency: float = 0.0  # fixed delay added to every API request (seconds)
    cursor_expired: float = 0.0  # requests carrying a cursor answered next_cursor_expired
    unknown_error: float = 0.0  # 200 + success:false with a code no client knows
    concurrent_limit: int = 0  # >N requests in flight -> 429 concurrent_limit_exceeded; 0 = off
    only_paths: str = ""  # comma-separated endpoints the faults apply to; empty = all
    seed: int = 1

    def update(self, **changes: Any) -> None:
        """Change some settings; unknown names raise ValueError."""
        update_fields(self, changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultPicker:
    """Draws the fault for each request from the seeded generator."""

    KINDS = (
        "rate_limit",
        "server_error",
        "drop",
        "malformed",
        "truncated",
        "slow",
        "cursor_expired",
        "unknown_error",
        "partner_rate_limit",
    )

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._rng = random.Random(faults.seed)
        self._seed = faults.seed

    def pick(self, endpoint: str, has_cursor: bool) -> str | None:
        """The fault for the next request, or None."""
        f = self.faults
        if f.only_paths and endpoint not in f.only_paths.split(","):
            return None
        with self._lock:
            if self._seed != f.seed:
                self._rng, self._seed = random.Random(f.seed), f.seed
            draw = self._rng.random()
        edge = 0.0
        for kind in self.KINDS:
            rate = getattr(f, kind)
            if kind == "cursor_expired" and not has_cursor:
                continue
            edge += rate
            if draw < edge:
                return kind
        return None
