"""Ashby's RPC protocol over an ``Org``: auth, permissions, envelopes, cursors, sync tokens.

Transport-free: ``Api.call(path, authorization, body) -> (status, payload)``; the HTTP server
adds faults, counters and the ``Ashby-Version`` header check (``Api.check_version``) around it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from .catalog import endpoints
from .faults import update_fields
from .generate import epoch_ms, iso_ms
from .org import Org, Table

MAX_LIMIT = 100
PERMISSION_SCOPES = {
    "candidatesRead": "candidates:read",
    "jobsRead": "jobs:read",
    "interviewsRead": "interviews:read",
    "hiringProcessMetadataRead": "hiringProcessMetadata:read",
    "organizationRead": "organization:read",
    "offersRead": "offers:read",
    "apiKeysRead": "apiKeys:read",
    "approvalsRead": "approvals:read",
    "reportsRead": "reports:read",
    "notetakerRead": "notetaker:read",
    "sourcingRead": "sourcing:read",
    "auditLogsRead": "auditLogs:read",
}
ALL_PERMISSIONS = frozenset(PERMISSION_SCOPES)
# Fields application.info has and application.list items do not (catalog audit).
INFO_ONLY = {
    "application.list": (
        "applicationHistory",
        "applicationFormSubmissions",
        "referrals",
        "resumeFileHandle",
    )
}
# Body fields that page a list rather than filter it.
PAGING_KEYS = {"cursor", "limit", "syncToken"}
# Non-paginated lists whose envelope still carries moreDataAvailable (protocol.md §2).
LISTS_WITH_MORE_FLAG = {"source.list", "interviewStage.list", "archiveReason.list", "jobBoard.list"}
# API versions (protocol.md 15.1): lifecycle status by version; "removed" ones are refused.
VERSIONS = {"2026-01-01": "active"}
SERVED_STATUSES = ("pre-release", "active", "deprecated", "unsupported")
NEWEST_FIRST = {"auditLog.list"}  # newest entry first, filtered by a startDate..endDate window
CURSOR_INVALID = {"auditLog.list": "cursor_invalid"}  # else invalid_next_cursor
MAX_AUDIT_SPAN_MS = 548 * 86_400_000  # 18 months


class ApiError(Exception):
    """An Ashby error answer: HTTP status, errorInfo.code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Settings:
    """Protocol knobs; ages are on the org's logical clock."""

    sync_token_ttl_seconds: float = 30 * 86_400  # UNCONFIRMED (~1 week to ~1 month reported)
    cursor_ttl_seconds: float = 3_600  # UNCONFIRMED
    max_sync_changes: int = 100_000  # above this an incremental pass is refused
    # Pages an incremental pass may take (15.3; Ashby's number is unpublished); 0 = no cap.
    max_incremental_pages: int = 1_000
    strict_bodies: bool = True  # undeclared body fields, wrong types, unknown values: invalid_input
    default_version: str = "2026-01-01"  # the key's default when no Ashby-Version is sent
    versions: dict[str, str] = field(default_factory=lambda: dict(VERSIONS))
    secret: bytes = b"emulator"

    def update(self, **changes: Any) -> None:
        """Change some settings; unknown names raise ValueError."""
        update_fields(self, changes)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "secret"}


