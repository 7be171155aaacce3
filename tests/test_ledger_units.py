"""Unit tests of the ledger package: codec, merge, store, run. No emulator, no subprocess
(except one import check); stores on a directory, ``file://``, memory and a loopback S3."""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from s3_server import new_bucket, s3_env  # noqa: F401 (a fixture)

from tap_ashby.endpoints import ROWS
from tap_ashby.ledger import (
    LedgerRef,
    LedgerRun,
    LedgerStore,
    LedgerUnavailable,
    SortedSpill,
    default_ledger_uri,
    encode_key,
    normalize_base_url,
)
from tap_ashby.ledger.codec import (
    CODEC,
    MAGIC,
    VERSION,
    HeaderMismatch,
    decode_entry,
    entry,
    file_header,
    read_header,
    read_ledger,
    write_header,
    write_ledger,
)
from tap_ashby.ledger.merge import absent, merge
from tap_ashby.ledger.store import GC_AGE, STAMP, gen_time

LOG = logging.getLogger("tap_ashby.tests.ledger")
CHILD_KEYS = ["candidateId", "id"]


def uid(n: int) -> str:
    """A canonical (lowercase) UUID string, ordered by ``n``."""
    return str(uuid.UUID(int=n))


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text
    return text


def top(n: int) -> bytes:
    """The entry of a top-level row with id ``uid(n)``."""
    return entry(None, {"id": uid(n)}, ["id"])


def child(parent: int, n: int) -> bytes:
    """The entry of a child row (candidateId = parent) under parent ``uid(parent)``."""
    return entry(uid(parent), {"candidateId": uid(parent), "id": uid(n)}, CHILD_KEYS)


def parent_key(n: int) -> bytes:
    return encode_key(uid(n))


def header_size(keys: list[str], scope: str) -> int:
    buffer = io.BytesIO()
    write_header(buffer, keys, scope, "")
    return len(buffer.getvalue())


# =========================================================================================
# codec
# =========================================================================================
class TestEncoding:
    """``encode_key``, ``entry``, ``decode_entry``."""

    def test_canonical_uuid_is_17_bytes(self) -> None:
        value = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
        encoded = encode_key(value)
        assert len(encoded) == 17
        assert encoded[1:] == uuid.UUID(value).bytes

    @pytest.mark.parametrize(
        "value",
        [
            "3FA85F64-5717-4562-B3FC-2C963F66AFA6",  # uppercase: not canonical
            "3fa85f6457174562b3fc2c963f66afa6",  # no dashes
            "not-a-uuid-but-36-characters-long!!",
            "v2026-01-01",
            "üñï©ødé",
            "x" * 300,
        ],
    )  # long text: multi-byte length
    def test_other_text_round_trips(self, value: str) -> None:
        encoded = encode_key(value)
        assert len(encoded) > len(value.encode())  # text form: tag + length + bytes
        assert decode_entry(encode_key("") + encoded, ["k"]) == {"k": value}

    def test_parent_key_is_one_byte(self) -> None:
        assert len(encode_key(uid(5), parent=uid(5))) == 1
        assert len(encode_key(uid(5), parent=uid(6))) == 17

    @pytest.mark.parametrize("value", [None, ""])
    def test_empty(self, value: Any) -> None:
        assert encode_key(value) == b"\x00"

    def test_top_level_round_trip(self) -> None:
        item = entry(None, {"id": uid(1), "other": "x"}, ["id"])
        assert len(item) == 1 + 17
        assert decode_entry(item, ["id"]) == {"id": uid(1)}

    def test_child_round_trip(self) -> None:
        item = entry(uid(7), {"candidateId": uid(7), "id": "Note-ABC"}, CHILD_KEYS)
        assert decode_entry(item, CHILD_KEYS) == {"candidateId": uid(7), "id": "Note-ABC"}
        assert len(child(7, 8)) == 17 + 1 + 17  # parent, same-as-parent, own id

    def test_entries_group_by_parent(self) -> None:
        text_parent = entry("P-1", {"candidateId": "P-1", "id": uid(4)}, CHILD_KEYS)
        items = sorted([child(2, 1), child(1, 9), text_parent, child(2, 0), child(1, 3)])
        parents = [decode_entry(i, CHILD_KEYS)["candidateId"] for i in items]
        assert parents == [uid(1), uid(1), uid(2), uid(2), "P-1"]  # contiguous runs
        assert min([top(99), *items]) == top(99)  # top-level (empty parent) sorts first


