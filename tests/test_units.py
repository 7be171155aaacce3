"""Fast unit tests of the tap's building blocks: no emulator, no server, no subprocess.

Sections follow the modules: errors, client, throttle, passes, ledger, deletes, endpoints,
tap config. Clocks and sleeps are faked where a test is about time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError, RetriableAPIError

from tap_ashby import client as client_mod
from tap_ashby import throttle as throttle_mod
from tap_ashby.client import (
    MAX_BACKOFF_SECONDS,
    PARTNER_BACKOFF_FACTOR,
    AshbyClient,
    Call,
    backoff_seconds,
    retry_after_seconds,
)
from tap_ashby.deletes import LedgerRun
from tap_ashby.endpoints import ENDPOINTS, ROWS, values_at
from tap_ashby.errors import (
    AshbyError,
    AuthenticationError,
    CursorExpired,
    InvalidInput,
    ParentGone,
    PartnerRateLimited,
    PermissionMissing,
    SyncTokenRejected,
    VersionRejected,
    classify,
    error_code,
)
from tap_ashby.ledger import (
    FORMAT,
    LedgerRef,
    LedgerStore,
    LedgerUnavailable,
    SortedSpill,
    decode_entry,
    default_ledger_uri,
    encode_key,
    entry,
    ledger_header,
    merge,
    read_ledger,
    write_ledger,
)
from tap_ashby.passes import MAX_PASS_RESTARTS, PassOutcome, read_pass
from tap_ashby.settings import CONFIG_SCHEMA, check_config
from tap_ashby.tap import TapAshby
from tap_ashby.throttle import RequestBudget

SECRET = "ashby-unit-SECRET-key-9f8e7d"
LOG = logging.getLogger("tap_ashby.tests.units")


def uid(n: int) -> str:
    """A canonical (lowercase) UUID string, ordered by ``n``."""
    return str(uuid.UUID(int=n))


def fail(code: str, message: str = "", request_id: str | None = None) -> dict[str, Any]:
    """An Ashby ``success: false`` body with ``errorInfo``."""
    info: dict[str, Any] = {"code": code}
    if message:
        info["message"] = message
    if request_id:
        info["requestId"] = request_id
    return {"success": False, "errorInfo": info}


def one_line(err: BaseException) -> str:
    """``str(err)``, asserted to be a single non-empty line."""
    text = str(err)
    assert text
    assert "\n" not in text and "\r" not in text
    return text


# =========================================================================================
# errors.py
# =========================================================================================
class TestClassify:
    """``classify``: which exception an Ashby answer deserves."""

    def test_success_is_none(self) -> None:
        assert classify("candidate.list", 200, {"success": True, "results": []}, "p") is None

    def test_401_is_authentication_error(self) -> None:
        err = classify("candidate.list", 401, None, "candidatesRead")
        assert type(err) is AuthenticationError
        text = one_line(err)
        assert "/candidate.list" in text and "401" in text

    def test_403_without_code_is_invalid_key(self) -> None:
        err = classify("candidate.list", 403, {"success": False}, "candidatesRead")
        assert type(err) is AuthenticationError
        assert "403" in one_line(err)

    def test_403_missing_permission_is_permission_missing(self) -> None:
        body = fail("missing_endpoint_permission", "nope", request_id="rid-7")
        err = classify("offer.list", 403, body, "offersRead")
        assert type(err) is PermissionMissing
        text = one_line(err)
        assert "offersRead" in text and "/offer.list" in text and "rid-7" in text
        assert err.code == "missing_endpoint_permission" and err.request_id == "rid-7"

    def test_429_is_retriable_not_partner(self) -> None:
        err = classify("candidate.list", 429, None, "p", {"Retry-After": "3"})
        assert type(err) is RetriableAPIError
        assert "rate limited" in one_line(err)

    @pytest.mark.parametrize("scope", ["integration-partner", "Integration-Partner"])
    def test_429_partner_scope(self, scope: str) -> None:
        headers = requests.structures.CaseInsensitiveDict({"x-ratelimit-scope": scope})
        err = classify("candidate.list", 429, None, "p", headers)
        assert isinstance(err, PartnerRateLimited)
        assert isinstance(err, RetriableAPIError)
        assert "integration-partner" in one_line(err)

    def test_rate_limit_code_with_200_is_retriable(self) -> None:
        err = classify("candidate.list", 200, fail("rate_limit_exceeded"), "p")
        assert type(err) is RetriableAPIError

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_5xx_is_retriable(self, status: int) -> None:
        err = classify("candidate.list", status, None, "p")
        assert type(err) is RetriableAPIError
        assert str(status) in one_line(err)

    def test_body_not_json_is_retriable(self) -> None:
        err = classify("candidate.list", 200, None, "p")
        assert type(err) is RetriableAPIError
        assert "JSON" in one_line(err)

    def test_non_object_body_is_fatal(self) -> None:
        err = classify("candidate.list", 200, ["x"], "p")
        assert type(err) is AshbyError

    def test_body_without_success_is_fatal(self) -> None:
        err = classify("candidate.list", 200, {"results": []}, "p")
        assert type(err) is AshbyError
        assert "success" in one_line(err)

    def test_invalid_input_names_endpoint_and_field(self) -> None:
        body = fail("invalid_input", "Field 'limit' must be at most 100", request_id="r1")
        err = classify("candidate.list", 200, body, "p", version="2026-01-01")
        assert type(err) is InvalidInput
        assert not isinstance(err, RetriableAPIError)
        text = one_line(err)
        assert "/candidate.list" in text and "'limit'" in text and "r1" in text

    def test_invalid_input_multiline_message_is_one_line(self) -> None:
        body = fail("invalid_input", "Field 'limit'\n  must be\tat most 100")
        text = one_line(classify("candidate.list", 200, body, "p"))
        assert "Field 'limit' must be at most 100" in text

    def test_invalid_input_about_version_is_version_rejected(self) -> None:
        body = fail("invalid_input", "Unsupported Ashby-Version: 1999-01-01")
        err = classify("version.list", 400, body, "p", version="1999-01-01")
        assert type(err) is VersionRejected
        assert "1999-01-01" in one_line(err) and "api_version" in str(err)

    def test_invalid_input_about_version_without_version_is_invalid_input(self) -> None:
        body = fail("invalid_input", "Unsupported Ashby-Version: 1999-01-01")
        assert type(classify("version.list", 400, body, "p")) is InvalidInput

    @pytest.mark.parametrize(
        "code", ["sync_token_expired", "sync_token_invalid", "incremental_sync_too_large"]
    )
    @pytest.mark.parametrize("status", [200, 400, 409])
    def test_token_codes_win_over_status(self, code: str, status: int) -> None:
        err = classify("candidate.list", status, fail(code, "too many"), "p")
        assert type(err) is SyncTokenRejected
        assert err.code == code
        assert code in one_line(err)

    @pytest.mark.parametrize(
        "code", ["next_cursor_expired", "invalid_next_cursor", "cursor_invalid"]
    )
    def test_cursor_codes(self, code: str) -> None:
        err = classify("candidate.list", 200, fail(code), "p")
        assert type(err) is CursorExpired and err.code == code

    def test_not_found_is_parent_gone(self) -> None:
        err = classify("application.listHistory", 404, fail("application_not_found"), "p")
        assert type(err) is ParentGone
        assert err.path == "application.listHistory"

    @pytest.mark.parametrize("status", [400, 404, 409])
    def test_other_4xx_is_fatal_hint(self, status: int) -> None:
        err = classify("candidate.list", status, None, "p")
        assert type(err) is AshbyError
        assert f"HTTP {status}" in one_line(err) and "base_url" in str(err)

    def test_legacy_errors_string_is_classified(self) -> None:
        err = classify(
            "candidate.list", 200, {"success": False, "errors": ["sync_token_expired"]}, "p"
        )
        assert type(err) is SyncTokenRejected

    def test_never_echoes_the_key(self) -> None:
        for status in (401, 403):
            assert SECRET not in str(classify("candidate.list", status, None, "p"))

    def test_legacy_multiline_error_is_one_line(self) -> None:
        body = {"success": False, "errors": ["Something went wrong:\nfield x is bad"]}
        one_line(classify("candidate.list", 200, body, "p"))


class TestErrorCode:
    """``error_code``: errorInfo.code first, else the legacy ``errors[0]``."""

    def test_error_info_wins(self) -> None:
        body = {"success": False, "errorInfo": {"code": "a"}, "errors": ["b"]}
        assert error_code(body) == "a"

    def test_legacy_string(self) -> None:
        assert error_code({"success": False, "errors": ["b"]}) == "b"

    def test_legacy_object_code_then_message(self) -> None:
        assert error_code({"errors": [{"code": "c", "message": "m"}]}) == "c"
        assert error_code({"errors": [{"message": "m"}]}) == "m"
        assert error_code({"errors": [{}]}) == "unknown_error"

    @pytest.mark.parametrize(
        "body", [None, [], "x", {}, {"errors": []}, {"errorInfo": {"code": ""}}]
    )
    def test_unknown(self, body: Any) -> None:
        assert error_code(body) == "unknown_error"


# =========================================================================================
# client.py: Retry-After, backoff, one request, pages
# =========================================================================================
NOW = 1_700_000_000.0


def response(
    status: int = 200,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> requests.Response:
    """A ``requests.Response`` with a JSON (or raw) body and headers."""
    resp = requests.Response()
    resp.status_code = status
    resp._content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    resp.headers.update(headers or {})
    return resp


class TestRetryAfter:
    """``retry_after_seconds``: delta-seconds or HTTP-date."""

    @pytest.fixture(autouse=True)
    def _frozen_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(client_mod, "time", SimpleNamespace(time=lambda: NOW))

    @pytest.mark.parametrize(
        ("header", "expected"), [("7", 7.0), ("0", 0.0), ("2.5", 2.5), ("-3", None)]
    )
    def test_delta_seconds(self, header: str, expected: float) -> None:
        assert retry_after_seconds(response(headers={"Retry-After": header})) == expected

    def test_http_date_in_future(self) -> None:
        header = formatdate(NOW + 120, usegmt=True)
        assert retry_after_seconds(response(headers={"Retry-After": header})) == pytest.approx(
            120.0
        )

    def test_http_date_in_past_is_zero(self) -> None:
        header = formatdate(NOW - 3600, usegmt=True)
        assert retry_after_seconds(response(headers={"Retry-After": header})) == 0.0

    @pytest.mark.parametrize("header", ["soon", "", "Wed, 99 Foo 2024"])
    def test_garbage_is_none(self, header: str) -> None:
        assert retry_after_seconds(response(headers={"Retry-After": header})) is None

    def test_missing_is_none(self) -> None:
        assert retry_after_seconds(response()) is None
        assert retry_after_seconds(None) is None

    @pytest.mark.parametrize("header", ["inf", "Infinity"])
    def test_non_finite_is_refused(self, header: str) -> None:
        told = retry_after_seconds(response(headers={"Retry-After": header}))
        assert told is None or math.isfinite(told)


class TestBackoff:
    """``backoff_seconds``: capped doubling, Retry-After, partner scope, jitter."""

    @pytest.fixture
    def no_jitter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(client_mod, "random", SimpleNamespace(uniform=lambda a, b: a))

    @pytest.mark.usefixtures("no_jitter")
    def test_doubles_from_base_and_caps(self) -> None:
        waits = [backoff_seconds(n, 0.5, None, False) for n in range(1, 11)]
        assert waits[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
        assert waits[-1] == MAX_BACKOFF_SECONDS == 60.0
        assert max(waits) == 60.0

    @pytest.mark.usefixtures("no_jitter")
    def test_retry_after_replaces_doubling(self) -> None:
        assert backoff_seconds(1, 1.0, 7.0, False) == 7.0
        assert backoff_seconds(9, 1.0, 7.0, False) == 7.0  # not the 60 s cap
        assert backoff_seconds(1, 1.0, 0.0, False) == 0.0

    @pytest.mark.usefixtures("no_jitter")
    def test_partner_waits_longer(self) -> None:
        assert backoff_seconds(1, 1.0, None, True) == 1.0 * PARTNER_BACKOFF_FACTOR
        assert backoff_seconds(1, 1.0, 2.0, True) == 2.0 * PARTNER_BACKOFF_FACTOR
        assert backoff_seconds(1, 1.0, 0.0, True) == 1.0 * PARTNER_BACKOFF_FACTOR
        assert backoff_seconds(1, 1.0, None, True) > backoff_seconds(1, 1.0, None, False)

    def test_jitter_is_between_1_and_1_25_within_the_cap(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(client_mod, "random", SimpleNamespace(uniform=lambda a, b: b))
        assert backoff_seconds(20, 1.0, None, False) == MAX_BACKOFF_SECONDS  # jitter capped too
        assert backoff_seconds(2, 1.0, None, False) == 2.0 * 1.25
        monkeypatch.undo()
        for attempt in range(1, 12):
            nominal = min(60.0, 0.25 * 2 ** (attempt - 1))
            wait = backoff_seconds(attempt, 0.25, None, False)
            assert nominal <= wait <= min(nominal * 1.25, MAX_BACKOFF_SECONDS)

    def test_never_shorter_than_retry_after(self) -> None:
        for _ in range(50):
            assert backoff_seconds(3, 1.0, 30.0, False) >= 30.0
            assert backoff_seconds(3, 1.0, 30.0, True) >= 30.0 * PARTNER_BACKOFF_FACTOR


def client_config(**overrides: Any) -> dict[str, Any]:
    """The settings ``AshbyClient`` reads, with SDK defaults filled in."""
    config = {
        "api_key": SECRET,
        "base_url": "https://ashby.example.test/",
        "api_version": "2026-01-01",
        "request_timeout": 5,
        "max_retries": 2,
        "retry_base_delay_ms": 0,
        "page_size": 3,
    }
    config.update(overrides)
    return config


class RecordingBudget(RequestBudget):
    """A request budget that records ``pause`` calls."""

    def __init__(self) -> None:
        super().__init__(0, 4)
        self.pauses: list[float] = []

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


class FakeSession:
    """Stands in for the thread's ``requests.Session``: scripted answers, recorded posts."""

    def __init__(self, answers: list[requests.Response | Exception]) -> None:
        self.answers = list(answers)
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def post(self, url: str, data: bytes, timeout: float) -> requests.Response:
        self.posts.append((url, json.loads(data)))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's backoff waits (``RequestBudget.wait``), recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(RequestBudget, "wait", lambda self, seconds: slept.append(seconds))
    return slept


