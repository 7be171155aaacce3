"""One generic stream class, driven by a row of the endpoint table.

Three shapes share it:
- a list (or single object) read in one pass per run, with the syncToken bookmark when the
  endpoint has one (``{"sync_token": ...}`` in the stream's or partition's state);
- a child stream (one call per parent record) that pages its parent's list itself, keeping
  the *parent's* syncToken as its own bookmark, so incremental runs call it only for parents
  that changed and its state never grows with the number of parents;
- partitioned passes (``surveyType`` values, report ids), each with its own bookmark.

A new token is put into state only after every record of the pass was emitted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import requests
from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context

from .client import AshbyStream
from .endpoints import ENDPOINTS, Endpoint
from .errors import (
    AshbyError,
    CursorExpired,
    ParentGone,
    PermissionMissing,
    SyncTokenRejected,
)
from .ledger import Ledger, entry, tombstones
from .pagination import AshbyPaginator

MAX_PASS_RESTARTS = 3


def schema_directory() -> Any:
    """Schemas ship inside the wheel (tap_ashby/schemas); a checkout keeps them at the top."""
    packaged = resources.files("tap_ashby").joinpath("schemas")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


SCHEMAS = SchemaDirectory(schema_directory())


def values_at(record: dict[str, Any], dotted: str) -> list[Any]:
    """Values at a dotted path; ``a[].b`` walks every item of list ``a``."""
    current: list[Any] = [record]
    for part in dotted.split("."):
        nxt: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            if part.endswith("[]"):
                nxt.extend(item.get(part[:-2]) or [])
            else:
                nxt.append(item.get(part))
        current = nxt
    return [v for v in current if v not in (None, "")]


class EndpointStream(AshbyStream):
    """A Singer stream for one row of the endpoint table."""

    # Records are parsed JSON already, so the SDK's conformance would only drop unknown
    # top-level fields; post_process does that with one set comparison per record (the
    # SDK's walk was the largest cost of the hot path: bench/README.md).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    schema = StreamSchema(SCHEMAS)

    def __init__(self, tap: Any, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.stream
        super().__init__(tap, name=endpoint.stream, path=endpoint.path)
        self.primary_keys = list(endpoint.primary_keys)
        self.selected_by_default = endpoint.selected_by_default
        self.skipped_reason: str | None = None
        self.stats = {"records": 0, "requests_before": 0, "passes": "full"}

    @property
    def permission(self) -> str:
        return self.endpoint.permission

    @property
    def emit_activate_version_messages(self) -> bool:
        # An incremental pass is a change set, never the whole table: a target must not take
        # it as a new table version and drop the rest.
        return False

    @property
    def partitions(self) -> list[dict] | None:
        ep = self.endpoint
        if ep.partition_param == "reportId":
            return [{"reportId": r} for r in self.config.get("report_ids") or []] or None
        if ep.partition_param:
            return [{ep.partition_param: v} for v in ep.partition_values]
        return None

    # request bodies -----------------------------------------------------------------------
    def _list_body(self, ep: Endpoint, partition: Context | None) -> dict[str, Any]:
        body = dict(ep.body)
        if partition:
            body.update(partition)
        start = self.config.get("start_date")
        if start and ep.created_after:
            parsed = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
            body["createdAfter"] = int(parsed.timestamp() * 1000)
        return body

    def _call(self, ep: Endpoint, body: dict[str, Any], sync_token: str | None = None,
              ) -> Context:
        return {"path": ep.path, "body": body, "paginated": ep.paginated,
                "sync_token": sync_token}

    # one pass over a list -----------------------------------------------------------------
    def _pass(self, ep: Endpoint, body: dict[str, Any], token: str | None,
              outcome: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every record of one pass; afterwards ``outcome`` holds the new token and whether
        the pass was full. Nothing goes into state here: the caller commits.

        Falls back to a full pass when the stored token is refused; restarts the pass when a
        cursor expires (records of the aborted pass may come twice: at least once).
        """
        token = token if ep.sync_token else None
        restarts = 0
        while True:
            paginator = AshbyPaginator()
            try:
                yield from self.paged_records(self._call(ep, body, token), paginator)
                break
            except SyncTokenRejected as err:
                if token is None:
                    raise
                self.logger.warning("%s: %s: the stored syncToken cannot be used (%s); "
                                    "doing a full pass", self.name, ep.path, err.code)
                token = None
            except CursorExpired as err:
                restarts += 1
                if restarts > MAX_PASS_RESTARTS:
                    raise
                self.logger.warning("%s: cursor expired mid-pass (%s); restarting the pass",
                                    self.name, err.code)
        outcome["token"] = paginator.sync_token if ep.sync_token else None
        outcome["full"] = token is None

    def _scan(self, ep: Endpoint, body: dict[str, Any], field: str) -> set[str]:
        """Values of ``field`` across a full pass of ``ep``, emitting nothing (reconcile).

        Several child streams share a parent: one scan per run serves them all.
        """
        cache = self._tap.scan_cache  # type: ignore[attr-defined]
        key = (ep.path, repr(sorted(body.items())), field)
        if key not in cache:
            cache[key] = {str(v) for rec in self._pass(ep, body, None, {})
                          for v in values_at(rec, field)}
        return cache[key]

    # deletes ------------------------------------------------------------------------------
    @property
    def ledgered(self) -> bool:
        """Whether this stream keeps a ledger to find deleted rows (see ledger.py)."""
        chosen = self.config.get("reconcile_streams")
        return chosen is None or self.name in chosen

    def _reconcile_due(self, state: dict[str, Any], ledger: Ledger | None) -> bool:
        if ledger is None or self.config.get("reconcile_now"):
            return True
        every = int(self.config.get("reconcile_every_n_runs", 7))
        return every > 0 and int(state.get("runs_since_reconcile", 0)) + 1 >= every

    def _close_ledger(self, before: Ledger | None, after: Ledger, gone: set[str],
                      reconciled: bool, state: dict[str, Any], commit: dict[str, Any],
                      ) -> Iterator[dict[str, Any]]:
        """Tombstones for ``gone`` (only when there was a ledger to compare with), then the
        new ledger and reconcile counter into ``commit``."""
        if before is not None:
            yield from self._tombstones(gone)
        commit["ledger"] = after.encode()
        commit["runs_since_reconcile"] = 0 if reconciled else \
            int(state.get("runs_since_reconcile", 0)) + 1
        if reconciled:
            self.stats["reconciled"] = True

    # records ------------------------------------------------------------------------------
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        if self.endpoint.partition_param == "reportId" and not context:
            self.logger.info("report_results: no report_ids configured; nothing to read")
            return
        state = self.get_context_state(context)
        commit: dict[str, Any] = {}
        try:
            if self.endpoint.parent is None:
                yield from self._list_records(context, state, commit)
            else:
                yield from self._child_records(state, commit)
        except PermissionMissing as err:
            if self.config.get("on_missing_permission", "skip") == "fail":
                raise
            self.skipped_reason = str(err)
            self.logger.warning("skipping stream %s: %s", self.name, err)
            return
        # Only now, with every record (and tombstone) of the run emitted, do the new token
        # and ledger enter the state: a run that dies earlier keeps the old ones.
        state.update(commit)

    def _list_records(self, context: Context | None, state: dict[str, Any],
                      commit: dict[str, Any]) -> Iterator[dict[str, Any]]:
        ep = self.endpoint
        outcome: dict[str, Any] = {}
        body = self._list_body(ep, context)
        records = self._pass(ep, body, state.get("sync_token"), outcome)
        part = ep.partition_param
        if part and context:  # e.g. reportId: the row does not carry what it was asked for
            records = ({**rec, part: rec.get(part) or context[part]} for rec in records)
        if not self.ledgered:
            yield from records
        else:
            ledger = Ledger.decode(state.get("ledger"))
            due = self._reconcile_due(state, ledger)
            seen: set[str] = set()
            for rec in records:
                seen.add(entry("", rec, self.primary_keys))
                yield rec
            if outcome["full"]:
                current: set[str] | None = seen
            elif due:
                (pk,) = self.primary_keys  # ledgered lists are keyed on one field
                current = {entry("", {pk: v}, [pk]) for v in self._scan(ep, body, pk)}
            else:
                current = None
            new = ledger or Ledger()
            if current is None:
                for item in seen:
                    new.add(item)
                gone: set[str] = set()
            else:
                gone = (set(new.by_parent.get("", set())) | seen) - current
                new.replace_parent("", current)
            yield from self._close_ledger(ledger, new, gone, current is not None, state, commit)
        self._commit_pass(outcome, commit, "sync_token")

    def _child_records(self, state: dict[str, Any], commit: dict[str, Any],
                       ) -> Iterator[dict[str, Any]]:
        """Children of every parent in the parent's pass (changed parents, when incremental).

        The parent list is paged here, holding the parent's token in this stream's state
        under ``parent_sync_token``; child calls run on a bounded pool and come back in
        parent order. With a ledger, children that vanished from a changed parent, and the
        children of parents that no longer exist (at a reconcile), get tombstones.
        """
        ep = self.endpoint
        assert ep.parent is not None
        parent_ep = ENDPOINTS[ep.parent.stream]
        outcome: dict[str, Any] = {}
        parents = self._pass(parent_ep, self._list_body(parent_ep, None),
                             state.get("parent_sync_token"), outcome)
        keys = (v for rec in parents for v in values_at(rec, ep.parent.field))
        ledger = Ledger.decode(state.get("ledger")) if self.ledgered else None
        due = self.ledgered and self._reconcile_due(state, ledger)
        new = ledger or Ledger()
        gone: set[str] = set()
        seen_parents: set[str] = set()
        for key, children in self._fan_out(ep, keys):
            items = set()
            for child in children:
                if ep.parent.inject and child.get(ep.parent.inject) is None:
                    child[ep.parent.inject] = key
                items.add(entry(key, child, self.primary_keys))
                yield child
            if self.ledgered:
                seen_parents.add(str(key))
                gone |= new.replace_parent(str(key), items)
        if self.ledgered:
            live = seen_parents if outcome["full"] else (
                self._scan(parent_ep, self._list_body(parent_ep, None), ep.parent.field)
                if due else None)
            if live is not None:
                gone |= new.drop_parents_except(live)
            yield from self._close_ledger(ledger, new, gone, live is not None, state, commit)
        self._commit_pass(outcome, commit, "parent_sync_token")

    def _commit_pass(self, outcome: dict[str, Any], commit: dict[str, Any], key: str) -> None:
        """The pass's new token into ``commit`` under ``key``; the summary's pass label."""
        if outcome.get("token"):
            commit[key] = outcome["token"]
        self.stats["passes"] = "full" if outcome.get("full") else "incremental"

    def _tombstones(self, gone: set[str]) -> Iterator[dict[str, Any]]:
        if gone:
            self.logger.info("%s: %d rows no longer exist in Ashby; sending deletions",
                             self.name, len(gone))
        yield from tombstones(gone, list(self.primary_keys))

    def _children_of(self, ep: Endpoint, key: Any) -> list[dict[str, Any]]:
        assert ep.parent is not None
        try:
            return list(self.request_records(self._call(ep, {**ep.body, ep.parent.param: key})))
        except ParentGone:
            return []  # deleted between the parent list and this call: nothing to load
        except PermissionMissing:
            raise
        except (FatalAPIError, RetriableAPIError, requests.RequestException) as err:
            # No silent partial child tables: the run fails, naming the parent.
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise AshbyError(f"{self.name}: could not read the children of "
                             f"{ep.parent.param}={key}: {detail}") from err

    def _fan_out(self, ep: Endpoint, keys: Iterator[Any],
                 ) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
        workers = max(1, int(self.config.get("max_concurrency", 4)))
        if workers == 1:
            for key in keys:
                yield key, self._children_of(ep, key)
            return
        window: deque[tuple[Any, Future]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.name}") as pool:
            try:
                for key in keys:
                    window.append((key, pool.submit(self._children_of, ep, key)))
                    if len(window) >= workers * 4:
                        k, fut = window.popleft()
                        yield k, fut.result()
                while window:
                    k, fut = window.popleft()
                    yield k, fut.result()
            finally:
                for _, fut in window:
                    fut.cancel()

    @cached_property
    def known_fields(self) -> frozenset[str]:
        return frozenset(self.schema["properties"])

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        self.stats["records"] += 1
        if not row.keys() <= self.known_fields:  # a field Ashby added since the schema
            row = {k: v for k, v in row.items() if k in self.known_fields}
        if "_sdc_deleted_at" in row:
            self.stats["deleted"] = self.stats.get("deleted", 0) + 1
        for key in self.primary_keys:
            if row.get(key) in (None, ""):
                raise AshbyError(f"{self.name}: a record from /{self.endpoint.path} has no "
                                 f"'{key}' (its primary key); the run cannot be trusted")
        return row

    def sync(self, context: Context | None = None) -> None:  # type: ignore[override]
        started = time.monotonic()
        super().sync(context)
        self.stats["seconds"] = round(time.monotonic() - started, 3)
