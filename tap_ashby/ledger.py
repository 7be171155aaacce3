"""The ledger: which keys a stream has delivered, so that rows deleted in Ashby can leave too.

Ashby's syncToken passes never mention a record that no longer exists (erased or merged
candidates, deleted offers). A reconcile pass lists the ids that exist now; every delivered
key missing from that list gets a tombstone record (its key plus ``_sdc_deleted_at``), which
target-duckdb (``hard_delete``) deletes and target-postgres keeps as an erased, marked row.

The keys live outside Singer state, in a ``LedgerStore`` (a local directory or any fsspec
URL): one immutable file per *generation*, sorted, 17 bytes per UUID key. Singer state keeps a
small reference (generation, row count, checksum, scope), so state stays O(streams).
Memory stays flat: keys are sorted on disk in chunks and compared by streaming merge.

Entry = encoded parent key + encoded primary-key values (top-level streams: an empty parent).
Encodings are prefix-free, so byte order of entries groups them by parent.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import fsspec

FORMAT = "tap-ashby-ledger/2"
EMPTY, UUID_KEY, SAME_AS_PARENT, TEXT = b"\x00", b"\x01", b"\x02", b"\x03"
CHUNK_ENTRIES = 200_000  # entries sorted in memory before spilling to disk (~10 MB)


# key encoding ------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes | IO[bytes], pos: int = 0) -> tuple[int, int]:
    """(value, next position) from bytes; from a file, position is ignored (-1 at EOF)."""
    shift = value = 0
    while True:
        if isinstance(data, bytes):
            byte, pos = data[pos], pos + 1
        else:
            raw = data.read(1)
            if not raw:
                return 0, -1
            byte = raw[0]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def encode_key(value: Any, parent: str = "") -> bytes:
    """One key value: 17 bytes for a canonical UUID, 1 byte for the parent's own key."""
    text = "" if value is None else str(value)
    if not text:
        return EMPTY
    if parent and text == parent:
        return SAME_AS_PARENT
    if (
        len(text) == 36
        and text[8] == text[13] == text[18] == text[23] == "-"
        and text.lower() == text
    ):  # canonical form only, so decoding gives it back
        try:
            raw = bytes.fromhex(text.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) == 16:  # fromhex skips blanks: a 16-byte result is 32 hex digits
            return UUID_KEY + raw
    raw = text.encode()
    return TEXT + _varint(len(raw)) + raw


def _decode_key(data: bytes, pos: int, parent: str) -> tuple[str, int]:
    tag = data[pos : pos + 1]
    if tag == EMPTY:
        return "", pos + 1
    if tag == SAME_AS_PARENT:
        return parent, pos + 1
    if tag == UUID_KEY:
        return str(uuid.UUID(bytes=data[pos + 1 : pos + 17])), pos + 17
    size, start = _read_varint(data, pos + 1)
    return data[start : start + size].decode(), start + size


def decode_key(item: bytes) -> str:
    """The text of one encoded key (the inverse of ``encode_key`` for a top-level key)."""
    return _decode_key(item, 0, "")[0]


def _key_length(data: bytes, pos: int) -> int:
    tag = data[pos : pos + 1]
    if tag in (EMPTY, SAME_AS_PARENT):
        return 1
    if tag == UUID_KEY:
        return 17
    size, start = _read_varint(data, pos + 1)
    return start + size - pos


def entry(parent: Any, record: dict[str, Any], keys: Iterable[str]) -> bytes:
    """The ledger entry of one delivered record under ``parent`` ("" for top-level rows)."""
    ptext = "" if parent is None else str(parent)
    if not ptext:  # top-level rows: the hot path of a full sync
        return EMPTY + b"".join([encode_key(record.get(k)) for k in keys])
    return encode_key(ptext) + b"".join([encode_key(record.get(k), ptext) for k in keys])


