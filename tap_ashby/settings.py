"""Settings: the config schema (every default written once, here), a typed view of a
validated config, and the checks a JSON schema cannot express.

Everything below reads its defaults from ``CONFIG_SCHEMA``; nothing else in the tap repeats
a default value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from singer_sdk import typing as th

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
        default=7,
        title="Child refresh every N runs",
        description="Rolling refresh: besides the children of parents that changed, each "
        "run lists the children of 1/N of all parents (an even slice by key), so a change "
        "under an unchanged parent (a new note, a history entry) arrives within N runs. "
        "Costs about (parents / N) requests a run; 0 = off.",
    ),
    th.Property(
        "max_run_seconds",
        th.IntegerType(minimum=0),
        default=0,
        title="Max run seconds",
        description="Deadline for one run: when it is reached the tap starts no new "
        "request, writes what is in flight and a STATE the next run resumes from, and "
        "exits 0 (the summary says what is left). 0 = no deadline.",
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


@dataclass(frozen=True)
class Settings:
    """A validated config, typed; each field's default is the schema's."""

    api_key: str
    base_url: str
    api_version: str
    page_size: int
    request_timeout: int
    max_retries: int
    retry_base_delay_ms: int
    on_missing_permission: str
    max_concurrency: int
    requests_per_minute: int
    reconcile_every_n_runs: int
    reconcile_now: bool
    child_refresh_every_n_runs: int
    max_run_seconds: int
    start_date: str | None = None
    reconcile_streams: tuple[str, ...] | None = None
    ledger_uri: str | None = None
    report_ids: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        props = CONFIG_SCHEMA["properties"]
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = config.get(f.name, props.get(f.name, {}).get("default"))
            if isinstance(value, list):
                value = tuple(value)
            if value is None and f.name == "report_ids":
                value = ()
            values[f.name] = value
        return cls(**values)
