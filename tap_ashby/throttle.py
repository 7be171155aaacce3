"""A request budget shared by every request of a run: rate, requests in flight, pauses, stop.

A 429 with Retry-After pauses the whole tap (every worker), not just the request that got it.
Once the run is stopped (deadline, SIGTERM, a failure), no request starts any more: a waiting
request raises ``Stopped`` instead of going out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopped(Exception):
    """The run stops: this request was not made."""


class RequestBudget:
    """Token bucket (``per_minute``; 0 = unlimited) plus a cap on requests in flight."""

    def __init__(self, per_minute: float = 0, max_in_flight: int = 1) -> None:
        self._interval = 60.0 / per_minute if per_minute else 0.0
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._slots = threading.BoundedSemaphore(max(1, max_in_flight))
        self.stop = threading.Event()

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or raise ``Stopped`` within 0.2 s of the run stopping."""
        until = time.monotonic() + seconds
        while True:
            if self.stop.is_set():
                raise Stopped
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

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
                self.wait(delay)
                with self._lock:  # a pause may have arrived while we slept
                    if time.monotonic() >= self._paused_until:
                        break
            if self.stop.is_set():
                raise Stopped
            yield
