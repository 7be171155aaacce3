"""Ashby's error answers, classified into what the tap does about them.

Ashby answers most errors with HTTP 200 and ``success: false``; the code is in
``errorInfo.code`` (older answers: ``errors[0]``, sometimes an object).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

RETRY_CODES = frozenset(
    {"rate_limit_exceeded", "concurrent_limit_exceeded", "rate_limited", "internal_error"}
)
TOKEN_CODES = frozenset({"sync_token_expired", "sync_token_invalid", "incremental_sync_too_large"})
CURSOR_CODES = frozenset({"next_cursor_expired", "invalid_next_cursor", "cursor_invalid"})
PERMISSION_CODES = frozenset({"missing_endpoint_permission"})


class AshbyError(FatalAPIError):
    """A non-retriable Ashby answer; ``str()`` is one line fit for an operator."""

    def __init__(
        self, message: str, code: str | None = None, path: str = "", request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.path, self.request_id = code, path, request_id


class AuthenticationError(AshbyError):
    """The key is missing, wrong or deactivated: nothing can be read."""


class PermissionMissing(AshbyError):
    """The key lacks the module permission an endpoint needs."""


class SyncTokenRejected(AshbyError):
    """The stored syncToken cannot be used: expired, invalid or too many changes."""


class CursorExpired(AshbyError):
    """A pagination cursor expired mid-pass: the pass must restart."""


class ParentGone(AshbyError):
    """A child call names a parent that no longer exists (``*_not_found``)."""


class InvalidInput(AshbyError):
    """Ashby refused the request body (``invalid_input``): a tap bug or an API change."""


class VersionRejected(AshbyError):
    """Ashby does not serve the pinned ``Ashby-Version``: nothing can be read."""


class PartnerRateLimited(RetriableAPIError):
    """A 429 for the integration's combined traffic (``X-RateLimit-Scope``)."""


def error_code(body: Any) -> str:
    """The error code of a ``success: false`` body (``errorInfo.code``, else ``errors[0]``),
    on one line and at most 100 characters (older answers put messages there)."""
    if not isinstance(body, dict):
        return "unknown_error"
    info = body.get("errorInfo")
    code: Any = info.get("code") if isinstance(info, dict) else None
    errors = body.get("errors")
    if not code and isinstance(errors, list) and errors:
        first = errors[0]
        code = (first.get("code") or first.get("message")) if isinstance(first, dict) else first
    return " ".join(str(code).split())[:100] if code else "unknown_error"


def _request_id(body: Any) -> str | None:
    info = body.get("errorInfo") if isinstance(body, dict) else None
    return info.get("requestId") if isinstance(info, dict) else None


def _message(body: Any) -> str:
    info = body.get("errorInfo") if isinstance(body, dict) else None
    message = info.get("message") if isinstance(info, dict) else None
    return " ".join(str(message).split())[:300] if message else ""


def classify(
    path: str,
    status: int,
    body: Any,
    permission: str,
    headers: Mapping[str, str] | None = None,
    version: str = "",
) -> Exception | None:
    """The exception an answer deserves, or None when it is a success.

    ``errorInfo.code`` decides first (Ashby sends most errors with HTTP 200, and some codes
    with 4xx statuses); the HTTP status only when there is no code. Messages name the
    endpoint, the code and Ashby's request id, never the key or record data.
    """
    code = error_code(body) if isinstance(body, dict) and body.get("success") is False else None
    rid = _request_id(body)
    suffix = f" (request id {rid})" if rid else ""
    detail = _message(body)
    text = f"/{path}: Ashby answered {code}" + (f": {detail}" if detail else "") + suffix
    if status == 429 or code in RETRY_CODES:
        if (headers or {}).get("X-RateLimit-Scope", "").lower() == "integration-partner":
            return PartnerRateLimited(
                f"/{path}: rate limited for the whole integration "
                f"(X-RateLimit-Scope: integration-partner){suffix}"
            )
        return RetriableAPIError(f"/{path}: rate limited ({code or 'HTTP 429'}){suffix}")
    if code == "invalid_input":
        if version and "version" in detail.lower():
            return VersionRejected(
                f"Ashby rejected api_version {version!r} (Ashby-Version header): {detail}; "
                "set api_version to a version Ashby serves",
                code,
                path,
                rid,
            )
        return InvalidInput(
            f"{text}; the request body was refused, so this tap version "
            "does not match Ashby's API (please report it)",
            code,
            path,
            rid,
        )
    if code in PERMISSION_CODES:
        return PermissionMissing(
            f"the API key lacks the {permission} permission needed by /{path}{suffix}",
            code,
            path,
            rid,
        )
    if code in TOKEN_CODES:
        return SyncTokenRejected(text, code, path, rid)
    if code in CURSOR_CODES:
        return CursorExpired(text, code, path, rid)
    if code and code.endswith("_not_found"):
        return ParentGone(text, code, path, rid)
    if status == 401:
        return AuthenticationError(
            f"Ashby rejected the API key for /{path} (HTTP 401: no key was accepted); "
            "check api_key / TAP_ASHBY_API_KEY",
            code,
            path,
            rid,
        )
    if status >= 500:
        return RetriableAPIError(f"/{path}: Ashby server error HTTP {status}")
    if status == 403:
        return AuthenticationError(
            f"Ashby rejected the API key for /{path} (HTTP 403: invalid or deactivated key)"
            f"{suffix}; check api_key / TAP_ASHBY_API_KEY",
            code,
            path,
            rid,
        )
    if status >= 400:
        return AshbyError(
            f"/{path}: HTTP {status} ({code or 'no error code'}){suffix}; "
            "is base_url an Ashby API?",
            code,
            path,
            rid,
        )
    if body is None:
        return RetriableAPIError(
            f"/{path}: the answer was not valid JSON; is base_url an Ashby API?"
        )
    if not isinstance(body, dict):
        return AshbyError(
            f"/{path}: unexpected answer (not a JSON object); is base_url an Ashby API?", None, path
        )
    if body.get("success") is True:
        return None
    if "success" not in body:
        return AshbyError(
            f"/{path}: the answer has no 'success' field; is base_url an Ashby API?", None, path
        )
    return AshbyError(text, code, path, rid)
