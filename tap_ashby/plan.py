"""The plan of a run: which calls to make. Pure: no HTTP, no files, no clock of its own.

``make_plan`` turns the endpoint table, the selection, Singer state, the settings and what
the ledger store holds into one ``StreamPlan`` per selected stream, in the order the run
writes them. Every "should we call Ashby" decision lives here:

- which list passes run, per partition, from which syncToken (None: a full pass). A parent
  list's pass starts from the oldest bookmark of the parent and of its selected children,
  so one pass serves them all;
- which parents a child stream lists: the parents in its parent's pass of this run (when
  the parent is synced too, at any depth), else its own read of the parent list; every
  parent when its ledger must be rebuilt or the pass is full; plus a rolling refresh slice;
- where an interrupted child pass resumes (its parents are visited in key order);
- which passes need the run's id scan of a parent list (reconcile, refresh, rebuild);
- which streams make no call at all (report_results without report_ids).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .client import Call
from .endpoints import Endpoint
from .settings import Settings

AUDIT_LOG_MAX_DAYS = 540  # auditLog.list serves at most 18 months per request


@dataclass(frozen=True)
class ListPass:
    """One pass over a top-level list (one partition)."""

    partition: dict[str, Any] | None
    call: Call
    token: str | None  # None: a full pass
    reconcile: bool  # scan every current id afterwards to find deletions


@dataclass(frozen=True)
class Fanout:
    """How a child stream finds the parents whose children it lists."""

    parent: str  # the parent stream
    shared: bool  # parent keys come from the parent's own pass in this run
    token: str | None  # the parent-list token the pass starts from (None: full)
    token_since: str  # when that token was issued (orders bookmarks: oldest first)
    every_parent: bool  # list the children of every parent, not only of changed ones
    refresh: tuple[int, int] | None  # (bucket, buckets): also the parents in this slice
    resume_after: str | None  # an interrupted pass resumes after this parent key
    reconcile: bool  # the ledger compares against every live parent
    # The parents an interrupted pass had left, kept aside in the ledger store: the resumed
    # pass visits them (after ``resume_after``) plus what changed since ``token``, instead
    # of paging the whole parent list again.
    resume_keys: str | None = None

    @property
    def needs_scan(self) -> bool:
        """Whether the run's id scan of the parent list is needed (an incremental parent
        pass lists only changed parents; every current one is needed for a rebuild, a
        refresh slice or a reconcile)."""
        return self.token is not None and (
            self.every_parent or self.refresh is not None or self.reconcile
        )


@dataclass(frozen=True)
class StreamPlan:
    name: str
    endpoint: Endpoint
    order: int  # position in the run: the scheduler's priority
    ledgered: bool
    skip: str | None = None  # why this stream makes no call at all
    passes: tuple[ListPass, ...] = ()  # top-level lists
    fanout: Fanout | None = None  # child streams
    children: tuple[str, ...] = ()  # selected child streams reading keys from this pass

    @property
    def resumed(self) -> bool:
        return self.fanout is not None and self.fanout.resume_after is not None


@dataclass(frozen=True)
class Plan:
    streams: dict[str, StreamPlan] = field(default_factory=dict)

    def __getitem__(self, name: str) -> StreamPlan:
        return self.streams[name]

    @property
    def order(self) -> list[str]:
        return list(self.streams)


def bucket_of(key: str, buckets: int) -> int:
    """The refresh slice of a parent key: stable across runs and machines, even in size."""
    return zlib.crc32(key.encode()) % buckets


def call_for(
    endpoint: Endpoint,
    settings: Settings,
    partition: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    **params: Any,
) -> Call:
    """The request of an endpoint: fixed body, partition, filters, params."""
    body = dict(endpoint.body)
    body.update(partition or {})
    body.update(params)
    start = settings.start_date
    if start and endpoint.created_after:
        body["createdAfter"] = int(parse_time(start).timestamp() * 1000)
    if endpoint.window:
        earliest = (now or datetime.now(timezone.utc)) - timedelta(days=AUDIT_LOG_MAX_DAYS)
        begin = max(parse_time(start), earliest) if start else earliest
        body[endpoint.window] = begin.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return Call(endpoint.path, body, endpoint.paginated, endpoint.permission)


def scope_of(endpoint: Endpoint, settings: Settings, partition: Mapping[str, Any] | None) -> str:
    """Identity of what a ledger was built from: API root, endpoint, filters, keys."""
    import json  # noqa: PLC0415 (only ledgered runs need it)

    from .ledger import normalize_base_url  # noqa: PLC0415

    body = dict(call_for(endpoint, settings, partition).body)
    body.pop("startDate", None)  # a moving window, not a filter
    raw = json.dumps(
        [
            normalize_base_url(settings.base_url),  # a trailing slash is the same account
            endpoint.stream,
            body,
            endpoint.parent.field if endpoint.parent else "",
            list(endpoint.primary_keys),
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def parse_time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def partitions_of(endpoint: Endpoint, settings: Settings) -> list[dict[str, Any]] | None:
    """The partitions of a stream (one pass and one bookmark each), or None."""
    if endpoint.partition_param == "reportId":
        return [{"reportId": r} for r in settings.report_ids]
    if endpoint.partition_param:
        return [{endpoint.partition_param: v} for v in endpoint.partition_values]
    return None


def reconcile_due(settings: Settings, state: Mapping[str, Any], ledger_ok: bool) -> bool:
    """Whether this pass reconciles: the ledger's one rule, applied to the settings and the
    stream's state (``LedgerRun.due`` applies the same function)."""
    from .ledger import reconcile_due as rule  # noqa: PLC0415 (the ledger loads lazily)

    runs = int(state.get("runs_since_reconcile", 0) or 0)
    return rule(runs, ledger_ok, settings.reconcile_every_n_runs, settings.reconcile_now)


