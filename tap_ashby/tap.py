"""TapAshby: config, discovery from the endpoint table, run summary and one-line errors."""

from __future__ import annotations

import copy
import sys
import time
from functools import cached_property
from typing import Any

import requests
from singer_sdk import Stream, Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import (
    ConfigValidationError,
    FatalAPIError,
    MapExpressionError,
    RetriableAPIError,
)

from . import validate
from .client import unreachable
from .endpoints import ROWS
from .errors import PermissionMissing
from .plan import is_ledgered, make_plan, partitions_of
from .settings import CONFIG_SCHEMA, Settings, check_config
from .streams import EndpointStream
from .sync import SyncRun

STREAM_ORDER = {row.stream: index for index, row in enumerate(ROWS)}


class TapAshby(Tap):
    """Singer tap for Ashby: one stream per read endpoint, incremental through syncToken."""

    name = "tap-ashby"
    config_jsonschema = copy.deepcopy(CONFIG_SCHEMA)  # the SDK appends its own settings
    message_writer_class = MsgSpecWriter
    last: TapAshby | None = None  # the instance invoke() ran, for its summary
    connection_test = False  # set by main() for --test: a missing permission fails it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        TapAshby.last = self  # failure_line reads its config, even of a failed __init__
        if self.connection_test and isinstance(kwargs.get("config"), dict):
            # --test forces every stream on; one the key may not read is what it must find.
            kwargs["config"] = {**kwargs["config"], "on_missing_permission": "fail"}
        try:
            super().__init__(*args, **kwargs)
        except ConfigValidationError:
            # The SDK's messages repeat the offending value (an API key given as a number
            # or a list included); say the same from our own validator, values of secrets
            # left out. ``config`` is already set when the SDK validates.
            raise ConfigValidationError(
                "invalid config", errors=self._schema_problems() or ["invalid config"]
            ) from None
        problems = check_config(dict(self.config))
        extra = validate.extras_problem(self.config)
        problems += [extra] if extra else []
        if problems:
            raise ConfigValidationError("invalid config: " + "; ".join(problems), errors=problems)
        self._warn_typos()
        for row in ROWS:  # the per-stream loggers of the streams to come
            self.logger.getChild(row.stream).addFilter(SYNC_ERRORS)
        self.started = time.monotonic()

    def _schema_problems(self) -> list[str]:
        return validate.schema_problems(self.config, self.config_jsonschema)

    def _warn_typos(self) -> None:
        """Unknown settings and stream names: one warning each, and the run goes on."""
        streams = [row.stream for row in ROWS]
        warnings = validate.unknown_settings(self.config, self.config_jsonschema)
        warnings += validate.unknown_map_streams(self.config.get("stream_maps"), streams)
        catalog = self.input_catalog
        if catalog is not None:
            names = [entry.tap_stream_id for entry in catalog.streams]
            warnings += validate.unknown_catalog_streams(names, streams)
        for warning in warnings:
            self.logger.warning("%s", warning)

    @cached_property
    def typed_settings(self) -> Settings:
        """The validated config, typed, made once (the streams and the run share it)."""
        return Settings.from_config(self.config)

    @cached_property
    def sync_run(self) -> SyncRun:
        """The run, made once, when the first stream asks for records: settings, state and
        the ledgers in; the plan (pure) made from them; its passes submitted."""
        settings = self.typed_settings
        streams = {n: s for n, s in self.streams.items() if isinstance(s, EndpointStream)}
        selected = {n for n, s in streams.items() if s.selected}
        states: dict[str, dict[str, Any]] = {}
        partition_states: dict[tuple[str, str], dict[str, Any]] = {}
        wanted = []
        for name in selected:
            stream = streams[name]
            parts = partitions_of(stream.endpoint, settings)
            for part in [*parts] if parts else [None]:
                state = stream.get_context_state(part)
                if part:
                    partition_states[(name, repr(part))] = state
                else:
                    states[name] = state
                if is_ledgered(stream.endpoint, settings) and parts != []:
                    wanted.append((stream.endpoint, part, state))
        run = SyncRun(settings, self.logger)
        ledger_ok = run.open_ledgers(wanted) if wanted else {}
        resume_ok = {  # unfinished child passes whose parents were kept aside
            name: run.kept_usable(str(state["resume"]["keys"].get("path")))
            for name, state in states.items()
            if isinstance(state.get("resume"), dict)
            and isinstance(state["resume"].get("keys"), dict)
        }
        plan = make_plan(ROWS, selected, states, settings, ledger_ok, partition_states, resume_ok)
        run.start(plan)
        install_sigterm(run)
        return run

    def discover_streams(self) -> list[EndpointStream]:
        return [EndpointStream(self, row) for row in ROWS]

    @property
    def streams(self) -> dict[str, Stream]:
        """The SDK's streams in endpoint-table order instead of by name.

        The SDK syncs ``streams`` in order and sorts them by name, which puts
        ``candidate_notes`` before ``candidates``. The table lists every parent before its
        children, so one pass over a parent list can serve the child streams after it.
        """
        loaded = super().streams
        return dict(sorted(loaded.items(), key=lambda item: STREAM_ORDER.get(item[0], 0)))

    @classmethod
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        """Run the SDK's CLI; known failures end in one line and exit 1, and every sync
        ends with a per-stream summary. (``sync_all`` is final in the SDK; ``invoke`` is
        the public place around it.)"""
        try:
            super().invoke(*args, **kwargs)
        except Exception as err:
            code = report_known_failure(err)
            if code is None:
                raise
            if code == 1:
                cls._summarize()
            sys.exit(code)
        cls._summarize()
        tap = cls.last
        if tap and "sync_run" in tap.__dict__ and tap.sync_run.scheduler.reason == "SIGTERM":
            sys.exit(143)  # stopped from outside: not a success, but resumable

    @classmethod
    def _summarize(cls) -> None:
        tap = cls.last
        if tap is None or "sync_run" not in tap.__dict__:
            return
        run = tap.sync_run
        run.close()
        total = 0
        for stream in tap.streams.values():
            if not isinstance(stream, EndpointStream) or not stream.selected:
                continue
            stats = stream.stats
            total += stats["records"]
            seconds = stats["seconds"]
            rate = stats["records"] / seconds if seconds else 0.0
            status = (
                f"skipped ({stream.skipped_reason})"
                if stream.skipped_reason
                else f"{stats['passes']} pass"
            )
            if stats["reconciled"]:
                status += f", reconciled ({stats['deleted']} deleted)"
            if stats["new_fields"]:
                status += ", new fields not in the schema: " + ", ".join(
                    sorted(stats["new_fields"])
                )
            requests_made = run.client.requests[stream.name]
            cls.logger.info(
                "summary %-34s %8d records %7d requests %7.1fs %8.1f rec/s  %s",
                stream.name,
                stats["records"],
                requests_made,
                seconds,
                rate,
                status,
                extra={
                    "summary": {
                        "stream": stream.name,
                        "records": stats["records"],
                        "requests": requests_made,
                        "seconds": round(seconds, 3),
                        "pass": status,
                    }
                },
            )
        cls.logger.info(
            "summary total %d records, %d requests in %.1fs",
            total,
            sum(run.client.requests.values()),
            time.monotonic() - tap.started,
        )
        if run.scheduler.reason in ("deadline", "SIGTERM"):
            cls.logger.info("summary %s", stop_report(run, tap.streams))


