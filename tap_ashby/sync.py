"""One sync run carried out: the plan's passes on the scheduler, keys handed between passes.

``SyncRun`` is what the streams ask for their data. It knows the plan, the client, the
scheduler and the ledger store, and never the stream objects: a stream hands it records'
keys (``spool``) and says when its pass ended (``pass_done``); it hands back pages
(``list_pass``) and ``(parent key, children)`` in key order (``child_pass``).

- Every planned list pass is submitted at the start, in run order: passes of later streams
  are read ahead with the capacity the current stream leaves.
- A child pass starts as soon as its parents are known (its parent's pass ended, and the
  parent id scan where the plan needs one), ahead of its turn.
- A child pass visits its parents sorted by key, so its position can be kept in state and
  a stopped or killed run resumes after the last parent whose children were written.
"""

from __future__ import annotations

import atexit
import heapq
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from .client import TRANSPORT_ERRORS, AshbyClient, Call
from .endpoints import ENDPOINTS, Endpoint, values_at
from .errors import (
    AshbyError,
    AuthenticationError,
    InvalidInput,
    ParentGone,
    PermissionMissing,
    VersionRejected,
)
from .ledger import SortedSpill, decode_key, encode_key, now_iso
from .passes import PassOutcome, Rows, read_pass
from .plan import Fanout, ListPass, Plan, bucket_of, call_for, scope_of
from .scheduler import FanOutJob, PassJob, Scheduler
from .settings import Settings
from .throttle import RequestBudget

KEEP_ASIDE_EARLY = 10_000  # a child pass this long keeps its parents aside when it starts
PROGRESS_SECONDS = 30.0  # one progress line per long pass this often
BUDGET_BINDS = 0.9  # at this share of the budget's rate, the budget is what limits