class TestSortedSpill:
    """``SortedSpill``: sorted and de-duplicated across spilled chunks."""

    def test_sorts_and_dedupes_across_chunks(self, tmp_path: Path) -> None:
        spill = SortedSpill(str(tmp_path), chunk=3)
        order = [5, 1, 9, 1, 7, 5, 3, 9, 2, 8, 2, 5]
        for n in order:
            spill.add(top(n))
        assert len(list(tmp_path.glob("*.chunk"))) == len(order) // 3  # it did spill
        assert spill.added == len(order)
        assert list(spill) == [top(n) for n in sorted(set(order))]
        assert list(spill) == [top(n) for n in sorted(set(order))]  # iterable again

    def test_empty(self, tmp_path: Path) -> None:
        assert list(SortedSpill(str(tmp_path), chunk=2)) == []


class TestLedgerFile:
    """``write_ledger``/``read_ledger``: round trip and size on disk."""

    def test_round_trip_top_level_and_size(self, tmp_path: Path) -> None:
        n = 5000  # more than one 4096-row group
        items = sorted(top(i) for i in range(n))
        path = str(tmp_path / "g.ledger")
        assert write_ledger(path, iter(items), ["id"], "scope-1") == n
        assert list(read_ledger(path, ["id"], "scope-1")) == items
        header = file_header(path, ["id"], "scope-1")
        assert header == {"keys": ["id"], "codec": CODEC, "scope": "scope-1", "base": ""}
        groups = math.ceil(n / 4096)
        body = os.path.getsize(path) - header_size(["id"], "scope-1")
        assert body <= 17 * n + 3 * groups  # parent tag + 2-byte count per group

    def test_round_trip_children_and_text(self, tmp_path: Path) -> None:
        items = sorted(
            [
                child(1, 2),
                child(1, 3),
                child(4, 4),
                entry(uid(4), {"candidateId": uid(4), "id": "TEXT-id"}, CHILD_KEYS),
                entry("Parent-X", {"candidateId": "Parent-X", "id": uid(9)}, CHILD_KEYS),
            ]
        )
        path = str(tmp_path / "c.ledger")
        assert write_ledger(path, iter(items), CHILD_KEYS, "s") == 5
        assert list(read_ledger(path, CHILD_KEYS, "s")) == items

    def test_empty_ledger(self, tmp_path: Path) -> None:
        path = str(tmp_path / "e.ledger")
        assert write_ledger(path, iter([]), ["id"], "s") == 0
        assert list(read_ledger(path, ["id"], "s")) == []


class TestHeader:
    """Every file starts with magic, version and key schema; a mismatch names the reason."""

    def write(self, tmp_path: Path, keys: list[str] | None = None, scope: str = "s") -> str:
        path = str(tmp_path / "h.ledger")
        write_ledger(path, iter([top(1)]), keys or ["id"], scope)
        return path

    def test_round_trip(self, tmp_path: Path) -> None:
        path = self.write(tmp_path)
        assert Path(path).read_bytes().startswith(MAGIC + VERSION.to_bytes(2, "big"))
        assert file_header(path, ["id"], "s")["codec"] == CODEC

    @pytest.mark.parametrize(
        ("damage", "reason"),
        [
            (lambda raw: b'{"format": "tap-ashby-ledger/2"}\n' + raw, "not a ledger of this tap"),
            (lambda raw: MAGIC + (VERSION + 1).to_bytes(2, "big") + raw[10:], "format version 4"),
            (lambda raw: raw.replace(CODEC.encode(), b"uuid16-text/9"), "uuid16-text/9"),
        ],
    )
    def test_mismatch(self, tmp_path: Path, damage: Any, reason: str) -> None:
        path = self.write(tmp_path)
        Path(path).write_bytes(damage(Path(path).read_bytes()))
        with pytest.raises(HeaderMismatch, match=reason) as info:
            list(read_ledger(path, ["id"], "s"))
        one_line(info.value)

    def test_other_primary_key(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, keys=["id"])
        with pytest.raises(HeaderMismatch, match=r"\(id\).*\(candidateId, id\)"):
            file_header(path, CHILD_KEYS, "s")

    def test_other_scope(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, scope="a")
        with open(path, "rb") as handle, pytest.raises(HeaderMismatch, match="other settings"):
            read_header(handle, ["id"], "b")


# =========================================================================================
# merge
# =========================================================================================
def run_merge(
    before: list[bytes],
    after: list[bytes],
    replaced: list[bytes] | None = None,
    live: list[bytes] | None = None,
) -> tuple[list[bytes], list[bytes]]:
    """(kept, left their parent) of ``merge`` over sorted inputs."""
    out = list(
        merge(
            iter(sorted(before)),
            iter(sorted(after)),
            None if replaced is None else iter(sorted(replaced)),
            None if live is None else iter(sorted(live)),
        )
    )
    return [i for i, stays in out if stays], [i for i, stays in out if not stays]