def is_ledgered(endpoint: Endpoint, settings: Settings) -> bool:
    chosen = settings.reconcile_streams
    return endpoint.reconcile and (chosen is None or endpoint.stream in chosen)


def make_plan(
    rows: Sequence[Endpoint],
    selected: set[str],
    states: Mapping[str, Mapping[str, Any]],
    settings: Settings,
    ledger_ok: Mapping[str, bool],
    partition_states: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    resume_ok: Mapping[str, bool] | None = None,
) -> Plan:
    """One ``StreamPlan`` per selected stream, in table order (parents before children).

    ``states``: each stream's own state (children: their bookmark, refresh counter and
    resume position). ``partition_states``: per ``(stream, repr(partition))``.
    ``ledger_ok``: per ledgered stream (or ``stream/repr(partition)``), whether its last
    generation can be used; a missing entry counts as usable. ``resume_ok``: per child stream,
    whether the parent keys its unfinished pass kept aside can be read back.
    """
    by_name = {row.stream: row for row in rows}
    chosen = [row for row in rows if row.stream in selected]
    children_of: dict[str, list[str]] = {}
    for row in chosen:
        if row.parent and row.parent.stream in selected:
            children_of.setdefault(row.parent.stream, []).append(row.stream)
    plans: dict[str, StreamPlan] = {}

    def kept_keys(child: str) -> Mapping[str, Any] | None:
        """The parent keys an unfinished pass kept aside, when they can be read back."""
        pending = states.get(child, {}).get("resume")
        keys = pending.get("keys") if isinstance(pending, Mapping) else None
        if isinstance(keys, Mapping) and (resume_ok or {}).get(child):
            return keys
        return None

    def child_mark(child: str) -> tuple[str | None, str]:
        """The parent-list bookmark a child builds on: a pending pass's kept keys are as of
        their token; without them, the pending pass starts over from its own start."""
        state = states.get(child, {})
        pending = state.get("resume")
        keys = kept_keys(child)
        if keys is not None:
            return keys.get("token"), str(keys.get("since") or "")
        if isinstance(pending, Mapping):
            return pending.get("token"), str(pending.get("since") or "")
        return state.get("parent_sync_token"), str(state.get("token_since") or "")

    def start_mark(row: Endpoint, state: Mapping[str, Any]) -> tuple[str | None, str]:
        """The oldest of this list's bookmark and its selected children's: one pass
        serves them all (the parent re-sends a few records)."""
        if not row.sync_token:
            return None, ""
        marks = [(state.get("sync_token"), str(state.get("token_since") or ""))]
        marks += [child_mark(c) for c in children_of.get(row.stream, [])]
        if any(token is None for token, _ in marks):
            return None, ""
        return min(marks, key=lambda m: m[1])

    for order, row in enumerate(chosen):
        ledgered = is_ledgered(row, settings)
        kids = tuple(children_of.get(row.stream, []))
        if row.parent is None:
            parts = partitions_of(row, settings)
            if parts == []:
                plans[row.stream] = StreamPlan(
                    row.stream, row, order, ledgered, skip="no report_ids configured"
                )
                continue
            passes = []
            for part in [*parts] if parts else [None]:
                key = (row.stream, repr(part))
                state = (
                    (partition_states or {}).get(key, {}) if part else states.get(row.stream, {})
                )
                ok = ledger_ok.get(f"{row.stream}/{part!r}" if part else row.stream, True)
                token, _ = start_mark(row, state)
                passes.append(
                    ListPass(
                        part,
                        call_for(row, settings, part),
                        token,
                        reconcile=ledgered
                        and token is not None
                        and reconcile_due(settings, state, ok),
                    )
                )
            plans[row.stream] = StreamPlan(
                row.stream, row, order, ledgered, passes=tuple(passes), children=kids
            )
            continue
        parent = by_name[row.parent.stream]
        state = states.get(row.stream, {})
        ok = ledger_ok.get(row.stream, True)
        shared = parent.stream in selected
        pending = state.get("resume") if isinstance(state.get("resume"), Mapping) else None
        if not parent_incremental(parent):
            token, since = None, ""
        elif shared:
            token, since = start_mark(parent, states.get(parent.stream, {}))
        else:
            token, since = child_mark(row.stream)
        kept = kept_keys(row.stream)
        if kept is not None:  # the kept keys already hold the rebuild or refresh parents
            every, refresh, after = False, None, pending.get("after") if pending else None
        elif pending is not None:
            every = bool(pending.get("every"))
            refresh = tuple(pending["refresh"]) if pending.get("refresh") else None
            after = pending.get("after")
        else:
            every = ledgered and not ok
            buckets = settings.child_refresh_every_n_runs
            refresh = None
            if buckets > 0 and token is not None and not every:
                refresh = (int(state.get("refresh_run", 0) or 0) % buckets, buckets)
            after = None
        fan = Fanout(
            parent=parent.stream,
            shared=shared,
            token=token,
            token_since=since,
            every_parent=every,
            refresh=refresh,
            resume_after=after,
            reconcile=ledgered and token is not None and reconcile_due(settings, state, ok),
            resume_keys=str(kept["path"]) if kept is not None else None,
        )
        plans[row.stream] = StreamPlan(row.stream, row, order, ledgered, fanout=fan, children=kids)
    return Plan(plans)


def parent_incremental(parent: Endpoint) -> bool:
    """Whether a parent's pass can be incremental (a syncToken list at the top)."""
    return parent.parent is None and parent.sync_token
