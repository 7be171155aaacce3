"""A seeded, lazily generated Ashby organisation with a change log.

Record ``i`` of a table is built on demand from a few prototype records (generated once from
the catalog's field specs) plus its identity (id, timestamps, name) and its references, so a
million candidates cost no memory until they are changed. Changed, created, archived and
deleted records are kept in small per-table dicts; every change gets a sequence number, which
is what sync tokens remember.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import random
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .catalog import endpoints, objects
from .generate import EPOCH, epoch_ms, iso, iso_ms, object_for
from .hiring import MAX_ENTRIES, PLAN_STAGES, Cohere, block_children, block_owner

PROTOTYPES = 8
RECENT_SPAN_MS = 30 * 86_400_000  # ``recent`` tables: base rows spread over the last 30 days
STAMPS = ("createdAt", "updatedAt", "timestamp")
# Job boards: (title, isInternal). JobBoard has no "primary" field in the catalog: the primary
# external board is the first row of jobBoard.list (title ends "(primary)").
JOB_BOARDS = [
    ("Careers page (primary)", False),
    ("Internal job board", True),
    ("Agency job board", False),
]
POSTING_BOARDS = (0, 1, 0, 2)  # board of job posting i: POSTING_BOARDS[i % 4]
M64, M58, M48 = (1 << 64) - 1, (1 << 58) - 1, (1 << 48) - 1
SMALL_TABLE = 4_096  # tables up to this many base rows cache their ids


@dataclass(frozen=True)
class TableSpec:
    """One kind of record: its object, its size for an org of ``n`` candidates, its parent."""

    name: str
    object: str
    size: Callable[[int], int] = lambda n: 0
    parent: str | None = None  # child table: ``per_parent`` rows per parent row
    per_parent: int = 1
    owner: str | None = None  # top-level table whose rows belong to another (app -> candidate)
    same_id_as_parent: bool = False
    recent: bool = False  # base rows stamped over the RECENT_SPAN_MS before the org's start
    # owner rows are dealt to owners in blocks (hiring.BLOCK): 0..n per owner, not one each
    blocks: bool = False
    # child slots hold a row only where the hiring story has one (per_parent is the maximum)
    sparse: bool = False


def _at_least(k: int, div: int) -> Callable[[int], int]:
    return lambda n: max(k, n // div)


def _fixed(k: int) -> Callable[[int], int]:
    return lambda n: k


TABLES: list[TableSpec] = [
    TableSpec("candidates", "Candidate", lambda n: n),
    TableSpec("applications", "Application", lambda n: n, owner="candidates", blocks=True),
    TableSpec("application_feedback", "ApplicationFeedback", _at_least(2, 2), owner="applications"),
    TableSpec("jobs", "Job", _at_least(4, 40)),
    TableSpec("job_postings", "JobPosting", _at_least(4, 40), owner="jobs"),
    TableSpec("job_templates", "JobTemplate", _fixed(4)),
    TableSpec("job_boards", "JobBoard", _fixed(len(JOB_BOARDS))),
    TableSpec("openings", "Opening", _at_least(4, 40), owner="jobs"),
    TableSpec("offers", "Offer", _at_least(2, 10), owner="applications"),
    TableSpec("interviews", "Interview", _fixed(12)),
    TableSpec("interview_plans", "InterviewPlan", _at_least(3, 80)),
    TableSpec("interview_schedules", "InterviewSchedule", _at_least(4, 4), owner="applications"),
    TableSpec("interviewer_pools", "InterviewerPool", _fixed(4)),
    TableSpec("users", "User", _at_least(6, 50)),
    TableSpec("departments", "Department", _fixed(6)),
    TableSpec("locations", "Location", _fixed(6)),
    TableSpec("brands", "Brand", _fixed(2)),
    TableSpec("hiring_team_roles", "HiringTeamRole", _fixed(4)),
    TableSpec("application_hiring_team_roles", "HiringTeamRole", _fixed(3)),
    TableSpec("sources", "Source", _fixed(12)),
    TableSpec("source_tracking_links", "SourceTrackingLink", _fixed(4)),
    TableSpec("archive_reasons", "ArchiveReason", _fixed(6)),
    TableSpec("close_reasons", "CloseReason", _fixed(4)),
    TableSpec("candidate_tags", "CandidateTag", _fixed(10)),
    TableSpec("custom_fields", "CustomField", _fixed(8)),
    TableSpec("feedback_form_definitions", "FeedbackFormDefinition", _fixed(4)),
    TableSpec("survey_form_definitions", "SurveyFormDefinition", _fixed(3)),
    TableSpec("communication_templates", "CommunicationTemplate", _fixed(5)),
    TableSpec("projects", "Project", _at_least(3, 200)),
    TableSpec("approvals", "Approval", _at_least(2, 50)),
    TableSpec("survey_submissions", "SurveySubmission", _at_least(4, 10), owner="candidates"),
    TableSpec("survey_requests", "SurveyRequest", _at_least(4, 10), owner="candidates"),
    TableSpec("interview_stage_groups", "InterviewStageGroup", _fixed(6)),  # org-wide (2026)
    TableSpec("sequences", "Sequence", _at_least(4, 5), owner="candidates"),
    TableSpec("sequence_templates", "SequenceTemplate", _fixed(6)),
    TableSpec(
        "take_home_assignments", "TakeHomeAssignment", _at_least(4, 10), owner="applications"
    ),
    TableSpec("email_senders", "EmailSender", _fixed(4)),
    TableSpec("audit_log_entries", "AuditLogEntry", _at_least(20, 10), recent=True),
    TableSpec("webhooks", "WebhookSetting", _fixed(2)),  # webhook.info lookups only
    TableSpec(
        "interview_stages", "InterviewStage", parent="interview_plans", per_parent=len(PLAN_STAGES)
    ),
    TableSpec("interview_events", "InterviewEvent", parent="interview_schedules", per_parent=2),
    TableSpec("candidate_notes", "Note", parent="candidates"),
    TableSpec("candidate_client_info", "ClientInfo", parent="candidates"),
    TableSpec("candidate_projects", "CandidateProject", parent="candidates"),
    TableSpec("candidate_fraud_checks", "FraudCheck", parent="candidates"),
    TableSpec(
        "application_history",
        "ApplicationHistoryEntry",
        parent="applications",
        per_parent=MAX_ENTRIES,
        sparse=True,
    ),
    TableSpec("application_criteria_evaluations", "CriteriaEvaluation", parent="applications"),
    TableSpec("job_interview_plans", "JobInterviewPlan", parent="jobs", same_id_as_parent=True),
    TableSpec(
        "job_posting_details", "JobPostingDetail", parent="job_postings", same_id_as_parent=True
    ),
    TableSpec(
        "user_interviewer_settings",
        "UserInterviewerSettings",
        parent="users",
        same_id_as_parent=True,
    ),
    TableSpec(
        "notetaker_transcripts",
        "NotetakerTranscript",
        parent="interview_events",
        same_id_as_parent=True,
    ),
    TableSpec(
        "interview_briefings",
        "InterviewBriefing",
        parent="interview_events",
        same_id_as_parent=True,
    ),
    TableSpec("user_interviewer_pauses", "InterviewerPause", parent="users"),
]

# Field name -> table its value points to (string ids, nested objects, arrays of ids).
ID_REFS = {
    "candidateId": "candidates",
    "applicationId": "applications",
    "jobId": "jobs",
    "interviewPlanId": "interview_plans",
    "defaultInterviewPlanId": "interview_plans",
    "interviewStageId": "interview_stages",
    "stageId": "interview_stages",
    "interviewScheduleId": "interview_schedules",
    "interviewId": "interviews",
    "userId": "users",
    "managerId": "users",
    "actorId": "users",
    "departmentId": "departments",
    "parentId": "departments",
    "locationId": "locations",
    "primaryLocationId": "locations",
    "brandId": "brands",
    "sourceId": "sources",
    "openingId": "openings",
    "jobPostingId": "job_postings",
    "appliedViaJobPostingId": "job_postings",
    "surveyFormDefinitionId": "survey_form_definitions",
    "feedbackFormDefinitionId": "feedback_form_definitions",
    "interviewStageGroupId": "interview_stage_groups",
    "projectId": "projects",
    "interviewerPoolId": "interviewer_pools",
    "notetakerTranscriptId": "interview_events",
    "sequenceTemplateId": "sequence_templates",
}
OBJ_REFS = {
    "candidate": "candidates",
    "job": "jobs",
    "creditedToUser": "users",
    "author": "users",
    "source": "sources",
    "archiveReason": "archive_reasons",
    "currentInterviewStage": "interview_stages",
    "scheduledBy": "users",
    "submittedByUser": "users",
    "department": "departments",
    "user": "users",
}
ARRAY_REFS = {
    "applicationIds": "applications",
    "interviewPlanIds": "interview_plans",
    "jobPostingIds": "job_postings",
    "interviewerUserIds": "users",
    "jobIds": "jobs",
    "secondaryLocationIds": "locations",
    "locationIds": "locations",
    "departmentIds": "departments",
    "tags": "candidate_tags",
    "customFields": "custom_fields",
}
LABEL_FIELDS = ("name", "title", "text")
# Fields ``build`` rebuilds from the related rows (so not patched from the prototype first).
REBUILT = {("candidates", "applicationIds"), ("interview_schedules", "interviewEvents")}
ARCHIVE_FLAGS = ("isArchived",)


def _holds_refs(name: str, spec: dict[str, Any]) -> bool:
    """Whether a field (or anything inside it) points at other rows."""
    if name in ID_REFS or name in OBJ_REFS or name in ARRAY_REFS:
        return True
    inner = spec.get("fields") or spec.get("items", {}).get("fields") or {}
    return any(_holds_refs(n, f) for n, f in inner.items())


def _tag(name: str) -> int:
    return zlib.crc32(name.encode()) & 0xFFFFFFFF


class IdCodec:
    """Random-looking UUIDv4 ids for row indexes, reversible without a table of ids.

    64 bits are a keyed permutation of the index (murmur3's invertible finalizer with per-key
    multipliers and offset); the other 58 free bits are a keyed check of those 64, so ``decode``
    turns away ids of other tables and seeds. Version 4 and variant 10 are set as in uuid4.
    """

    def __init__(self, key: str) -> None:
        digest = hashlib.blake2b(key.encode(), digest_size=40).digest()
        words = [int.from_bytes(digest[i : i + 8], "big") for i in range(0, 40, 8)]
        self.add, self.check_key = words[0], words[3]
        self.m1, self.m2, self.m3 = words[1] | 1, words[2] | 1, words[4] | 1
        self.inv1, self.inv2 = pow(self.m1, -1, 1 << 64), pow(self.m2, -1, 1 << 64)

    def encode(self, index: int) -> str:
        x = (index + self.add) & M64
        x = ((x ^ (x >> 33)) * self.m1) & M64
        x = ((x ^ (x >> 33)) * self.m2) & M64
        x ^= x >> 33
        c = (((x ^ self.check_key) * self.m3) >> 32) & M58
        return "%08x-%04x-4%03x-%04x-%012x" % (  # noqa: UP031 (faster than an f-string)
            x >> 32,
            (x >> 16) & 0xFFFF,
            (x >> 4) & 0xFFF,
            0x8000 | (x & 0xF) << 10 | c >> 48,
            c & M48,
        )

    def decode(self, text: str) -> int | None:
        if (
            len(text) != 36
            or text[14] != "4"
            or text[19] not in "89ab"
            or text[8] + text[13] + text[18] + text[23] != "----"
        ):
            return None
        try:
            u = int(text.replace("-", ""), 16)
        except ValueError:
            return None
        x = (u >> 80) << 16 | ((u >> 64) & 0xFFF) << 4 | (u >> 58) & 0xF
        if ((u >> 48) & 0x3FF) << 48 | u & M48 != (((x ^ self.check_key) * self.m3) >> 32) & M58:
            return None
        x ^= x >> 33
        x = (x * self.inv2) & M64
        x ^= x >> 33
        x = (x * self.inv1) & M64
        x ^= x >> 33
        return (x - self.add) & M64


class Table:
    """The live rows of one record kind: lazily built base rows plus a change overlay."""

    def __init__(self, org: Org, spec: TableSpec, base_count: int) -> None:
        self.org = org
        self.spec = spec
        self.name = spec.name
        self.fields: dict[str, Any] = objects()[spec.object]["fields"]
        obj = objects()[spec.object]
        self.nullable = set(obj.get("nullable", []))
        self.required = set(obj.get("required", []))
        self.base_count = base_count
        self.count = base_count  # grows with creates
        self.overrides: dict[int, dict[str, Any]] = {}
        self.deleted: set[int] = set()
        self.changed: dict[int, int] = {}  # index -> sequence number of its last change
        self.created_parent: dict[int, int] = {}
        self.created_by_parent: dict[int, list[int]] = {}
        self.tag = _tag(spec.name)
        # Payload fields that Ashby does not send (the tap injects them from the parent).
        self.hidden = {
            n for n, s in self.fields.items() if "NOT in API payload" in s.get("note", "")
        }
        self._protos: list[dict[str, Any]] | None = None
        self.ids = IdCodec(f"{org.seed}:{spec.name}")
        # Small tables are referenced by many rows: remember their ids (bounded by their size).
        self._encode = (
            functools.cache(self.ids.encode) if base_count <= SMALL_TABLE else self.ids.encode
        )
        # Only fields that hold (or contain) references are rebuilt per row; the rest of a
        # prototype is shared between rows (rows are deep-copied before any change).
        self.patch_fields = [
            n for n, f in self.fields.items() if _holds_refs(n, f) and (spec.name, n) not in REBUILT
        ]
        # Fields a list endpoint filters on with a fixed set of values (surveyType): the rows
        # carry one of those values, so each partition of the list finds its rows.
        self.param_values: dict[str, list[str]] = {
            name: param["values"]
            for row in endpoints().values()
            if row.get("stream") == spec.name
            for name, param in row["params"].items()
            if param.get("required") and param.get("values") and name in self.fields
        }

    # ids -----------------------------------------------------------------------------
    def id_of(self, index: int) -> str:
        """Deterministic random-looking UUIDv4 of (seed, table, index); see ``IdCodec``."""
        if self.spec.same_id_as_parent:
            return self.org.tables[self.spec.parent].id_of(index)  # type: ignore[index]
        return self._encode(index)

    def index_of(self, record_id: Any) -> int | None:
        """Index of a live record with this id, else None."""
        if self.spec.same_id_as_parent:
            return self.org.tables[self.spec.parent].index_of(record_id)  # type: ignore[index]
        index = self.ids.decode(str(record_id))
        return (
            index
            if index is not None
            and index < self.count
            and index not in self.deleted
            and self.exists(index)
            else None
        )

    def exists(self, index: int) -> bool:
        """Whether slot ``index`` holds a row at all (only sparse tables have empty slots)."""
        return not self.spec.sparse or index >= self.base_count or self.org.cohere.has_entry(index)

    # relations -------------------------------------------------------------------------
    def parent_index(self, index: int) -> int:
        """Index of the parent (or owner) row of row ``index``."""
        if index in self.created_parent:
            return self.created_parent[index]
        if self.spec.parent:
            return index // self.spec.per_parent
        owner = self.org.tables[self.spec.owner]  # type: ignore[index]
        if self.spec.blocks and index < self.base_count:
            return block_owner(index, self.base_count, self.org.seed)
        return index % max(1, owner.base_count)

    def children_of(self, parent_index: int) -> Iterator[int]:
        """Live child rows of one parent row, in index order."""
        parent = self.org.tables[self.spec.parent or self.spec.owner]  # type: ignore[index]
        if parent_index < parent.base_count:
            if self.spec.parent:
                start = parent_index * self.spec.per_parent
                yield from (
                    i
                    for i in range(start, start + self.spec.per_parent)
                    if i < self.base_count
                    and i not in self.deleted
                    and i not in self.created_parent
                    and self.exists(i)
                )
            elif self.spec.blocks:
                yield from (
                    i
                    for i in block_children(parent_index, self.base_count, self.org.seed)
                    if i < self.base_count
                    and i not in self.deleted
                    and i not in self.created_parent
                )
            else:  # owner relation: index % owner_base
                step = max(1, parent.base_count)
                yield from (
                    i
                    for i in range(parent_index, self.base_count, step)
                    if i not in self.deleted and i not in self.created_parent
                )
        yield from (
            i for i in self.created_by_parent.get(parent_index, []) if i not in self.deleted
        )

    def ref(self, target: str, index: int, salt: str, k: int = 0) -> int | None:
        """Index of the row of ``target`` that row ``index`` points to."""
        table = self.org.tables.get(target)
        if table is None or table.base_count == 0:
            return None
        related = self.spec.parent or self.spec.owner
        if related and k == 0:
            if target == related:
                return self.parent_index(index)
            up = self.org.tables[related]
            if target == (up.spec.parent or up.spec.owner):  # e.g. take-home -> app -> candidate
                return up.parent_index(self.parent_index(index))
        return (index * 7 + _tag(salt) + k * 13) % table.base_count

    # records -----------------------------------------------------------------------------
    def _prototypes(self) -> list[dict[str, Any]]:
        if self._protos is None:
            self._protos = [
                object_for(
                    self.fields,
                    random.Random(f"{self.org.seed}:{self.name}:{k}"),
                    "",
                    self.nullable,
                    self.required,
                    k,
                )
                for k in range(PROTOTYPES)
            ]
        return self._protos

    def created_at(self, index: int) -> str:
        if self.spec.recent:
            step = RECENT_SPAN_MS // max(1, self.base_count)
            return iso_ms(self.org.start_ms - RECENT_SPAN_MS + (index + 1) * step)
        return iso(EPOCH + timedelta(seconds=37 * index + self.tag % 97))

    def build(self, index: int) -> dict[str, Any]:
        """The base (never changed) row ``index``."""
        rec = dict(self._prototypes()[index % PROTOTYPES])
        for name in self.hidden:
            rec.pop(name, None)
        if "id" in rec:
            rec["id"] = self.id_of(index)
        for stamp in STAMPS:
            if stamp in rec:
                rec[stamp] = self.created_at(index)
        for label in LABEL_FIELDS:
            if isinstance(rec.get(label), str):
                rec[label] = f"{self.spec.object} {index}"
                break
        for name in self.patch_fields:
            if name in rec:
                rec[name] = self._patch(name, rec[name], index)
        if self.name == "candidates" and "applicationIds" in rec:
            apps = self.org.tables["applications"]
            rec["applicationIds"] = [apps.id_of(j) for j in apps.children_of(index)]
        for name, values in self.param_values.items():  # e.g. surveyType: documented values
            if name in rec:
                rec[name] = values[index % len(values)]
        if isinstance(rec.get("resumeFileHandle"), dict):
            rec["resumeFileHandle"] = {**rec["resumeFileHandle"], "handle": f"resume-{rec['id']}"}
        if isinstance(rec.get("fileHandles"), list):
            rec["fileHandles"] = [
                {**h, "handle": f"file-{rec['id']}-{k}"} for k, h in enumerate(rec["fileHandles"])
            ]
        if self.name == "interview_schedules" and "interviewEvents" in rec:
            events = self.org.tables["interview_events"]
            rec["interviewEvents"] = [events.get(j) for j in events.children_of(index)]
        if self.name == "interview_events" and rec.get("notetakerTranscriptId"):
            rec["notetakerTranscriptId"] = rec["id"]
        if self.name == "job_boards" and index < len(JOB_BOARDS):
            rec["title"], rec["isInternal"] = JOB_BOARDS[index]
        self.org.cohere.fix(self, index, rec)
        return rec

    def _patch(self, name: str, value: Any, index: int) -> Any:
        """Point reference fields of a copied prototype value at real rows."""
        if value is None:
            return None
        if name in ID_REFS and isinstance(value, str):
            j = self.ref(ID_REFS[name], index, name)
            return self.org.tables[ID_REFS[name]].id_of(j) if j is not None else value
        if name in OBJ_REFS and isinstance(value, dict) and "id" in value:
            j = self.ref(OBJ_REFS[name], index, name)
            if j is None:
                return value
            out = dict(value)
            out["id"] = self.org.tables[OBJ_REFS[name]].id_of(j)
            return out
        if name in ARRAY_REFS and isinstance(value, list):
            target = self.org.tables.get(ARRAY_REFS[name])
            out_list = []
            for k, item in enumerate(value):
                j = self.ref(ARRAY_REFS[name], index, name, k + 1)
                if j is None or target is None:
                    out_list.append(item)
                elif isinstance(item, dict):
                    out_list.append({**item, "id": target.id_of(j)} if "id" in item else item)
                else:
                    out_list.append(target.id_of(j))
            return out_list
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return [
                {k: self._patch(k, v, index + n) for k, v in item.items()}
                for n, item in enumerate(value)
            ]
        if isinstance(value, dict) and name not in ("linkedData", "submittedValues", "extraData"):
            return {k: self._patch(k, v, index) for k, v in value.items()}
        return value

    def get(self, index: int) -> dict[str, Any] | None:
        """The current row ``index``, or None when deleted or out of range."""
        if index in self.deleted or index >= self.count or not self.exists(index):
            return None
        rec = self.overrides.get(index)
        return rec if rec is not None else self.build(index)

    def live_indices(self, start: int = 0) -> Iterator[int]:
        """Indices of live rows from ``start`` on, in order."""
        deleted = self.deleted
        return (i for i in range(start, self.count) if i not in deleted and self.exists(i))

    def is_archived(self, rec: dict[str, Any]) -> bool:
        return bool(rec.get("isArchived")) or rec.get("status") == "Archived"


@dataclass
class ChangeSummary:
    """What a mutation changed: (table, id) pairs updated or created, and ids deleted."""

    upserted: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)


class Org:
    """All tables of one organisation, plus the global change sequence and a logical clock."""

    def __init__(self, candidates: int = 40, seed: int = 1) -> None:
        self.seed = seed
        self.candidates = candidates
        self.seq = 0
        self.lock = threading.RLock()
        # Logical clock (ms): drives updatedAt of changes and token/cursor ages.
        self.clock_ms = epoch_ms(EPOCH) + 3 * 365 * 86_400_000
        self.start_ms = self.clock_ms
        self.tables: dict[str, Table] = {}
        # UNCONFIRMED whether a child change (a note) shows up in the parent's syncToken pass:
        # False (the default) models the harder answer: the parent is left untouched, and only
        # the tap's rolling child refresh finds the change.
        self.child_changes_touch_parent = False
        self.cursor_epoch = 0  # bumped to expire every outstanding pagination cursor
        self.cohere = Cohere(self)  # makes built rows agree with each other (hiring.py)
        self.posting_boards: dict[int, int] = {}  # postings moved off POSTING_BOARDS
        specs = {s.name: s for s in TABLES}
        for spec in TABLES:  # top-level first, then children sized by their parent
            if spec.parent is None:
                self.tables[spec.name] = Table(self, spec, spec.size(candidates))
        for spec in TABLES:
            if spec.parent is not None:
                parent_count = self.tables[spec.parent].base_count
                self.tables[spec.name] = Table(self, spec, parent_count * spec.per_parent)
        assert set(specs) == set(self.tables)

    def job_board_of(self, posting_index: int) -> int:
        """Index of the job board a job posting is on (each posting is on exactly one)."""
        moved = self.posting_boards.get(posting_index)
        return POSTING_BOARDS[posting_index % len(POSTING_BOARDS)] if moved is None else moved

    def move_posting(self, posting_id: str, board_id: str) -> ChangeSummary:
        """Put a job posting on another job board (it leaves the one it was on)."""
        with self.lock:
            postings, boards = self.tables["job_postings"], self.tables["job_boards"]
            index = self._require(postings, posting_id)
            self.posting_boards[index] = self._require(boards, board_id)
            rec = copy.deepcopy(postings.get(index))
            assert rec is not None
            out = ChangeSummary()
            self._bump(postings, index, rec, out)
            return out

    def move(self, name: str, record_id: str, parent_id: str) -> ChangeSummary:
        """Re-parent a row of a child table (a stage moved to another interview plan); both
        parents count as changed, as a child change does (``child_changes_touch_parent``)."""
        with self.lock:
            table = self.table(name)
            assert table.spec.parent, f"{name} is not a child table"
            parent = self.tables[table.spec.parent]
            index = self._require(table, record_id)
            old, new = table.parent_index(index), self._require(parent, parent_id)
            if index in table.created_parent:
                table.created_by_parent[old].remove(index)
            table.created_parent[index] = new
            table.created_by_parent.setdefault(new, []).append(index)
            rec = copy.deepcopy(table.get(index))
            assert rec is not None
            built = table.build(index)  # its references, pointing at the new parent now
            rec.update({k: built[k] for k in table.patch_fields if k in built})
            out = ChangeSummary()
            self._bump(table, index, rec, out)
            for p in (old, new):
                prec = parent.get(p)
                if prec is not None and self.child_changes_touch_parent:
                    self._bump(parent, p, copy.deepcopy(prec), out)
            return out

    def table(self, name: str) -> Table:
        """A table by stream name; KeyError with the known names otherwise."""
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"unknown table {name!r}; known: {sorted(self.tables)}") from None

    def advance_clock(self, seconds: float) -> None:
        """Move the logical clock forward (ages tokens and cursors)."""
        with self.lock:
            self.clock_ms += int(seconds * 1000)

    # mutation interface ---------------------------------------------------------------------
    def _bump(self, table: Table, index: int, rec: dict[str, Any], out: ChangeSummary) -> None:
        self.seq += 1
        self.clock_ms += 1000
        if "updatedAt" in rec:
            rec["updatedAt"] = iso_ms(self.clock_ms)
        table.overrides[index] = rec
        table.changed[index] = self.seq
        out.upserted.append((table.name, table.id_of(index)))

    def _touch_parent(self, table: Table, index: int, out: ChangeSummary) -> None:
        """Bump the parent row of a changed child row (see ``child_changes_touch_parent``)."""
        if not (self.child_changes_touch_parent and table.spec.parent):
            return
        parent = self.tables[table.spec.parent]
        p = table.parent_index(index)
        rec = parent.get(p)
        if rec is not None:
            self._bump(parent, p, copy.deepcopy(rec), out)

    def update(
        self,
        name: str,
        record_id: str,
        fields: dict[str, Any] | None = None,
    ) -> ChangeSummary:
        """Change a record (``fields`` merged in; default: its label gets a revision mark)."""
        with self.lock:
            table = self.table(name)
            index = self._require(table, record_id)
            rec = copy.deepcopy(table.get(index))
            assert rec is not None
            if fields:
                rec.update(fields)
            else:
                label = next((f for f in LABEL_FIELDS if isinstance(rec.get(f), str)), None)
                if label:
                    rec[label] = f"{rec[label].split(' #')[0]} #{self.seq + 1}"
                elif "updatedAt" not in rec:
                    for key, value in rec.items():
                        if isinstance(value, int) and not isinstance(value, bool):
                            rec[key] = value + 1
                            break
            out = ChangeSummary()
            self._bump(table, index, rec, out)
            self._touch_parent(table, index, out)
            return out

    def archive(self, name: str, record_id: str) -> ChangeSummary:
        """Archive a record the way Ashby does for its type (flag, or status + archivedAt)."""
        table = self.table(name)
        with self.lock:
            rec = table.get(self._require(table, record_id))
            assert rec is not None
            if "isArchived" in table.fields:
                fields: dict[str, Any] = {"isArchived": True}
            elif "status" in table.fields:
                fields = {"status": "Archived"}
                if "archivedAt" in table.fields:
                    fields["archivedAt"] = iso_ms(self.clock_ms)
            else:
                fields = {}
            return self.update(name, record_id, fields)

    def create(
        self, name: str, fields: dict[str, Any] | None = None, parent_id: str | None = None
    ) -> ChangeSummary:
        """Add a record (a child needs ``parent_id``); returns what changed."""
        with self.lock:
            table = self.table(name)
            index = table.count
            related = table.spec.parent or table.spec.owner
            if related:
                parent = self.tables[related]
                if parent_id is None:
                    p = index % max(1, parent.base_count)
                    while parent.get(p) is None:
                        p = (p + 1) % parent.count
                else:
                    p = self._require(parent, parent_id)
                table.created_parent[index] = p
                table.created_by_parent.setdefault(p, []).append(index)
            table.count += 1
            rec = table.build(index)
            for stamp in STAMPS:
                if stamp in rec:
                    rec[stamp] = iso_ms(self.clock_ms + 1000)
            rec.update(fields or {})
            out = ChangeSummary()
            self._bump(table, index, rec, out)
            if name == "applications":  # the candidate's applicationIds grows
                cand = self.tables["candidates"]
                p = table.created_parent[index]
                crec = copy.deepcopy(cand.get(p))
                if crec is not None:
                    crec["applicationIds"] = [*crec.get("applicationIds", []), rec["id"]]
                    self._bump(cand, p, crec, out)
            self._touch_parent(table, index, out)
            return out

    def delete(self, name: str, record_id: str) -> ChangeSummary:
        """Hard-delete a record and, recursively, its child rows (erasure)."""
        with self.lock:
            table = self.table(name)
            index = self._require(table, record_id)
            out = ChangeSummary()
            self._delete(table, index, out)
            return out

    def _delete(self, table: Table, index: int, out: ChangeSummary) -> None:
        out.deleted.append((table.name, table.id_of(index)))
        table.deleted.add(index)
        table.overrides.pop(index, None)
        self.seq += 1
        table.changed[index] = self.seq
        for child in self.tables.values():
            if table.name in (child.spec.parent, child.spec.owner):
                for j in list(child.children_of(index)):
                    self._delete(child, j, out)

    def merge_candidates(self, keep_id: str, gone_id: str) -> ChangeSummary:
        """Merge two candidates: applications move to ``keep``, ``gone`` disappears."""
        with self.lock:
            cand, apps = self.tables["candidates"], self.tables["applications"]
            keep, gone = self._require(cand, keep_id), self._require(cand, gone_id)
            out = ChangeSummary()
            moved = list(apps.children_of(gone))
            for j in moved:
                rec = copy.deepcopy(apps.get(j))
                assert rec is not None
                rec["candidate"] = {**rec["candidate"], "id": keep_id}
                apps.created_by_parent.setdefault(keep, []).append(j)
                apps.created_parent[j] = keep
                self._bump(apps, j, rec, out)
            krec = copy.deepcopy(cand.get(keep))
            assert krec is not None
            krec["applicationIds"] = [apps.id_of(j) for j in apps.children_of(keep)]
            self._bump(cand, keep, krec, out)
            # The gone candidate's own children (notes, ...) go with it; applications moved.
            for child in self.tables.values():
                if child.spec.parent == "candidates" or (
                    child.spec.owner == "candidates" and child.name != "applications"
                ):
                    for j in list(child.children_of(gone)):
                        self._delete(child, j, out)
            out.deleted.append(("candidates", gone_id))
            cand.deleted.add(gone)
            cand.overrides.pop(gone, None)
            self.seq += 1
            cand.changed[gone] = self.seq
            return out

    def _require(self, table: Table, record_id: str) -> int:
        index = table.index_of(record_id)
        if index is None:
            raise KeyError(f"no live record {record_id} in {table.name}")
        return index

    def random_ids(self, name: str, count: int, rng: random.Random) -> list[str]:
        """Up to ``count`` distinct live ids of a table, drawn with ``rng``."""
        table = self.table(name)
        picked: list[str] = []
        seen: set[int] = set()
        attempts = 0
        while len(picked) < count and attempts < count * 20 and table.count:
            attempts += 1
            i = rng.randrange(table.count)
            if i not in seen and table.get(i) is not None:
                seen.add(i)
                picked.append(table.id_of(i))
        return picked

    def live_ids(self, name: str) -> list[str]:
        """Every live id of a table (tests compare warehouses with this)."""
        table = self.table(name)
        return [table.id_of(i) for i in table.live_indices()]
