"""TapAshby: config, discovery from the endpoint table, run summary and one-line errors."""

from __future__ import annotations

import copy
import ipaddress
import json
import sys
import time
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import requests
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, RetriableAPIError

from .endpoints import ROWS
from .run import SyncRun
from .streams import EndpointStream

STREAM_ORDER = {row.stream: index for index, row in enumerate(ROWS)}
DEFAULT_BASE_URL = "https://api.ashbyhq.com"
DEFAULT_API_VERSION = "2026-01-01"

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType(min_length=1),
        required=True,
        secret=True,
        title="API key",
        description="Ashby API key (HTTP Basic username). Give it read access to the "
        "modules you want; streams whose permission is missing are skipped.",
    ),
    th.Property(
        "base_url",
        th.StringType,
        default=DEFAULT_BASE_URL,
        title="Base URL",
        description="Ashby API root. Must be https:// (http:// only for a loopback "
        "host such as the emulator).",
    ),
    th.Property(
        "api_version",
        th.StringType,
        default=DEFAULT_API_VERSION,
        title="API version",
        description="Sent as the Ashby-Version header on every request; the run warns "
        "when Ashby marks it deprecated or unsupported and stops when "
        "Ashby rejects it.",
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="Only records created after this: sent as createdAfter on every "
        "pass of the endpoints that take it (and as the audit log's "
        "startDate). Leave empty to replicate everything.",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=100),
        default=100,
        title="Page size",
        description="Records per request, 1 to 100 (Ashby's maximum).",
    ),
    th.Property(
        "request_timeout",
        th.IntegerType(minimum=1),
        default=60,
        title="Request timeout",
        description="Seconds to wait for one answer.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=8,
        title="Max retries",
        description="Retries of a request after 429, 5xx, dropped connections or "
        "broken bodies, honouring Retry-After, else exponential backoff.",
    ),
    th.Property(
        "retry_base_delay_ms",
        th.IntegerType(minimum=0),
        default=1000,
        title="Retry base delay",
        description="First backoff wait in milliseconds when Ashby gives no "
        "Retry-After; it doubles per retry, up to 60 s.",
    ),
    th.Property(
        "on_missing_permission",
        th.StringType,
        default="skip",
        allowed_values=["skip", "fail"],
        title="On missing permission",
        description="skip: warn and skip a stream the key may not read; fail: stop.",
    ),
    th.Property(
        "max_concurrency",
        th.IntegerType(minimum=1),
        default=16,
        title="Max concurrency",
        description="Cap on requests in flight, shared by child-stream fan-out and by "
        "the prefetch of upcoming streams. 16 keeps the default budget "
        "busy at up to about 1 s per answer.",
    ),
    th.Property(
        "requests_per_minute",
        th.IntegerType(minimum=0),
        default=900,
        title="Requests per minute",
        description="Client-side request budget for the whole run (Ashby allows 1000 "
        "per minute per key); 0 = no limit.",
    ),
    th.Property(
        "reconcile_every_n_runs",
        th.IntegerType(minimum=0),
        default=7,
        title="Reconcile every N runs",
        description="Every N runs, streams that keep a ledger list all current ids "
        "(one request per 100 rows) and send deletions for rows that no "
        "longer exist in Ashby. 1 = every run, 0 = only with "
        "reconcile_now.",
    ),
    th.Property(
        "reconcile_now",
        th.BooleanType,
        default=False,
        title="Reconcile now",
        description="Reconcile every ledgered stream in this run.",
    ),
    th.Property(
        "reconcile_streams",
        th.ArrayType(th.StringType),
        title="Reconcile streams",
        description="Streams that keep a ledger of delivered keys to detect deletes "
        "(default: every stream; [] turns deletes off).",
    ),
    th.Property(
        "ledger_uri",
        th.StringType,
        title="Ledger location",
        description="Where the ledgers of delivered keys live: a directory or an "
        "fsspec URL (s3://, gs://, az://, file://). Default: "
        ".meltano/tap-ashby/ledger in the Meltano project, else "
        "~/.local/share/tap-ashby/ledger.",
    ),
    th.Property(
        "child_refresh_every_n_runs",
        th.IntegerType(minimum=0),
        default=0,
        title="Child refresh every N runs",
        description="Every N runs, child streams list the children of every parent, "
        "not only of parents that changed (one request per parent); "
        "0 = never.",
    ),
    th.Property(
        "report_ids",
        th.ArrayType(th.StringType),
        title="Report ids",
        description="Saved Ashby report ids for the optional report_results stream.",
    ),
).to_dict()


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal (never a DNS name such as 127.evil.example)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(config: dict[str, Any]) -> list[str]:
    """Problems the JSON schema cannot express; each is one line naming the setting."""
    problems = []
    if not str(config.get("api_key") or "").strip():
        problems.append("api_key is empty: set it (or TAP_ASHBY_API_KEY)")
    raw_url = config.get("base_url", DEFAULT_BASE_URL)
    url = urlparse(str(raw_url))
    if url.scheme not in ("http", "https") or not url.hostname:
        problems.append(f"base_url must be an https:// URL, got {raw_url!r}")
    elif url.scheme == "http" and not is_loopback(url.hostname):
        problems.append(
            f"base_url must use https:// (the API key would travel in clear "
            f"text to {url.hostname}); http:// is only for a loopback emulator"
        )
    start = config.get("start_date")
    if start:
        try:
            datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"start_date must be an ISO 8601 date-time, got {start!r}")
    return problems


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
