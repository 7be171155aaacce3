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
from .run import SyncRun
from .settings import CONFIG_SCHEMA, check_config
from .streams import EndpointStream

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
    def run(self) -> SyncRun:
        """Client, budget, ledger store and prefetch shared by every stream of the run."""
        return SyncRun(self.config, self.logger)

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

    @classmethod
    def _summarize(cls) -> None:
        tap = cls.last
        if tap is None or "run" not in tap.__dict__:
            return
        tap.run.close()
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
            cls.logger.info(
                "summary %-34s %8d records %7d requests %8.1f rec/s  %s",
                stream.name,
                stats["records"],
                tap.run.client.requests[stream.name],
                rate,
                status,
            )
        cls.logger.info(
            "summary total %d records, %d requests in %.1fs",
            total,
            sum(tap.run.client.requests.values()),
            time.monotonic() - tap.started,
        )


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
