"""Runs a plan's requests: one bounded pool of worker threads, under the request budget.

It knows requests, not streams: a *job* is either a pass over one list (one request per page,
pages in order) or a fan-out (one call per key, results handed back in key order). Jobs
carry a priority, the position of their stream in the run; a free worker always takes the
most urgent step, so the stream being written goes first and later streams' passes and
fan-outs use what capacity is left (the look-ahead).

- ``max_concurrency`` is the number of worker threads, which is also the number of requests
  in flight: the process runs at most ``max_concurrency + 1`` threads (the main thread
  writes Singer messages).
- Memory is bounded: a pass buffers at most ``PASS_DEPTH`` pages, a fan-out at most
  ``FANOUT_WINDOW_PER_WORKER * workers`` results ahead of the consumer.
- Stopping (a deadline, SIGTERM, a failure) starts no new request; requests in flight finish
  and their results are still handed out in order. A job that was stopped ends with
  ``cut = True`` so its consumer knows the pass is incomplete.
"""

from __future__ import annotations

import functools
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .throttle import RequestBudget, Stopped

PASS_DEPTH = 4  # pages buffered per pass ahead of its consumer
FANOUT_WINDOW_PER_WORKER = 4  # results a fan-out runs ahead, per worker
WAIT_TICK = 0.2  # consumers re-check for a stop at least this often (seconds)

T = TypeVar("T")


class Scheduler:
    """A priority queue of job steps served by ``workers`` daemon threads."""

    def __init__(self, workers: int, budget: RequestBudget, deadline: float | None) -> None:
        self.workers = max(1, workers)
        self.budget = budget
        self.deadline = deadline  # time.monotonic() value, or None
        self.reason: str | None = None  # why the run stopped: deadline, SIGTERM, failure
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"ashby-worker-{i}")
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    # stopping ---------------------------------------------------------------------------
    def halt(self, reason: str) -> None:
        """Start no new request from now on (in-flight requests finish)."""
        if not self.budget.stop.is_set():
            self.reason = reason
            self.budget.stop.set()

    def stopping(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.halt("deadline")
        return self.budget.stop.is_set()

    def close(self) -> None:
        self.halt(self.reason or "closed")
        for _ in self._threads:
            self._queue.put((1 << 62, next(self._order), None))  # after the queued steps

    # work -------------------------------------------------------------------------------
    def submit(self, priority: int, step: Callable[[], None]) -> None:
        self._queue.put((priority, next(self._order), step))

    def _work(self) -> None:
        while True:
            _, _, step = self._queue.get()
            if step is None:
                return
            step()

    def pass_job(self, priority: int, pages: Iterator[T], depth: int = PASS_DEPTH) -> PassJob[T]:
        """A pass whose iterator makes one request per item; up to ``depth`` items ahead."""
        job = PassJob(self, priority, pages, depth)
        job.resume()
        return job

    def fan_out(
        self, priority: int, keys: Iterator[Any], fetch: Callable[[Any], T]
    ) -> FanOutJob[T]:
        """``(key, fetch(key))`` for every key, in key order, fetched on the pool."""
        job = FanOutJob(self, priority, keys, fetch, FANOUT_WINDOW_PER_WORKER * self.workers)
        job.fill()
        return job


class PassJob(Generic[T]):
    """Items of one sequential iterator, advanced one step at a time on the pool."""

    def __init__(self, sched: Scheduler, priority: int, items: Iterator[T], depth: int) -> None:
        self.sched, self.priority, self.items, self.depth = sched, priority, items, depth
        self.cond = threading.Condition()
        self.buffer: deque[T] = deque()
        self.queued = False  # a step is queued or running
        self.done = False
        self.cut = False
        self.error: BaseException | None = None

    def resume(self) -> None:
        with self.cond:
            if not (self.queued or self.done) and len(self.buffer) < self.depth:
                self.queued = True
                self.sched.submit(self.priority, self._step)

    def _step(self) -> None:
        try:
            if self.sched.stopping():
                raise Stopped
            item = next(self.items)
        except StopIteration:
            self._end()
            return
        except Stopped:
            self._end(cut=True)
            return
        except BaseException as err:
            self._end(error=err)
            return
        with self.cond:
            self.buffer.append(item)
            self.queued = False
            self.cond.notify_all()
        self.resume()

    def _end(self, cut: bool = False, error: BaseException | None = None) -> None:
        with self.cond:
            self.done, self.queued = True, False
            self.cut = self.cut or cut
            self.error = error
            self.cond.notify_all()

    def __iter__(self) -> Iterator[T]:
        while True:
            with self.cond:
                while not self.buffer and not self.done:
                    self.cond.wait(WAIT_TICK)
                if self.buffer:
                    item = self.buffer.popleft()
                elif self.error is not None:
                    raise self.error
                else:
                    return
            self.resume()
            yield item

    def drain(self) -> None:
        """Wait until the pass has ended (for passes whose items are consumed as they come)."""
        for _ in self:
            pass


class FanOutJob(Generic[T]):
    """One call per key on the pool; results handed out in key order.

    Keys are drawn only by the consumer's thread (they may come from a file or a sorted
    spill, which are not thread-safe), at most ``window`` ahead of what was handed out.
    """

    def __init__(
        self,
        sched: Scheduler,
        priority: int,
        keys: Iterator[Any],
        fetch: Callable[[Any], T],
        window: int,
    ) -> None:
        self.sched, self.priority, self.keys, self.fetch = sched, priority, keys, fetch
        self.window = max(1, window)
        self.cond = threading.Condition()
        self.results: dict[int, tuple[Any, T]] = {}
        self.issued = 0  # keys submitted
        self.handed = 0  # results handed to the consumer
        self.dropped: set[int] = set()  # steps that did not run (stopped)
        self.exhausted = False
        self.cut = False
        self.error: BaseException | None = None

    def fill(self) -> None:
        """Submit keys while the window has room (consumer's thread only)."""
        while not self.exhausted and self.issued - self.handed < self.window:
            if self.sched.stopping():
                return
            try:
                key = next(self.keys)
            except StopIteration:
                self.exhausted = True
                return
            seq = self.issued
            self.issued += 1
            self.sched.submit(self.priority, functools.partial(self._step, seq, key))

    def _step(self, seq: int, key: Any) -> None:
        try:
            if self.sched.stopping():
                raise Stopped
            result = self.fetch(key)
        except Stopped:
            with self.cond:
                self.dropped.add(seq)
                self.cond.notify_all()
            return
        except BaseException as err:
            with self.cond:
                self.error = self.error or err
                self.cond.notify_all()
            return
        with self.cond:
            self.results[seq] = (key, result)
            self.cond.notify_all()

    def _finished(self) -> bool:
        if self.handed in self.dropped:
            return True
        if self.handed < self.issued:
            return False
        return self.exhausted or self.sched.stopping()

    def __iter__(self) -> Iterator[tuple[Any, T]]:
        while True:
            with self.cond:
                while (
                    self.handed not in self.results and self.error is None and not self._finished()
                ):
                    self.cond.wait(WAIT_TICK)
                if self.handed in self.results:
                    item = self.results.pop(self.handed)
                    self.handed += 1
                elif self.error is not None:
                    raise self.error
                else:
                    self.cut = not (self.exhausted and self.handed == self.issued)
                    return
            self.fill()
            yield item

    def close(self) -> None:
        """Stop drawing keys (the consumer does not want the rest)."""
        self.exhausted = True
