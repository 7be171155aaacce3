"""One generic stream class, driven by a row of the endpoint table: a thin singer-sdk adapter.

The stream writes records and takes STATE; which calls are made was decided by the plan
(plan.py) and the calls are made by the run (sync.py, on the scheduler). Three shapes:

- a list read in one pass per run, incremental through the syncToken bookmark
  (``{"sync_token": ..., "token_since": ...}`` in the stream's or partition's state);
- a child stream: ``(parent key, children)`` in parent-key order. Its state keeps the parent
  list's token (``parent_sync_token``), the rolling-refresh counter (``refresh_run``) and,
  while a pass is unfinished, where it resumes (``resume``);
- partitioned passes (``surveyType`` values, report ids), each with its own bookmark.

``close_pass`` is the one routine that ends a pass: tombstones and the ledger, then the
bookmark. A new token (and ledger generation) enters state only after every record of the
pass and every tombstone were emitted; a pass cut short keeps its old token.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from singer_sdk import SchemaDirectory, Stream, StreamSchema
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context

from .endpoints import Endpoint
from .errors import AshbyError, InvalidInput, PermissionMissing
from .ledger import SortedSpill, encode_key
from .passes import PassOutcome
from .plan import StreamPlan, partitions_of
from .sync import SyncRun

CHECKPOINT_SECONDS = 5.0  # a child pass writes its resume position at least this often
CHECKPOINT_SHARE = 50  # ... and after every 1/50 of its parents (at least 10, at most 1000)


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
        return self._tap.sync_run  # type: ignore[attr-defined]

    @property
    def emit_activate_version_messages(self) -> bool:
        # An incremental pass is a change set, never the whole table: a target must not take
        # it as a new table version and drop the rest.
        return False

    @property
    def partitions(self) -> list[dict] | None:
        parts = partitions_of(self.endpoint, self._tap.typed_settings)  # type: ignore[attr-defined]
        return parts or None

    # records ------------------------------------------------------------------------------
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        started = time.monotonic()
        run = self.run
        plan = run.plan.streams.get(self.name)
        if plan is None:
            return
        if plan.skip:
            self.stats["passes"] = f"skipped ({plan.skip})"
            self.logger.info("%s: %s; nothing to read", self.name, plan.skip)
            return
        if run.stopped:
            self.stats["passes"] = f"not started ({run.scheduler.reason})"
            return
        try:
            if plan.fanout is None:
                yield from self._list_records(plan, context)
            else:
                yield from self._child_records(plan)
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
            self.stats["seconds"] += time.monotonic() - started

    def _list_records(self, plan: StreamPlan, context: Context | None) -> Iterator[dict]:
        run = self.run
        state = self.get_context_state(context)
        (lp,) = [p for p in plan.passes if p.partition == (dict(context) if context else None)]
        job, outcome, since = run.list_pass(self.name, lp.partition)
        ledger = run.ledger_for(self.name, lp.partition)
        spool = run.spool(self.name)
        progress = run.progress(self.name, None)
        part = self.endpoint.partition_param
        count = 0
        for rows in job:
            for rec in rows:
                if part and context and rec.get(part) is None:  # reportId: not in the row
                    rec[part] = context[part]
                if ledger:
                    ledger.add("", rec)
                spool.add(rec)
                yield rec
            count += len(rows)
            progress.step(count)
        current = None
        if ledger and lp.reconcile and not outcome.full and not job.cut:
            (pk,) = self.primary_keys  # ledgered lists are keyed on one field
            scan = run.scan(self.endpoint, pk, lp.partition)
            if scan is not None:
                current = (encode_key("") + key for key in scan)
        complete = outcome.full and not job.cut
        yield from self.close_pass(
            state,
            ledger,
            cut=job.cut,
            replaced=None if complete or current is not None else [],
            live=None,
            current=current,
            reconciled=complete or current is not None,
            bookmark={"sync_token": outcome.token, "token_since": since} if outcome.token else {},
        )
        self.stats["passes"] = self._mode(outcome.full, job.cut, False)
        run.pass_done(self.name, outcome, since, job.cut)

    def _child_records(self, plan: StreamPlan) -> Iterator[dict[str, Any]]:
        """Children of the parents the plan names, in parent-key order, with a resume
        position written as the parents before it are done."""
        ep, run, fan = self.endpoint, self.run, plan.fanout
        assert ep.parent is not None and fan is not None
        state = self.get_context_state(None)
        cp = run.child_pass(self.name)
        ledger = run.ledger_for(self.name, None)
        spool = run.spool(self.name)
        visited = SortedSpill(run.workdir)
        progress = run.progress(self.name, cp.total)
        delivered: set[str] = set()
        done, last_key, checkpoint = 0, fan.resume_after, time.monotonic()
        before = state.get("resume") if isinstance(state.get("resume"), dict) else None
        every = min(1000, max(10, cp.total // CHECKPOINT_SHARE))
        for key, children in cp.job:
            visited.add(encode_key(str(key)))
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
                spool.add(child)
                yield child
            done, last_key = done + 1, key
            progress.step(done)
            if done % every == 0 or time.monotonic() - checkpoint >= CHECKPOINT_SECONDS:
                # Every parent up to last_key is written: a killed run resumes after it.
                # (Its ledger generation is not published until the pass ends; the rolling
                # refresh re-lists those parents, which puts their rows into the ledger.)
                state["resume"] = self._pending(fan, last_key, before, cp.kept)
                self._tap.state_writer.write_state(self.tap_state)
                checkpoint = time.monotonic()
        cut = cp.job.cut
        if cut:
            run.left[self.name] = cp.total - done
        resumed = fan.resume_after is not None
        complete = cp.outcome.full and not resumed and not cut
        live = cp.live if cp.live is not None and (fan.reconcile or fan.every_parent) else None
        bookmark: dict[str, Any] = {}
        if cut:
            kept = run.keep_aside(self.name, cp)
            bookmark["resume"] = self._pending(fan, last_key, before, kept)
        else:
            bookmark["resume"] = None
            if cp.kept or fan.resume_keys:
                run.drop_kept_of(self.name)
            bookmark["refresh_run"] = int(state.get("refresh_run", 0) or 0) + 1
            if cp.outcome.token:
                bookmark.update(parent_sync_token=cp.outcome.token, token_since=cp.since)
        yield from self.close_pass(
            state,
            ledger,
            cut=cut,
            replaced=None if complete else ([] if cut else visited),
            live=None if cut else live,
            reconciled=not cut and (complete or live is not None),
            bookmark=bookmark,
        )
        self.stats["passes"] = self._mode(cp.outcome.full, cut, resumed)
        run.pass_done(self.name, PassOutcome(token=None, full=True), cp.since, cut)

    @staticmethod
    def _pending(
        fan: Any, after: str | None, before: dict[str, Any] | None, kept: dict[str, Any] | None
    ) -> dict[str, Any]:
        """An unfinished child pass: where it resumes and what it was built on.

        ``keys``: the pass's parents kept aside (the resume visits those after ``after`` plus
        what changed since their token). ``token``/``since``/``every``/``refresh``: how to
        start over when they cannot be read back: from the start of the first pass of this
        unfinished series, which a resume of a resume inherits."""
        first = (
            before
            if before is not None
            else {
                "token": fan.token,
                "since": fan.token_since,
                "every": fan.every_parent,
                "refresh": list(fan.refresh) if fan.refresh else None,
            }
        )
        if kept is None and fan.resume_keys and before is not None:
            kept = before.get("keys")  # still there: this pass started from it
        pending = {
            "after": after,
            "token": first.get("token"),
            "since": first.get("since"),
            "every": first.get("every"),
            "refresh": first.get("refresh"),
        }
        if kept is not None:
            pending["keys"] = kept
        return pending

    def _mode(self, full: bool, cut: bool, resumed: bool) -> str:
        mode = "full" if full else "incremental"
        if resumed:
            mode += ", resumed"
        if cut:
            mode += f", cut at the {self.run.scheduler.reason or 'stop'}"
        return mode

    def close_pass(
        self,
        state: dict[str, Any],
        ledger: Any,
        *,
        cut: bool,
        replaced: Iterable[bytes] | None,
        live: Iterable[bytes] | None,
        reconciled: bool,
        bookmark: dict[str, Any],
        current: Iterable[bytes] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The one end of a pass: tombstones and the new ledger generation, then the
        bookmark. A pass cut short sends no tombstones: its ledger keeps every old key plus
        what was delivered (``replaced=[]``), and its token is not advanced."""
        commit: dict[str, Any] = {}
        if ledger:
            yield from ledger.close(
                replaced=replaced, live=live, current=current, reconciled=reconciled
            )
            commit.update(ledger.commit)
            self.stats["reconciled"] = ledger.reconciled
        commit.update(bookmark)
        for key in [k for k, v in commit.items() if v is None]:
            commit.pop(key)
            state.pop(key, None)
        state.update(commit)

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
