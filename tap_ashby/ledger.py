"""The ledger: which keys a stream has delivered, so that rows deleted in Ashby can leave too.

Ashby's syncToken passes never mention a record that no longer exists (erased or merged
candidates, deleted offers). A reconcile pass lists the ids that exist now; every delivered
key missing from that list gets a tombstone record (its key plus ``_sdc_deleted_at``), which
target-duckdb (``hard_delete``) deletes and target-postgres keeps as an erased, marked row.

The ledger lives in the stream's Singer state as one compressed string, committed together
with the sync token, only after the pass was emitted (at least once, like the token).
Entries are ``<parent key>\\x1f<primary key values joined by \\x1f>``; top-level streams use an
empty parent key.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

SEP = "\x1f"
FORMAT = "z1:"  # version prefix of the encoded form


def entry(parent: Any, record: dict[str, Any], keys: Iterable[str]) -> str:
    """The ledger entry of one delivered record."""
    return SEP.join([str(parent or ""), *(str(record.get(k)) for k in keys)])


class Ledger:
    """Delivered keys, grouped by parent key (``""`` for top-level streams)."""

    def __init__(self, by_parent: dict[str, set[str]] | None = None) -> None:
        self.by_parent: dict[str, set[str]] = by_parent or {}

    @classmethod
    def decode(cls, text: str | None) -> Ledger | None:
        """Read the state form; None when there is no (usable) ledger yet."""
        if not text or not text.startswith(FORMAT):
            return None
        try:
            raw = zlib.decompress(base64.b64decode(text[len(FORMAT):])).decode()
        except (ValueError, zlib.error):
            return None
        ledger = cls()
        for line in raw.split("\n"):
            if line:
                ledger.add(line)
        return ledger

    def encode(self) -> str:
        """The compact state form (sorted, so equal ledgers encode equally)."""
        raw = "\n".join(sorted(e for entries in self.by_parent.values() for e in entries))
        return FORMAT + base64.b64encode(zlib.compress(raw.encode(), 6)).decode()

    def add(self, item: str) -> None:
        parent = item.split(SEP, 1)[0]
        self.by_parent.setdefault(parent, set()).add(item)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_parent.values())

    def replace_parent(self, parent: str, items: set[str]) -> set[str]:
        """Set one parent's children to ``items``; returns the entries that disappeared."""
        gone = self.by_parent.get(parent, set()) - items
        if items:
            self.by_parent[parent] = set(items)
        else:
            self.by_parent.pop(parent, None)
        return gone

    def drop_parents_except(self, live: set[str]) -> set[str]:
        """Forget every parent not in ``live``; returns the entries that went with them."""
        gone: set[str] = set()
        for parent in [p for p in self.by_parent if p not in live]:
            gone |= self.by_parent.pop(parent)
        return gone


def tombstones(entries: Iterable[str], keys: list[str]) -> Iterator[dict[str, Any]]:
    """One record per vanished entry: its primary key and ``_sdc_deleted_at``."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for item in sorted(entries):
        values = item.split(SEP)[1:]
        record: dict[str, Any] = dict(zip(keys, values, strict=True))
        record["_sdc_deleted_at"] = now
        yield record