class TestMerge:
    """``merge``: the next generation and what vanished."""

    def test_full_replace(self) -> None:
        kept, gone = run_merge([top(1), top(2), top(3)], [top(1), top(3), top(4)])
        assert kept == [top(1), top(3), top(4)]
        assert gone == [top(2)]

    def test_incremental_union(self) -> None:
        kept, gone = run_merge([top(1), top(2)], [top(2), top(3)], replaced=[])
        assert kept == [top(1), top(2), top(3)]
        assert gone == []

    def test_children_of_replaced_parents_only(self) -> None:
        before = [child(1, 10), child(1, 11), child(2, 20), child(2, 21)]
        after = [child(1, 10), child(1, 12), child(2, 20)]
        kept, gone = run_merge(before, after, replaced=[parent_key(1)])
        assert gone == [child(1, 11)]  # parent 2 was not listed completely: 21 stays
        assert kept == sorted([child(1, 10), child(1, 12), child(2, 20), child(2, 21)])

    def test_children_of_vanished_parents_go(self) -> None:
        before = [child(1, 10), child(2, 20), child(3, 30)]
        kept, gone = run_merge(before, [], replaced=[], live=[parent_key(1), parent_key(3)])
        assert kept == [child(1, 10), child(3, 30)]
        assert gone == [child(2, 20)]

    def test_gone_is_sorted_and_complete(self) -> None:
        before = [top(i) for i in range(20)]
        after = [top(i) for i in range(0, 20, 3)]
        kept, gone = run_merge(before, after)
        assert kept == sorted(after)
        assert gone == sorted(set(before) - set(after))

    def test_absent_is_a_streaming_anti_join(self) -> None:
        candidates = [top(i) for i in (1, 3, 5, 7, 9)]
        present = [top(i) for i in (0, 3, 4, 9, 10)]
        assert list(absent(iter(candidates), iter(present))) == [top(1), top(5), top(7)]
        assert list(absent(iter(candidates), iter([]))) == candidates


# =========================================================================================
# store
# =========================================================================================
SCOPE = "https://api.ashbyhq.com|candidates"


def make_store(uri: str, tmp_path: Path) -> LedgerStore:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return LedgerStore(uri, str(work), LOG)


def ledger_file(tmp_path: Path, scope: str, ids: list[int]) -> tuple[str, int]:
    """A finished local ledger file of top-level ``ids``."""
    path = str(tmp_path / f"local-{uuid.uuid4().hex}.ledger")
    return path, write_ledger(path, iter(sorted(top(i) for i in ids)), ["id"], scope)


