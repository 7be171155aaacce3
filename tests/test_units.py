"""Fast unit tests of the tap's building blocks: no emulator, no server, no subprocess.

Sections follow the modules: errors, client, throttle, passes, endpoints, tap config (the
ledger's are in test_ledger_units.py). Clocks and sleeps are faked where a test is about time.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections.abc import Callable
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
