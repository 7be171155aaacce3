"""TapAshby: config, discovery from the endpoint table, run summary and one-line errors."""

from __future__ import annotations

import copy
import json
import sys
import time
from functools import cached_property
from typing import Any

import requests
from singer_sdk import Stream, Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, RetriableAPIError

from .endpoints import ROWS
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        problems = check_config(dict(self.config))
        if problems:
            raise ConfigValidationError("invalid config: " + "; ".join(problems), errors=problems)
        self.started = time.monotonic()
        TapAshby.last = self

    @cached_property
    def sync_run(self) -> SyncRun:
        """The run, made once, when the first stream asks for records: settings, state and
        the ledgers in; the plan (pure) made from them; its passes submitted."""
        settings = Settings.from_config(self.config)
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
        run.start(make_plan(ROWS, selected, states, settings, ledger_ok, partition_states))
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
        except (FatalAPIError, RetriableAPIError) as err:
            cls.logger.error("tap-ashby failed: %s", str(err).splitlines()[0])
            cls._summarize()
            sys.exit(1)
        except requests.RequestException as err:
            tap = cls.last
            cls.logger.error(
                "tap-ashby failed: cannot reach Ashby at %s (%s after %s retries)",
                tap.config["base_url"] if tap else "base_url",
                type(err).__name__,
                tap.config["max_retries"] if tap else "",
            )
            cls._summarize()
            sys.exit(1)
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


def state_file_problem(argv: list[str]) -> str | None:
    """Why the ``--state`` file cannot be used, or None (checked before the SDK reads it)."""
    if "--state" not in argv or argv.index("--state") + 1 >= len(argv):
        return None
    path = argv[argv.index("--state") + 1]
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except OSError as err:
        return f"cannot read the state file {path}: {err.strerror}"
    except UnicodeDecodeError:
        return f"the state file {path} is not UTF-8 text; point --state at a Singer state file"
    except json.JSONDecodeError as err:
        return f"the state file {path} is not valid JSON ({err.msg} at line {err.lineno})"
    if not isinstance(state, dict) or not isinstance(state.get("bookmarks", {}), dict):
        return f"the state file {path} is not a Singer state (expected an object with 'bookmarks')"
    return None


def main() -> None:
    """Console entry point: a broken state file is one line and exit 2, not a traceback."""
    problem = state_file_problem(sys.argv[1:])
    if problem:
        print(f"tap-ashby: {problem}", file=sys.stderr)
        sys.exit(2)
    TapAshby.cli()


if __name__ == "__main__":
    main()
