"""The ledger: which keys a stream has delivered, so that rows deleted in Ashby can leave too.

Ashby's syncToken passes never mention a record that no longer exists (erased or merged
candidates, deleted offers). A reconcile pass lists the ids that exist now; every delivered
key missing from that list gets a tombstone record (its key plus ``_sdc_deleted_at``), which
target-duckdb (``hard_delete``) deletes and target-postgres keeps as an erased, marked row.

The keys live outside Singer state, in a ``LedgerStore`` (a local directory or any fsspec
URL): one immutable, checked file per *generation*, sorted, 17 bytes per UUID key. Singer
state keeps a small reference (lineage, generation, row count, checksum, scope), so state
stays O(streams).

    codec   key encoding, entries, the checked file format (magic, version, key schema)
    merge   sorting on disk and streaming merges, in bounded memory
    store   ordered generation names, prune only older, garbage collection
    run     ``LedgerRun``: what one stream's pass adds and removes

Submodules load on first use (full-table runs with deletes off never import fsspec).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import decode_key, encode_key
    from .merge import SortedSpill
    from .run import LedgerRun, reconcile_due
    from .store import (
        LedgerRef,
        LedgerStore,
        LedgerUnavailable,
        default_ledger_uri,
        normalize_base_url,
        now_iso,
    )

_EXPORTS = {
    "decode_key": "codec",
    "encode_key": "codec",
    "SortedSpill": "merge",
    "LedgerRun": "run",
    "reconcile_due": "run",
    "LedgerRef": "store",
    "LedgerStore": "store",
    "LedgerUnavailable": "store",
    "default_ledger_uri": "store",
    "normalize_base_url": "store",
    "now_iso": "store",
}
__all__ = [
    "LedgerRef",
    "LedgerRun",
    "LedgerStore",
    "LedgerUnavailable",
    "SortedSpill",
    "decode_key",
    "default_ledger_uri",
    "encode_key",
    "normalize_base_url",
    "now_iso",
    "reconcile_due",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