def stop_report(run: SyncRun, streams: dict[str, Stream]) -> str:
    """What a stopped run left: parents and requests, and the time that takes at the budget."""
    left = sum(run.left.values())
    unstarted = [
        s.name
        for s in streams.values()
        if isinstance(s, EndpointStream) and s.selected and s.stats["passes"].startswith("not ")
    ]
    why = (
        f"stopped at the deadline (max_run_seconds={run.settings.max_run_seconds})"
        if run.scheduler.reason == "deadline"
        else "stopped by SIGTERM"
    )
    text = f"{why}: {left} parents left in cut passes (about {left} requests)"
    if unstarted:
        text += f", {len(unstarted)} streams not started ({', '.join(unstarted[:5])}"
        text += ", ...)" if len(unstarted) > 5 else ")"
    per_minute = run.settings.requests_per_minute
    if per_minute and left:
        text += f"; ETA at the budget about {left * 60 / per_minute / 60:.1f} min of requests"
    return text + "; the next run resumes from this STATE"


def install_sigterm(run: SyncRun) -> None:
    """SIGTERM stops the run like a deadline: no new request, in-flight ones are written,
    a final STATE that resumes; the process then exits 143."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if threading.current_thread() is not threading.main_thread():
        return  # signals can only be handled on the main thread (tests running in threads)
    signal.signal(signal.SIGTERM, lambda *_: run.scheduler.halt("SIGTERM"))


SYNC_ERRORS = validate.SyncErrorFilter(lambda err: _failure(err, None) is not None)


def report_known_failure(err: BaseException) -> int | None:
    """Log a known failure as its one line and return the exit code (2: the config is
    unusable, 1: the run failed); None for an unknown error, which the caller re-raises."""
    if isinstance(err, ConfigValidationError):
        TapAshby.logger.error("tap-ashby: %s", config_line(err))
        return 2
    line = failure_line(err, TapAshby.last)
    if line is None:
        return None
    TapAshby.logger.error("tap-ashby failed: %s", line)
    return 1


def config_line(err: ConfigValidationError) -> str:
    """Every config problem on one line (each already names its setting)."""
    problems = [" ".join(str(p).split()) for p in err.errors] or [str(err)]
    return "invalid config: " + "; ".join(problems)


def failure_line(err: BaseException, tap: TapAshby | None) -> str | None:
    """A known failure as one line, naming the stream that failed (None: not ours to
    summarize, let it raise)."""
    line = _failure(err, tap)
    if line is not None and SYNC_ERRORS.stream:
        line = f"stream {SYNC_ERRORS.stream}: {line}"
    return line


def _fields(tap: TapAshby | None, stream: str) -> list[str]:
    """The fields of ``stream``, for a "did you mean" (none when the tap failed to start)."""
    try:
        return list(tap.streams[stream].schema.get("properties", {})) if tap else []
    except (KeyError, AttributeError):
        return []


def _failure(err: BaseException, tap: TapAshby | None) -> str | None:
    if isinstance(err, MapExpressionError):
        config = tap.config if tap else {}
        return validate.map_error_line(err, config, lambda stream: _fields(tap, stream))
    if isinstance(err, PermissionMissing) and TapAshby.connection_test:
        return (
            f"{str(err).splitlines()[0]}; --test reads every stream: grant the permission, "
            "or deselect the stream and run without --test"
        )
    if isinstance(err, (FatalAPIError, RetriableAPIError)):
        return str(err).splitlines()[0]
    if isinstance(err, requests.RequestException):
        config = tap.config if tap else {}
        return unreachable(err, str(config.get("base_url", "base_url")), config)
    return None


def main() -> None:
    """Console entry point: unusable files, config and known failures of the SDK's own
    commands (--test and --discover run outside ``invoke``) end in one line, never a
    traceback."""
    argv = sys.argv[1:]
    problem = validate.command_line_problem(argv)
    if problem:
        print(f"tap-ashby: {problem}", file=sys.stderr)
        sys.exit(2)
    TapAshby.connection_test = any(a == "--test" or a.startswith("--test=") for a in argv)
    try:
        TapAshby.cli()
    except Exception as err:
        code = report_known_failure(err)
        if code is None:
            raise
        sys.exit(code)


if __name__ == "__main__":
    main()