def not_found_code(object_name: str) -> str:
    """Ashby's code for a missing object: ``Application`` -> ``application_not_found``."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in object_name).lstrip("_")
    return f"{snake}_not_found"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid(message: str) -> ApiError:
    return ApiError(200, "invalid_input", message)


def _undocumented(spec: dict) -> bool:
    """A param the catalog lists only because a peer sends it (interviewStageGroup.list's
    cursor/limit, "not in Ashby's OpenAPI"): refused, the hardest reading."""
    return "not in Ashby's OpenAPI" in spec.get("note", "")


def _coerce(name: str, spec: dict, value: Any, strict: bool) -> Any:
    """Schema-aware coercion (15.4): "true" and "25" pass as boolean / integer."""
    kind = spec["type"]
    if kind == "integer" and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        value = int(value)
    elif kind == "boolean" and value in ("true", "false"):
        value = value == "true"
    if not strict:
        return value
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
    }.get(kind, True)
    if not ok:
        raise _invalid(f"Field {name} must be of type {kind}, got {json.dumps(value)}")
    allowed = spec.get("values") or []
    for item in (value if kind == "array" else [value]) if allowed else []:
        if item not in allowed:
            raise _invalid(f"Field {name}: {json.dumps(item)} is not one of {allowed}")
    return value


def _epoch_ms(name: str, text: Any) -> int:
    try:
        dt = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"Field {name} must be an ISO 8601 date-time, got {text!r}") from None
    return epoch_ms(dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc))


class Api:
    """The request handler logic of the emulated Ashby API."""

    def __init__(
        self,
        org: Org,
        keys: dict[str, frozenset[str]] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.org = org
        self.keys: dict[str, frozenset[str]] = dict(keys or {"demo": ALL_PERMISSIONS})
        self.settings = settings or Settings()
        self.endpoints = endpoints()
        self.side_effect_calls: dict[str, int] = {}
        self.request_seq = 0

    # opaque tokens ----------------------------------------------------------------------
    def _seal(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        sig = hmac.new(self.settings.secret, raw, hashlib.sha256).digest()[:9]
        return f"{_b64(raw)}.{_b64(sig)}"

    def _open(self, text: Any) -> dict[str, Any] | None:
        try:
            raw_b64, sig_b64 = str(text).split(".")
            raw = _unb64(raw_b64)
            expected = hmac.new(self.settings.secret, raw, hashlib.sha256).digest()[:9]
            if not hmac.compare_digest(expected, _unb64(sig_b64)):
                return None
            return json.loads(raw)
        except (ValueError, binascii.Error, json.JSONDecodeError):
            return None

    # versions (protocol.md 15.1) ----------------------------------------------------------
    def version(self, requested: str | None) -> tuple[str, str]:
        """(version, lifecycle status) for a request's ``Ashby-Version`` header (None: the
        key's default); a version the emulator does not know has status "unknown"."""
        name = requested or self.settings.default_version
        return name, self.settings.versions.get(name, "unknown")

    def check_version(self, requested: str | None) -> None:
        """Refuse an unknown or removed version with HTTP 400 + invalid_input.

        UNCONFIRMED: Ashby documents that removed versions are rejected, not how; protocol.md
        15.1 picks this answer.
        """
        name, status = self.version(requested)
        if status not in SERVED_STATUSES:
            served = sorted(v for v, s in self.settings.versions.items() if s in SERVED_STATUSES)
            raise ApiError(
                400,
                "invalid_input",
                f"Ashby-Version {name!r} is not supported ({status}); use one of {served}",
            )

    # entry point --------------------------------------------------------------------------
    def call(self, path: str, authorization: str | None, body: bytes) -> tuple[int, dict]:
        """Answer one API call: (HTTP status, JSON payload)."""
        self.request_seq += 1
        try:
            return 200, self._dispatch(path, authorization, body)
        except ApiError as err:
            return err.status, self.error_payload(err)

    def error_payload(self, err: ApiError) -> dict[str, Any]:
        """Ashby's error envelope for ``err``."""
        return {
            "success": False,
            "errors": [err.code],
            "errorInfo": {
                "code": err.code,
                "message": err.message,
                "requestId": f"req_{self.request_seq:08d}",
            },
        }

    def _key_permissions(self, authorization: str | None) -> frozenset[str]:
        if not authorization or not authorization.lower().startswith("basic "):
            raise ApiError(401, "unauthenticated", "API key missing: use HTTP Basic auth")
        try:
            decoded = base64.b64decode(authorization[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "unauthenticated", "Malformed Authorization header") from None
        key = decoded.split(":", 1)[0]  # the password part is ignored (Airbyte sends the key)
        if not key:
            raise ApiError(401, "unauthenticated", "API key missing: use HTTP Basic auth")
        perms = self.keys.get(key)
        if perms is None:
            raise ApiError(403, "invalid_api_key", "The API key is invalid or deactivated")
        return perms

    def _dispatch(self, path: str, authorization: str | None, body_bytes: bytes) -> dict:
        perms = self._key_permissions(authorization)
        row = self.endpoints.get(path)
        if row is None:
            raise ApiError(404, "endpoint_not_found", f"Unknown endpoint /{path}")
        # permission None (version.list): undocumented, so any valid key may call it
        if row["permission"] is not None and row["permission"] not in perms:
            raise ApiError(
                403,
                "missing_endpoint_permission",
                f"The API key lacks the {row['permission']} permission for /{path}",
            )
        try:
            raw = json.loads(body_bytes or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _invalid("Request payload is malformed") from None
        if not isinstance(raw, dict):
            raise _invalid("Request payload must be a JSON object")
        if row.get("side_effects") or row["role"] == "never":
            self.side_effect_calls[path] = self.side_effect_calls.get(path, 0) + 1
        body = self._body(path, row, raw)
        with self.org.lock:
            if path == "apiKey.info":
                return self._api_key_info(perms)
            if path == "version.list":
                return {
                    "success": True,
                    "results": [
                        {"version": v, "status": s} for v, s in self.settings.versions.items()
                    ],
                }
            if path in ("report.synchronous", "report.generate"):
                return self._report(body)
            if path == "referralForm.info":
                return {
                    "success": True,
                    "results": {
                        "id": "referral-form",
                        "title": "Referral",
                        "isArchived": False,
                        "fields": [],
                    },
                }
            if path == "file.info":
                return self._file_info(body)
            if row["kind"] in ("list", "child_list"):
                return self._list(path, row, body)
            return self._info(path, row, body)

    def _body(self, path: str, row: dict, raw: dict) -> dict:
        """The body checked against the catalog's params (15.4, strictest reading): an
        undeclared field is invalid_input; nulls count as absent; documented coercions."""
        strict = self.settings.strict_bodies
        params = row["params"]
        body = {}
        for name, value in raw.items():
            spec = params.get(name)
            if spec is None or _undocumented(spec):
                if strict:
                    accepted = sorted(p for p, s in params.items() if not _undocumented(s))
                    raise _invalid(
                        f"Unknown field {name!r} for /{path}; accepted fields: "
                        f"{accepted or 'none (send an empty body)'}"
                    )
                continue
            if value is not None:
                body[name] = _coerce(name, spec, value, strict)
        for name, spec in params.items():
            if spec.get("required") and name not in body:
                raise _invalid(f"Missing required parameter {name}")
        return body

    # lists --------------------------------------------------------------------------------
    def _list_scope(self, row: dict, body: dict) -> tuple[Table, int | None]:
        table = self.org.table(row["stream"])
        if not row.get("parent"):
            return table, None
        param = row["parent"]["param"]
        ptable = self.org.table(table.spec.parent)  # type: ignore[arg-type]
        pindex = ptable.index_of(body[param])
        if pindex is None:
            raise ApiError(
                200,
                not_found_code(ptable.spec.object),
                f"No {ptable.spec.object} with {param}={body[param]}",
            )
        return table, pindex

    def _job_board(self, board_id: str | None) -> int:
        """Index of a job board by id; None: the primary external board (index 0)."""
        if board_id is None:
            return 0
        index = self.org.tables["job_boards"].index_of(board_id)
        if index is None:
            raise ApiError(200, "job_board_not_found", f"No JobBoard with jobBoardId={board_id}")
        return index

    def _window(self, filters: dict) -> tuple[str, str]:
        """auditLog.list's startDate..endDate (default: the 24 hours before endDate = now)."""
        end = (
            _epoch_ms("endDate", filters["endDate"]) if "endDate" in filters else self.org.clock_ms
        )
        start = (
            _epoch_ms("startDate", filters["startDate"])
            if "startDate" in filters
            else end - 86_400_000
        )
        if end < start:
            raise _invalid("endDate is before startDate")
        if end - start > MAX_AUDIT_SPAN_MS:
            raise _invalid("startDate..endDate spans more than 18 months")
        return iso_ms(start), iso_ms(end)

    def _keep(
        self, path: str, row: dict, table: Table, index: int, rec: dict, filters: dict
    ) -> bool:
        if row.get("include_archived") or "includeArchived" in row["params"]:
            flag = "includeArchivedPools" if path == "interviewerPool.list" else "includeArchived"
            if not filters.get(flag) and table.is_archived(rec):
                return False
        if (
            path == "user.list"
            and not filters.get("includeDeactivated")
            and rec.get("isEnabled") is False
        ):
            return False
        if path == "job.list":
            statuses = filters.get("status") or ["Open", "Closed", "Archived"]  # no Draft
            statuses = statuses if isinstance(statuses, list) else [statuses]
            if rec.get("status") not in statuses:
                return False
        if path == "jobPosting.list" and self.org.job_board_of(index) != filters["board"]:
            return False
        if (
            path == "interview.list"
            and not filters.get("includeNonSharedInterviews")
            and rec.get("jobId")
        ):
            return False
        if (
            "createdAfter" in filters
            and "createdAt" in rec
            and rec["createdAt"] <= iso_ms(int(filters["createdAfter"]))
        ):
            return False
        if (
            "createdBefore" in filters
            and "createdAt" in rec
            and rec["createdAt"] > iso_ms(int(filters["createdBefore"]))
        ):  # inclusive bound
            return False
        if path in NEWEST_FIRST and not self._audit_keep(rec, filters):
            return False
        for key in (
            "applicationId",
            "candidateId",
            "jobId",
            "interviewStageId",
            "surveyType",
            "offerStatus",
            "acceptanceStatus",
            "entityType",
            "entityId",
        ):
            if filters.get(key) is None:
                continue
            if key == "jobId" and "job" in table.fields:
                have = (rec.get("job") or {}).get("id")
            elif key in table.fields:
                have = rec.get(key)
            else:
                continue  # the object has no such field: the filter selects nothing out
            if have != filters[key]:
                return False
        if path == "application.list" and filters.get("status"):
            wanted = filters["status"]
            wanted = wanted if isinstance(wanted, list) else [wanted]
            if rec.get("status") not in wanted:
                return False
        return True

    @staticmethod
    def _audit_keep(rec: dict, filters: dict) -> bool:
        """auditLog.list filters: window, actorIds and targetIds ANDed; targetTypes OR
        categories."""
        actor, target = rec.get("actor") or {}, rec.get("target") or {}
        if not filters["startDate"] <= rec.get("timestamp", "") <= filters["endDate"]:
            return False
        if "actorIds" in filters and actor.get("id") not in filters["actorIds"]:
            return False
        if "targetIds" in filters and target.get("id") not in filters["targetIds"]:
            return False
        if "targetTypes" in filters or "categories" in filters:
            return target.get("type") in filters.get("targetTypes", []) or rec.get(
                "category"
            ) in filters.get("categories", [])
        return True

    def _shape(self, path: str, rec: dict, body: dict) -> Any:
        omit = INFO_ONLY.get(path)
        if omit:
            rec = {k: v for k, v in rec.items() if k not in omit}
        if path.startswith("hiringTeamRole.list") and body.get("namesOnly", True):
            return rec["title"]
        return rec

    def _changed_between(self, table: Table, lo: int, hi: int) -> list[int]:
        return sorted(i for i, s in table.changed.items() if lo < s <= hi)

    def _candidates(
        self,
        table: Table,
        pindex: int | None,
        mode: str,
        lo: int,
        hi: int,
        after: int,
        newest_first: bool,
    ) -> Iterator[int]:
        if mode == "inc":
            source: Any = self._changed_between(table, lo, hi)
            if pindex is not None:
                source = [i for i in source if table.parent_index(i) == pindex]
            return (i for i in source if i > after)
        if pindex is not None:
            return (i for i in table.children_of(pindex) if i > after)
        if newest_first:  # ``after`` is the last index served, going down
            return (i for i in range(min(after, table.count) - 1, -1, -1) if i not in table.deleted)
        return table.live_indices(after + 1)

    def _list(self, path: str, row: dict, body: dict) -> dict:
        table, pindex = self._list_scope(row, body)
        parent_param = (row.get("parent") or {}).get("param")
        filters = {k: v for k, v in body.items() if k not in PAGING_KEYS and k != parent_param}
        fhash = hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:12]
        now = self.org.clock_ms
        if "createdBefore" in row["params"]:
            after, before = filters.get("createdAfter", 0), filters.get("createdBefore", now)
            if not (isinstance(after, int) and isinstance(before, int)):
                raise _invalid("createdAfter and createdBefore are Unix epoch milliseconds")
            if after > now or before > now:
                raise _invalid("createdAfter and createdBefore must not lie in the future")
            if after > before:
                raise _invalid("createdAfter is after createdBefore")
        if path == "jobPosting.list":
            filters["board"] = self._job_board(filters.get("jobBoardId"))
        newest_first = path in NEWEST_FIRST
        if newest_first:
            filters["startDate"], filters["endDate"] = self._window(filters)
        limit = body.get("limit", MAX_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise _invalid(f"limit must be a positive integer, got {limit}")
        limit = min(limit, MAX_LIMIT)
        paginated = row["paginated"]
        cursor, token = body.get("cursor"), body.get("syncToken")
        page_no = 1
        if cursor is not None and paginated:
            state = self._open(cursor)
            if not state or state.get("p") != path or state.get("f") != fhash:
                raise ApiError(
                    200,
                    CURSOR_INVALID.get(path, "invalid_next_cursor"),
                    "The cursor could not be decoded",
                )
            if (
                now - state["c"] > self.settings.cursor_ttl_seconds * 1000
                or state.get("e") != self.org.cursor_epoch
            ):
                raise ApiError(
                    200,
                    "next_cursor_expired",
                    "The cursor expired: restart the pass without a cursor",
                )
            mode, after, lo, hi = state["m"], state["i"], state["lo"], state["hi"]
            page_no = state.get("n", 2)
        elif token is not None and row["sync_token"]:
            state = self._open(token)
            if not state or state.get("t") != table.name or state.get("f") != fhash:
                raise ApiError(200, "sync_token_invalid", "The sync token could not be decoded")
            if now - state["c"] > self.settings.sync_token_ttl_seconds * 1000:
                raise ApiError(
                    200,
                    "sync_token_expired",
                    "The sync token expired: run a full sync without syncToken",
                )
            mode, after, lo, hi = "inc", -1, state["s"], self.org.seq
            if len(self._changed_between(table, lo, hi)) > self.settings.max_sync_changes:
                raise ApiError(
                    200,
                    "incremental_sync_too_large",
                    "Too many changes since this sync token: run a full sync",
                )
        else:
            mode, lo, hi = "full", 0, self.org.seq
            after = table.count if newest_first else -1
        cap = self.settings.max_incremental_pages
        if mode == "inc" and cap and page_no > cap:  # 15.3: may come after pages were served
            raise ApiError(
                200,
                "incremental_sync_too_large",
                f"This incremental sync exceeds {cap} pages: discard the sync token "
                "and run a full sync",
            )
        page: list[Any] = []
        last = after
        more = False
        for i in self._candidates(table, pindex, mode, lo, hi, after, newest_first):
            rec = table.get(i)
            if rec is None:
                continue
            if newest_first and rec.get("timestamp", "") < filters["startDate"]:
                break  # older entries only from here on
            if not self._keep(path, row, table, i, rec, filters):
                continue
            if len(page) == limit and paginated:
                more = True
                break
            page.append(self._shape(path, rec, body))
            last = i
        out: dict[str, Any] = {"success": True, "results": page}
        if paginated:
            out["moreDataAvailable"] = more
            if more:
                out["nextCursor"] = self._seal(
                    {
                        "p": path,
                        "f": fhash,
                        "m": mode,
                        "i": last,
                        "lo": lo,
                        "hi": hi,
                        "c": now,
                        "n": page_no + 1,
                        "e": self.org.cursor_epoch,
                    }
                )
            elif row["sync_token"]:
                out["syncToken"] = self._seal({"t": table.name, "f": fhash, "s": hi, "c": now})
        elif path in LISTS_WITH_MORE_FLAG:
            out["moreDataAvailable"] = False
        return out

    # single objects -----------------------------------------------------------------------
    def _info(self, path: str, row: dict, body: dict) -> dict:
        if path.endswith(".search"):
            table = self.org.table(row["lookup_of"])
            if not body:
                raise _invalid("Give at least one search field")
            hits = []
            for i in table.live_indices():
                rec = table.get(i)
                if rec and all(str(v).lower() in json.dumps(rec).lower() for v in body.values()):
                    hits.append(rec)
                    if len(hits) == MAX_LIMIT:
                        break
            return {"success": True, "results": hits}
        params = row["params"]
        keys = [p for p, s in params.items() if s.get("required")] or [
            p for p, s in params.items() if s["type"] == "string"
        ]  # candidate.info: id | ...
        given = next((p for p in keys if p in body), None)
        if given is None:
            raise _invalid(f"Missing required parameter {keys[0]}")
        name = row.get("stream") or row.get("lookup_of")
        if path == "interviewerPool.info":  # the members view of a pool row
            name = "interviewer_pools"
        found = self.org.tables.get(str(name))
        table = found  # type: ignore[assignment]
        index = table.index_of(body[given]) if table else None
        rec = table.get(index) if table and index is not None else None
        if (
            index is not None
            and path == "jobPosting.info"
            and "jobBoardId" in body
            and self.org.job_board_of(index) != self._job_board(body["jobBoardId"])
        ):
            rec = None  # the posting is not on that board
        if rec is not None and index is not None and path == "application.info":
            rec = {**rec, "applicationHistory": self.org.cohere.embedded_history(index)}
        if rec is None:
            raise ApiError(
                200, not_found_code(row["object"]), f"No {row['object']} with {given}={body[given]}"
            )
        return {"success": True, "results": rec}

    def _api_key_info(self, perms: frozenset[str]) -> dict:
        return {
            "success": True,
            "results": {
                "title": "tap-ashby emulator key",
                "createdAt": "2025-06-01T12:00:00.000Z",
                "scopes": sorted(PERMISSION_SCOPES[p] for p in perms),
            },
        }

    def _file_info(self, body: dict) -> dict:
        return {
            "success": True,
            "results": {
                "url": f"https://files.example.ashbyhq.com/{body['fileHandle']}?expires=3600"
            },
        }

    def _report(self, body: dict) -> dict:
        report_id = body["reportId"]
        rows = [[f"row {i}", i] for i in range(3)]
        return {
            "success": True,
            "results": {
                "requestId": f"report-{report_id}",
                "status": "complete",
                "reportData": {
                    "data": rows,
                    "columnNames": ["Name", "Count"],
                    "metadata": {"reportId": report_id},
                },
                "failureReason": None,
            },
        }