@pytest.fixture(params=["path", "file-url", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """A ``LedgerStore`` on a directory, ``file://``, fsspec's memory, or loopback S3."""
    if request.param == "path":
        yield make_store(str(tmp_path / "ledgers"), tmp_path)
    elif request.param == "file-url":
        yield make_store((tmp_path / "ledgers").as_uri(), tmp_path)
    elif request.param == "s3":
        env = request.getfixturevalue("s3_env")
        yield make_store(f"{new_bucket(env)}/ledgers", tmp_path)
    else:
        uri = f"memory://tap-ashby-units-{uuid.uuid4().hex}/ledgers"
        created = make_store(uri, tmp_path)
        yield created
        if created.fs.exists(created.root):
            created.fs.rm(created.root, recursive=True)


def names_in(store: LedgerStore, stream: str, lineage: str) -> set[str]:
    try:
        listed = store.fs.ls(f"{store.root}/{stream}/{lineage}", detail=False, refresh=True)
    except FileNotFoundError:
        return set()
    return {Path(str(n)).name.removesuffix(".ledger") for n in listed}


def put_generation(store: LedgerStore, stream: str, lineage: str, gen: str, tmp_path: Path) -> None:
    """A generation with a chosen name (an old one, or another run's)."""
    local, _ = ledger_file(tmp_path, SCOPE, [1])
    store.fs.makedirs(f"{store.root}/{stream}/{lineage}", exist_ok=True)
    store.fs.put_file(local, f"{store.root}/{stream}/{lineage}/{gen}.ledger")


def stamp(when: datetime, run: str = "0123456789ab") -> str:
    return f"{when.strftime(STAMP)}-{run}-0001"


class TestLedgerStore:
    """``LedgerStore`` publish/fetch/prune/collect on every kind of location."""

    def test_publish_then_fetch_is_identical(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "scope-a", [1, 2, 3])
        ref = store.publish("candidates", "lin", local, rows, "scope-a")
        assert ref.rows == 3 and ref.scope == "scope-a" and ref.lineage == "lin"
        fetched, header = store.fetch("candidates", ref, "scope-a", ["id"])
        assert fetched != local and header["scope"] == "scope-a"
        assert Path(fetched).read_bytes() == Path(local).read_bytes()
        assert LedgerRef.from_state(ref.as_state()) == ref

    def test_names_sort_by_creation_and_never_repeat(
        self, store: LedgerStore, tmp_path: Path
    ) -> None:
        local, rows = ledger_file(tmp_path, "s", [1])
        gens = [store.publish("candidates", "lin", local, rows, "s").gen for _ in range(3)]
        assert gens == sorted(gens) and len(set(gens)) == 3
        assert all(store.run_id in g and gen_time(g) is not None for g in gens)
        other = make_store(store.uri, tmp_path)  # another run: another run id
        assert other.new_name() > gens[-1] and other.run_id != store.run_id

    def test_wrong_scope(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "scope-a", [1])
        ref = store.publish("candidates", "lin", local, rows, "scope-a")
        with pytest.raises(LedgerUnavailable, match="other settings"):
            store.fetch("candidates", ref, "scope-b", ["id"])

    def test_state_scope_must_match_the_file(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "scope-a", [1])
        ref = store.publish("candidates", "lin", local, rows, "scope-a")
        forged = LedgerRef(ref.lineage, ref.gen, ref.rows, ref.sha256, "scope-b")
        with pytest.raises(LedgerUnavailable, match="other settings"):
            store.fetch("candidates", forged, "scope-a", ["id"])

    def test_other_key_schema(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "s", [1])
        ref = store.publish("candidates", "lin", local, rows, "s")
        with pytest.raises(LedgerUnavailable, match="key schema"):
            store.fetch("candidates", ref, "s", CHILD_KEYS)

    def test_wrong_sha(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "s", [1])
        ref = store.publish("candidates", "lin", local, rows, "s")
        bad = LedgerRef(ref.lineage, ref.gen, ref.rows, "0" * 32, ref.scope)
        with pytest.raises(LedgerUnavailable, match="does not match"):
            store.fetch("candidates", bad, "s", ["id"])
        assert list(Path(store.workdir).glob("*.ledger")) == []  # the copy is not left over

    def test_missing_file(self, store: LedgerStore, tmp_path: Path) -> None:
        ref = LedgerRef("lin", "nosuchgen", 0, "0" * 32, "s")
        with pytest.raises(LedgerUnavailable, match="nosuchgen") as info:
            store.fetch("candidates", ref, "s", ["id"])
        one_line(info.value)

    def test_prune_only_up_to_the_given_name(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "s", [1])
        refs = [store.publish("candidates", "lin", local, rows, "s") for _ in range(5)]
        other = store.publish("candidates", "other-lineage", local, rows, "s")
        store.prune("candidates", "lin", upto=refs[2].gen, keep={refs[1].gen})
        assert names_in(store, "candidates", "lin") == {r.gen for r in (refs[1], *refs[3:])}
        assert store.fetch("candidates", other, "s", ["id"])  # another lineage is untouched
        store.prune("candidates", "never-written", upto="z", keep=set())  # no error

    def test_garbage_collection(
        self, store: LedgerStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        now = datetime.now(timezone.utc)
        put_generation(
            store, "candidates", "stale", stamp(now - GC_AGE - timedelta(hours=1)), tmp_path
        )
        put_generation(
            store, "candidates", "young", stamp(now - GC_AGE + timedelta(hours=1)), tmp_path
        )
        put_generation(store, "candidates", "mine", stamp(now - 2 * GC_AGE), tmp_path)
        put_generation(store, "applications", "stale", stamp(now - 2 * GC_AGE), tmp_path)
        with caplog.at_level(logging.INFO):
            store.collect_garbage("candidates", keep="mine", now=now)
        assert names_in(store, "candidates", "stale") == set()
        assert names_in(store, "candidates", "young")
        assert names_in(store, "candidates", "mine")  # the lineage this run writes
        assert names_in(store, "applications", "stale")  # another stream's: its own run's job
        logged = [
            r.getMessage() for r in caplog.records if "removed ledger lineage" in r.getMessage()
        ]
        assert len(logged) == 1 and "stale" in logged[0] and "candidates" in logged[0]

    def test_fsspec_loads_on_first_use(self) -> None:
        code = (
            "import sys, tempfile; from tap_ashby.ledger import LedgerStore\n"
            "LedgerStore('file:///nowhere', tempfile.gettempdir())\n"
            "print('fsspec' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://api.ashbyhq.com", "https://api.ashbyhq.com"),
        ("https://api.ashbyhq.com/", "https://api.ashbyhq.com"),
        ("HTTPS://API.AshbyHQ.com//", "https://api.ashbyhq.com"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/V1", "http://127.0.0.1:8080/V1"),  # paths keep their case
    ],
)
def test_normalized_base_url(url: str, normal: str) -> None:
    assert normalize_base_url(url) == normal


class TestDefaultLedgerUri:
    """``default_ledger_uri``: Meltano project, else XDG data home, else ~/.local/share."""

    def test_meltano_project(self, tmp_path: Path) -> None:
        env = {"MELTANO_PROJECT_ROOT": str(tmp_path), "XDG_DATA_HOME": "/elsewhere"}
        assert default_ledger_uri(env) == str(tmp_path / ".meltano" / "tap-ashby" / "ledger")

    def test_xdg_data_home(self, tmp_path: Path) -> None:
        assert default_ledger_uri({"XDG_DATA_HOME": str(tmp_path)}) == str(
            tmp_path / "tap-ashby" / "ledger"
        )

    def test_home_fallback(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HOME", str(tmp_path))
        assert default_ledger_uri({}) == str(tmp_path / ".local" / "share" / "tap-ashby" / "ledger")

    def test_reads_process_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
        assert default_ledger_uri().startswith(str(tmp_path))


# =========================================================================================
# deletes.py: LedgerRun
# =========================================================================================
SCOPE = "https://api.ashbyhq.com|candidates"


# =========================================================================================
# run: LedgerRun
# =========================================================================================
def ledger_run(
    store: LedgerStore,
    state: dict[str, Any],
    ids: list[int],
    *,
    every: int = 7,
    now: bool = False,
    replaced: list[bytes] | None = None,
    reconciled: bool = True,
) -> tuple[LedgerRun, list[dict[str, Any]]]:
    """One run of the candidates ledger that delivered ``ids``: (run, tombstones)."""
    run = LedgerRun(store, "candidates", ["id"], SCOPE, state, LOG, every, now)
    for n in ids:
        run.add(None, {"id": uid(n), "name": f"c{n}"})
    tombstones = list(run.close(replaced=replaced, live=None, reconciled=reconciled))
    return run, tombstones


@pytest.fixture
def dir_store(tmp_path: Path) -> LedgerStore:
    return make_store(str(tmp_path / "ledgers"), tmp_path)


def generations(store: LedgerStore, lineage: str) -> set[str]:
    return names_in(store, "candidates", lineage)


class TestLedgerRun:
    """``LedgerRun`` end to end on a directory store."""

    def test_first_run_then_deletions(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        first, tombstones = ledger_run(dir_store, {}, [1, 2, 3, 4])
        assert first.due and tombstones == []
        ref = LedgerRef.from_state(first.commit["ledger"])
        assert ref is not None and ref.rows == 4 and ref.scope == SCOPE
        assert first.commit["runs_since_reconcile"] == 0

        with caplog.at_level(logging.WARNING):
            second, tombstones = ledger_run(dir_store, dict(first.commit), [1, 3])
        assert caplog.records == []
        assert sorted(t["id"] for t in tombstones) == [uid(2), uid(4)]
        assert all(set(t) == {"id", "_sdc_deleted_at"} for t in tombstones)
        assert all(t["_sdc_deleted_at"].endswith("Z") for t in tombstones)
        ref2 = LedgerRef.from_state(second.commit["ledger"])
        assert ref2 is not None and ref2.rows == 2 and ref2.lineage == ref.lineage

        third, tombstones = ledger_run(dir_store, dict(second.commit), [3])
        assert [t["id"] for t in tombstones] == [uid(1)]
        ref3 = LedgerRef.from_state(third.commit["ledger"])
        assert ref3 is not None
        assert generations(dir_store, ref.lineage) == {ref2.gen, ref3.gen}  # first pruned

    def test_incremental_run_keeps_union(self, dir_store: LedgerStore) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        state = {**first.commit, "runs_since_reconcile": 2}
        second, tombstones = ledger_run(
            dir_store, state, [3], every=7, replaced=[], reconciled=False
        )
        assert not second.due
        assert tombstones == []
        assert second.commit["ledger"]["rows"] == 3
        assert second.commit["runs_since_reconcile"] == 3

    @pytest.mark.parametrize(
        ("runs_since", "every", "now", "due"),
        [
            (5, 7, False, False),
            (6, 7, False, True),
            (100, 0, False, False),
            (0, 0, True, True),
            (0, 1, False, True),
        ],
    )
    def test_due(
        self, dir_store: LedgerStore, runs_since: int, every: int, now: bool, due: bool
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1])
        state = {**first.commit, "runs_since_reconcile": runs_since}
        run = LedgerRun(dir_store, "candidates", ["id"], SCOPE, state, LOG, every, now)
        assert run.due is due

    def test_missing_generation_warns_and_rebuilds(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2, 3])
        ref = LedgerRef.from_state(first.commit["ledger"])
        assert ref is not None
        (Path(dir_store.root) / "candidates" / ref.lineage / f"{ref.gen}.ledger").unlink()
        with caplog.at_level(logging.WARNING):
            second, tombstones = ledger_run(dir_store, dict(first.commit), [1])
        assert tombstones == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unavailable" in warnings[0]
        new = LedgerRef.from_state(second.commit["ledger"])
        assert new is not None and new.rows == 1 and new.lineage != ref.lineage
        assert generations(dir_store, new.lineage) == {new.gen}

    def test_changed_scope_warns_without_tombstones(
        self,
        dir_store: LedgerStore,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        state = {**first.commit, "ledger": {**first.commit["ledger"], "scope": "other"}}
        with caplog.at_level(logging.WARNING):
            _, tombstones = ledger_run(dir_store, state, [1])
        assert tombstones == []
        assert any("other settings" in r.getMessage() for r in caplog.records)

    def test_legacy_string_ledger_warns(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING):
            run, tombstones = ledger_run(dir_store, {"ledger": "z1:eJwLycgsVgCiRIWS1OISAA"}, [1, 2])
        assert tombstones == []
        assert any("older tap version" in r.getMessage() for r in caplog.records)
        assert run.commit["ledger"]["rows"] == 2

    def test_work_files_are_removed(self, dir_store: LedgerStore) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        ledger_run(dir_store, dict(first.commit), [1])
        assert list(Path(dir_store.workdir).glob("*.ledger")) == []
        assert list(Path(dir_store.workdir).glob("*.chunk")) == []

    def test_reconcile_scan_replaces_seen(self, dir_store: LedgerStore) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2, 3])
        run = LedgerRun(dir_store, "candidates", ["id"], SCOPE, dict(first.commit), LOG, 7, False)
        run.add(None, {"id": uid(4)})  # delivered this run, then erased before the scan
        current = [top(1), top(3)]
        tombstones = list(run.close(replaced=[], live=None, current=current, reconciled=True))
        assert sorted(t["id"] for t in tombstones) == [uid(2), uid(4)]
        assert run.commit["ledger"]["rows"] == 2 and run.reconciled


BOARD_A, BOARD_B, BOARD_C = 100, 200, 300


def postings_run(
    store: LedgerStore,
    state: dict[str, Any],
    listed: dict[int, list[int]],
    *,
    replaced: list[int] | None = None,
    live: list[int] | None = None,
    across: bool = True,
) -> tuple[LedgerRun, list[str]]:
    """One run of a child stream keyed by ``id`` alone (job postings under job boards):
    ``listed`` maps each board listed this run to its posting numbers. (run, deleted ids)"""
    run = LedgerRun(
        store, "job_postings", ["id"], SCOPE, state, LOG, 7, False, across_parents=across
    )
    for board, postings in listed.items():
        for n in postings:
            run.add(uid(board), {"id": uid(n)})
    tombstones = list(
        run.close(
            replaced=None if replaced is None else sorted(parent_key(b) for b in replaced),
            live=None if live is None else sorted(parent_key(b) for b in live),
            reconciled=True,
        )
    )
    assert all(set(t) == {"id", "_sdc_deleted_at"} for t in tombstones)
    return run, sorted(t["id"] for t in tombstones)


class TestKeysAcrossParents:
    """A row keyed by its own id that shows up under another parent moved: no tombstone."""

    def test_a_posting_moved_between_boards_is_not_deleted(self, dir_store: LedgerStore) -> None:
        first, _ = postings_run(dir_store, {}, {BOARD_A: [1, 3], BOARD_B: [2]})
        second, deleted = postings_run(dir_store, first.commit, {BOARD_A: [], BOARD_B: [1, 2]})
        assert deleted == [uid(3)]  # 1 moved to board B; 3 is gone from every board
        assert second.commit["ledger"]["rows"] == 2

    def test_the_rule_by_parent_would_delete_it(self, dir_store: LedgerStore) -> None:
        """The same run with the key-within-parent rule: the move reads as a delete (why
        postings, files and the like are marked ``pk_across_parents`` in the table)."""
        first, _ = postings_run(dir_store, {}, {BOARD_A: [1, 3], BOARD_B: [2]}, across=False)
        _, deleted = postings_run(
            dir_store, first.commit, {BOARD_A: [], BOARD_B: [1, 2]}, across=False
        )
        assert deleted == [uid(1), uid(3)]

    def test_moved_while_the_old_parent_was_not_listed(self, dir_store: LedgerStore) -> None:
        first, _ = postings_run(dir_store, {}, {BOARD_A: [1, 2]})
        # incremental: only board B changed and was listed; 1 shows up there
        second, deleted = postings_run(dir_store, first.commit, {BOARD_B: [1]}, replaced=[BOARD_B])
        assert deleted == [] and second.commit["ledger"]["rows"] == 3  # (A,1), (A,2), (B,1)
        # reconcile: A lists only 2 now; 1 is still under B
        third, deleted = postings_run(
            dir_store, second.commit, {BOARD_A: [2], BOARD_B: [1]}, live=[BOARD_A, BOARD_B]
        )
        assert deleted == [] and third.commit["ledger"]["rows"] == 2
        # gone from every board: one tombstone, however many parents had listed it
        _, deleted = postings_run(dir_store, third.commit, {BOARD_A: [2], BOARD_B: []})
        assert deleted == [uid(1)]

    def test_on_two_boards_then_one(self, dir_store: LedgerStore) -> None:
        first, _ = postings_run(dir_store, {}, {BOARD_A: [1], BOARD_B: [1]})
        _, deleted = postings_run(dir_store, first.commit, {BOARD_A: [], BOARD_B: [1]})
        assert deleted == []

    def test_a_vanished_parent_takes_only_rows_that_did_not_move(
        self, dir_store: LedgerStore
    ) -> None:
        first, _ = postings_run(dir_store, {}, {BOARD_A: [1, 2], BOARD_C: [3]})
        # board A is deleted; posting 1 now on board C (listed), 2 nowhere
        _, deleted = postings_run(
            dir_store, first.commit, {BOARD_C: [1, 3]}, replaced=[BOARD_C], live=[BOARD_C]
        )
        assert deleted == [uid(2)]

    def test_key_within_parent_is_another_row_under_another_parent(
        self, dir_store: LedgerStore
    ) -> None:
        """Notes keyed (candidateId, id): a note under the kept candidate of a merge is a new
        row, and the merged-away candidate's row must go."""

        def notes(state: dict[str, Any], rows: list[tuple[int, int]], live: list[int]) -> Any:
            run = LedgerRun(
                dir_store,
                "candidate_notes",
                CHILD_KEYS,
                SCOPE,
                state,
                LOG,
                7,
                False,
                across_parents=False,
            )
            for cand, note in rows:
                run.add(uid(cand), {"candidateId": uid(cand), "id": uid(note)})
            live_keys = sorted(parent_key(c) for c in live)
            return run, list(run.close(replaced=None, live=live_keys, reconciled=True))

        first, _ = notes({}, [(1, 10), (2, 20)], [1, 2])
        _, tombstones = notes(first.commit, [(1, 10), (1, 20)], [1])
        assert tombstones == [
            {
                "candidateId": uid(2),
                "id": uid(20),
                "_sdc_deleted_at": tombstones[0]["_sdc_deleted_at"],
            }
        ]


@pytest.mark.parametrize("location", ["path", "file-url", "s3"])
@pytest.mark.parametrize("finishes_first", ["one", "two"])
def test_two_runs_at_once_from_one_state(
    request: pytest.FixtureRequest, tmp_path: Path, location: str, finishes_first: str
) -> None:
    """Two runs start from the same STATE on one ledger location and overlap: both read
    before either publishes or prunes. Each next reconcile, from either final STATE, sends
    exactly the real deletions and never finds its ledger unavailable."""
    if location == "s3":
        uri = f"{new_bucket(request.getfixturevalue('s3_env'))}/ledgers"
    elif location == "file-url":
        uri = (tmp_path / "ledgers").as_uri()
    else:
        uri = str(tmp_path / "ledgers")
    alive = set(range(1, 9))
    first, _ = ledger_run(make_store(uri, tmp_path), {}, sorted(alive))
    alive -= {2}

    def start(state: dict[str, Any]) -> LedgerRun:
        return LedgerRun(
            make_store(uri, tmp_path), "candidates", ["id"], SCOPE, state, LOG, 1, False
        )

    def finish(run: LedgerRun) -> list[str]:
        current = (top(n) for n in sorted(alive))
        return sorted(
            t["id"] for t in run.close(replaced=None, live=None, current=current, reconciled=True)
        )

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    LOG.addHandler(handler)
    try:
        one, two = start(first.commit), start(first.commit)
        order = (one, two) if finishes_first == "one" else (two, one)
        assert [finish(run) for run in order] == [[uid(2)], [uid(2)]]
        alive -= {3, 7}
        for final in (one.commit, two.commit):  # the next run from each final STATE
            nxt = start(final)
            assert nxt.old_path is not None
            assert finish(nxt) == [uid(3), uid(7)]
    finally:
        LOG.removeHandler(handler)
    assert not [r for r in records if r.levelno >= logging.WARNING], records


def test_two_runs_in_threads_then_either_state(tmp_path: Path) -> None:
    """The same, with both runs' closes racing on two threads."""
    uri = str(tmp_path / "ledgers")
    first, _ = ledger_run(make_store(uri, tmp_path), {}, [1, 2, 3, 4])
    runs = [
        LedgerRun(
            make_store(uri, tmp_path), "candidates", ["id"], SCOPE, first.commit, LOG, 1, False
        )
        for _ in range(2)
    ]
    barrier = threading.Barrier(2)
    results: dict[int, list[Any]] = {}

    def close(k: int) -> None:
        barrier.wait()
        current = iter([top(1), top(3), top(4)])
        results[k] = list(runs[k].close(replaced=None, live=None, current=current, reconciled=True))

    threads = [threading.Thread(target=close, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [len(results[k]) for k in range(2)] == [1, 1]
    for run in runs:
        nxt, tombstones = ledger_run(make_store(uri, tmp_path), run.commit, [1, 4])
        assert nxt.old_path is not None and [t["id"] for t in tombstones] == [uid(3)]


class TestChecks:
    """Checked files and garbage collection, through ``LedgerRun``."""

    def test_other_key_schema_warns_once_and_rebuilds(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        with caplog.at_level(logging.WARNING):
            run = LedgerRun(dir_store, "candidates", CHILD_KEYS, SCOPE, first.commit, LOG, 7, False)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert warnings[0].startswith("candidates:") and "key schema" in warnings[0]
        assert run.old_path is None and run.due  # rebuilt by this run's full pass
        assert list(run.close(replaced=None, live=None, reconciled=True)) == []
        assert run.commit["ledger"]["lineage"] != first.commit["ledger"]["lineage"]

    def test_other_format_version_warns_once_and_rebuilds(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        ref = LedgerRef.from_state(first.commit["ledger"])
        assert ref is not None
        path = Path(dir_store.root) / "candidates" / ref.lineage / f"{ref.gen}.ledger"
        raw = path.read_bytes()
        path.write_bytes(
            raw[: len(MAGIC)] + (VERSION + 1).to_bytes(2, "big") + raw[len(MAGIC) + 2 :]
        )
        from tap_ashby.ledger.store import file_sha256  # noqa: PLC0415

        # a state written by that other version agrees with its file: only the format differs
        state = {
            **first.commit,
            "ledger": {**first.commit["ledger"], "sha256": file_sha256(str(path))},
        }
        with caplog.at_level(logging.WARNING):
            run, tombstones = ledger_run(dir_store, state, [1])
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "candidates" in warnings[0]
        assert f"format version {VERSION + 1}" in warnings[0]
        assert tombstones == [] and run.commit["ledger"]["rows"] == 1

    def test_a_run_collects_stale_lineages_of_its_stream(
        self, dir_store: LedgerStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        started = gen_time(first.commit["ledger"]["gen"])
        assert started is not None
        put_generation(
            dir_store,
            "candidates",
            "orphan",
            stamp(started - GC_AGE - timedelta(hours=1)),
            tmp_path,
        )
        put_generation(
            dir_store, "candidates", "recent", stamp(started - timedelta(days=1)), tmp_path
        )
        with caplog.at_level(logging.INFO):
            second, _ = ledger_run(dir_store, first.commit, [1, 2])
        assert names_in(dir_store, "candidates", "orphan") == set()
        assert names_in(dir_store, "candidates", "recent")
        assert generations(dir_store, second.commit["ledger"]["lineage"])
        assert any("removed ledger lineage orphan" in r.getMessage() for r in caplog.records)


class TestConstantMemory:
    """Vanished keys are not gathered in a list before they are sent."""

    def test_tombstones_stream_while_the_scan_is_read(self, dir_store: LedgerStore) -> None:
        first, _ = ledger_run(dir_store, {}, list(range(100)))
        read = [0]

        def scan() -> Iterator[bytes]:
            for n in range(50, 100):
                read[0] += 1
                yield top(n)

        run = LedgerRun(dir_store, "candidates", ["id"], SCOPE, first.commit, LOG, 1, False)
        tombstones = run.close(replaced=None, live=None, current=scan(), reconciled=True)
        assert next(tombstones)["id"] == uid(0)
        assert read[0] < 50  # the first deletion left before the scan was read through
        assert len(list(tombstones)) == 49

    def test_moved_keys_spill_to_disk(
        self, dir_store: LedgerStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from tap_ashby.ledger import merge as merge_mod  # noqa: PLC0415

        monkeypatch.setattr(merge_mod, "CHUNK_ENTRIES", 7)  # a tiny threshold
        chunks: list[str] = []
        spill = merge_mod.SortedSpill._spill

        def counted(self: SortedSpill) -> None:
            spill(self)
            chunks.append(self._files[-1])

        monkeypatch.setattr(merge_mod.SortedSpill, "_spill", counted)
        first, _ = postings_run(dir_store, {}, {BOARD_A: list(range(40)), BOARD_B: []})
        _, deleted = postings_run(
            dir_store, first.commit, {BOARD_A: [], BOARD_B: list(range(0, 40, 2))}
        )
        assert deleted == sorted(uid(n) for n in range(1, 40, 2))
        assert chunks and not any(Path(c).exists() for c in chunks)  # spilled, then removed


def test_every_child_stream_says_how_its_key_is_scoped() -> None:
    """``pk_across_parents`` on every child row; False only where the key holds the parent
    (the injected parent id is a key field, so another parent means another row)."""
    for row in ROWS:
        if row.parent is None:
            assert row.pk_across_parents is None, row.stream
            continue
        assert isinstance(row.pk_across_parents, bool), row.stream
        if row.pk_across_parents is False:
            assert row.parent.inject in row.primary_keys, row.stream
    assert {r.stream for r in ROWS if r.pk_across_parents is False} == {
        "candidate_notes",
        "candidate_projects",
        "application_history",
        "application_criteria_evaluations",
        "candidate_files",
    }
