"""TapAshby: config, discovery from the endpoint table, run summary and one-line errors."""

from __future__ import annotations

import copy
import json
import sys
import time
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import requests
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, RetriableAPIError

from .endpoints import ROWS
from .streams import EndpointStream
from .throttle import RequestBudget

DEFAULT_BASE_URL = "https://api.ashbyhq.com"

CONFIG_SCHEMA = th.PropertiesList(
    th.Property("api_key", th.StringType, required=True, secret=True, title="API key",
                description="Ashby API key (HTTP Basic username). Give it read access to the "
                            "modules you want; streams whose permission is missing are skipped."),
    th.Property("base_url", th.StringType, default=DEFAULT_BASE_URL, title="Base URL",
                description="Ashby API root; point it at the emulator for tests and demos."),
    th.Property("start_date", th.DateTimeType, title="Start date",
                description="Only records created after this (sent as createdAfter where the "
                            "endpoint takes it). Leave empty to replicate everything."),
    th.Property("page_size", th.IntegerType, default=100, title="Page size",
                description="Records per request, 1 to 100 (Ashby's maximum)."),
    th.Property("request_timeout", th.IntegerType, default=60, title="Request timeout",
                description="Seconds to wait for one answer."),
    th.Property("max_retries", th.IntegerType, default=8, title="Max retries",
                description="Retries of a request after 429, 5xx, dropped connections or "
                            "broken bodies, honouring Retry-After, else exponential backoff."),
    th.Property("retry_base_delay_ms", th.IntegerType, default=1000, title="Retry base delay",
                description="First backoff wait in milliseconds when Ashby gives no "
                            "Retry-After; it doubles per retry, up to 60 s."),
    th.Property("on_missing_permission", th.StringType, default="skip",
                allowed_values=["skip", "fail"], title="On missing permission",
                description="skip: warn and skip a stream the key may not read; fail: stop."),
    th.Property("max_concurrency", th.IntegerType, default=4, title="Max concurrency",
                description="Parallel per-parent requests of child streams (and the cap on "
                            "requests in flight)."),
    th.Property("requests_per_minute", th.IntegerType, default=900, title="Requests per minute",
                description="Client-side request budget for the whole run (Ashby allows 1000 "
                            "per minute per key); 0 = no limit."),
    th.Property("reconcile_every_n_runs", th.IntegerType, default=7,
                title="Reconcile every N runs",
                description="Every N runs, streams that keep a ledger list all current ids "
                            "(one request per 100 rows) and send deletions for rows that no "
                            "longer exist in Ashby. 1 = every run, 0 = only with "
                            "reconcile_now."),
    th.Property("reconcile_now", th.BooleanType, default=False, title="Reconcile now",
                description="Reconcile every ledgered stream in this run."),
    th.Property("reconcile_streams", th.ArrayType(th.StringType), title="Reconcile streams",
                description="Streams that keep a ledger of delivered keys to detect deletes "
                            "(default: every stream; [] turns deletes off)."),
    th.Property("report_ids", th.ArrayType(th.StringType), title="Report ids",
                description="Saved Ashby report ids for the optional report_results stream."),
).to_dict()


def check_config(config: dict[str, Any]) -> list[str]:
    """Problems the JSON schema cannot express; each is one line naming the setting."""
    problems = []
    if not str(config.get("api_key") or "").strip():
        problems.append("api_key is empty: set it (or TAP_ASHBY_API_KEY)")
    size = config.get("page_size", 100)
    if not isinstance(size, int) or not 1 <= size <= 100:
        problems.append(f"page_size must be between 1 and 100, got {size!r}")
    url = urlparse(str(config.get("base_url", DEFAULT_BASE_URL)))
    if url.scheme not in ("http", "https") or not url.netloc:
        problems.append(f"base_url must be an http(s) URL, got {config.get('base_url')!r}")
    start = config.get("start_date")
    if start:
        try:
            datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"start_date must be an ISO 8601 date-time, got {start!r}")
    for name, low in (("request_timeout", 1), ("max_retries", 0), ("max_concurrency", 1),
                      ("requests_per_minute", 0), ("retry_base_delay_ms", 0),
                      ("reconcile_every_n_runs", 0)):
        value = config.get(name)
        if value is not None and (not isinstance(value, int) or value < low):
            problems.append(f"{name} must be an integer >= {low}, got {value!r}")
    return problems


class TapAshby(Tap):
    """Singer tap for Ashby: one stream per read endpoint, incremental through syncToken."""

    name = "tap-ashby"
    config_jsonschema = copy.deepcopy(CONFIG_SCHEMA)  # the SDK appends its own settings
    message_writer_class = MsgSpecWriter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        problems = check_config(dict(self.config))
        if problems:
            raise ConfigValidationError("invalid config: " + "; ".join(problems),
                                        errors=problems)

    @cached_property
    def budget(self) -> RequestBudget:
        """One request budget for every stream and worker of the run."""
        return RequestBudget(per_minute=int(self.config.get("requests_per_minute", 900)),
                             max_in_flight=int(self.config.get("max_concurrency", 4)))

    @cached_property
    def scan_cache(self) -> dict[tuple, set[str]]:
        """Reconcile id scans of this run, shared by the streams of one parent list."""
        return {}

    def discover_streams(self) -> list[EndpointStream]:
        return [EndpointStream(self, row) for row in ROWS]

    def sync_all(self) -> None:
        """Sync, then log a per-stream summary; known failures end in one line, exit 1."""
        started = time.monotonic()
        try:
            super().sync_all()
        except (FatalAPIError, RetriableAPIError) as err:
            self.logger.error("tap-ashby failed: %s", str(err).splitlines()[0])
            self._log_summary(started)
            sys.exit(1)
        except requests.RequestException as err:
            self.logger.error("tap-ashby failed: cannot reach Ashby at %s (%s after %s "
                              "retries)", self.config["base_url"], type(err).__name__,
                              self.config.get("max_retries", 8))
            self._log_summary(started)
            sys.exit(1)
        self._log_summary(started)

    def _log_summary(self, started: float) -> None:
        total = 0
        for stream in self.streams.values():
            if not isinstance(stream, EndpointStream) or not stream.selected:
                continue
            records = stream.stats["records"]
            total += records
            seconds = stream.stats.get("seconds", 0.0)
            rate = records / seconds if seconds else 0.0
            status = f"skipped ({stream.skipped_reason})" if stream.skipped_reason else \
                f"{stream.stats['passes']} pass"
            if stream.stats.get("reconciled"):
                status += f", reconciled ({stream.stats.get('deleted', 0)} deleted)"
            self.logger.info("summary %-34s %8d records %7d requests %8.1f rec/s  %s",
                             stream.name, records, stream.request_tally.value, rate, status)
        self.logger.info("summary total %d records in %.1fs", total,
                         time.monotonic() - started)


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
    except ValueError as err:
        return f"the state file {path} is not valid JSON ({err.msg} at line {err.lineno})"
    if not isinstance(state, dict) or not isinstance(state.get("bookmarks", {}), dict):
        return (f"the state file {path} is not a Singer state (expected an object with "
                "'bookmarks')")
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
