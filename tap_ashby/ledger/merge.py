"""Sorted streams of entries: sorting on disk, the next generation, and what vanished.

Everything here holds at most one chunk of entries in memory, whatever the ledger's size.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO

from .codec import _read_varint, _varint, split_entry

CHUNK_ENTRIES = 200_000  # entries sorted in memory before spilling to disk (~10 MB)


def _write_framed(handle: IO[bytes], item: bytes) -> None:
    handle.write(_varint(len(item)) + item)


def _read_framed(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        size, pos = _read_varint(handle)
        if pos < 0:
            return
        yield handle.read(size)


class SortedSpill:
    """Entries added in any order, read back sorted and de-duplicated, in bounded memory."""

    def __init__(self, workdir: str, chunk: int | None = None) -> None:
        self._dir = workdir
        self._chunk = chunk or CHUNK_ENTRIES
        self._buffer: list[bytes] = []
        self._files: list[str] = []
        self.added = 0

    def add(self, item: bytes) -> None:
        self._buffer.append(item)
        self.added += 1
        if len(self._buffer) >= self._chunk:
            self._spill()

    def _spill(self) -> None:
        fd, name = tempfile.mkstemp(suffix=".chunk", dir=self._dir)
        with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
            for item in sorted(set(self._buffer)):
                _write_framed(handle, item)
        self._files.append(name)
        self._buffer = []

    def __iter__(self) -> Iterator[bytes]:
        handles = [open(name, "rb", buffering=1 << 16) for name in self._files]  # noqa: SIM115
        try:
            runs = [_read_framed(h) for h in handles] + [iter(sorted(set(self._buffer)))]
            last = None
            for item in heapq.merge(*runs):
                if item != last:
                    yield item
                    last = item
        finally:
            for handle in handles:
                handle.close()

    def discard(self) -> None:
        """Remove the spilled chunks now (they are temporary files of this run)."""
        for name in self._files:
            with contextlib.suppress(OSError):
                os.unlink(name)
        self._files, self._buffer = [], []


def _membership(parents: Iterator[bytes] | None) -> Callable[[bytes], bool] | None:
    """A test ``p in parents`` for non-decreasing ``p``, over a sorted iterator."""
    if parents is None:
        return None
    state = {"head": next(parents, None)}

    def contains(parent: bytes) -> bool:
        head = state["head"]
        while head is not None and head < parent:
            head = next(parents, None)
        state["head"] = head
        return head == parent

    return contains


def merge(
    before: Iterator[bytes],
    after: Iterator[bytes],
    replaced: Iterator[bytes] | None,
    live: Iterator[bytes] | None,
) -> Iterator[tuple[bytes, bool]]:
    """Every entry of ``before`` and ``after`` once, in sorted order, with whether it stays.

    ``before``: what was delivered (sorted); ``after``: what this run saw (sorted).
    ``replaced``: sorted parents whose rows ``after`` lists completely (None: every parent);
    ``live``: sorted parents that still exist (None: not known this run). A ``before``
    entry stays unless its parent was replaced and ``after`` lacks it, or its parent is
    no longer live. Entries that do not stay have left *their parent*; whether their row
    is gone is the caller's question (the row may be under another parent now).
    """
    in_replaced = _membership(replaced)
    is_live = _membership(live)
    current: bytes | None = None
    parent_replaced = parent_live = True
    tagged_before = ((item, 0) for item in before)
    tagged_after = ((item, 1) for item in after)
    last: bytes | None = None
    seen_after = False
    pending: bytes | None = None

    def stays(in_after: bool) -> bool:
        return parent_live and (in_after or not parent_replaced)

    for item, source in heapq.merge(tagged_before, tagged_after):
        if item != last:
            if pending is not None:
                yield pending, stays(seen_after)
            parent, _ = split_entry(item)
            if parent != current:
                current = parent
                parent_replaced = True if in_replaced is None else in_replaced(parent)
                parent_live = True if is_live is None else is_live(parent)
            pending, last, seen_after = item, item, False
        seen_after = seen_after or source == 1
    if pending is not None:
        yield pending, stays(seen_after)


def absent(candidates: Iterator[bytes], present: Iterator[bytes]) -> Iterator[bytes]:
    """Items of sorted ``candidates`` that sorted ``present`` lacks (a streaming anti-join)."""
    head = next(present, None)
    for item in candidates:
        while head is not None and head < item:
            head = next(present, None)
        if head != item:
            yield item
