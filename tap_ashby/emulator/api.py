"""Ashby's RPC protocol over an ``Org``: auth, permissions, envelopes, cursors, sync tokens.

Transport-free: ``Api.call(path, authorization, body) -> (status, payload)``; the HTTP server
adds faults and counters around it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .catalog import endpoints
from .generate import iso_ms
from .org import Org, Table

MAX_LIMIT = 100
PERMISSION_SCOPES = {
    "candidatesRead": "candidates:read", "jobsRead": "jobs:read",
    "interviewsRead": "interviews:read", "hiringProcessMetadataRead": "hiringProcessMetadata:read",
    "organizationRead": "organization:read", "offersRead": "offers:read",
    "apiKeysRead": "apiKeys:read", "approvalsRead": "approvals:read",
    "reportsRead": "reports:read", "notetakerRead": "notetaker:read",
}
ALL_PERMISSIONS = frozenset(PERMISSION_SCOPES)
# Fields application.info has and application.list items do not (catalog audit).
INFO_ONLY = {"application.list": ("applicationHistory", "applicationFormSubmissions",
                                  "referrals", "resumeFileHandle")}
# Silent default filters of the real API: what a list hides unless the body asks for it.
PAGING_KEYS = {"cursor", "limit", "syncToken"}
# Non-paginated lists whose envelope still carries moreDataAvailable (protocol.md §2).
LISTS_WITH_MORE_FLAG = {"source.list", "interviewStage.list", "archiveReason.list",
                        "jobBoard.list"}


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
    secret: bytes = b"emulator"


def not_found_code(object_name: str) -> str:
    """Ashby's code for a missing object: ``Application`` -> ``application_not_found``."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in object_name).lstrip("_")
    return f"{snake}_not_found"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Api:
    """The request handler logic of the emulated Ashby API."""

    def __init__(self, org: Org, keys: dict[str, frozenset[str]] | None = None,
                 settings: Settings | None = None) -> None:
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

    # entry point --------------------------------------------------------------------------
    def call(self, path: str, authorization: str | None, body: bytes) -> tuple[int, dict]:
        """Answer one API call: (HTTP status, JSON payload)."""
        self.request_seq += 1
        try:
            return 200, self._dispatch(path, authorization, body)
        except ApiError as err:
            return err.status, {
                "success": False,
                "errors": [err.code],
                "errorInfo": {"code": err.code, "message": err.message,
                              "requestId": f"req_{self.request_seq:08d}"},
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
        if row["permission"] not in perms:
            raise ApiError(403, "missing_endpoint_permission",
                           f"The API key lacks the {row['permission']} permission for /{path}")
        try:
            body = json.loads(body_bytes or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(200, "invalid_input", "Request payload is malformed") from None
        if not isinstance(body, dict):
            raise ApiError(200, "invalid_input", "Request payload must be a JSON object")
        if row.get("side_effects") or row["role"] == "never":
            self.side_effect_calls[path] = self.side_effect_calls.get(path, 0) + 1
        with self.org.lock:
            if path == "apiKey.info":
                return self._api_key_info(perms)
            if path in ("report.synchronous", "report.generate"):
                return self._report(body)
            if path == "referralForm.info":
                return {"success": True, "results": {"id": "referral-form", "title": "Referral",
                                                     "isArchived": False, "fields": []}}
            if path == "file.info":
                return self._file_info(body)
            kind = row["kind"]
            if kind in ("list", "child_list"):
                return self._list(path, row, body)
            return self._info(path, row, body)

    # lists --------------------------------------------------------------------------------
    def _list_scope(self, path: str, row: dict, body: dict) -> tuple[Table, int | None]:
        table = self.org.table(row["stream"])
        parent = row.get("parent")
        if not parent:
            return table, None
        param = parent["param"]
        value = body.get(param)
        if value is None:
            if path == "interviewStageGroup.list":  # UNCONFIRMED: optional; all groups
                return table, None
            raise ApiError(200, "invalid_input", f"Missing required parameter {param}")
        ptable = self.org.table(table.spec.parent)  # type: ignore[arg-type]
        pindex = ptable.index_of(value)
        if pindex is None:
            raise ApiError(200, not_found_code(ptable.spec.object),
                           f"No {ptable.spec.object} with {param}={value}")
        return table, pindex

    def _filters(self, path: str, row: dict, body: dict) -> dict[str, Any]:
        return {k: v for k, v in body.items()
                if k not in PAGING_KEYS and k not in ((row.get("parent") or {}).get("param"),)}

    def _keep(self, path: str, row: dict, table: Table, rec: dict, filters: dict) -> bool:
        if row.get("include_archived") or "includeArchived" in row["params"]:
            flag = "includeArchivedPools" if path == "interviewerPool.list" else "includeArchived"
            if not filters.get(flag) and table.is_archived(rec):
                return False
        if path == "user.list" and not filters.get("includeDeactivated") and \
                rec.get("isEnabled") is False:
            return False
        if path == "job.list":
            statuses = filters.get("status") or ["Open", "Closed", "Archived"]  # no Draft
            statuses = statuses if isinstance(statuses, list) else [statuses]
            if rec.get("status") not in statuses:
                return False
        if path == "interview.list" and not filters.get("includeNonSharedInterviews") and \
                rec.get("jobId"):
            return False
        if "createdAfter" in filters and "createdAt" in rec and \
                rec["createdAt"] <= iso_ms(int(filters["createdAfter"])):
            return False
        for key in ("applicationId", "candidateId", "jobId", "interviewStageId", "surveyType",
                    "offerStatus", "acceptanceStatus", "entityType", "entityId"):
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

    def _shape(self, path: str, rec: dict, body: dict) -> Any:
        omit = INFO_ONLY.get(path)
        if omit:
            rec = {k: v for k, v in rec.items() if k not in omit}
        if path.startswith("hiringTeamRole.list") and body.get("namesOnly", True):
            return rec["title"]
        return rec

    def _changed_between(self, table: Table, lo: int, hi: int) -> list[int]:
        return sorted(i for i, s in table.changed.items() if lo < s <= hi)

    def _candidates(self, table: Table, pindex: int | None, mode: str, lo: int, hi: int,
                    after: int) -> Iterator[int]:
        if mode == "inc":
            source: Any = self._changed_between(table, lo, hi)
            if pindex is not None:
                source = [i for i in source if table.parent_index(i) == pindex]
            return (i for i in source if i > after)
        if pindex is not None:
            return (i for i in table.children_of(pindex) if i > after)
        return table.live_indices(after + 1)

    def _list(self, path: str, row: dict, body: dict) -> dict:
        table, pindex = self._list_scope(path, row, body)
        for name, spec in row["params"].items():
            if spec.get("required") and body.get(name) is None:
                raise ApiError(200, "invalid_input", f"Missing required parameter {name}")
        filters = self._filters(path, row, body)
        fhash = hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:12]
        limit = body.get("limit", MAX_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ApiError(200, "invalid_input", f"limit must be a positive integer, got {limit}")
        limit = min(limit, MAX_LIMIT)
        paginated = row["paginated"]
        now = self.org.clock_ms
        cursor, token = body.get("cursor"), body.get("syncToken")
        if cursor is not None and paginated:
            state = self._open(cursor)
            if not state or state.get("p") != path or state.get("f") != fhash:
                raise ApiError(200, "invalid_next_cursor", "The cursor could not be decoded")
            if now - state["c"] > self.settings.cursor_ttl_seconds * 1000 or \
                    state.get("e") != self.org.cursor_epoch:
                raise ApiError(200, "next_cursor_expired",
                               "The cursor expired: restart the pass without a cursor")
            mode, after, lo, hi = state["m"], state["i"], state["lo"], state["hi"]
        elif token is not None and row["sync_token"]:
            state = self._open(token)
            if not state or state.get("t") != table.name or state.get("f") != fhash:
                raise ApiError(200, "sync_token_invalid", "The sync token could not be decoded")
            if now - state["c"] > self.settings.sync_token_ttl_seconds * 1000:
                raise ApiError(200, "sync_token_expired",
                               "The sync token expired: run a full sync without syncToken")
            mode, after, lo, hi = "inc", -1, state["s"], self.org.seq
            if len(self._changed_between(table, lo, hi)) > self.settings.max_sync_changes:
                raise ApiError(200, "incremental_sync_too_large",
                               "Too many changes since this sync token: run a full sync")
        else:
            mode, after, lo, hi = "full", -1, 0, self.org.seq
        page: list[Any] = []
        last = after
        more = False
        for i in self._candidates(table, pindex, mode, lo, hi, after):
            rec = table.get(i)
            if rec is None or not self._keep(path, row, table, rec, filters):
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
                out["nextCursor"] = self._seal({"p": path, "f": fhash, "m": mode, "i": last,
                                                "lo": lo, "hi": hi, "c": now,
                                                "e": self.org.cursor_epoch})
            elif row["sync_token"]:
                out["syncToken"] = self._seal({"t": table.name, "f": fhash, "s": hi, "c": now})
        elif path in LISTS_WITH_MORE_FLAG:
            out["moreDataAvailable"] = False
        return out

    # single objects -----------------------------------------------------------------------
    def _info(self, path: str, row: dict, body: dict) -> dict:
        if path.endswith(".search"):
            table = self.org.table(row["lookup_of"])
            criteria = {k: v for k, v in body.items() if v is not None}
            if not criteria:
                raise ApiError(200, "invalid_input", "Give at least one search field")
            hits = []
            for i in table.live_indices():
                rec = table.get(i)
                if rec and all(str(v).lower() in json.dumps(rec).lower()
                               for v in criteria.values()):
                    hits.append(rec)
                    if len(hits) == MAX_LIMIT:
                        break
            return {"success": True, "results": hits}
        params = [p for p in row["params"] if p not in (
            "expand", "includeUnpublishedJobPostingsIds", "jobBoardId", "submittedFormInstanceId")]
        given = next((p for p in params if body.get(p) is not None), None)
        if given is None:
            raise ApiError(200, "invalid_input", f"Missing required parameter {params[0]}")
        name = row.get("stream") or row.get("lookup_of")
        if path == "interviewerPool.info":  # the members view of a pool row
            name = "interviewer_pools"
        table = self.org.tables.get(name)
        index = table.index_of(body[given]) if table and given != "externalMappingId" else None
        rec = table.get(index) if index is not None else None
        if rec is None:
            raise ApiError(200, not_found_code(row["object"]),
                           f"No {row['object']} with {given}={body[given]}")
        return {"success": True, "results": rec}

    def _api_key_info(self, perms: frozenset[str]) -> dict:
        return {"success": True, "results": {
            "title": "tap-ashby emulator key", "createdAt": "2025-06-01T12:00:00.000Z",
            "scopes": sorted(PERMISSION_SCOPES[p] for p in perms)}}

    def _file_info(self, body: dict) -> dict:
        handle = body.get("fileHandle")
        if not handle:
            raise ApiError(200, "invalid_input", "Missing required parameter fileHandle")
        return {"success": True, "results": {
            "url": f"https://files.example.ashbyhq.com/{handle}?expires=3600"}}

    def _report(self, body: dict) -> dict:
        report_id = body.get("reportId")
        if not report_id:
            raise ApiError(200, "invalid_input", "Missing required parameter reportId")
        rows = [[f"row {i}", i] for i in range(3)]
        return {"success": True, "results": {
            "requestId": f"report-{report_id}", "status": "complete",
            "reportData": {"data": rows, "columnNames": ["Name", "Count"],
                           "metadata": {"reportId": report_id}},
            "failureReason": None}}
