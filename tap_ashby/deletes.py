"""One stream's ledger for one run: read the last generation, collect, compare, publish.

The comparison happens when the stream's records have all been emitted: tombstones go out
then, and the new generation is published before the caller puts its reference into state.
A generation that cannot be used (missing, damaged, other org or filters) yields one
warning and no tombstones; the ledger is rebuilt by this run's full pass or reconcile.
"""

from __future__ import annotations

import heapq
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from .ledger import (
    LedgerRef,
    LedgerStore,
    LedgerUnavailable,
    SortedSpill,
    entry,
    merge,
    now_iso,
    read_ledger,
    tombstone,
    write_ledger,
)


class LedgerRun:
    """Delivered keys of one stream (or partition) in one run."""

    def __init__(
        self,
        store: LedgerStore,
        stream: str,
        keys: list[str],
        scope: str,
        state: dict[str, Any],
        logger: logging.Logger,
        every: int,
        now: bool,
    ) -> None:
        self.store, self.stream, self.keys, self.scope = store, stream, keys, scope
        self.logger = logger
        self.runs_since = int(state.get("runs_since_reconcile", 0) or 0)
        self.seen = SortedSpill(store.workdir)
        self.commit: dict[str, Any] = {}
        self.reconciled = False
        self.old_ref = LedgerRef.from_state(state.get("ledger"))
        self.old_path: str | None = None
        if self.old_ref is not None:
            try:
                self.old_path = store.fetch(stream, self.old_ref, scope)
            except LedgerUnavailable as err:
                logger.warning(
                    "%s: the ledger of delivered keys is unavailable: %s; no "
                    "deletions this run, rebuilding it",
                    stream,
                    err,
                )
        elif state.get("ledger") is not None:
            logger.warning(
                "%s: the state holds a ledger of an older tap version; no "
                "deletions this run, rebuilding it",
                stream,
            )
        self.lineage = self.old_ref.lineage if self.old_path and self.old_ref else uuid.uuid4().hex
        self.due = self.old_path is None or now or (every > 0 and self.runs_since + 1 >= every)

    def add(self, parent: Any, record: dict[str, Any]) -> None:
        self.seen.add(entry(parent, record, self.keys))

    def close(
        self,
        *,
        replaced: Iterable[bytes] | None,
        live: Iterable[bytes] | None,
        current: Iterable[bytes] | None = None,
        reconciled: bool,
    ) -> Iterator[dict[str, Any]]:
        """Tombstones for vanished keys, then the new generation into ``commit``.

        ``replaced``: sorted parents listed completely this run (None: all of them);
        ``live``: sorted parents known to exist; ``current``: sorted entries of a reconcile
        scan of a top-level list (the complete truth, replacing what was seen).
        """
        old: Iterator[bytes] = (
            read_ledger(self.old_path, len(self.keys)) if self.old_path else iter(())
        )
        before: Iterator[bytes]
        if current is not None:
            before, after, replaced = heapq.merge(old, iter(self.seen)), iter(current), None
        else:
            before, after = old, iter(self.seen)
        gone: list[bytes] = []
        fd, local = tempfile.mkstemp(suffix=".ledger", dir=self.store.workdir)
        os.close(fd)
        rows = write_ledger(
            local,
            merge(before, after, _iter(replaced), _iter(live), gone),
            self.scope,
            len(self.keys),
        )
        if self.old_path is not None and gone:
            self.logger.info(
                "%s: %d rows no longer exist in Ashby; sending deletions", self.stream, len(gone)
            )
            deleted_at = now_iso()
            for item in gone:
                yield tombstone(item, self.keys, deleted_at)
        ref = self.store.publish(self.stream, self.lineage, local, rows, self.scope)
        keep = {ref.gen} | ({self.old_ref.gen} if self.old_ref else set())
        self.store.prune(self.stream, self.lineage, keep)
        for path in (local, self.old_path):
            if path:
                os.unlink(path)
        self.reconciled = reconciled
        self.commit = {
            "ledger": ref.as_state(),
            "runs_since_reconcile": 0 if reconciled else self.runs_since + 1,
        }


def _iter(values: Iterable[bytes] | None) -> Iterator[bytes] | None:
    return None if values is None else iter(values)
