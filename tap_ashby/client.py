"""The HTTP side: one ``AshbyClient`` per run, shared by every stream and worker thread.

Every Ashby call is ``POST /<object>.<verb>`` with a JSON body and HTTP Basic auth (the key
is the username). The client pins ``Ashby-Version``, spends the run's request budget,
classifies answers (errors.py) and retries what is retriable, honouring Retry-After.

Why not singer-sdk's ``RESTStream.request_records``: it derives each request from the stream
context, while one Ashby stream calls its own list, its parent's list and one child call
per parent. A small client on ``requests`` keeps contexts partition-shaped (issue 16) and
lets prefetch workers call Ashby without a stream object.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlparse

import msgspec
import requests
from singer_sdk.exceptions import RetriableAPIError
from urllib3.exceptions import NameResolutionError, NewConnectionError

from . import __version__
from .errors import PartnerRateLimited, classify
from .throttle import RequestBudget

_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()
MAX_BACKOFF_SECONDS = 60.0  # the longest self-chosen wait, jitter included
# A host that refuses the connection (or does not resolve) is retried only this often: it is
# a wrong base_url far more often than a blip, and 8 retries at up to 60 s took 223 s.
CONNECT_RETRIES = 2
MAX_RETRY_AFTER_SECONDS = 3600.0  # a larger Retry-After is taken as an hour
DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")
PARTNER_BACKOFF_FACTOR = 4  # a partner-wide 429 is shared by every customer: wait longer
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
WARN_VERSION_STATUSES = frozenset({"deprecated", "unsupported"})


@dataclass(frozen=True)
class Call:
    """One Ashby request, apart from paging: endpoint path, body, and how it pages."""

    path: str
    body: Mapping[str, Any] = field(default_factory=dict)
    paginated: bool = True
    permission: str = "the required"


@dataclass
class Page:
    """One answer of a list: its rows, and on the last page the pass's new syncToken."""

    records: list[dict[str, Any]]
    last: bool
    sync_token: str | None = None


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), if any."""
    header = response.headers.get("Retry-After") if response is not None else None
    if header is None:
        return None
    header = header.strip()
    if DELTA_SECONDS.fullmatch(header):  # digits (RFC 9110; decimals tolerated): no inf/nan
        return min(float(header), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, moment.timestamp() - time.time()), MAX_RETRY_AFTER_SECONDS)


def backoff_seconds(attempt: int, base: float, told: float | None, partner: bool) -> float:
    """Wait before retry ``attempt`` (1-based): Retry-After if given, else doubling with
    jitter, capped (jitter included) at ``MAX_BACKOFF_SECONDS``."""
    jitter = random.uniform(1.0, 1.25)  # applied upwards: never shorter than Retry-After
    if told is not None:
        wait = told * jitter
    else:
        wait = min(MAX_BACKOFF_SECONDS, base * 2 ** (attempt - 1) * jitter)
    if partner:
        wait = max(wait, base * jitter) * PARTNER_BACKOFF_FACTOR
    return wait


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and urllib3's ``reason`` (requests wraps thrice)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        reason = getattr(item, "reason", None)
        todo += [
            item.__cause__,
            item.__context__,
            *[a for a in item.args if isinstance(a, BaseException)],
        ]
        todo.append(reason if isinstance(reason, BaseException) else None)


def cannot_connect(exc: BaseException) -> bool:
    """No TCP connection could be made: refused, unresolvable host, no route."""
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(e, NewConnectionError) for e in _chain(exc)
    )


def transport_reason(exc: BaseException) -> str:
    """Why a request failed below HTTP, in words."""
    chain = list(_chain(exc))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, NameResolutionError) for e in chain):
        return "host name not found"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if any(isinstance(e, NewConnectionError) for e in chain):
        return "cannot connect"
    return type(exc).__name__


def host_port(url: str) -> str:
    """``host:port`` of a URL, the scheme's default port filled in."""
    parsed = urlparse(url)
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme, 0)
    return f"{parsed.hostname or url}:{port}"


def unreachable(exc: BaseException, base_url: str, config: Mapping[str, Any]) -> str:
    """One line for a request that never got an HTTP answer: host:port, endpoint, why."""
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None) or base_url
    endpoint = urlparse(url).path.rsplit("/", 1)[-1]
    retries = config.get("max_retries", "")
    if cannot_connect(exc):
        retries = min(int(retries or 0), CONNECT_RETRIES)
    return (
        f"cannot reach Ashby at {host_port(base_url)} ({transport_reason(exc)}) calling "
        f"/{endpoint} after {retries} retries; check base_url and the network"
    )


