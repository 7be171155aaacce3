"""The HTTP side of every stream: POST RPC calls, Basic auth, error classes, retries, budget.

A request is described by its stream context: ``{"path": "candidate.list", "body": {...}}``
(plus ``sync_token`` for incremental passes), so one stream can call its own endpoint, its
parent's list, or one child call per parent, through the same SDK request machinery.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

import msgspec
import requests
from singer_sdk import RESTStream
from singer_sdk.authenticators import BasicAuthenticator
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.helpers.types import Context

from .errors import classify
from .pagination import AshbyPaginator, body_of
from .throttle import RequestBudget

_DECODE = msgspec.json.Decoder()


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header on the answer behind ``exc``, if any."""
    response = getattr(exc, "response", None)
    header = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None


class AshbyStream(RESTStream[str | None]):
    """Base stream: talks to one Ashby RPC endpoint per request context."""

    http_method = "POST"
    _LOG_REQUEST_METRICS = False  # per-request metric lines drown the progress log

    @property
    def url_base(self) -> str:
        return str(self.config["base_url"]).rstrip("/")

    @cached_property
    def authenticator(self) -> BasicAuthenticator:
        # The key is the username, the password is empty (Ashby's docs).
        return BasicAuthenticator(username=self.config["api_key"], password="")

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Content-Type": "application/json",
                "User-Agent": self.user_agent}

    @property
    def timeout(self) -> int:
        return int(self.config.get("request_timeout", 60))

    @property
    def requests_session(self) -> requests.Session:
        # One session per thread: fan-out workers must not share a connection pool.
        local = self._thread_local
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = not self.config.get("ignore_proxy_env")
        return local.session

    @cached_property
    def _thread_local(self) -> threading.local:
        return threading.local()

    @property
    def budget(self) -> RequestBudget:
        return self._tap.budget  # type: ignore[attr-defined, no-any-return]

    # request ------------------------------------------------------------------------------
    def get_url(self, context: Context | None) -> str:
        return f"{self.url_base}/{(context or {})['path']}"

    def prepare_request_payload(self, context: Context | None,
                                next_page_token: str | None) -> dict[str, Any]:
        ctx = context or {}
        body = dict(ctx.get("body") or {})
        if ctx.get("paginated", True):
            body["limit"] = int(self.config.get("page_size", 100))
        if next_page_token:
            body["cursor"] = next_page_token
        # UNCONFIRMED whether follow-up pages must repeat the token; sending it on every page
        # keeps the filter set identical, which is what the docs' wording suggests.
        if ctx.get("sync_token"):
            body["syncToken"] = ctx["sync_token"]
        return body

    def get_new_paginator(self) -> AshbyPaginator:
        # request_records() asks for its paginator on its first step; paged_records() hands
        # it one it keeps, to read the pass's syncToken afterwards.
        paginator = getattr(self._thread_local, "next_paginator", None) or AshbyPaginator()
        self._thread_local.next_paginator = None
        return paginator

    def paged_records(self, context: Context, paginator: AshbyPaginator,
                      ) -> Iterable[dict[str, Any]]:
        """``request_records`` driven by a paginator the caller keeps."""
        self._thread_local.next_paginator = paginator
        yield from self.request_records(context)

    def get_http_request_counter(self) -> RequestTally:
        """Count requests per stream for the run summary, without the SDK's per-call metric
        line: a child stream makes one call per parent, and the call's context (parent ids,
        sync token) does not belong in logs."""
        return self.request_tally

    @cached_property
    def request_tally(self) -> RequestTally:
        return RequestTally()

    def validate_response(self, response: requests.Response) -> None:
        """Parse the body once, then raise what its status and ``success`` deserve."""
        body: Any = None
        try:
            body = _DECODE.decode(response.content) if response.content else None
        except msgspec.DecodeError:
            body = None
        response.ashby_body = body  # type: ignore[attr-defined]
        path = response.request.path_url.lstrip("/") if response.request else self.path
        error = classify(path, response.status_code, body, self.permission)
        if isinstance(error, RetriableAPIError):
            error.response = response
        if error is not None:
            raise error

    def parse_response(self, response: requests.Response) -> Iterable[dict]:
        results = body_of(response).get("results")
        if isinstance(results, list):
            return results
        return [] if results is None else [results]

    def request_decorator(self, func: Callable) -> Callable:
        budget = self.budget

        def within_budget(*args: Any, **kwargs: Any) -> requests.Response:
            with budget.slot():
                return func(*args, **kwargs)

        return super().request_decorator(within_budget)

    # retries ------------------------------------------------------------------------------
    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 8)) + 1

    def backoff_wait_generator(self) -> Any:
        """Retry-After when Ashby gives one (pausing every worker), else capped exponential."""
        base = int(self.config.get("retry_base_delay_ms", 1000)) / 1000
        attempt = 0
        exc = yield  # type: ignore[misc]
        while True:
            attempt += 1
            told = retry_after_seconds(exc)
            if told is not None:
                self.budget.pause(told)
                wait = told
            else:
                wait = min(60.0, base * 2 ** (attempt - 1))
            exc = yield wait

    def backoff_jitter(self, value: float) -> float:
        return value * random.uniform(1.0, 1.25)  # never shorter than Retry-After

    def backoff_handler(self, details: Any) -> None:
        exc = details.get("exception")
        self.logger.warning("retry %d in %.2fs: %s", details.get("tries", 0),
                            details.get("wait", 0.0), _describe(exc))

    def response_error_message(self, response: requests.Response) -> str:
        # Never echo bodies (candidate data) or headers into logs.
        return f"HTTP {response.status_code} from {response.request.path_url}"

    @property
    def permission(self) -> str:
        return "the required"


class RequestTally:
    """A thread-safe request counter with the SDK counter's context-manager interface."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def __enter__(self) -> RequestTally:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def with_context(self, context: Any) -> RequestTally:
        return self

    def increment(self, value: int = 1) -> None:
        with self._lock:
            self.value += value


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__} talking to Ashby"
    return str(exc).splitlines()[0][:300]
