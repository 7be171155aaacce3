"""A request budget shared by every request of a run: rate, requests in flight, and pauses.

A 429 with Retry-After pauses the whole tap (every worker), not just the request that got it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class RequestBudget:
    """Token bucket (``per_minute``; 0 = unlimited) plus a cap on requests in flight."""

    def __init__(self, per_minute: float = 0, max_in_flight: int = 1) -> None:
        self._interval = 60.0 / per_minute if per_minute else 0.0
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._slots = threading.BoundedSemaphore(max(1, max_in_flight))

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _reserve(self) -> float:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._paused_until, self._next_slot)
            self._next_slot = start + self._interval
            return start - now

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Wait for the rate and any pause, then hold one in-flight slot for the request."""
        with self._slots:
            while True:
                delay = self._reserve()
                if delay <= 0:
                    break
                time.sleep(delay)
                with self._lock:  # a pause may have arrived while we slept
                    if time.monotonic() >= self._paused_until:
                        break
            yield
