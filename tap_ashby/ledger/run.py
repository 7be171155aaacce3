"""One stream's ledger for one run: read the last generation, collect, compare, publish.

The comparison happens when the stream's records have all been emitted: tombstones go out
then, and the new generation is published before the caller puts its reference into state.
A generation that cannot be used (missing, damaged, another format, key schema, org or
filters) yields one warning and no tombstones; the ledger is rebuilt by this run's full
pass or reconcile.

A row is deleted when no parent lists it any more. Where the primary key is unique across
parents (a job posting on any board), an entry that left its parent is only a move unless
no parent of the new generation holds the same key: those keys are compared on disk, sorted
by primary key. Where the key holds the parent (a note's ``candidateId``), leaving the parent
is leaving the table. Either way memory stays flat: vanished keys stream to the caller, or
spill to disk while the merge runs.
"""

from __future__ import annotations

import heapq
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from .codec import EMPTY, LedgerWriter, entry, primary_key, read_ledger, tombstone
from .merge import SortedSpill, absent, merge
from .store import LedgerRef, LedgerStore, LedgerUnavailable, gen_time, now_iso


def reconcile_due(runs_since: int, usable: bool, every: int, now: bool) -> bool:
    """The one rule for when a ledger is compared with every current key: when asked for
    (``now``), every ``every`` runs (0: never by count), and whenever the ledger must be
    rebuilt (missing or unusable). The planner applies it before any call is made."""
    return not usable or now or (every > 0 and runs_since + 1 >= every)


class LedgerRun:
    """Delivered keys of one stream (or partition) in one run.

    ``across_parents``: the primary key is unique across parents, so a row under a new
    parent is the same row (True, the safe answer when unsure); False only where the key
    contains the parent's id (then entry and row are one, and no sort by key is needed).
    """

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
        *,
        across_parents: bool = True,
    ) -> None:
        self.store, self.stream, self.keys, self.scope = store, stream, list(keys), scope
        self.logger = logger
        self.across_parents = across_parents
        self.runs_since = int(state.get("runs_since_reconcile", 0) or 0)
        self.seen = SortedSpill(store.workdir)
        self.commit: dict[str, Any] = {}
        self.reconciled = False
        self.old_ref = LedgerRef.from_state(state.get("ledger"))
        self.old_path: str | None = None
        self.old_base = ""  # the generation the input was derived from (see store.py)
        if self.old_ref is not None:
            try:
                self.old_path, header = store.fetch(stream, self.old_ref, scope, self.keys)
                self.old_base = str(header.get("base") or "")
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
        self.due = reconcile_due(self.runs_since, self.old_path is not None, every, now)

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
            read_ledger(self.old_path, self.keys, self.scope) if self.old_path else iter(())
        )
        before: Iterator[bytes]
        if current is not None:
            before, after, replaced = heapq.merge(old, iter(self.seen)), iter(current), None
        else:
            before, after = old, iter(self.seen)
        fd, local = tempfile.mkstemp(suffix=".ledger", dir=self.store.workdir)
        os.close(fd)
        base = self.old_ref.gen if self.old_path and self.old_ref else ""
        writer = LedgerWriter(local, self.keys, self.scope, base)
        moved_or_gone = SortedSpill(self.store.workdir)  # left a parent; key may live on
        deleted_at, sent = now_iso(), 0
        # Without the old generation, nothing was known to be delivered: no tombstones.
        send = self.old_path is not None
        for item, stays in merge(before, after, _iter(replaced), _iter(live)):
            if stays:
                writer.add(item)
            elif not send:
                continue
            elif self.across_parents and item[:1] != EMPTY:
                moved_or_gone.add(primary_key(item, self.keys))
            else:  # the entry is the row: it is gone
                sent += 1
                yield tombstone(item, self.keys, deleted_at)
        rows = writer.close()
        if moved_or_gone.added:
            kept = SortedSpill(self.store.workdir)
            for item in read_ledger(local, self.keys, self.scope):
                kept.add(primary_key(item, self.keys))
            for key in absent(iter(moved_or_gone), iter(kept)):
                sent += 1
                yield tombstone(key, self.keys, deleted_at)
            kept.discard()
        moved_or_gone.discard()
        if sent:
            self.logger.info(
                "%s: %d rows no longer exist in Ashby; deletions sent", self.stream, sent
            )
        ref = self.store.publish(self.stream, self.lineage, local, rows, self.scope)
        self._tidy(ref)
        for path in (local, self.old_path):
            if path:
                os.unlink(path)
        self.seen.discard()
        self.reconciled = reconciled
        self.commit = {
            "ledger": ref.as_state(),
            "runs_since_reconcile": 0 if reconciled else self.runs_since + 1,
        }

    def _tidy(self, ref: LedgerRef) -> None:
        """Prune what no STATE can need any more, then lineages nobody writes (store.py)."""
        if self.old_ref is None or self.old_path is None:
            return  # a new lineage: nothing of it to prune, and no time to judge others by
        if self.old_base:
            self.store.prune(
                self.stream, self.lineage, self.old_base, keep={ref.gen, self.old_ref.gen}
            )
        started: datetime | None = gen_time(self.old_ref.gen)
        if started is not None:
            self.store.collect_garbage(self.stream, keep=self.lineage, now=started)


def _iter(values: Iterable[bytes] | None) -> Iterator[bytes] | None:
    return None if values is None else iter(values)
