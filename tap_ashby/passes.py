"""Passes over an Ashby list: syncToken fallback, cursor restarts, and prefetching.

A *pass* reads every page of one list call, from a stored syncToken (only what changed) or
from scratch. Its new token is handed to the caller in a ``PassOutcome`` and enters Singer
state only after the caller emitted every record (at least once, never a gap).

The ``Prefetcher`` reads the passes of the streams that come next in the run on daemon
worker threads, into bounded page buffers, while the main thread writes the current
stream's records: calls overlap across streams within the one request budget, and Singer
output stays one stream at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .client import AshbyClient, Call
from .errors import CursorExpired, SyncTokenRejected

MAX_PASS_RESTARTS = 3
Rows = list[dict[str, Any]]


@dataclass
class PassOutcome:
    """How a pass ended: the token to store next (None: the list has none) and whether
    the pass was full (from scratch) rather than incremental."""

    token: str | None = None
    full: bool = True


def read_pass(
    client: AshbyClient,
    call: Call,
    token: str | None,
    owner: str,
    logger: logging.Logger,
    outcome: PassOutcome,
) -> Iterator[Rows]:
    """Pages of one pass; ``outcome`` is filled in when the pass has ended.

    A refused token (expired, invalid, or ``incremental_sync_too_large`` after some pages)
    falls back to a full pass in the same run; an expired cursor restarts the pass. Rows of
    the aborted part may come twice: loading upserts on the primary key.
    """
    restarts = 0
    while True:
        try:
            for page in client.pages(call, token, owner):
                yield page.records
                if page.last:
                    outcome.token = page.sync_token
            break
        except SyncTokenRejected as err:
            if token is None:
                raise
            logger.warning(
                "%s: %s: the stored syncToken cannot be used (%s); doing a full pass",
                owner,
                call.path,
                err.code,
            )
            token = None
        except CursorExpired as err:
            restarts += 1
            if restarts > MAX_PASS_RESTARTS:
                raise
            logger.warning("%s: cursor expired mid-pass (%s); restarting the pass", owner, err.code)
    outcome.full = token is None


_END = object()


class _Job:
    def __init__(self, produce: Callable[[], Iterator[Any]], depth: int) -> None:
        self.produce = produce
        self.pages: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.cancelled = threading.Event()

    def run(self) -> None:
        try:
            for rows in self.produce():
                if not self._put(rows):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def _put(self, item: Any) -> bool:
        while not self.cancelled.is_set():
            try:
                self.pages.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def consume(self) -> Iterator[Any]:
        try:
            while True:
                item = self.pages.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancelled.set()


class Prefetcher:
    """Runs submitted passes ahead on ``workers`` daemon threads, in submission order.

    Jobs start in the order the run will consume them, so the job the main thread waits
    for is never queued behind a job that waits for buffer space. A job that is not
    consumed is cancelled by ``close``; daemon threads never hold the process open.
    """

    def __init__(self, workers: int, depth: int) -> None:
        self._depth = max(1, depth)
        self._jobs: dict[Any, _Job] = {}
        self._todo: queue.Queue[_Job | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"prefetch-{i}")
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (job := self._todo.get()) is not None:
            if not job.cancelled.is_set():
                job.run()

    def submit(self, key: Any, produce: Callable[[], Iterator[Rows]]) -> None:
        job = _Job(produce, self._depth)
        self._jobs[key] = job
        self._todo.put(job)

    def start_now(self, key: Any, produce: Callable[[], Iterator[Any]]) -> None:
        """Run ``produce`` ahead on a thread of its own (never queued behind other jobs)."""
        job = _Job(produce, self._depth)
        self._jobs[key] = job
        threading.Thread(target=job.run, daemon=True, name=f"prefetch-{key}").start()

    def take(self, key: Any) -> Iterator[Any] | None:
        """The prefetched pages for ``key`` (once), or None when it was not submitted."""
        job = self._jobs.pop(key, None)
        return job.consume() if job is not None else None

    def close(self) -> None:
        for job in self._jobs.values():
            job.cancelled.set()
        self._jobs.clear()
        for _ in self._threads:
            self._todo.put(None)
