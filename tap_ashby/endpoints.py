"""The endpoint table: one row per replicated Ashby endpoint. Adding a stream = one row + a schema.

Only read endpoints are listed: the tap calls nothing else (``referralForm.info`` creates a
form and ``report.generate`` starts a job, so neither is here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ARCHIVED = {"includeArchived": True}


def values_at(record: dict[str, Any], dotted: str) -> list[Any]:
    """Values at a dotted path; ``a[].b`` walks every item of list ``a``."""
    current: list[Any] = [record]
    for part in dotted.split("."):
        nxt: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            if part.endswith("[]"):
                nxt.extend(item.get(part[:-2]) or [])
            else:
                nxt.append(item.get(part))
        current = nxt
    return [v for v in current if v not in (None, "")]


@dataclass(frozen=True)
class Parent:
    """How a child stream finds its parent ids: which stream, which field, which body param."""

    stream: str
    param: str
    field: str = "id"  # dotted path into the parent record; "a[].b" walks a list
    inject: str | None = None  # child records lack the parent id: store it under this name


@dataclass(frozen=True)
class Endpoint:
    """One Ashby read endpoint replicated as one Singer stream."""

    stream: str
    path: str
    permission: str
    primary_keys: tuple[str, ...] = ("id",)
    paginated: bool = True
    sync_token: bool = False
    created_after: bool = False  # honours start_date as createdAfter
    dedupe: bool = False  # the same row can come from several parents (job boards)
    body: dict[str, Any] = field(default_factory=dict)  # fixed request parameters
    parent: Parent | None = None
    partition_param: str | None = None  # one pass (and bookmark) per value
    partition_values: tuple[str, ...] = ()
    selected_by_default: bool = True
    note: str = ""
    reconcile: bool = True  # keep a ledger of delivered keys to find deleted rows
    # Child streams only: whether the primary key is unique across parents. True: a row can
    # show up under another parent (a posting moved to another board) and is deleted only
    # when no parent lists it. False: the key contains the parent's id, so a row under
    # another parent is another row. Where Ashby does not say, True (a move never deletes).
    pk_across_parents: bool | None = None
    window: str | None = None  # date-window list (auditLog.list): the window's start param

    @property
    def incremental(self) -> bool:
        """Whether later runs read only changes (own token, or the parent's for children)."""
        if self.parent is not None:
            return ENDPOINTS[self.parent.stream].sync_token
        return self.sync_token


def _c(stream: str, path: str, permission: str, param: str, *, across: bool, **kw: Any) -> Endpoint:
    """A child row whose parent is given as ``parent=(stream, field, inject)``; ``across``
    is its ``pk_across_parents`` (every child row says which kind it is)."""
    parent_stream, parent_field, inject = kw.pop("parent")
    return Endpoint(
        stream,
        path,
        permission,
        parent=Parent(parent_stream, param, parent_field, inject),
        pk_across_parents=across,
        **kw,
    )


CAND, JOBS, INTV, META, ORG, SOURCING = (
    "candidatesRead",
    "jobsRead",
    "interviewsRead",
    "hiringProcessMetadataRead",
    "organizationRead",
    "sourcingRead",
)

ROWS: list[Endpoint] = [
    # -- top-level lists with syncToken --------------------------------------------------
    Endpoint("candidates", "candidate.list", CAND, sync_token=True, created_after=True),
    Endpoint(
        "applications",
        "application.list",
        CAND,
        sync_token=True,
        created_after=True,
        body={"expand": ["openings"]},
    ),
    Endpoint(
        "application_feedback",
        "applicationFeedback.list",
        CAND,
        sync_token=True,
        created_after=True,
    ),
    # Draft jobs are only returned when listed. UNCONFIRMED whether a status filter changes
    # syncToken semantics; the same filter is sent on every pass so the token stays valid.
    Endpoint(
        "jobs",
        "job.list",
        JOBS,
        sync_token=True,
        created_after=True,
        body={"status": ["Draft", "Open", "Closed", "Archived"]},
    ),
    Endpoint("job_templates", "jobTemplate.list", JOBS, sync_token=True),
    Endpoint("openings", "opening.list", JOBS, sync_token=True, created_after=True),
    Endpoint("offers", "offer.list", "offersRead", sync_token=True, created_after=True),
    Endpoint(
        "interviews",
        "interview.list",
        INTV,
        sync_token=True,
        body={**ARCHIVED, "includeNonSharedInterviews": True},
    ),
    Endpoint("interview_plans", "interviewPlan.list", INTV, sync_token=True, body=ARCHIVED),
    Endpoint(
        "interview_schedules", "interviewSchedule.list", INTV, sync_token=True, created_after=True
    ),
    Endpoint(
        "interviewer_pools",
        "interviewerPool.list",
        META,
        sync_token=True,
        body={"includeArchivedPools": True, "includeArchivedTrainingStages": True},
    ),
    Endpoint("users", "user.list", ORG, sync_token=True, body={"includeDeactivated": True}),
    Endpoint("departments", "department.list", ORG, sync_token=True, body=ARCHIVED),
    Endpoint(
        "locations",
        "location.list",
        ORG,
        sync_token=True,
        body={**ARCHIVED, "includeLocationHierarchy": True},
    ),
    Endpoint("candidate_tags", "candidateTag.list", META, sync_token=True, body=ARCHIVED),
    Endpoint("custom_fields", "customField.list", META, sync_token=True, body=ARCHIVED),
    Endpoint(
        "feedback_form_definitions",
        "feedbackFormDefinition.list",
        META,
        sync_token=True,
        body=ARCHIVED,
    ),
    Endpoint("survey_form_definitions", "surveyFormDefinition.list", META, sync_token=True),
    Endpoint("projects", "project.list", CAND, sync_token=True, created_after=True),
    Endpoint("approvals", "approval.list", "approvalsRead", sync_token=True),
    Endpoint(
        "survey_submissions",
        "surveySubmission.list",
        CAND,
        sync_token=True,
        created_after=True,
        partition_param="surveyType",
        partition_values=("CandidateExperience", "Questionnaire", "HiringManagerExperience"),
    ),
    Endpoint(
        "survey_requests",
        "surveyRequest.list",
        CAND,
        sync_token=True,
        created_after=True,
        partition_param="surveyType",
        partition_values=("CandidateExperience",),
    ),
    Endpoint("sequences", "sequence.list", SOURCING, sync_token=True),
    Endpoint(
        "sequence_templates", "sequenceTemplate.list", SOURCING, sync_token=True, body=ARCHIVED
    ),
    Endpoint("take_home_assignments", "takeHomeAssignment.list", INTV, sync_token=True),
    # -- top-level lists, full table every run ---------------------------------------------
    Endpoint("brands", "brand.list", ORG),
    Endpoint("job_boards", "jobBoard.list", JOBS, paginated=False),
    # Without jobBoardId only the primary external board answers: one call per board.
    _c(
        "job_postings",
        "jobPosting.list",
        JOBS,
        "jobBoardId",
        parent=("job_boards", "id", None),
        paginated=False,
        dedupe=True,
        across=True,  # a posting can be on several boards, and move between them
    ),
    # No request body at all (2026 OpenAPI): every stage group of the organization.
    Endpoint("interview_stage_groups", "interviewStageGroup.list", INTV, paginated=False),
    # Which permission version.list needs is not documented (UNCONFIRMED): a missing one
    # only skips the stream.
    Endpoint("api_versions", "version.list", ORG, primary_keys=("version",), paginated=False),
    Endpoint(
        "hiring_team_roles", "hiringTeamRole.list", ORG, paginated=False, body={"namesOnly": False}
    ),
    Endpoint(
        "application_hiring_team_roles", "applicationHiringTeamRole.list", CAND, paginated=False
    ),
    Endpoint("sources", "source.list", META, paginated=False, body=ARCHIVED),
    Endpoint(
        "source_tracking_links",
        "sourceTrackingLink.list",
        META,
        paginated=False,
        body={"includeDisabled": True},
    ),
    Endpoint("archive_reasons", "archiveReason.list", META, paginated=False, body=ARCHIVED),
    Endpoint("close_reasons", "closeReason.list", META, paginated=False, body=ARCHIVED),
    Endpoint("communication_templates", "communicationTemplate.list", META, paginated=False),
    Endpoint(
        "api_key_info", "apiKey.info", "apiKeysRead", primary_keys=("title",), paginated=False
    ),
    # -- child streams: one call per parent record ------------------------------------------
    _c(
        "interview_stages",
        "interviewStage.list",
        INTV,
        "interviewPlanId",
        parent=("interview_plans", "id", None),
        paginated=False,
        across=True,  # stage ids are org-wide; a move between plans is not ruled out
    ),
    _c(
        "interview_events",
        "interviewEvent.list",
        INTV,
        "interviewScheduleId",
        parent=("interview_schedules", "id", None),
        selected_by_default=False,
        note="interview_schedules already embeds interviewEvents[]",
        across=True,  # event ids are org-wide
    ),
    _c(
        "candidate_notes",
        "candidate.listNotes",
        CAND,
        "candidateId",
        parent=("candidates", "id", "candidateId"),
        primary_keys=("candidateId", "id"),
        across=False,
    ),
    _c(
        "candidate_client_info",
        "candidate.listClientInfo",
        CAND,
        "candidateId",
        parent=("candidates", "id", None),
        selected_by_default=False,
        note="IP addresses and user agents (PII)",
        across=True,  # a candidate merge may move it to the kept candidate
    ),
    _c(
        "candidate_projects",
        "candidate.listProjects",
        CAND,
        "candidateId",
        parent=("candidates", "id", "candidateId"),
        primary_keys=("candidateId", "id"),
        selected_by_default=False,
        note="one call per candidate; projects has the same rows",
        across=False,
    ),
    _c(
        "candidate_fraud_checks",
        "candidate.listFraudChecks",
        CAND,
        "candidateId",
        parent=("candidates", "id", None),
        selected_by_default=False,
        note="needs the Fraud Detection feature",
        across=True,  # a candidate merge may move it to the kept candidate
    ),
    _c(
        "application_history",
        "application.listHistory",
        CAND,
        "applicationId",
        parent=("applications", "id", "applicationId"),
        primary_keys=("applicationId", "id"),
        across=False,
    ),
    _c(
        "application_criteria_evaluations",
        "application.listCriteriaEvaluations",
        CAND,
        "applicationId",
        parent=("applications", "id", "applicationId"),
        primary_keys=("applicationId", "id"),
        selected_by_default=False,
        note="needs the AI Application Review feature",
        across=False,
    ),
    _c(
        "job_interview_plans",
        "jobInterviewPlan.info",
        JOBS,
        "jobId",
        parent=("jobs", "id", None),
        primary_keys=("jobId",),
        paginated=False,
        across=True,  # keyed by the job itself
    ),
    _c(
        "job_posting_details",
        "jobPosting.info",
        JOBS,
        "jobPostingId",
        parent=("job_postings", "id", None),
        paginated=False,
        across=True,  # keyed by the posting itself
    ),
    _c(
        "interviewer_pool_members",
        "interviewerPool.info",
        META,
        "interviewerPoolId",
        parent=("interviewer_pools", "id", None),
        paginated=False,
        across=True,
    ),
    _c(
        "user_interviewer_settings",
        "user.interviewerSettings",
        ORG,
        "userId",
        parent=("users", "id", None),
        paginated=False,
        across=True,
    ),
    # Active or scheduled pauses only: the user's rows are replaced on each pass.
    _c(
        "user_interviewer_pauses",
        "user.listInterviewerPauses",
        ORG,
        "userId",
        parent=("users", "id", "userId"),
        paginated=False,
        across=True,  # userId is injected, not part of the key
    ),
    # -- optional: offered, not selected by default ------------------------------------------
    _c(
        "notetaker_transcripts",
        "notetakerTranscript.info",
        "notetakerRead",
        "notetakerTranscriptId",
        parent=("interview_schedules", "interviewEvents[].notetakerTranscriptId", None),
        paginated=False,
        selected_by_default=False,
        note="AI Notetaker add-on; transcript URLs expire after minutes",
        across=True,  # keyed by the transcript, listed per interview event
    ),
    _c(
        "candidate_files",
        "file.info",
        CAND,
        "fileHandle",
        parent=("candidates", "fileHandles[].handle", "fileHandle"),
        primary_keys=("fileHandle",),
        paginated=False,
        selected_by_default=False,
        note="signed URLs that expire; one call per file",
        across=False,  # the parent key is the file handle itself, which is the key
    ),
    Endpoint(
        "report_results",
        "report.synchronous",
        "reportsRead",
        primary_keys=("reportId",),
        paginated=False,
        partition_param="reportId",
        selected_by_default=False,
        note="saved reports named in report_ids; 15 requests/min per organisation",
    ),
    Endpoint(
        "email_senders",
        "emailSender.list",
        SOURCING,
        primary_keys=("email",),
        paginated=False,
        selected_by_default=False,
        note="depends on the acting identity (X-On-Behalf-Of)",
    ),
    _c(
        "interview_briefings",
        "interviewBriefing.info",
        INTV,
        "interviewEventId",
        parent=("interview_schedules", "interviewEvents[].id", None),
        paginated=False,
        selected_by_default=False,
        note="one call per interview event",
        across=True,
    ),
    Endpoint(
        "audit_log_entries",
        "auditLog.list",
        "auditLogsRead",
        window="startDate",
        reconcile=False,
        selected_by_default=False,
        note="needs the Audit Logs feature; read from start_date (at most 18 months)",
    ),
]

ENDPOINTS: dict[str, Endpoint] = {row.stream: row for row in ROWS}
