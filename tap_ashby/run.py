"""What one sync run shares across its streams: client, budget, ledger store, prefetched
passes, the parent keys a pass hands to child streams, and reconcile scans."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from singer_sdk.helpers.types import Context

from .client import AshbyClient, Call
from .endpoints import values_at
from .errors import AuthenticationError, VersionRejected
from .ledger import LedgerStore, SortedSpill, default_ledger_uri, encode_key, now_iso
from .passes import PassOutcome, Prefetcher, Rows, read_pass
from .throttle import RequestBudget

if TYPE_CHECKING:
    from .streams import EndpointStream

PREFETCH_DEPTH = 4  # pages buffered per prefetched pass
CHILDREN_AHEAD = 3  # child streams whose fan-out may run ahead of the current stream


class KeySpools:
    """Parent keys written to disk as the parent's records go out, one file per child."""

    def __init__(self, children: list[EndpointStream], workdir: str) -> None:
        self.files: dict[str, str] = {}
        self._writers: list[tuple[str, Any]] = []
        for child in children:
            assert child.endpoint.parent is not None
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
                "w", dir=workdir, suffix=".keys", delete=False, encoding="utf-8"
            )
            self.files[child.name] = handle.name
            self._writers.append((child.endpoint.parent.field, handle))

    def add(self, record: dict[str, Any]) -> None:
        for field, handle in self._writers:
            for value in values_at(record, field):
                handle.write(f"{value}\n")

    def close(self) -> None:
        for _, handle in self._writers:
            handle.close()