def split_entry(item: bytes) -> tuple[bytes, bytes]:
    """(encoded parent, encoded primary key) of an entry."""
    cut = _key_length(item, 0)
    return item[:cut], item[cut:]


def decode_entry(item: bytes, keys: list[str]) -> dict[str, str]:
    """The primary-key values of an entry, by field name."""
    parent, pos = _decode_key(item, 0, "")
    record = {}
    for key in keys:
        record[key], pos = _decode_key(item, pos, parent)
    return record


# sorting on disk ---------------------------------------------------------------------------
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

    def __init__(self, workdir: str, chunk: int = CHUNK_ENTRIES) -> None:
        self._dir = workdir
        self._chunk = chunk
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


# the ledger file -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerRef:
    """What Singer state keeps of a ledger generation."""

    lineage: str
    gen: str
    rows: int
    sha256: str
    scope: str

    def as_state(self) -> dict[str, Any]:
        return {
            "lineage": self.lineage,
            "gen": self.gen,
            "rows": self.rows,
            "sha256": self.sha256,
            "scope": self.scope,
        }

    @classmethod
    def from_state(cls, value: Any) -> LedgerRef | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                str(value["lineage"]),
                str(value["gen"]),
                int(value["rows"]),
                str(value["sha256"]),
                str(value["scope"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def write_ledger(path: str, entries: Iterable[bytes], scope: str, key_count: int) -> int:
    """Write sorted ``entries`` grouped by parent: ``[parent][n][key]*n`` after a header."""
    rows = 0
    with open(path, "wb", buffering=1 << 20) as handle:
        header = json.dumps({"format": FORMAT, "scope": scope, "keys": key_count}).encode()
        handle.write(header + b"\n")
        group: list[bytes] = []
        current: bytes | None = None

        def flush() -> None:
            if current is not None:
                handle.write(current + _varint(len(group)) + b"".join(group))

        for item in entries:
            parent, key = split_entry(item)
            if parent != current:
                flush()
                current, group = parent, []
            group.append(key)
            rows += 1
            if len(group) >= 4096:  # bounded memory even for one parent with many rows
                flush()
                group = []
        flush()
    return rows


def _read_key(handle: IO[bytes]) -> bytes:
    tag = handle.read(1)
    if tag in (EMPTY, SAME_AS_PARENT, b""):
        return tag
    if tag == UUID_KEY:
        return tag + handle.read(16)
    size, _ = _read_varint(handle)
    return tag + _varint(size) + handle.read(size)


def read_ledger(path: str, key_count: int) -> Iterator[bytes]:
    """Entries of a ledger file, in sorted order, streamed."""
    with open(path, "rb", buffering=1 << 20) as handle:
        handle.readline()
        while True:
            parent = _read_key(handle)
            if not parent:
                return
            count, _ = _read_varint(handle)
            for _ in range(count):
                yield parent + b"".join(_read_key(handle) for _ in range(key_count))


def ledger_header(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return json.loads(handle.readline())


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


# comparing generations -----------------------------------------------------------------------
def _membership(parents: Iterator[bytes] | None) -> Any:
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
    gone: list[bytes],
) -> Iterator[bytes]:
    """The next generation, streamed in sorted order; vanished entries go to ``gone``.

    ``before``: what was delivered (sorted); ``after``: what this run saw (sorted).
    ``replaced``: sorted parents whose rows ``after`` lists completely (None: every parent);
    ``live``: sorted parents that still exist (None: not known this run). A ``before``
    entry survives unless its parent was replaced and ``after`` lacks it, or its parent is
    no longer live. ``gone`` is appended to as the merge advances (the caller drains it).
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

    def settle(item: bytes, in_after: bool) -> bytes | None:
        if not parent_live or (not in_after and parent_replaced):
            gone.append(item)
            return None
        return item

    for item, source in heapq.merge(tagged_before, tagged_after):
        if item != last:
            if pending is not None:
                kept = settle(pending, seen_after)
                if kept is not None:
                    yield kept
            parent, _ = split_entry(item)
            if parent != current:
                current = parent
                parent_replaced = True if in_replaced is None else in_replaced(parent)
                parent_live = True if is_live is None else is_live(parent)
            pending, last, seen_after = item, item, False
        seen_after = seen_after or source == 1
    if pending is not None:
        kept = settle(pending, seen_after)
        if kept is not None:
            yield kept


def tombstone(item: bytes, keys: list[str], deleted_at: str) -> dict[str, Any]:
    record: dict[str, Any] = decode_entry(item, keys)
    record["_sdc_deleted_at"] = deleted_at
    return record


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# the store -----------------------------------------------------------------------------------
class LedgerUnavailable(Exception):
    """The generation named by state cannot be used; ``str()`` says why (one line)."""


class LedgerStore:
    """Ledger generations under ``<uri>/<stream>/<lineage>/<gen>.ledger`` (fsspec URL or path).

    A generation is written once, under a new name, before the STATE naming it is emitted;
    one is pruned only when it is neither the generation this run started from nor the one
    it wrote (a committed state can name nothing else in its lineage).
    """

    def __init__(self, uri: str, workdir: str, logger: logging.Logger | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        self.workdir = workdir
        self.logger = logger or logging.getLogger(__name__)

    def _path(self, stream: str, lineage: str, gen: str = "") -> str:
        base = f"{self.root}/{stream}/{lineage}"
        return f"{base}/{gen}.ledger" if gen else base

    def fetch(self, stream: str, ref: LedgerRef, scope: str) -> str:
        """A verified local copy of the generation ``ref`` names."""
        if ref.scope != scope:
            raise LedgerUnavailable("it was built for other settings (base_url or filters changed)")
        fd, local = tempfile.mkstemp(suffix=".ledger", dir=self.workdir)
        os.close(fd)
        try:
            self.fs.get_file(self._path(stream, ref.lineage, ref.gen), local)
        except (OSError, ValueError) as err:
            raise LedgerUnavailable(
                f"generation {ref.gen} cannot be read from {self.uri} ({type(err).__name__})"
            ) from err
        try:
            header = ledger_header(local)
        except ValueError:
            header = {}
        if file_sha256(local) != ref.sha256 or header.get("scope") != scope:
            raise LedgerUnavailable(
                f"generation {ref.gen} in {self.uri} does not match the "
                "state (another org, other filters, or damaged)"
            )
        return local

    def publish(
        self,
        stream: str,
        lineage: str,
        local: str,
        rows: int,
        scope: str,
    ) -> LedgerRef:
        """Upload a finished local file as a new generation (never overwrites one)."""
        gen = uuid.uuid4().hex
        target = self._path(stream, lineage, gen)
        self.fs.makedirs(self._path(stream, lineage), exist_ok=True)
        self.fs.put_file(local, target)
        return LedgerRef(lineage, gen, rows, file_sha256(local), scope)

    def prune(self, stream: str, lineage: str, keep: set[str]) -> None:
        """Drop generations of ``lineage`` other than ``keep`` (best effort)."""
        try:
            names = self.fs.ls(self._path(stream, lineage), detail=False)
        except (OSError, ValueError):
            return
        for name in names:
            gen = Path(str(name)).name.removesuffix(".ledger")
            if gen not in keep and str(name).endswith(".ledger"):
                try:
                    self.fs.rm_file(name)
                except OSError as err:
                    self.logger.debug("could not prune %s: %s", name, err)


def default_ledger_uri(environ: dict[str, str] | None = None) -> str:
    """Inside the Meltano project when run by Meltano, else the user's data directory."""
    env = os.environ if environ is None else environ
    if env.get("MELTANO_PROJECT_ROOT"):
        return str(Path(env["MELTANO_PROJECT_ROOT"]) / ".meltano" / "tap-ashby" / "ledger")
    data = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data) / "tap-ashby" / "ledger")
