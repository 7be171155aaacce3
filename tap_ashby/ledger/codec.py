"""Ledger bytes: key encoding, entries, and the checked header every ledger file starts with.

Entry = encoded parent key + encoded primary-key values (top-level streams: an empty parent).
Encodings are prefix-free, so byte order of entries groups them by parent. A canonical UUID
takes 17 bytes; anything else is tagged, length-prefixed UTF-8 text.

Only the standard library: this module is cheap to import.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import IO, Any

EMPTY, UUID_KEY, SAME_AS_PARENT, TEXT = b"\x00", b"\x01", b"\x02", b"\x03"
CODEC = "uuid17-text/1"  # the name of the key encoding above; part of every file's key schema
# A high byte first, like PNG's: a file mangled as text, or any other file, fails the check.
MAGIC = b"\x89TALEDG\n"
VERSION = 3  # 2 was 0.2's JSON-line header; 3 adds the magic, key schema and base generation


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


# keys ---------------------------------------------------------------------------------------
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


def read_key(handle: IO[bytes]) -> bytes:
    """One encoded key from a file (b"" at its end)."""
    tag = handle.read(1)
    if tag in (EMPTY, SAME_AS_PARENT, b""):
        return tag
    if tag == UUID_KEY:
        return tag + handle.read(16)
    size, _ = _read_varint(handle)
    return tag + _varint(size) + handle.read(size)


# entries ------------------------------------------------------------------------------------
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


def primary_key(item: bytes, keys: list[str]) -> bytes:
    """The entry's primary key alone, as the entry of a top-level row: what a warehouse
    table is keyed by, whichever parent listed the row."""
    if item[:1] == EMPTY:
        return item
    values = decode_entry(item, keys)
    return EMPTY + b"".join(encode_key(values[k]) for k in keys)


def tombstone(item: bytes, keys: list[str], deleted_at: str) -> dict[str, Any]:
    """The record that deletes an entry's row: its primary key and ``_sdc_deleted_at``."""
    record: dict[str, Any] = decode_entry(item, keys)
    record["_sdc_deleted_at"] = deleted_at
    return record


# the header ---------------------------------------------------------------------------------
class HeaderMismatch(Exception):
    """A ledger file that this stream cannot use; ``str()`` is the reason (one line)."""


def key_schema(keys: list[str]) -> dict[str, Any]:
    return {"keys": list(keys), "codec": CODEC}


def write_header(handle: IO[bytes], keys: list[str], scope: str, base: str) -> None:
    """Magic, version, then the key schema, scope and base generation as JSON."""
    meta = json.dumps({**key_schema(keys), "scope": scope, "base": base}, sort_keys=True)
    raw = meta.encode()
    handle.write(MAGIC + VERSION.to_bytes(2, "big") + _varint(len(raw)) + raw)


def read_header(handle: IO[bytes], keys: list[str], scope: str) -> dict[str, Any]:
    """The header of a file written for ``keys`` and ``scope``, else ``HeaderMismatch``."""
    if handle.read(len(MAGIC)) != MAGIC:
        raise HeaderMismatch("its file is not a ledger of this tap (written by 0.2 or damaged)")
    version = int.from_bytes(handle.read(2), "big")
    if version != VERSION:
        raise HeaderMismatch(f"its file has format version {version}; this tap reads {VERSION}")
    size, _ = _read_varint(handle)
    try:
        meta = json.loads(handle.read(size))
    except ValueError as err:
        raise HeaderMismatch("its file header is damaged") from err
    if not isinstance(meta, dict):
        raise HeaderMismatch("its file header is damaged")
    want = key_schema(keys)
    have = {k: meta.get(k) for k in want}
    if have != want:
        raise HeaderMismatch(
            f"its key schema is {_schema_text(have)}; this stream's is {_schema_text(want)}"
        )
    if meta.get("scope") != scope:
        raise HeaderMismatch("it was built for other settings (base_url, filters or key changed)")
    return meta


def _schema_text(schema: dict[str, Any]) -> str:
    keys = schema.get("keys")
    fields = ", ".join(map(str, keys)) if isinstance(keys, list) else "?"
    return f"({fields}) in {schema.get('codec')}"


# the file -----------------------------------------------------------------------------------
GROUP_ROWS = 4096  # keys per parent group: bounded memory even for one parent with many rows


class LedgerWriter:
    """Sorted entries into a ledger file: the header, then ``[parent][n][key]*n`` groups."""

    def __init__(self, path: str, keys: list[str], scope: str, base: str) -> None:
        self._handle = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
        write_header(self._handle, keys, scope, base)
        self._group: list[bytes] = []
        self._parent: bytes | None = None
        self.rows = 0

    def add(self, item: bytes) -> None:
        parent, key = split_entry(item)
        if parent != self._parent or len(self._group) >= GROUP_ROWS:
            self._flush()
            self._parent = parent
        self._group.append(key)
        self.rows += 1

    def _flush(self) -> None:
        if self._parent is not None and self._group:
            self._handle.write(self._parent + _varint(len(self._group)) + b"".join(self._group))
        self._group = []

    def close(self) -> int:
        self._flush()
        self._handle.close()
        return self.rows


def write_ledger(path: str, entries: Iterable[bytes], keys: list[str], scope: str) -> int:
    """A whole ledger file from sorted ``entries``; its row count."""
    writer = LedgerWriter(path, keys, scope, base="")
    for item in entries:
        writer.add(item)
    return writer.close()


def read_ledger(path: str, keys: list[str], scope: str) -> Iterator[bytes]:
    """Entries of a checked ledger file, in sorted order, streamed."""
    with open(path, "rb", buffering=1 << 20) as handle:
        read_header(handle, keys, scope)
        while True:
            parent = read_key(handle)
            if not parent:
                return
            count, _ = _read_varint(handle)
            for _ in range(count):
                yield parent + b"".join(read_key(handle) for _ in keys)


def file_header(path: str, keys: list[str], scope: str) -> dict[str, Any]:
    """The checked header of a ledger file (``HeaderMismatch`` when it is not ours)."""
    with open(path, "rb") as handle:
        return read_header(handle, keys, scope)