def _lines(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


class SyncRun:
    """Per-run shared machinery, created on first use by ``TapAshby.run``."""

    def __init__(self, config: Any, logger: Any) -> None:
        self.config, self.logger = config, logger
        self.budget = RequestBudget(
            int(config["requests_per_minute"]), int(config["max_concurrency"])
        )
        self.client = AshbyClient(config, self.budget, logger)
        self.workdir = tempfile.mkdtemp(prefix="tap-ashby-")
        atexit.register(shutil.rmtree, self.workdir, True)
        self.ledgers = LedgerStore(
            config.get("ledger_uri") or default_ledger_uri(), self.workdir, logger
        )
        self.prefetcher: Prefetcher | None = None
        self._planned: dict[Any, tuple[PassOutcome, str]] = {}
        self._passes: dict[str, tuple[PassOutcome, str, dict[str, str]]] = {}
        self._scans: dict[Any, SortedSpill] = {}
        self._order: list[EndpointStream] = []
        self._children_ahead: set[str] = set()
        self._started = False

    # start of the run ----------------------------------------------------------------------
    def start(self, streams: list[EndpointStream], current: EndpointStream) -> None:
        """Once per run: plan the prefetch and check the pinned API version; then, at every
        stream, start the next child stream's fan-out ahead."""
        if not self._started:
            self._started = True
            self._order = [s for s in streams if s.selected]
            self._plan(self._order)  # prefetch starts while the version is checked
            self._check_version()
        self._children_ahead_of(current)

    def _check_version(self) -> None:
        """One call to version.list: a rejected version (or key) stops the run here."""
        try:
            self.client.post(Call("version.list", {}, paginated=False), {}, "preflight")
        except (VersionRejected, AuthenticationError):
            raise
        except Exception as err:
            self.logger.debug("version check inconclusive: %s", err)

    def _plan(self, streams: list[EndpointStream]) -> None:
        """Submit every selected top-level pass, in the order the SDK will sync them."""
        workers = int(self.config["max_concurrency"])  # the budget caps what is in flight
        self.prefetcher = Prefetcher(workers, PREFETCH_DEPTH)
        for stream in streams:
            if not stream.selected or stream.parent_stream is not None:
                continue
            contexts: list[Any] = stream.partitions or [None]  # type: ignore[list-item]
            for context in contexts:
                self._submit(stream, context)

    def _submit(self, stream: EndpointStream, context: Context | None) -> None:
        token, _ = stream.start_token(stream.get_context_state(context))
        outcome, since = PassOutcome(), now_iso()
        call = stream.call(context)

        def produce() -> Iterator[Rows]:
            return read_pass(self.client, call, token, stream.name, stream.logger, outcome)

        key = (stream.name, repr(context))
        self._planned[key] = (outcome, since)
        assert self.prefetcher is not None
        self.prefetcher.submit(key, produce)

    def _children_ahead_of(self, current: EndpointStream) -> None:
        """Start the fan-outs of the next selected child streams after ``current``, once
        their parent's pass is published: their first calls overlap the current stream's, so
        the budget stays busy across stream boundaries. At most ``CHILDREN_AHEAD`` streams,
        each on a thread of its own with a bounded buffer."""
        assert self.prefetcher is not None
        later = self._order[self._order.index(current) + 1 :] if current in self._order else []
        children = [s for s in later if s.parent_stream is not None][:CHILDREN_AHEAD]
        for child in children:
            if child.name in self._children_ahead:
                continue
            shared = self.shared_keys(child)
            if shared is None or not child.fans_out_changed_parents(shared[1]):
                return  # later children wait: they are consumed after this one
            self._children_ahead.add(child.name)
            keys = shared[0]
            self.prefetcher.start_now(
                ("children", child.name), functools.partial(child.fan_out, keys)
            )

    def take_children(self, child: EndpointStream) -> Iterator[tuple[Any, Rows]] | None:
        """The fan-out started ahead for ``child``, if any."""
        return self.prefetcher.take(("children", child.name)) if self.prefetcher else None

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()

    # passes --------------------------------------------------------------------------------
    def take_pass(
        self, stream: EndpointStream, context: Context | None, state: dict[str, Any]
    ) -> tuple[Iterator[Rows], PassOutcome, str]:
        """The stream's pass: prefetched if planned, else read here."""
        key = (stream.name, repr(context))
        pages = self.prefetcher.take(key) if self.prefetcher else None
        if pages is not None:
            outcome, since = self._planned.pop(key)
            return pages, outcome, since
        token, _ = stream.start_token(state)
        outcome, since = PassOutcome(), now_iso()
        return (
            read_pass(
                self.client, stream.call(context), token, stream.name, stream.logger, outcome
            ),
            outcome,
            since,
        )

    def open_spools(self, stream: EndpointStream) -> KeySpools:
        return KeySpools(stream.child_streams_selected, self.workdir)

    def publish_pass(
        self, stream: EndpointStream, outcome: PassOutcome, since: str, spools: KeySpools
    ) -> None:
        """Hand a finished pass to the child streams that come later in the run."""
        spools.close()
        self._passes[stream.name] = (outcome, since, spools.files)
        self._children_ahead_of(stream)

    def shared_keys(
        self,
        child: EndpointStream,
    ) -> tuple[Iterator[str], PassOutcome, str] | None:
        """Parent keys from this run's pass of the child's parent, if there was one."""
        assert child.endpoint.parent is not None
        shared = self._passes.get(child.endpoint.parent.stream)
        if shared is None or child.name not in shared[2]:
            return None
        outcome, since, files = shared
        return _lines(files[child.name]), outcome, since

    def scan(
        self, stream: EndpointStream, field: str, partition: Context | None = None
    ) -> SortedSpill:
        """Every current value of ``field`` in ``stream``'s list, sorted and encoded
        (reconcile); one scan per run serves every stream that needs it."""
        key = (stream.name, field, repr(partition))
        if key not in self._scans:
            spill = SortedSpill(self.workdir)
            for rows in stream.source_records(None, PassOutcome(), partition):
                for rec in rows:
                    for value in values_at(rec, field):
                        spill.add(encode_key(str(value)))
            self._scans[key] = spill
        return self._scans[key]