def make_client(
    answers: list[requests.Response | Exception] | None = None, **overrides: Any
) -> tuple[AshbyClient, FakeSession, RecordingBudget]:
    """A client whose session is a ``FakeSession`` with ``answers``."""
    budget = RecordingBudget()
    client = AshbyClient(client_config(**overrides), budget, LOG)
    session = FakeSession(answers or [])
    client._local.session = session
    return client, session, budget


class TestPost:
    """``AshbyClient.post``: classification, retries, Retry-After, version warnings."""

    def test_success_body_url_and_request_count(self, sleeps: list[float]) -> None:
        client, session, _ = make_client([response(body={"success": True, "results": [1]})])
        answer = client.post(Call("user.list"), {"limit": 3}, owner="users")
        assert answer == {"success": True, "results": [1]}
        assert session.posts == [("https://ashby.example.test/user.list", {"limit": 3})]
        assert client.requests["users"] == 1
        assert sleeps == []

    def test_429_retry_after_pauses_budget(self, sleeps: list[float]) -> None:
        client, session, budget = make_client(
            [response(429, headers={"Retry-After": "2"}), response(body={"success": True})]
        )
        assert client.post(Call("user.list"), {}, owner="users") == {"success": True}
        assert len(session.posts) == 2
        assert len(sleeps) == 1 and 2.0 <= sleeps[0] <= 2.5
        assert budget.pauses == sleeps

    def test_partner_429_pauses_longer(
        self, sleeps: list[float], caplog: pytest.LogCaptureFixture
    ) -> None:
        partner = {"X-RateLimit-Scope": "integration-partner", "Retry-After": "1"}
        client, _, budget = make_client(
            [
                response(429, headers=partner),
                response(429, headers=partner),
                response(body={"success": True}),
            ]
        )
        with caplog.at_level(logging.WARNING):
            client.post(Call("user.list"), {}, owner="users")
        assert all(w >= PARTNER_BACKOFF_FACTOR for w in sleeps) and len(sleeps) == 2
        assert budget.pauses == sleeps
        assert sum("backing off longer" in r.getMessage() for r in caplog.records) == 1

    def test_retries_exhausted_raise(self, sleeps: list[float]) -> None:
        client, session, budget = make_client([response(500)] * 3, max_retries=2)
        with pytest.raises(RetriableAPIError):
            client.post(Call("user.list"), {}, owner="users")
        assert len(session.posts) == 3
        assert len(sleeps) == 2
        assert budget.pauses == []  # no Retry-After: only this request waits

    def test_transport_errors_are_retried(self, sleeps: list[float]) -> None:
        client, session, _ = make_client(
            [requests.ConnectionError("reset"), response(body={"success": True})]
        )
        assert client.post(Call("user.list"), {}, owner="users") == {"success": True}
        assert len(session.posts) == 2 and len(sleeps) == 1

    def test_broken_json_is_retried(self, sleeps: list[float]) -> None:
        client, session, _ = make_client(
            [response(raw=b"{not json"), response(body={"success": True})]
        )
        assert client.post(Call("user.list"), {}, owner="users") == {"success": True}
        assert len(session.posts) == 2

    def test_fatal_is_not_retried(self, sleeps: list[float]) -> None:
        client, session, _ = make_client([response(body=fail("invalid_input", "bad 'x'"))])
        with pytest.raises(InvalidInput):
            client.post(Call("user.list"), {}, owner="users")
        assert len(session.posts) == 1 and sleeps == []

    def test_deprecated_version_warns_once(
        self, sleeps: list[float], caplog: pytest.LogCaptureFixture
    ) -> None:
        headers = {"Ashby-Version-Status": "Deprecated", "Ashby-Version": "2026-01-01"}
        ok = {"success": True}
        client, _, _ = make_client([response(body=ok, headers=headers)] * 3)
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                client.post(Call("user.list"), {}, owner="users")
        warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
        assert len(warnings) == 1 and "2026-01-01" in warnings[0]

    def test_session_headers_and_auth(self) -> None:
        client = AshbyClient(client_config(), RequestBudget(), LOG)
        session = client._session()
        assert session.auth == (SECRET, "")
        assert session.headers["Ashby-Version"] == "2026-01-01"
        assert session.headers["Content-Type"] == "application/json"
        assert client._session() is session  # one session per thread