@dataclass
class KeyFile:
    """Parent keys of one child pass, in visiting order, one per line on disk."""

    path: str
    count: int

    def __iter__(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n")


@dataclass
class ChildPass:
    """What a child stream consumes: its fan-out and what the pass is built on."""

    job: FanOutJob[Rows]
    outcome: PassOutcome  # of the parent pass the keys came from
    since: str
    total: int  # parents to visit in this run
    live: SortedSpill | None  # every current parent (sorted, encoded), when scanned
    fanout: Fanout
    keys: KeyFile | None = None  # the parents visited, in order (kept aside at a cut)
    kept: dict[str, Any] | None = None  # where they were kept aside, once they were


@dataclass
class Progress:
    """Done/total, request rate, whether the budget binds, and an ETA: one line per 30 s."""

    name: str
    total: int | None
    client: AshbyClient
    per_minute: int
    logger: logging.Logger
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    done: int = 0
    requests0: int = 0

    def __post_init__(self) -> None:
        self.requests0 = self.client.total_requests()

    def step(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        self.logger.info("progress %s", self.line(now), extra={"progress": self.fields(now)})

    def fields(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self.started, 1e-9)
        rps = (self.client.total_requests() - self.requests0) / elapsed
        binds = bool(self.per_minute) and rps >= BUDGET_BINDS * self.per_minute / 60
        rate = self.done / elapsed
        left = (self.total - self.done) if self.total is not None else None
        eta = left / rate if left is not None and rate > 0 else None
        return {
            "stream": self.name,
            "done": self.done,
            "total": self.total,
            "requests_per_second": round(rps, 2),
            "budget_binds": binds,
            "eta_seconds": round(eta) if eta is not None else None,
        }

    def line(self, now: float) -> str:
        f = self.fields(now)
        total = f"/{f['total']}" if f["total"] is not None else ""
        eta = f", ETA {_duration(f['eta_seconds'])}" if f["eta_seconds"] is not None else ""
        binds = "the budget binds" if f["budget_binds"] else "below the budget"
        return (
            f"{self.name}: {self.done}{total} done, {f['requests_per_second']:.1f} req/s "
            f"({binds}){eta}"
        )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class SyncRun:
    """Per-run shared machinery; created by the tap once the plan is made."""

    def __init__(self, settings: Settings, logger: logging.Logger) -> None:
        self.settings, self.logger = settings, logger
        self.plan = Plan()
        self.budget = RequestBudget(settings.requests_per_minute, settings.max_concurrency)
        self.client = AshbyClient(asdict(settings), self.budget, logger)
        deadline = time.monotonic() + settings.max_run_seconds if settings.max_run_seconds else None
        self.scheduler = Scheduler(settings.max_concurrency, self.budget, deadline)
        self.workdir = tempfile.mkdtemp(prefix="tap-ashby-")
        atexit.register(shutil.rmtree, self.workdir, True)
        self._ledgers: Any = None
        self._lists: dict[tuple[str, str], tuple[PassJob[Rows], PassOutcome, str]] = {}
        self._scans: dict[tuple[str, str, str], tuple[PassJob[None], SortedSpill]] = {}
        self._spools: dict[str, SortedSpill] = {}  # child stream -> keys of its parent's pass
        self._done: dict[str, tuple[PassOutcome, str]] = {}  # stream -> how its pass ended
        self._children: dict[str, ChildPass] = {}  # started ahead
        self.left: dict[str, int] = {}  # parents not visited, per cut child pass
        self._ledger_runs: dict[str, Any] = {}

    # ledgers ------------------------------------------------------------------------------
    def open_ledgers(
        self, wanted: Iterable[tuple[Endpoint, Any, dict[str, Any]]]
    ) -> dict[str, bool]:
        """Open the last ledger generation of every ledgered pass ``(endpoint, partition,
        state)``; returns, per pass, whether it can be used (the plan's input)."""
        from .ledger import LedgerRun  # noqa: PLC0415 (only ledgered runs need it)

        usable: dict[str, bool] = {}
        for endpoint, partition, state in wanted:
            name = ledger_key(endpoint.stream, partition)
            ledger = LedgerRun(
                self.ledgers,
                endpoint.stream,
                list(endpoint.primary_keys),
                scope_of(endpoint, self.settings, partition),
                state,
                self.logger,
                self.settings.reconcile_every_n_runs,
                self.settings.reconcile_now,
                across_parents=endpoint.pk_across_parents is not False,
            )
            self._ledger_runs[name] = ledger
            usable[name] = ledger.old_path is not None
        return usable

    def ledger_for(self, stream: str, partition: Any) -> Any:
        """This pass's ledger (opened by ``open_ledgers``), or None for unledgered ones."""
        return self._ledger_runs.pop(ledger_key(stream, partition), None)

    @property
    def ledgers(self) -> Any:
        """The ledger store, opened on first use (full-table runs never import fsspec)."""
        if self._ledgers is None:
            from .ledger import LedgerStore, default_ledger_uri  # noqa: PLC0415

            uri = self.settings.ledger_uri or default_ledger_uri()
            self._ledgers = LedgerStore(uri, self.workdir, self.logger)
        return self._ledgers

    @property
    def stopped(self) -> bool:
        return self.scheduler.stopping()

    # start --------------------------------------------------------------------------------
    def start(self, plan: Plan) -> None:
        """Check the pinned API version, then submit every planned pass and scan."""
        self.plan = plan
        self._check_version()
        for name in self.plan.order:
            sp = self.plan[name]
            for lp in sp.passes:
                self._submit_list(name, sp.order, lp)
                if lp.reconcile:
                    (pk,) = sp.endpoint.primary_keys  # ledgered lists are keyed on one field
                    self._scan(sp.endpoint, pk, lp.partition, sp.order)
            if sp.fanout is not None and sp.fanout.needs_scan:
                parent = ENDPOINTS[sp.fanout.parent]
                assert sp.endpoint.parent is not None
                self._scan(parent, sp.endpoint.parent.field, None, sp.order)

    def _check_version(self) -> None:
        """One call to version.list: a rejected version (or key) stops the run here."""
        try:
            self.client.post(Call("version.list", {}, paginated=False), {}, "preflight")
        except (VersionRejected, AuthenticationError):
            raise
        except Exception as err:
            self.logger.debug("version check inconclusive: %s", err)

    def _submit_list(self, name: str, order: int, lp: ListPass) -> None:
        outcome, since = PassOutcome(), now_iso()
        pages = read_pass(self.client, lp.call, lp.token, name, self.logger, outcome)
        job = self.scheduler.pass_job(order, pages)
        self._lists[(name, repr(lp.partition))] = (job, outcome, since)

    def _scan(
        self, endpoint: Endpoint, field_: str, partition: Any, order: int
    ) -> tuple[PassJob[None], SortedSpill]:
        """Every current value of ``field_`` in a list, sorted and encoded: one scan per
        run serves every reconcile, refresh and rebuild that needs it."""
        key = (endpoint.stream, field_, repr(partition))
        if key not in self._scans:
            spill = SortedSpill(self.workdir)
            call = call_for(endpoint, self.settings, partition)
            pages = read_pass(self.client, call, None, endpoint.stream, self.logger, PassOutcome())

            def collect() -> Iterator[None]:
                for rows in pages:
                    for rec in rows:
                        for value in values_at(rec, field_):
                            spill.add(encode_key(str(value)))
                    yield None

            self._scans[key] = (self.scheduler.pass_job(order, collect(), depth=1 << 30), spill)
        return self._scans[key]

    def scan(self, endpoint: Endpoint, field_: str, partition: Any = None) -> SortedSpill | None:
        """The finished scan (waits for it; raises what it raised), or None when the run
        stopped before it ended: an incomplete list of current keys is never used."""
        order = self.plan[endpoint.stream].order if endpoint.stream in self.plan.streams else 0
        job, spill = self._scan(endpoint, field_, partition, order)
        job.drain()
        return None if job.cut else spill

    # list passes --------------------------------------------------------------------------
    def list_pass(self, name: str, partition: Any) -> tuple[PassJob[Rows], PassOutcome, str]:
        return self._lists.pop((name, repr(partition)))

    def spool(self, name: str) -> KeySpool:
        """Where a pass's records leave their keys for the child streams after it."""
        sp = self.plan[name]
        targets = []
        for child in sp.children:
            ep = ENDPOINTS[child]
            assert ep.parent is not None
            spill = self._spools[child] = SortedSpill(self.workdir)
            targets.append((ep.parent.field, spill))
        return KeySpool(targets)

    def pass_done(self, name: str, outcome: PassOutcome, since: str, cut: bool) -> None:
        """A pass ended: its children may start (a cut pass hands its children nothing)."""
        if cut:
            return
        self._done[name] = (outcome, since)
        for child in self.plan[name].children:
            fan = self.plan[child].fanout
            assert fan is not None
            if not fan.needs_scan or self._scan_ready(child):
                self._children[child] = self._start_child(child)

    def _scan_ready(self, child: str) -> bool:
        ep = ENDPOINTS[child]
        assert ep.parent is not None
        job, _ = self._scans[(ep.parent.stream, ep.parent.field, repr(None))]
        return job.done

    # child passes -------------------------------------------------------------------------
    def child_pass(self, name: str) -> ChildPass:
        """The child pass of ``name``: started ahead, or started now."""
        if name in self._children:
            return self._children.pop(name)
        return self._start_child(name)

    def _start_child(self, name: str) -> ChildPass:
        sp = self.plan[name]
        fan, ep = sp.fanout, sp.endpoint
        assert fan is not None and ep.parent is not None
        if fan.shared and fan.parent in self._done:
            changed: Iterable[bytes] = self._spools.pop(name)
            outcome, since = self._done[fan.parent]
        else:  # the parent is not synced (or was skipped): read its list here
            changed, outcome, since = self._own_keys(
                ENDPOINTS[fan.parent], ep.parent.field, fan.token
            )
        live = None
        if fan.needs_scan and not outcome.full:
            live = self.scan(ENDPOINTS[fan.parent], ep.parent.field)
        stored = self._kept_keys(fan.resume_keys) if fan.resume_keys else None
        keys = self._visit(changed, live, fan, outcome.full, stored)
        call = call_for(ep, self.settings)
        job = self.scheduler.fan_out(
            sp.order, iter(keys), lambda key: self._children_of(name, ep, call, key)
        )
        cp = ChildPass(job, outcome, since, keys.count, live, fan, keys)
        if keys.count >= KEEP_ASIDE_EARLY:  # a long pass: kept at once, so a kill resumes too
            self.keep_aside(name, cp)
        return cp

    # the parents of an unfinished pass, kept aside ----------------------------------------
    def keep_aside(self, name: str, cp: ChildPass) -> dict[str, Any] | None:
        """Keep this pass's parents in the ledger store, for the run that resumes it (it
        then pages only what changed since, not the whole parent list)."""
        if cp.kept is None and cp.keys is not None:
            try:
                path = self.ledgers.put_aside(name, cp.keys.path)
            except Exception as err:  # the resume then pages the parent list again
                self.logger.warning(
                    "%s: cannot keep the parents of the unfinished pass "
                    "(%s); the next run lists them again",
                    name,
                    err,
                )
                return None
            cp.kept = {
                "path": path,
                "count": cp.keys.count,
                "token": cp.outcome.token,
                "since": cp.since,
            }
        return cp.kept

    def kept_usable(self, path: str) -> bool:
        return bool(self.ledgers.has_aside(path))

    def drop_kept_of(self, name: str) -> None:
        self.ledgers.drop_aside_of(name)

    def _kept_keys(self, path: str) -> Iterator[bytes]:
        fd, local = tempfile.mkstemp(suffix=".parents", dir=self.workdir)
        os.close(fd)
        self.ledgers.get_aside(path, local)
        return (encode_key(k) for k in KeyFile(local, 0))

    def _visit(
        self,
        changed: Iterable[bytes],
        live: SortedSpill | None,
        fan: Fanout,
        full: bool,
        stored: Iterable[bytes] | None = None,
    ) -> KeyFile:
        """The parents this pass visits, sorted: changed ones (all, in a full pass), plus
        every live one (rebuild) or the live ones of this run's refresh slice; after the
        resume position. With kept keys, those after the resume position plus every parent
        changed since they were kept."""
        after = encode_key(fan.resume_after) if fan.resume_after is not None else None

        def past(keys: Iterable[bytes]) -> Iterator[bytes]:
            return (k for k in keys if after is None or k > after)

        streams: list[Iterable[bytes]] = [changed if stored is not None else past(changed)]
        if stored is not None:
            streams.append(past(stored))
        elif not full and live is not None:
            if fan.every_parent:
                streams = [past(live)]
            elif fan.refresh is not None:
                bucket, buckets = fan.refresh
                streams.append(past(k for k in live if bucket_of(decode_key(k), buckets) == bucket))
        fd, path = tempfile.mkstemp(suffix=".parents", dir=self.workdir)
        count, last = 0, None
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for key in heapq.merge(*(iter(s) for s in streams)):
                if key == last:
                    continue
                last = key
                out.write(decode_key(key) + "\n")
                count += 1
        return KeyFile(path, count)

    def _own_keys(
        self, parent: Endpoint, field_: str, token: str | None
    ) -> tuple[SortedSpill, PassOutcome, str]:
        """A parent list read for its keys only (the parent stream is not synced)."""
        outcome, since = PassOutcome(), now_iso()
        spill = SortedSpill(self.workdir)
        if parent.parent is None:
            pages: Iterable[Rows] = read_pass(
                self.client,
                call_for(parent, self.settings),
                token,
                parent.stream,
                self.logger,
                outcome,
            )
        else:  # a child list itself (job_postings): its parents first, all of them
            grand, _, _ = self._own_keys(ENDPOINTS[parent.parent.stream], parent.parent.field, None)
            call = call_for(parent, self.settings)
            job = self.scheduler.fan_out(
                0,
                (decode_key(k) for k in grand),
                lambda key: self._children_of(parent.stream, parent, call, key),
            )
            pages = (rows for _, rows in job)
        for rows in pages:
            for rec in rows:
                for value in values_at(rec, field_):
                    spill.add(encode_key(str(value)))
        return spill, outcome, since

    def _children_of(self, owner: str, ep: Endpoint, call: Call, key: str) -> Rows:
        assert ep.parent is not None
        one = Call(call.path, {**call.body, ep.parent.param: key}, call.paginated, call.permission)
        try:
            return [rec for page in self.client.pages(one, None, owner) for rec in page.records]
        except ParentGone:
            return []  # deleted between the parent list and this call: nothing to load
        except (PermissionMissing, InvalidInput):
            raise
        except (FatalAPIError, RetriableAPIError, *TRANSPORT_ERRORS) as err:
            # No silent partial child tables: the run fails, naming the parent.
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise AshbyError(
                f"{owner}: could not read the children of {ep.parent.param}={key}: {detail}"
            ) from err

    def progress(self, name: str, total: int | None) -> Progress:
        return Progress(name, total, self.client, self.settings.requests_per_minute, self.logger)

    def close(self) -> None:
        self.scheduler.close()


def ledger_key(stream: str, partition: Any) -> str:
    return f"{stream}/{partition!r}" if partition else stream


class KeySpool:
    """Keys of a pass's records, left for each child stream that reads from this pass."""

    def __init__(self, targets: list[tuple[str, SortedSpill]]) -> None:
        self.targets = targets

    def add(self, record: dict[str, Any]) -> None:
        for field_, spill in self.targets:
            for value in values_at(record, field_):
                spill.add(encode_key(str(value)))