class AshbyClient:
    """Thread-safe Ashby API client: one ``requests`` session per thread."""

    def __init__(
        self, config: Mapping[str, Any], budget: RequestBudget, logger: logging.Logger
    ) -> None:
        self.base_url = str(config["base_url"]).rstrip("/")
        self.api_version = str(config["api_version"])
        self.timeout = float(config["request_timeout"])
        self.max_retries = int(config["max_retries"])
        self.base_delay = int(config["retry_base_delay_ms"]) / 1000
        self.page_size = int(config["page_size"])
        self.budget = budget
        self.logger = logger
        self._auth = (str(config["api_key"]), "")
        self._local = threading.local()
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # per owner (stream name)
        self._warned: set[str] = set()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # Proxies and CA bundle read from the environment once, not on every request
            # (requests' per-request environment lookup cost ~1.4 ms a call: bench report).
            session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            session.verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
            session.trust_env = False
            session.auth = self._auth
            session.headers.update(
                {
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "User-Agent": f"tap-ashby/{__version__}",
                    "Ashby-Version": self.api_version,
                }
            )
            self._local.session = session
        return session

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self.logger.warning(message, *args)

    # one request -------------------------------------------------------------------------
    def post(self, call: Call, body: Mapping[str, Any], owner: str) -> dict[str, Any]:
        """One call, retried while retriable; the parsed ``success: true`` body."""
        attempt = 0
        while True:
            try:
                return self._post_once(call, body, owner)
            except (RetriableAPIError, *TRANSPORT_ERRORS) as err:
                attempt += 1
                connect = cannot_connect(err)
                if attempt > (
                    min(self.max_retries, CONNECT_RETRIES) if connect else self.max_retries
                ):
                    raise
                response = getattr(err, "response", None)
                told = retry_after_seconds(response)
                partner = isinstance(err, PartnerRateLimited)
                if partner:
                    self.warn_once(
                        "partner",
                        "Ashby is throttling the integration's combined "
                        "traffic (X-RateLimit-Scope: integration-partner); "
                        "backing off longer",
                    )
                wait = backoff_seconds(attempt, self.base_delay, told, partner)
                if told is not None or partner:
                    self.budget.pause(wait)  # every worker waits, not just this one
                # A refused connection ends in one error line soon; its retries are INFO.
                level = logging.INFO if connect else logging.WARNING
                self.logger.log(level, "retry %d in %.2fs: %s", attempt, wait, _describe(err))
                self.budget.wait(wait)  # a stopping run does not wait out a backoff

    def _post_once(self, call: Call, body: Mapping[str, Any], owner: str) -> dict[str, Any]:
        with self.budget.slot():
            with self._lock:
                self.requests[owner] += 1
            response = self._session().post(
                f"{self.base_url}/{call.path}", data=_ENCODE.encode(body), timeout=self.timeout
            )
        self._check_version(response)
        try:
            parsed: Any = _DECODE.decode(response.content) if response.content else None
        except msgspec.DecodeError:
            parsed = None
        error = classify(
            call.path,
            response.status_code,
            parsed,
            call.permission,
            response.headers,
            self.api_version,
        )
        if error is not None:
            if isinstance(error, RetriableAPIError):
                error.response = response
            raise error
        return parsed

    def _check_version(self, response: requests.Response) -> None:
        status = (response.headers.get("Ashby-Version-Status") or "").lower()
        if status in WARN_VERSION_STATUSES:
            version = response.headers.get("Ashby-Version") or self.api_version
            self.warn_once(
                f"version:{status}",
                "Ashby API version %s is %s: plan a move to a newer api_version (see the README)",
                version,
                status,
            )

    # a list ------------------------------------------------------------------------------
    def pages(self, call: Call, sync_token: str | None, owner: str) -> Iterator[Page]:
        """Every page of one pass; ``limit``/``syncToken`` only where they apply.

        Follows ``nextCursor`` whenever ``moreDataAvailable`` comes with one, even on lists
        documented as unpaginated (an answer that offers a cursor accepts it back); the last
        page carries the pass's new syncToken.
        """
        cursor: str | None = None
        while True:
            body = dict(call.body)
            if cursor:
                body["cursor"] = cursor
            if call.paginated:
                body["limit"] = self.page_size
                # UNCONFIRMED whether follow-up pages must repeat the token; sending it on
                # every page keeps the request identical apart from the cursor.
                if sync_token:
                    body["syncToken"] = sync_token
            answer = self.post(call, body, owner)
            results = answer.get("results")
            rows = results if isinstance(results, list) else ([] if results is None else [results])
            cursor = answer.get("nextCursor")
            if answer.get("moreDataAvailable") and cursor:
                yield Page(rows, last=False)
                continue
            yield Page(rows, last=True, sync_token=answer.get("syncToken") or None)
            return


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.RequestException) and not isinstance(exc, RetriableAPIError):
        return f"{type(exc).__name__} talking to Ashby ({transport_reason(exc)})"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
