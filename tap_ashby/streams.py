"""One generic stream class, driven by a row of the endpoint table.

Three shapes share it:
- a list read in one pass per run, incremental through the syncToken bookmark
  (``{"sync_token": ..., "token_since": ...}`` in the stream's or partition's state);
- a child stream (one call per parent record). It reads its parent keys from the parent
  stream's pass of this run when the parent is synced too (one pass per parent list), else
  from its own pass of the parent list, and keeps that pass's token as ``parent_sync_token``;
- partitioned passes (``surveyType`` values, report ids), each with its own bookmark.

A new token (and ledger generation) enters state only after every record of the pass and
every tombstone were emitted.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from singer_sdk import SchemaDirectory, Stream, StreamSchema
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context

from .client import TRANSPORT_ERRORS, Call
from .endpoints import Endpoint, values_at
from .errors import AshbyError, InvalidInput, ParentGone, PermissionMissing
from .ledger import LedgerRun, SortedSpill, decode_key, encode_key, normalize_base_url, now_iso
from .passes import PassOutcome, Rows, read_pass

if TYPE_CHECKING:
    from .run import SyncRun

AUDIT_LOG_MAX_DAYS = 540  # auditLog.list serves at most 18 months per request


def schema_directory() -> Any:
    """Schemas ship inside the wheel (tap_ashby/schemas); a checkout keeps them at the top."""
    packaged = resources.files("tap_ashby").joinpath("schemas")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


SCHEMAS = SchemaDirectory(schema_directory())


class EndpointStream(Stream):
    """A Singer stream for one row of the endpoint table."""

    # Records are parsed JSON already; post_process drops unknown top-level fields with one
    # set comparison (the SDK's conformance walk was the largest cost of the hot path).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    schema = StreamSchema(SCHEMAS)

    def __init__(self, tap: Any, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        super().__init__(tap, name=endpoint.stream)
        self.primary_keys = list(endpoint.primary_keys)
        self.selected_by_default = endpoint.selected_by_default
        self.skipped_reason: str | None = None
        self.stats: dict[str, Any] = {
            "records": 0,
            "deleted": 0,
            "passes": "full",
            "reconciled": False,
            "seconds": 0.0,
            "new_fields": set(),
        }

    @property
    def run(self) -> SyncRun:
        return self._tap.run  # type: ignore[attr-defined]

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

    @cached_property
    def parent_stream(self) -> EndpointStream | None:
        parent = self.endpoint.parent
        return self._tap.streams[parent.stream] if parent else None  # type: ignore[return-value]

    @cached_property
    def child_streams_selected(self) -> list[EndpointStream]:
        """Selected streams that read their parent keys from this stream's pass."""
        return [
            s
            for s in self._tap.streams.values()
            if isinstance(s, EndpointStream)
            and s.selected
            and s.endpoint.parent
            and s.endpoint.parent.stream == self.name
        ]

    @property
    def ledgered(self) -> bool:
        """Whether this stream keeps a ledger to find deleted rows (see ledger.py)."""
        chosen = self.config.get("reconcile_streams")
        return self.endpoint.reconcile and (chosen is None or self.name in chosen)

    # requests -----------------------------------------------------------------------------
    def call(self, partition: Context | None = None, **params: Any) -> Call:
        """The request of this stream's endpoint: fixed body, partition, filters, params."""
        ep = self.endpoint
        body = dict(ep.body)
        body.update(partition or {})
        body.update(params)
        start = self.config.get("start_date")
        if start and ep.created_after:
            body["createdAfter"] = int(_parse_time(start).timestamp() * 1000)
        if ep.window:
            earliest = datetime.now(timezone.utc) - timedelta(days=AUDIT_LOG_MAX_DAYS)
            begin = max(_parse_time(start), earliest) if start else earliest
            body[ep.window] = begin.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return Call(ep.path, body, ep.paginated, ep.permission)

    def scope(self, partition: Context | None) -> str:
        """Identity of what a ledger was built from: API root (normalized: a trailing slash
        is the same account), endpoint, filters, parent field and primary key."""
        raw = json.dumps(
            [
                normalize_base_url(self.config["base_url"]),
                self.name,
                self.call(partition).body,
                self.endpoint.parent.field if self.endpoint.parent else "",
                list(self.primary_keys),
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def start_token(self, state: dict[str, Any]) -> tuple[str | None, Any]:
        """The token this stream's pass starts from: its own, or the oldest of its selected
        children's (one pass serves them all; the parent re-emits a few records)."""
        if not self.endpoint.sync_token:
            return None, None
        marks = [(state.get("sync_token"), state.get("token_since"))]
        marks += [
            (
                c.get_context_state(None).get("parent_sync_token"),
                c.get_context_state(None).get("token_since"),
            )
            for c in self.child_streams_selected
        ]
        if any(token is None for token, _ in marks):
            return None, None
        return min(marks, key=lambda m: str(m[1] or ""))

    def source_records(
        self, token: str | None, outcome: PassOutcome, partition: Context | None = None
    ) -> Iterator[Rows]:
        """This stream's rows without emitting them (for children and reconcile scans)."""
        if self.parent_stream is None:
            yield from read_pass(
                self.run.client, self.call(partition), token, self.name, self.logger, outcome
            )
            return
        assert self.endpoint.parent is not None
        keys = (
            v
            for rows in self.parent_stream.source_records(token, outcome)
            for rec in rows
            for v in values_at(rec, self.endpoint.parent.field)
        )
        for _, children in self.fan_out(keys):
            yield children

    # records ------------------------------------------------------------------------------
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        started = datetime.now(timezone.utc)
        self.run.start(
            [s for s in self._tap.streams.values() if isinstance(s, EndpointStream)],
            self,
        )
        if self.endpoint.partition_param == "reportId" and not context:
            self.logger.info("report_results: no report_ids configured; nothing to read")
            return
        try:
            if self.parent_stream is None:
                yield from self._list_records(context)
            else:
                yield from self._child_records()
        except PermissionMissing as err:
            if self.config["on_missing_permission"] == "fail":
                raise
            self.skipped_reason = str(err)
            self.logger.warning("skipping stream %s: %s", self.name, err)
        except InvalidInput as err:
            part = self.endpoint.partition_param
            if not (part and context and part != "reportId"):
                raise
            # A partition value Ashby no longer accepts (surveyType) is skipped, not fatal.
            self.logger.warning(
                "%s: Ashby refused %s=%s; skipping it (%s)", self.name, part, context[part], err
            )
        finally:
            self.stats["seconds"] += (datetime.now(timezone.utc) - started).total_seconds()

    def _ledger(self, state: dict[str, Any], partition: Context | None) -> LedgerRun | None:
        if not self.ledgered:
            return None
        return LedgerRun(
            self.run.ledgers,
            self.name,
            list(self.primary_keys),
            self.scope(partition),
            state,
            self.logger,
            int(self.config["reconcile_every_n_runs"]),
            bool(self.config["reconcile_now"]),
            across_parents=self.endpoint.pk_across_parents is not False,
        )

    def _list_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        state = self.get_context_state(context)
        pages, outcome, since = self.run.take_pass(self, context, state)
        ledger = self._ledger(state, context)
        spools = self.run.open_spools(self)
        part = self.endpoint.partition_param
        for rows in pages:
            for rec in rows:
                if part and context and rec.get(part) is None:  # reportId: not in the row
                    rec[part] = context[part]
                if ledger:
                    ledger.add("", rec)
                spools.add(rec)
                yield rec
        commit: dict[str, Any] = {}
        if ledger:
            current = None
            if not outcome.full and ledger.due:
                (pk,) = self.primary_keys  # ledgered lists are keyed on one field
                current = (encode_key("") + key for key in self.run.scan(self, pk, context))
            reconciled = outcome.full or current is not None
            yield from ledger.close(
                replaced=None if reconciled else [],
                live=None,
                current=current,
                reconciled=reconciled,
            )
            commit.update(ledger.commit)
            self.stats["reconciled"] = ledger.reconciled
        if outcome.token:
            commit.update(sync_token=outcome.token, token_since=since)
        self.stats["passes"] = "full" if outcome.full else "incremental"
        self.run.publish_pass(self, outcome, since, spools)
        state.update(commit)

    def _child_records(self) -> Iterator[dict[str, Any]]:
        """Children of every parent in the parent's pass (changed parents, when incremental).

        Every ``child_refresh_every_n_runs`` runs, the children of every parent are listed
        again: Ashby may not list a parent whose children changed (UNCONFIRMED).
        """
        ep, parent = self.endpoint, self.parent_stream
        assert ep.parent is not None and parent is not None
        state = self.get_context_state(None)
        ledger = self._ledger(state, None)
        every_parent = self.lists_every_parent(state, ledger)
        shared = self.run.shared_keys(self)
        fanned = None
        if shared is None:  # the parent is not synced this run: read its list here
            outcome, since = PassOutcome(), now_iso()
            full = every_parent or (ledger is not None and ledger.due)
            token = None if full else state.get("parent_sync_token")
            keys: Iterable[Any] = (
                v
                for rows in parent.source_records(token, outcome)
                for rec in rows
                for v in values_at(rec, ep.parent.field)
            )
        else:
            keys, outcome, since = shared
            fanned = self.run.take_children(self)
        live = None
        if (
            shared is not None
            and not outcome.full
            and (every_parent or (ledger is not None and ledger.due))
        ):
            # every current parent, from the run's one id scan of the parent list (shared
            # with the other child streams and reconciles of this parent)
            live = self.run.scan(parent, ep.parent.field)
            if every_parent:
                if fanned is not None:  # started ahead over the changed parents only
                    fanned.close()  # type: ignore[attr-defined]
                fanned = None
                keys = (decode_key(k) for k in live)
        replaced = SortedSpill(self.run.workdir)
        delivered: set[str] = set()
        for key, children in fanned or self.fan_out(keys):
            replaced.add(encode_key(str(key)))
            for child in children:
                if ep.parent.inject and child.get(ep.parent.inject) is None:
                    child[ep.parent.inject] = key
                if ep.dedupe:  # the same posting on two boards: deliver it once
                    ident = str(child.get(self.primary_keys[0]))
                    if ident in delivered:
                        continue
                    delivered.add(ident)
                if ledger:
                    ledger.add(key, child)
                yield child
        commit: dict[str, Any] = {}
        if ledger:
            reconciled = outcome.full or live is not None
            yield from ledger.close(
                replaced=None if outcome.full else replaced, live=live, reconciled=reconciled
            )
            commit.update(ledger.commit)
            self.stats["reconciled"] = ledger.reconciled
        if outcome.token:
            commit.update(parent_sync_token=outcome.token, token_since=since)
        commit["runs_since_refresh"] = (
            0 if outcome.full or every_parent else int(state.get("runs_since_refresh", 0)) + 1
        )
        self.stats["passes"] = "full" if outcome.full else "incremental"
        state.update(commit)

    # fan-out ------------------------------------------------------------------------------
    def _children_of(self, key: Any) -> Rows:
        ep = self.endpoint
        assert ep.parent is not None
        call = self.call(**{ep.parent.param: key})
        try:
            return [
                rec for page in self.run.client.pages(call, None, self.name) for rec in page.records
            ]
        except ParentGone:
            return []  # deleted between the parent list and this call: nothing to load
        except (PermissionMissing, InvalidInput):
            raise
        except (FatalAPIError, RetriableAPIError, *TRANSPORT_ERRORS) as err:
            # No silent partial child tables: the run fails, naming the parent.
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise AshbyError(
                f"{self.name}: could not read the children of {ep.parent.param}={key}: {detail}"
            ) from err

    def lists_every_parent(self, state: dict[str, Any], ledger: LedgerRun | None) -> bool:
        """Whether this run lists the children of every parent, not only of those that
        changed: a refresh is due (``child_refresh_every_n_runs``), or the ledger must be
        rebuilt (missing or unusable: one request per parent, as on a first run)."""
        every = int(self.config["child_refresh_every_n_runs"])
        refresh = every > 0 and int(state.get("runs_since_refresh", 0)) + 1 >= every
        return refresh or (ledger is not None and ledger.old_path is None)

    def fans_out_changed_parents(self, outcome: PassOutcome) -> bool:
        """Whether the fan-out over the shared pass's keys can start before this stream
        runs (a ledger that must be rebuilt is only found then; that fan-out is dropped)."""
        return outcome.full or not self.lists_every_parent(self.get_context_state(None), None)

    def fan_out(self, keys: Iterable[Any]) -> Iterator[tuple[Any, Rows]]:
        """(key, children) in key order; calls run on a bounded pool."""
        workers = int(self.config["max_concurrency"])
        keys = iter(keys)
        if workers == 1:
            for key in keys:
                yield key, self._children_of(key)
            return
        window: deque[tuple[Any, Future]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix=self.name) as pool:
            try:
                for key in keys:
                    window.append((key, pool.submit(self._children_of, key)))
                    if len(window) >= workers * 4:
                        k, fut = window.popleft()
                        yield k, fut.result()
                while window:
                    k, fut = window.popleft()
                    yield k, fut.result()
            finally:
                for _, fut in window:
                    fut.cancel()

    # per record ---------------------------------------------------------------------------
    @cached_property
    def known_fields(self) -> frozenset[str]:
        return frozenset(self.schema["properties"])

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        self.stats["records"] += 1
        if not row.keys() <= self.known_fields:  # a field Ashby added since the schema
            new = row.keys() - self.known_fields
            if not new <= self.stats["new_fields"]:
                self.stats["new_fields"] |= new
                self.logger.warning(
                    "%s: Ashby sends field(s) %s that the schema does not "
                    "have; they are not loaded (see the README: new fields)",
                    self.name,
                    ", ".join(sorted(new)),
                )
            row = {k: v for k, v in row.items() if k in self.known_fields}
        if "_sdc_deleted_at" in row:
            self.stats["deleted"] += 1
        for key in self.primary_keys:
            if row.get(key) in (None, ""):
                raise AshbyError(
                    f"{self.name}: a record from /{self.endpoint.path} has no "
                    f"'{key}' (its primary key); the run cannot be trusted"
                )
        return row


def _parse_time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