class ScriptedPost:
    """Replaces ``AshbyClient.post``: answers (or raises) from a script, records bodies."""

    def __init__(self, script: list[dict[str, Any] | Exception]) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, call: Call, body: dict[str, Any], owner: str) -> dict[str, Any]:
        self.bodies.append(dict(body))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def page(
    rows: list[Any],
    cursor: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """A ``success: true`` list answer: more data when ``cursor`` is given."""
    out: dict[str, Any] = {
        "success": True,
        "results": rows,
        "moreDataAvailable": cursor is not None,
    }
    if cursor:
        out["nextCursor"] = cursor
    if token:
        out["syncToken"] = token
    return out


def scripted_client(
    monkeypatch: pytest.MonkeyPatch,
    script: list[dict[str, Any] | Exception],
) -> tuple[AshbyClient, ScriptedPost]:
    """A client whose ``post`` follows ``script``."""
    client = AshbyClient(client_config(page_size=2), RequestBudget(), LOG)
    post = ScriptedPost(script)
    monkeypatch.setattr(client, "post", post)
    return client, post


class TestPages:
    """``AshbyClient.pages``: cursor following and what each request body carries."""

    def test_follows_cursor_and_repeats_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, post = scripted_client(
            monkeypatch,
            [
                page([{"id": 1}, {"id": 2}], cursor="c1"),
                page([{"id": 3}, {"id": 4}], cursor="c2"),
                page([{"id": 5}], token="T1"),
            ],
        )
        call = Call("candidate.list", {"createdAfter": 5})
        pages = list(client.pages(call, "T0", "candidates"))
        assert [[r["id"] for r in p.records] for p in pages] == [[1, 2], [3, 4], [5]]
        assert [p.last for p in pages] == [False, False, True]
        assert [p.sync_token for p in pages] == [None, None, "T1"]
        assert post.bodies == [
            {"createdAfter": 5, "limit": 2, "syncToken": "T0"},
            {"createdAfter": 5, "limit": 2, "syncToken": "T0", "cursor": "c1"},
            {"createdAfter": 5, "limit": 2, "syncToken": "T0", "cursor": "c2"},
        ]
        assert dict(call.body) == {"createdAfter": 5}  # the call's body is not mutated

    def test_full_pass_sends_no_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, post = scripted_client(monkeypatch, [page([1], cursor="c1"), page([2])])
        pages = list(client.pages(Call("candidate.list"), None, "candidates"))
        assert post.bodies == [{"limit": 2}, {"limit": 2, "cursor": "c1"}]
        assert pages[-1].sync_token is None  # a list without a token

    def test_more_without_cursor_stops(self, monkeypatch: pytest.MonkeyPatch) -> None:
        answer = {"success": True, "results": [1], "moreDataAvailable": True, "syncToken": "T"}
        client, post = scripted_client(monkeypatch, [answer])
        pages = list(client.pages(Call("candidate.list"), None, "candidates"))
        assert len(pages) == 1 and pages[0].last and pages[0].sync_token == "T"
        assert len(post.bodies) == 1

    def test_unpaginated_sends_no_paging_fields(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, post = scripted_client(monkeypatch, [{"success": True, "results": {"id": "one"}}])
        call = Call("jobPosting.info", {"jobPostingId": "p1"}, paginated=False)
        pages = list(client.pages(call, "T0", "job_posting_details"))
        assert post.bodies == [{"jobPostingId": "p1"}]
        assert [p.records for p in pages] == [[{"id": "one"}]]

    def test_null_results_is_empty_page(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, _ = scripted_client(
            monkeypatch, [{"success": True, "results": None, "syncToken": "T"}]
        )
        pages = list(client.pages(Call("candidate.list"), "T0", "candidates"))
        assert [p.records for p in pages] == [[]] and pages[0].sync_token == "T"

    def test_unpaginated_follows_a_returned_cursor(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, post = scripted_client(monkeypatch, [page([1], cursor="c1"), page([2])])
        call = Call("source.list", {"includeArchived": True}, paginated=False)
        pages = list(client.pages(call, None, "sources"))
        assert [p.records for p in pages] == [[1], [2]]
        assert post.bodies[0] == {"includeArchived": True}
        assert post.bodies[1]["cursor"] == "c1"


# =========================================================================================
# throttle.py
# =========================================================================================
class FakeClock:
    """``time.monotonic``/``time.sleep`` for throttle.py: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep is not None:
            hook, self.on_sleep = self.on_sleep, None
            hook()
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock installed in throttle.py."""
    fake = FakeClock()
    monkeypatch.setattr(throttle_mod, "time", fake)
    return fake


class TestRequestBudget:
    """``RequestBudget``: rate spacing, pauses, in-flight cap."""

    def test_rate_spaces_slots(self, clock: FakeClock) -> None:
        budget = RequestBudget(per_minute=120)  # one slot per 0.5 s
        starts = []
        for _ in range(4):
            with budget.slot():
                starts.append(clock.now - 1000.0)
        assert starts == pytest.approx([0.0, 0.5, 1.0, 1.5])
        assert sum(clock.slept) == pytest.approx(1.5)

    def test_idle_time_is_not_banked(self, clock: FakeClock) -> None:
        budget = RequestBudget(per_minute=60)
        with budget.slot():
            pass
        clock.now += 10  # idle for a long time
        starts = []
        for _ in range(2):
            with budget.slot():
                starts.append(clock.now)
        assert starts[1] - starts[0] == pytest.approx(1.0)  # no burst after idling

    def test_unlimited_never_waits(self, clock: FakeClock) -> None:
        budget = RequestBudget(per_minute=0)
        for _ in range(100):
            with budget.slot():
                pass
        assert clock.slept == []

    def test_pause_delays_next_slot(self, clock: FakeClock) -> None:
        budget = RequestBudget(per_minute=0)
        budget.pause(5.0)
        budget.pause(1.0)  # a shorter pause does not shorten the longer one
        with budget.slot():
            entered = clock.now
        assert entered - 1000.0 == pytest.approx(5.0)

    def test_pause_arriving_while_waiting(self, clock: FakeClock) -> None:
        budget = RequestBudget(per_minute=60)
        with budget.slot():
            pass
        clock.on_sleep = lambda: budget.pause(10.0)  # a 429 elsewhere during our wait
        with budget.slot():
            entered = clock.now
        assert entered - 1000.0 >= 10.0

    def test_in_flight_cap_blocks_a_third_request(self) -> None:
        budget = RequestBudget(per_minute=0, max_in_flight=2)
        entered = threading.Event()

        def third() -> None:
            with budget.slot():
                entered.set()

        with ExitStack() as held:
            held.enter_context(budget.slot())
            second = ExitStack()
            second.enter_context(budget.slot())
            worker = threading.Thread(target=third, daemon=True)
            worker.start()
            assert not entered.wait(0.3)  # both slots held: the third waits
            second.close()
            assert entered.wait(10)  # a slot was freed: it proceeds
        worker.join(10)
        assert not worker.is_alive()

    def test_zero_in_flight_means_one(self) -> None:
        budget = RequestBudget(max_in_flight=0)
        with budget.slot():
            pass  # would deadlock with a zero-slot semaphore


# =========================================================================================
# passes.py: read_pass
# =========================================================================================
def token_rejected() -> SyncTokenRejected:
    return SyncTokenRejected(
        "/candidate.list: incremental_sync_too_large",
        "incremental_sync_too_large",
        "candidate.list",
    )


def cursor_expired() -> CursorExpired:
    return CursorExpired(
        "/candidate.list: next_cursor_expired", "next_cursor_expired", "candidate.list"
    )


class TestReadPass:
    """``read_pass``: outcome, token fallback, cursor restarts."""

    def test_incremental_pass_outcome(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, _ = scripted_client(monkeypatch, [page([1], cursor="c1"), page([2], token="T1")])
        outcome = PassOutcome()
        assert list(
            read_pass(client, Call("candidate.list"), "T0", "candidates", LOG, outcome)
        ) == [[1], [2]]
        assert outcome.token == "T1" and outcome.full is False

    def test_token_rejected_falls_back_to_full_pass(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        client, post = scripted_client(
            monkeypatch,
            [
                page([1], cursor="c1"),
                page([2], cursor="c2"),
                token_rejected(),
                page([1], cursor="d1"),
                page([2], cursor="d2"),
                page([3], token="T-full"),
            ],
        )
        outcome = PassOutcome(token="stale", full=False)
        with caplog.at_level(logging.WARNING):
            pages = list(
                read_pass(client, Call("candidate.list"), "T0", "candidates", LOG, outcome)
            )
        assert pages == [[1], [2], [1], [2], [3]]  # aborted pages come again
        assert outcome.token == "T-full" and outcome.full is True
        assert [b.get("syncToken") for b in post.bodies] == ["T0"] * 3 + [None] * 3
        assert [b.get("cursor") for b in post.bodies] == [None, "c1", "c2", None, "d1", "d2"]
        assert any("incremental_sync_too_large" in r.getMessage() for r in caplog.records)

    def test_token_rejected_without_token_raises(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, post = scripted_client(monkeypatch, [page([1], cursor="c1"), token_rejected()])
        with pytest.raises(SyncTokenRejected):
            list(read_pass(client, Call("candidate.list"), None, "candidates", LOG, PassOutcome()))
        assert len(post.bodies) == 2

    def test_cursor_expired_restarts_with_same_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        client, post = scripted_client(
            monkeypatch,
            [
                page([1], cursor="c1"),
                cursor_expired(),
                page([1], cursor="c9"),
                page([2], token="T1"),
            ],
        )
        outcome = PassOutcome()
        pages = list(read_pass(client, Call("candidate.list"), "T0", "candidates", LOG, outcome))
        assert pages == [[1], [1], [2]]
        assert [b.get("cursor") for b in post.bodies] == [None, "c1", None, "c9"]
        assert all(b["syncToken"] == "T0" for b in post.bodies)
        assert outcome.token == "T1" and outcome.full is False

    def test_cursor_expired_gives_up_after_max_restarts(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        attempts = MAX_PASS_RESTARTS + 1
        client, post = scripted_client(
            monkeypatch, [page([1], cursor="c1"), cursor_expired()] * attempts
        )
        outcome = PassOutcome()
        with pytest.raises(CursorExpired):
            list(read_pass(client, Call("candidate.list"), None, "candidates", LOG, outcome))
        assert len(post.bodies) == 2 * attempts
        assert post.script == []
        assert outcome.token is None


# =========================================================================================
# ledger.py: encoding, spill, file, merge, store
# =========================================================================================
CHILD_KEYS = ["candidateId", "id"]


def top(n: int) -> bytes:
    """The entry of a top-level row with id ``uid(n)``."""
    return entry(None, {"id": uid(n)}, ["id"])


def child(parent: int, n: int) -> bytes:
    """The entry of a child row (candidateId = parent) under parent ``uid(parent)``."""
    return entry(uid(parent), {"candidateId": uid(parent), "id": uid(n)}, CHILD_KEYS)


def parent_key(n: int) -> bytes:
    return encode_key(uid(n))


class TestEncoding:
    """``encode_key``, ``entry``, ``decode_entry``."""

    def test_canonical_uuid_is_17_bytes(self) -> None:
        value = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
        encoded = encode_key(value)
        assert len(encoded) == 17
        assert encoded[1:] == uuid.UUID(value).bytes

    @pytest.mark.parametrize(
        "value",
        [
            "3FA85F64-5717-4562-B3FC-2C963F66AFA6",  # uppercase: not canonical
            "3fa85f6457174562b3fc2c963f66afa6",  # no dashes
            "not-a-uuid-but-36-characters-long!!",
            "v2026-01-01",
            "üñï©ødé",
            "x" * 300,
        ],
    )  # long text: multi-byte length
    def test_other_text_round_trips(self, value: str) -> None:
        encoded = encode_key(value)
        assert len(encoded) > len(value.encode())  # text form: tag + length + bytes
        assert decode_entry(encode_key("") + encoded, ["k"]) == {"k": value}

    def test_parent_key_is_one_byte(self) -> None:
        assert len(encode_key(uid(5), parent=uid(5))) == 1
        assert len(encode_key(uid(5), parent=uid(6))) == 17

    @pytest.mark.parametrize("value", [None, ""])
    def test_empty(self, value: Any) -> None:
        assert encode_key(value) == b"\x00"

    def test_top_level_round_trip(self) -> None:
        item = entry(None, {"id": uid(1), "other": "x"}, ["id"])
        assert len(item) == 1 + 17
        assert decode_entry(item, ["id"]) == {"id": uid(1)}

    def test_child_round_trip(self) -> None:
        item = entry(uid(7), {"candidateId": uid(7), "id": "Note-ABC"}, CHILD_KEYS)
        assert decode_entry(item, CHILD_KEYS) == {"candidateId": uid(7), "id": "Note-ABC"}
        assert len(child(7, 8)) == 17 + 1 + 17  # parent, same-as-parent, own id

    def test_entries_group_by_parent(self) -> None:
        text_parent = entry("P-1", {"candidateId": "P-1", "id": uid(4)}, CHILD_KEYS)
        items = sorted([child(2, 1), child(1, 9), text_parent, child(2, 0), child(1, 3)])
        parents = [decode_entry(i, CHILD_KEYS)["candidateId"] for i in items]
        assert parents == [uid(1), uid(1), uid(2), uid(2), "P-1"]  # contiguous runs
        assert min([top(99), *items]) == top(99)  # top-level (empty parent) sorts first


class TestSortedSpill:
    """``SortedSpill``: sorted and de-duplicated across spilled chunks."""

    def test_sorts_and_dedupes_across_chunks(self, tmp_path: Path) -> None:
        spill = SortedSpill(str(tmp_path), chunk=3)
        order = [5, 1, 9, 1, 7, 5, 3, 9, 2, 8, 2, 5]
        for n in order:
            spill.add(top(n))
        assert len(list(tmp_path.glob("*.chunk"))) == len(order) // 3  # it did spill
        assert spill.added == len(order)
        assert list(spill) == [top(n) for n in sorted(set(order))]
        assert list(spill) == [top(n) for n in sorted(set(order))]  # iterable again

    def test_empty(self, tmp_path: Path) -> None:
        assert list(SortedSpill(str(tmp_path), chunk=2)) == []


class TestLedgerFile:
    """``write_ledger``/``read_ledger``: round trip and size on disk."""

    def test_round_trip_top_level_and_size(self, tmp_path: Path) -> None:
        n = 5000  # more than one 4096-row group
        items = sorted(top(i) for i in range(n))
        path = str(tmp_path / "g.ledger")
        assert write_ledger(path, iter(items), "scope-1", 1) == n
        assert list(read_ledger(path, 1)) == items
        header = ledger_header(path)
        assert header == {"format": FORMAT, "scope": "scope-1", "keys": 1}
        header_size = len(json.dumps(header).encode()) + 1
        groups = math.ceil(n / 4096)
        body = os.path.getsize(path) - header_size
        assert body <= 17 * n + 3 * groups  # parent tag + 2-byte count per group

    def test_round_trip_children_and_text(self, tmp_path: Path) -> None:
        items = sorted(
            [
                child(1, 2),
                child(1, 3),
                child(4, 4),
                entry(uid(4), {"candidateId": uid(4), "id": "TEXT-id"}, CHILD_KEYS),
                entry("Parent-X", {"candidateId": "Parent-X", "id": uid(9)}, CHILD_KEYS),
            ]
        )
        path = str(tmp_path / "c.ledger")
        assert write_ledger(path, iter(items), "s", 2) == 5
        assert list(read_ledger(path, 2)) == items

    def test_empty_ledger(self, tmp_path: Path) -> None:
        path = str(tmp_path / "e.ledger")
        assert write_ledger(path, iter([]), "s", 1) == 0
        assert list(read_ledger(path, 1)) == []


def run_merge(
    before: list[bytes],
    after: list[bytes],
    replaced: list[bytes] | None = None,
    live: list[bytes] | None = None,
) -> tuple[list[bytes], list[bytes]]:
    """(kept, gone) of ``merge`` over sorted inputs."""
    gone: list[bytes] = []
    kept = list(
        merge(
            iter(sorted(before)),
            iter(sorted(after)),
            None if replaced is None else iter(sorted(replaced)),
            None if live is None else iter(sorted(live)),
            gone,
        )
    )
    return kept, gone


class TestMerge:
    """``merge``: the next generation and what vanished."""

    def test_full_replace(self) -> None:
        kept, gone = run_merge([top(1), top(2), top(3)], [top(1), top(3), top(4)])
        assert kept == [top(1), top(3), top(4)]
        assert gone == [top(2)]

    def test_incremental_union(self) -> None:
        kept, gone = run_merge([top(1), top(2)], [top(2), top(3)], replaced=[])
        assert kept == [top(1), top(2), top(3)]
        assert gone == []

    def test_children_of_replaced_parents_only(self) -> None:
        before = [child(1, 10), child(1, 11), child(2, 20), child(2, 21)]
        after = [child(1, 10), child(1, 12), child(2, 20)]
        kept, gone = run_merge(before, after, replaced=[parent_key(1)])
        assert gone == [child(1, 11)]  # parent 2 was not listed completely: 21 stays
        assert kept == sorted([child(1, 10), child(1, 12), child(2, 20), child(2, 21)])

    def test_children_of_vanished_parents_go(self) -> None:
        before = [child(1, 10), child(2, 20), child(3, 30)]
        kept, gone = run_merge(before, [], replaced=[], live=[parent_key(1), parent_key(3)])
        assert kept == [child(1, 10), child(3, 30)]
        assert gone == [child(2, 20)]

    def test_gone_is_sorted_and_complete(self) -> None:
        before = [top(i) for i in range(20)]
        after = [top(i) for i in range(0, 20, 3)]
        kept, gone = run_merge(before, after)
        assert kept == sorted(after)
        assert gone == sorted(set(before) - set(after))


def make_store(uri: str, tmp_path: Path) -> LedgerStore:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return LedgerStore(uri, str(work), LOG)


def ledger_file(tmp_path: Path, scope: str, ids: list[int]) -> tuple[str, int]:
    """A finished local ledger file of top-level ``ids``."""
    path = str(tmp_path / f"local-{uuid.uuid4().hex}.ledger")
    return path, write_ledger(path, iter(sorted(top(i) for i in ids)), scope, 1)


@pytest.fixture(params=["path", "file-url", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """A ``LedgerStore`` on a directory, a ``file://`` URL, or fsspec's memory filesystem."""
    if request.param == "path":
        yield make_store(str(tmp_path / "ledgers"), tmp_path)
    elif request.param == "file-url":
        yield make_store((tmp_path / "ledgers").as_uri(), tmp_path)
    else:
        uri = f"memory://tap-ashby-units-{uuid.uuid4().hex}/ledgers"
        created = make_store(uri, tmp_path)
        yield created
        if created.fs.exists(created.root):
            created.fs.rm(created.root, recursive=True)


class TestLedgerStore:
    """``LedgerStore`` publish/fetch/prune on every kind of location."""

    def test_publish_then_fetch_is_identical(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "scope-a", [1, 2, 3])
        ref = store.publish("candidates", "lin", local, rows, "scope-a")
        assert ref.rows == 3 and ref.scope == "scope-a" and ref.lineage == "lin"
        fetched = store.fetch("candidates", ref, "scope-a")
        assert fetched != local
        assert Path(fetched).read_bytes() == Path(local).read_bytes()
        assert LedgerRef.from_state(ref.as_state()) == ref

    def test_publish_never_overwrites(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "s", [1])
        first = store.publish("candidates", "lin", local, rows, "s")
        second = store.publish("candidates", "lin", local, rows, "s")
        assert first.gen != second.gen

    def test_wrong_scope(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "scope-a", [1])
        ref = store.publish("candidates", "lin", local, rows, "scope-a")
        with pytest.raises(LedgerUnavailable, match="other settings"):
            store.fetch("candidates", ref, "scope-b")

    def test_wrong_scope_inside_file(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "scope-a", [1])
        ref = store.publish("candidates", "lin", local, rows, "scope-a")
        forged = LedgerRef(ref.lineage, ref.gen, ref.rows, ref.sha256, "scope-b")
        with pytest.raises(LedgerUnavailable, match="does not match"):
            store.fetch("candidates", forged, "scope-b")

    def test_wrong_sha(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "s", [1])
        ref = store.publish("candidates", "lin", local, rows, "s")
        bad = LedgerRef(ref.lineage, ref.gen, ref.rows, "0" * 32, ref.scope)
        with pytest.raises(LedgerUnavailable, match="does not match"):
            store.fetch("candidates", bad, "s")

    def test_missing_file(self, store: LedgerStore, tmp_path: Path) -> None:
        ref = LedgerRef("lin", "nosuchgen", 0, "0" * 32, "s")
        with pytest.raises(LedgerUnavailable, match="nosuchgen") as info:
            store.fetch("candidates", ref, "s")
        one_line(info.value)

    def test_prune_keeps_only_given_generations(self, store: LedgerStore, tmp_path: Path) -> None:
        local, rows = ledger_file(tmp_path, "s", [1])
        refs = [store.publish("candidates", "lin", local, rows, "s") for _ in range(4)]
        other = store.publish("candidates", "other-lineage", local, rows, "s")
        store.prune("candidates", "lin", {refs[1].gen, refs[3].gen})
        names = {
            Path(str(n)).name for n in store.fs.ls(f"{store.root}/candidates/lin", detail=False)
        }
        assert names == {f"{refs[1].gen}.ledger", f"{refs[3].gen}.ledger"}
        assert store.fetch("candidates", other, "s")  # another lineage is untouched
        store.prune("candidates", "never-written", set())  # missing directory: no error


class TestDefaultLedgerUri:
    """``default_ledger_uri``: Meltano project, else XDG data home, else ~/.local/share."""

    def test_meltano_project(self, tmp_path: Path) -> None:
        env = {"MELTANO_PROJECT_ROOT": str(tmp_path), "XDG_DATA_HOME": "/elsewhere"}
        assert default_ledger_uri(env) == str(tmp_path / ".meltano" / "tap-ashby" / "ledger")

    def test_xdg_data_home(self, tmp_path: Path) -> None:
        assert default_ledger_uri({"XDG_DATA_HOME": str(tmp_path)}) == str(
            tmp_path / "tap-ashby" / "ledger"
        )

    def test_home_fallback(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HOME", str(tmp_path))
        assert default_ledger_uri({}) == str(tmp_path / ".local" / "share" / "tap-ashby" / "ledger")

    def test_reads_process_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
        assert default_ledger_uri().startswith(str(tmp_path))


# =========================================================================================
# deletes.py: LedgerRun
# =========================================================================================
SCOPE = "https://api.ashbyhq.com|candidates"


def ledger_run(
    store: LedgerStore,
    state: dict[str, Any],
    ids: list[int],
    *,
    every: int = 7,
    now: bool = False,
    replaced: list[bytes] | None = None,
    reconciled: bool = True,
) -> tuple[LedgerRun, list[dict[str, Any]]]:
    """One run of the candidates ledger that delivered ``ids``: (run, tombstones)."""
    run = LedgerRun(store, "candidates", ["id"], SCOPE, state, LOG, every, now)
    for n in ids:
        run.add(None, {"id": uid(n), "name": f"c{n}"})
    tombstones = list(run.close(replaced=replaced, live=None, reconciled=reconciled))
    return run, tombstones


@pytest.fixture
def dir_store(tmp_path: Path) -> LedgerStore:
    return make_store(str(tmp_path / "ledgers"), tmp_path)


def generations(store: LedgerStore, lineage: str) -> set[str]:
    folder = Path(store.root) / "candidates" / lineage
    return {p.name.removesuffix(".ledger") for p in folder.glob("*.ledger")}


class TestLedgerRun:
    """``LedgerRun`` end to end on a directory store."""

    def test_first_run_then_deletions(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        first, tombstones = ledger_run(dir_store, {}, [1, 2, 3, 4])
        assert first.due and tombstones == []
        ref = LedgerRef.from_state(first.commit["ledger"])
        assert ref is not None and ref.rows == 4 and ref.scope == SCOPE
        assert first.commit["runs_since_reconcile"] == 0

        with caplog.at_level(logging.WARNING):
            second, tombstones = ledger_run(dir_store, dict(first.commit), [1, 3])
        assert caplog.records == []
        assert sorted(t["id"] for t in tombstones) == [uid(2), uid(4)]
        assert all(set(t) == {"id", "_sdc_deleted_at"} for t in tombstones)
        assert all(t["_sdc_deleted_at"].endswith("Z") for t in tombstones)
        ref2 = LedgerRef.from_state(second.commit["ledger"])
        assert ref2 is not None and ref2.rows == 2 and ref2.lineage == ref.lineage

        third, tombstones = ledger_run(dir_store, dict(second.commit), [3])
        assert [t["id"] for t in tombstones] == [uid(1)]
        ref3 = LedgerRef.from_state(third.commit["ledger"])
        assert ref3 is not None
        assert generations(dir_store, ref.lineage) == {ref2.gen, ref3.gen}  # first pruned

    def test_incremental_run_keeps_union(self, dir_store: LedgerStore) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        state = {**first.commit, "runs_since_reconcile": 2}
        second, tombstones = ledger_run(
            dir_store, state, [3], every=7, replaced=[], reconciled=False
        )
        assert not second.due
        assert tombstones == []
        assert second.commit["ledger"]["rows"] == 3
        assert second.commit["runs_since_reconcile"] == 3

    @pytest.mark.parametrize(
        ("runs_since", "every", "now", "due"),
        [
            (5, 7, False, False),
            (6, 7, False, True),
            (100, 0, False, False),
            (0, 0, True, True),
            (0, 1, False, True),
        ],
    )
    def test_due(
        self, dir_store: LedgerStore, runs_since: int, every: int, now: bool, due: bool
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1])
        state = {**first.commit, "runs_since_reconcile": runs_since}
        run = LedgerRun(dir_store, "candidates", ["id"], SCOPE, state, LOG, every, now)
        assert run.due is due

    def test_missing_generation_warns_and_rebuilds(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2, 3])
        ref = LedgerRef.from_state(first.commit["ledger"])
        assert ref is not None
        (Path(dir_store.root) / "candidates" / ref.lineage / f"{ref.gen}.ledger").unlink()
        with caplog.at_level(logging.WARNING):
            second, tombstones = ledger_run(dir_store, dict(first.commit), [1])
        assert tombstones == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unavailable" in warnings[0]
        new = LedgerRef.from_state(second.commit["ledger"])
        assert new is not None and new.rows == 1 and new.lineage != ref.lineage
        assert generations(dir_store, new.lineage) == {new.gen}

    def test_changed_scope_warns_without_tombstones(
        self,
        dir_store: LedgerStore,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        state = {**first.commit, "ledger": {**first.commit["ledger"], "scope": "other"}}
        with caplog.at_level(logging.WARNING):
            _, tombstones = ledger_run(dir_store, state, [1])
        assert tombstones == []
        assert any("other settings" in r.getMessage() for r in caplog.records)

    def test_legacy_string_ledger_warns(
        self, dir_store: LedgerStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING):
            run, tombstones = ledger_run(dir_store, {"ledger": "z1:eJwLycgsVgCiRIWS1OISAA"}, [1, 2])
        assert tombstones == []
        assert any("older tap version" in r.getMessage() for r in caplog.records)
        assert run.commit["ledger"]["rows"] == 2

    def test_work_files_are_removed(self, dir_store: LedgerStore) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2])
        ledger_run(dir_store, dict(first.commit), [1])
        assert list(Path(dir_store.workdir).glob("*.ledger")) == []

    def test_reconcile_scan_replaces_seen(self, dir_store: LedgerStore) -> None:
        first, _ = ledger_run(dir_store, {}, [1, 2, 3])
        run = LedgerRun(dir_store, "candidates", ["id"], SCOPE, dict(first.commit), LOG, 7, False)
        run.add(None, {"id": uid(4)})  # delivered this run, then erased before the scan
        current = [top(1), top(3)]
        tombstones = list(run.close(replaced=[], live=None, current=current, reconciled=True))
        assert sorted(t["id"] for t in tombstones) == [uid(2), uid(4)]
        assert run.commit["ledger"]["rows"] == 2 and run.reconciled


# =========================================================================================
# endpoints.py
# =========================================================================================
class TestValuesAt:
    """``values_at``: dotted paths, ``a[].b`` lists, empties dropped."""

    RECORD: dict[str, Any] = {
        "id": "c1",
        "empty": "",
        "none": None,
        "zero": 0,
        "owner": {"id": "u1", "team": {"id": "t1"}},
        "files": [
            {"handle": "h1"},
            {"handle": None},
            {"handle": ""},
            {"other": 1},
            "not-a-dict",
            {"handle": "h2"},
        ],
        "events": [{"transcript": {"id": "x1"}}, {"transcript": None}],
        "tags": ["a", "", None, "b"],
        "nothing": None,
    }

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("id", ["c1"]),
            ("owner.id", ["u1"]),
            ("owner.team.id", ["t1"]),
            ("files[].handle", ["h1", "h2"]),
            ("events[].transcript.id", ["x1"]),
            ("tags[]", ["a", "b"]),
            ("empty", []),
            ("none", []),
            ("zero", [0]),
            ("missing", []),
            ("missing.deeper", []),
            ("id.deeper", []),
            ("nothing[].x", []),
            ("owner[].id", []),
        ],
    )
    def test_paths(self, path: str, expected: list[Any]) -> None:
        assert values_at(self.RECORD, path) == expected


class TestEndpointTable:
    """``ROWS``: a consistent table."""

    def test_unique_streams(self) -> None:
        names = [row.stream for row in ROWS]
        assert len(names) == len(set(names)) == len(ENDPOINTS)

    def test_parents_exist_and_come_first(self) -> None:
        position = {row.stream: i for i, row in enumerate(ROWS)}
        for i, row in enumerate(ROWS):
            if row.parent is not None:
                assert row.parent.stream in position, row.stream
                assert position[row.parent.stream] < i, row.stream

    def test_injected_parent_field_is_a_primary_key_when_keyed_by_parent(self) -> None:
        for row in ROWS:
            if (
                row.parent is not None
                and row.parent.inject
                and row.parent.inject in row.primary_keys
            ):
                assert row.primary_keys[0] == row.parent.inject

    def test_partitions(self) -> None:
        for row in ROWS:
            if row.partition_values:
                assert row.partition_param, row.stream

    def test_only_read_calls(self) -> None:
        for row in ROWS:
            verb = row.path.split(".", 1)[1]
            assert verb.startswith(("list", "info", "interviewerSettings", "synchronous")), row.path
            assert row.path not in {"referralForm.info", "report.generate"}

    def test_every_stream_has_a_schema(self) -> None:
        schemas = Path(__file__).resolve().parent.parent / "schemas"
        missing = [row.stream for row in ROWS if not (schemas / f"{row.stream}.json").exists()]
        assert missing == []

    def test_incremental(self) -> None:
        assert ENDPOINTS["candidates"].incremental
        assert ENDPOINTS["candidate_notes"].incremental  # through its parent's token
        assert not ENDPOINTS["brands"].incremental
        assert not ENDPOINTS["job_postings"].incremental


# =========================================================================================
# tap.py: config
# =========================================================================================
class TestCheckConfig:
    """``check_config``: what the JSON schema cannot say."""

    @pytest.mark.parametrize(
        "url",
        [
            "https://api.ashbyhq.com",
            "http://127.0.0.1:8123",
            "http://localhost",
            "http://localhost:9000/",
            "http://127.0.0.2:80",
            "http://[::1]:8000",
        ],
    )
    def test_accepted_urls(self, url: str) -> None:
        assert check_config({"api_key": SECRET, "base_url": url}) == []

    def test_defaults_are_accepted(self) -> None:
        assert check_config({"api_key": SECRET}) == []

    @pytest.mark.parametrize(
        "url", ["http://api.ashbyhq.com", "http://10.0.0.5:8080", "http://localhost.example.com"]
    )
    def test_http_to_remote_is_refused(self, url: str) -> None:
        problems = check_config({"api_key": SECRET, "base_url": url})
        assert len(problems) == 1
        assert "https://" in problems[0] and "base_url" in problems[0]
        assert SECRET not in problems[0] and "\n" not in problems[0]

    @pytest.mark.parametrize(
        "url", ["api.ashbyhq.com", "not a url", "ftp://example.com", "https://", ""]
    )
    def test_non_url_is_refused(self, url: str) -> None:
        problems = check_config({"api_key": SECRET, "base_url": url})
        assert len(problems) == 1 and "base_url" in problems[0]

    @pytest.mark.parametrize("key", ["", "   ", None])
    def test_empty_key(self, key: Any) -> None:
        problems = check_config({"api_key": key})
        assert len(problems) == 1 and "api_key" in problems[0]

    def test_bad_start_date(self) -> None:
        problems = check_config({"api_key": SECRET, "start_date": "last tuesday"})
        assert len(problems) == 1 and "start_date" in problems[0]
        assert check_config({"api_key": SECRET, "start_date": "2024-01-01T00:00:00Z"}) == []

    def test_dns_name_starting_with_127_is_not_loopback(self) -> None:
        assert check_config({"api_key": SECRET, "base_url": "http://127.attacker.example"})


class TestTapConfig:
    """``TapAshby`` refuses bad config with ``ConfigValidationError``, never echoing the key."""

    def test_schema_marks_key_secret(self) -> None:
        api_key = CONFIG_SCHEMA["properties"]["api_key"]
        assert api_key.get("secret") is True or api_key.get("writeOnly") is True
        assert "api_key" in CONFIG_SCHEMA["required"]

    @pytest.mark.parametrize(
        ("override", "mentions"),
        [
            ({"page_size": 0}, "page_size"),
            ({"page_size": 101}, "page_size"),
            ({"max_concurrency": 0}, "max_concurrency"),
            ({"on_missing_permission": "ignore"}, "on_missing_permission"),
            ({"base_url": "http://ashby.example.com"}, "https://"),
        ],
    )
    def test_invalid_config_raises(self, override: dict[str, Any], mentions: str) -> None:
        with pytest.raises(ConfigValidationError) as info:
            TapAshby(config={"api_key": SECRET, **override}, validate_config=True)
        text = " ".join([str(info.value), *map(str, info.value.errors)])
        assert mentions in text
        assert SECRET not in text

    def test_non_string_key_is_not_echoed(self) -> None:
        with pytest.raises(ConfigValidationError) as info:
            TapAshby(config={"api_key": 918273645546372819}, validate_config=True)
        text = " ".join([str(info.value), *map(str, info.value.errors)])
        assert "918273645546372819" not in text
