"""The hiring story behind the seeded records: who applied where, and how far they got.

Every base application gets a story drawn from ``random.Random(f"{seed}:story:{index}")``, so
it is the same on every call and nothing is materialized up front. ``Org`` uses it to make the
records agree with each other (analytics on the emulator's data must give sensible answers):

- **Candidates and applications.** Candidates and applications are cut into blocks of
  ``BLOCK`` (8) rows of each; every application of a block picks one of the block's candidates
  uniformly. So a candidate has 0..8 applications, Binomial(8, 1/8) (about Poisson(1)): 34%
  none, 39% one, 20% two, 7% three or more; the org still has one application per candidate
  on average. Both directions (application -> candidate, candidate -> applications) are O(1).
- **Plans.** Every interview plan has the stages ``PLAN_STAGES`` in this order, with Ashby's
  stage types (Lead, PreInterviewScreen, Active, Offer, Hired, Archived). An application
  follows the default plan of its job.
- **How far an application gets** depends on which child rows the emulator's tables give it
  (rows are attached by index): applications with an offer (the first ``offers`` indexes) reach
  Offer, half of them Hired; the others with an interview schedule (the next indexes up to the
  number of schedules) reach Technical Interview (40%) or Onsite (60%); the rest stop at Lead
  (30%), Application Review (40%) or Recruiter Screen (30%). Every application enters Lead
  first and moves through the stages in order, so the funnel narrows stage by stage.
- **Outcome.** Hired applications stay in Hired. Otherwise an application is archived (moved
  to the Archived stage, with an archive reason) with probability ``ARCHIVE_RATE`` of its last
  stage, else it is still in that stage (status Lead in a Lead stage, else Active).
- **Days in stage** are log-normal per stage (median ``MEDIAN_DAYS``, sigma 0.6), at least
  half a day, so time in stage varies from application to application.
- **History** is one entry per stage entered: each entry is left when the next is entered,
  and exactly one entry (the last) is open; it is the current stage.
- **Offers** go to applications that reached Offer; their status follows the outcome
  (accepted when hired, rejected when archived after Offer, else waiting).
- **Interviews**: an application's schedules are on the last Active stage it reached, and
  their events lie inside that stage; feedback of an application with a schedule belongs to one
  of that schedule's events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .generate import epoch_ms, iso_ms

# org.py imports this module; this one takes the org and its tables as plain objects
# (``Org``, ``Table`` of org.py) so the two never import each other, not even for types.
Org = Any
Table = Any

BLOCK = 8
# (title, type): Ashby's stage types, in plan order.
PLAN_STAGES: list[tuple[str, str]] = [
    ("Lead", "Lead"),
    ("Application Review", "PreInterviewScreen"),
    ("Recruiter Screen", "PreInterviewScreen"),
    ("Technical Interview", "Active"),
    ("Onsite", "Active"),
    ("Offer", "Offer"),
    ("Hired", "Hired"),
    ("Archived", "Archived"),
]
LEAD, REVIEW, SCREEN, TECH, ONSITE, OFFER, HIRED, ARCHIVED = range(len(PLAN_STAGES))
MAX_ENTRIES = OFFER + 2  # Lead .. Offer, then Hired or Archived
MEDIAN_DAYS = {LEAD: 2.0, REVIEW: 3.0, SCREEN: 5.0, TECH: 7.0, ONSITE: 6.0, OFFER: 4.0}
ARCHIVE_RATE = {LEAD: 0.5, REVIEW: 0.5, SCREEN: 0.5, TECH: 0.6, ONSITE: 0.6, OFFER: 0.6}
DAY_MS = 86_400_000
# Custom fields of the org: (title, objectType, fieldType). Records of that object type carry a
# value for each of their fields with probability 0.8.
CUSTOM_FIELDS: list[tuple[str, str, str]] = [
    ("Referral", "Application", "Boolean"),
    ("Expected salary", "Candidate", "Number"),
    ("Notice period", "Candidate", "String"),
    ("Work authorization", "Application", "ValueSelect"),
    ("Hiring reason", "Job", "String"),
    ("Cost center", "Job", "String"),
    ("Signing bonus", "Offer", "Number"),
    ("Team", "Opening", "String"),
]
SELECT_VALUES = ("Citizen", "Visa required", "Visa held")
# Tables whose base rows ``Cohere.current`` remembers (copied into many rows, few of them).
CACHED = {"jobs", "sources", "archive_reasons", "interview_stages"}
CUSTOM_FIELD_OBJECT = {"applications": "Application", "candidates": "Candidate", "jobs": "Job"}


def block_owner(index: int, count: int, seed: int) -> int:
    """Candidate index of application ``index`` (both tables have ``count`` base rows)."""
    start = index - index % BLOCK
    return start + _assignment(start, min(BLOCK, count - start), seed)[index - start]


def block_children(owner: int, count: int, seed: int) -> list[int]:
    """Application indexes of candidate ``owner``, in order."""
    start = owner - owner % BLOCK
    picks = _assignment(start, min(BLOCK, count - start), seed)
    return [start + k for k, p in enumerate(picks) if start + p == owner]


_ASSIGNMENTS: dict[tuple[int, int, int], tuple[int, ...]] = {}


def _assignment(start: int, size: int, seed: int) -> tuple[int, ...]:
    key = (seed, start, size)
    got = _ASSIGNMENTS.get(key)
    if got is None:
        rng = random.Random(f"{seed}:owners:{start}")
        got = tuple(rng.randrange(size) for _ in range(size))
        if len(_ASSIGNMENTS) > 100_000:  # bounded: blocks are cheap to redraw
            _ASSIGNMENTS.clear()
        _ASSIGNMENTS[key] = got
    return got


@dataclass(frozen=True)
class Story:
    """One application's path: (stage position, entered ms, left ms or None) per entry."""

    entries: tuple[tuple[int, int, int | None], ...]
    archived: bool

    @property
    def current(self) -> int:
        return self.entries[-1][0]

    @property
    def status(self) -> str:
        kind = PLAN_STAGES[self.current][1]
        if kind in ("Hired", "Archived", "Lead"):
            return kind
        return "Active"

    def entered(self, stage: int) -> int | None:
        return next((e for s, e, _ in self.entries if s == stage), None)

    def left(self, stage: int) -> int | None:
        return next((lft for s, _, lft in self.entries if s == stage), None)

    @property
    def interview_stage(self) -> int:
        """The last Active stage reached (where its interviews are), else the screen."""
        reached = [s for s, _, _ in self.entries if PLAN_STAGES[s][1] == "Active"]
        return reached[-1] if reached else SCREEN


def story(seed: int, index: int, created_ms: int, band: str) -> Story:
    """The story of application ``index``; ``band`` is offer, interview or early."""
    rng = random.Random(f"{seed}:story:{index}")
    if band == "offer":
        furthest = HIRED if rng.random() < 0.5 else OFFER
    elif band == "interview":
        furthest = TECH if rng.random() < 0.4 else ONSITE
    else:
        furthest = rng.choices((LEAD, REVIEW, SCREEN), weights=(3, 4, 3))[0]
    path = list(range(min(furthest, OFFER) + 1))
    archived = False
    if furthest == HIRED:
        path.append(HIRED)
    elif rng.random() < ARCHIVE_RATE[furthest]:
        path.append(ARCHIVED)
        archived = True
    entries: list[tuple[int, int, int | None]] = []
    at = created_ms
    for k, stage in enumerate(path):
        if k == len(path) - 1:
            entries.append((stage, at, None))
            break
        days = max(0.5, rng.lognormvariate(0.0, 0.6) * MEDIAN_DAYS[stage])
        left = at + int(days * DAY_MS)
        entries.append((stage, at, left))
        at = left
    return Story(tuple(entries), archived)


def custom_field_value(field_type: str, rng: random.Random) -> object:
    """A value of the custom field type (integers for numbers: exact in every warehouse)."""
    if field_type == "Boolean":
        return rng.random() < 0.5
    if field_type == "Number":
        return rng.randrange(10, 200) * 1000
    if field_type == "ValueSelect":
        return rng.choice(SELECT_VALUES)
    return f"{rng.choice(('Alpha', 'Bravo', 'Cedar', 'Delta'))} {rng.randrange(100)}"


class Cohere:
    """Rewrites freshly built base rows so that they agree with their stories and records.

    Embedded copies (``application.job``, ``application.candidate``, ...) are taken from the
    current record they copy, so they equal it.
    """

    def __init__(self, org: Org) -> None:
        self.org = org
        self.seed = org.seed
        self._stories: dict[int, Story] = {}
        self._cache: dict[str, dict[int, dict[str, Any] | None]] = {}
        self.fixers = {
            "applications": self.application,
            "application_history": self.history,
            "interview_stages": self.stage,
            "jobs": self.job,
            "job_interview_plans": self.job_plan,
            "offers": self.offer,
            "interview_schedules": self.schedule,
            "interview_events": self.event,
            "application_feedback": self.feedback,
            "custom_fields": self.custom_field,
            "candidates": self.custom_values,
        }

    def fix(self, table: Table, index: int, rec: dict[str, Any]) -> None:
        fixer = self.fixers.get(table.name)
        if fixer is not None and index < table.base_count:
            fixer(index, rec)

    # relations --------------------------------------------------------------------------
    def t(self, name: str) -> Table:
        return self.org.tables[name]

    def job_of(self, app: int) -> int:
        return self.t("applications").ref("jobs", app, "job") or 0

    def plan_of(self, job: int) -> int:
        return self.t("jobs").ref("interview_plans", job, "defaultInterviewPlanId") or 0

    def stage_index(self, app: int, stage: int) -> int:
        return self.plan_of(self.job_of(app)) * len(PLAN_STAGES) + stage

    def story(self, app: int) -> Story:
        got = self._stories.get(app)
        if got is None:
            apps = self.t("applications")
            n = max(1, apps.base_count)
            if app < min(n, self.t("offers").base_count):
                band = "offer"
            elif app < self.t("interview_schedules").base_count:
                band = "interview"
            else:
                band = "early"
            created = apps.created_at(app).replace("Z", "+00:00")
            got = story(self.seed, app, epoch_ms(datetime.fromisoformat(created)), band)
            if len(self._stories) > 200_000:  # bounded: stories are cheap to redraw
                self._stories.clear()
            self._stories[app] = got
        return got

    def has_entry(self, index: int) -> bool:
        """Whether history slot ``index`` holds an entry (slots per application: MAX_ENTRIES)."""
        app, k = divmod(index, MAX_ENTRIES)
        return k < len(self.story(app).entries)

    def current(self, name: str, index: int) -> dict[str, Any]:
        """The current record (read only). Unchanged rows of the tables whose rows are copied
        into many others (jobs, stages, ...) are remembered: a base row never changes."""
        table = self.t(name)
        if name not in CACHED or index in table.overrides or index in table.deleted:
            rec = table.get(index)
        else:
            cache = self._cache.setdefault(name, {})
            rec = cache.get(index)
            if rec is None:
                if len(cache) > 250_000:  # bounded: base rows are cheap to rebuild
                    cache.clear()
                rec = cache[index] = table.get(index)
        assert rec is not None, (name, index)
        return rec

    # fixers -----------------------------------------------------------------------------
    def stage_summary(self, stage_index: int) -> dict[str, Any]:
        rec = self.current("interview_stages", stage_index)
        return {
            k: rec.get(k)
            for k in (
                "id",
                "title",
                "type",
                "orderInInterviewPlan",
                "interviewPlanId",
                "interviewStageGroupId",
            )
        }

    def stage(self, index: int, rec: dict[str, Any]) -> None:
        k = index % len(PLAN_STAGES)
        rec["title"], rec["type"] = PLAN_STAGES[k]
        rec["orderInInterviewPlan"] = k + 1

    def job(self, index: int, rec: dict[str, Any]) -> None:
        plans = self.t("interview_plans")
        rec["defaultInterviewPlanId"] = plans.id_of(self.plan_of(index))
        rec["interviewPlanIds"] = [rec["defaultInterviewPlanId"]]
        # opened and closed agree with the status: a draft was never opened, an open job is
        # not closed, a closed or archived one closed after it opened
        status, opened = rec.get("status"), rec.get("openedAt") or rec.get("createdAt")
        if status == "Draft":
            rec["openedAt"] = rec["closedAt"] = None
        elif "openedAt" in rec:
            rec["openedAt"] = opened
            if status == "Open":
                rec["closedAt"] = None
            elif opened is not None and not (rec.get("closedAt") or "") > opened:
                closed = datetime.fromisoformat(opened.replace("Z", "+00:00"))
                rec["closedAt"] = iso_ms(epoch_ms(closed) + 45 * DAY_MS)
        self.custom_values(index, rec, "jobs")

    def job_plan(self, index: int, rec: dict[str, Any]) -> None:
        plan = self.plan_of(index)
        rec["interviewPlanId"] = self.t("interview_plans").id_of(plan)
        rec["stages"] = [
            {**self.stage_summary(plan * len(PLAN_STAGES) + k), "activities": []}
            for k in range(len(PLAN_STAGES))
        ]
        for stage in rec["stages"]:
            stage.pop("interviewPlanId", None)

    def application(self, index: int, rec: dict[str, Any]) -> None:
        tale = self.story(index)
        job = self.current("jobs", self.job_of(index))
        rec["job"] = {
            k: job.get(k) for k in ("id", "title", "locationId", "departmentId", "brandId")
        }
        rec["candidate"] = self.candidate_copy(self.t("applications").parent_index(index))
        if rec.get("source") is not None:
            src = self.current(
                "sources", self.t("applications").ref("sources", index, "source") or 0
            )
            rec["source"] = {k: src.get(k) for k in ("id", "title", "isArchived", "sourceType")}
        rec["status"] = tale.status
        rec["currentInterviewStage"] = self.stage_summary(self.stage_index(index, tale.current))
        if tale.archived:
            reasons = self.t("archive_reasons")
            reason = self.current("archive_reasons", (index * 7 + 3) % reasons.base_count)
            rec["archiveReason"] = {
                **{k: reason.get(k) for k in ("id", "text", "reasonType", "isArchived")},
                "customFields": [],  # the embedded copy carries them; the org defines none
            }
            rec["archivedAt"] = iso_ms(tale.entries[-1][1])
        else:
            rec["archiveReason"], rec["archivedAt"] = None, None
        if "applicationHistory" in rec:
            # Only application.info returns it (api.py fills it in with ``embedded_history``):
            # building it for every listed row would cost most of the row's time.
            rec["applicationHistory"] = []
        self.custom_values(index, rec, "applications")

    def candidate_copy(self, cand: int) -> dict[str, Any]:
        """``application.candidate``: id, name, primary email and phone of the candidate.

        An unchanged candidate's name is its label and its email and phone come from its
        prototype unchanged (``Table.build``): read them there, not from a whole built row.
        """
        table = self.t("candidates")
        rec = table.overrides.get(cand)
        if rec is None:
            proto = table._prototypes()[cand % len(table._prototypes())]
            rec = {**proto, "name": f"{table.spec.object} {cand}"}
        return {
            "id": table.id_of(cand),
            **{k: rec.get(k) for k in ("name", "primaryEmailAddress", "primaryPhoneNumber")},
        }

    def embedded_history(self, app: int) -> list[dict[str, Any]]:
        """``application.applicationHistory``: the application's history records."""
        hist = self.t("application_history")
        keep = hist.fields.keys() - hist.hidden
        return [
            {k: v for k, v in self.current("application_history", j).items() if k in keep}
            for j in hist.children_of(app)
        ]

    def history(self, index: int, rec: dict[str, Any]) -> None:
        app, k = divmod(index, MAX_ENTRIES)
        stage, entered, left = self.story(app).entries[k]
        summary = self.stage_summary(self.stage_index(app, stage))
        rec["stageId"], rec["title"] = summary["id"], summary["title"]
        rec["stageNumber"] = summary["orderInInterviewPlan"]
        rec["enteredStageAt"] = iso_ms(entered)
        rec["leftStageAt"] = iso_ms(left) if left is not None else None

    def offer(self, index: int, rec: dict[str, Any]) -> None:
        apps = self.t("applications")
        app = index % max(1, apps.base_count)
        tale = self.story(app)
        if index >= apps.base_count:  # a second offer of a tiny org: an earlier, cancelled one
            status, acceptance, decided = "OfferCancelled", "Cancelled", tale.entered(OFFER)
        elif tale.current == HIRED:
            status, acceptance, decided = "CandidateAccepted", "Accepted", tale.entered(HIRED)
        elif tale.archived:
            status, acceptance, decided = "CandidateRejected", "Declined", tale.entries[-1][1]
        else:
            status, acceptance, decided = "WaitingOnCandidateResponse", "WaitingOnResponse", None
        rec["offerStatus"], rec["acceptanceStatus"] = status, acceptance
        rec["decidedAt"] = iso_ms(decided) if decided is not None else None

    def schedule_app(self, schedule: int) -> int:
        return schedule % max(1, self.t("applications").base_count)

    def schedule(self, index: int, rec: dict[str, Any]) -> None:
        app = self.schedule_app(index)
        tale = self.story(app)
        stage = tale.interview_stage
        rec["interviewStageId"] = self.stage_summary(self.stage_index(app, stage))["id"]
        rec["status"] = "Complete" if tale.left(stage) is not None else "Scheduled"

    def event(self, index: int, rec: dict[str, Any]) -> None:
        schedule = index // self.t("interview_events").spec.per_parent
        app = self.schedule_app(schedule)
        tale = self.story(app)
        # Inside the stage: stages last at least half a day, events start 2 h in, 90 min apart.
        start = (tale.entered(tale.interview_stage) or 0) + 7_200_000 * (1 + index % 2)
        rec["startTime"] = iso_ms(start)
        rec["endTime"] = iso_ms(start + (45 + 15 * (index % 3)) * 60_000)
        rec["hasSubmittedFeedback"] = any(
            self.feedback_event(f) == index
            for f in range(app, self.t("application_feedback").base_count, self.n_apps)
        )

    @property
    def n_apps(self) -> int:
        return max(1, self.t("applications").base_count)

    def feedback_event(self, feedback: int) -> int | None:
        """Interview event feedback row ``feedback`` is about (None: not about an event)."""
        app = feedback % self.n_apps
        schedules = self.t("interview_schedules")
        first = next(iter(schedules.children_of(app)), None)
        if first is None:
            return None
        events = self.t("interview_events")
        return first * events.spec.per_parent + (feedback // self.n_apps) % events.spec.per_parent

    def feedback(self, index: int, rec: dict[str, Any]) -> None:
        event = self.feedback_event(index)
        app = index % self.n_apps
        tale = self.story(app)
        hist = self.t("application_history")
        if event is None:  # feedback on the application itself (e.g. a review), no event
            rec["interviewEventId"], rec["interviewId"] = None, None
            rec["applicationHistoryId"] = hist.id_of(app * MAX_ENTRIES)
            rec["submittedAt"] = iso_ms(tale.entries[0][1] + 3_600_000)
            return
        erec = self.current("interview_events", event)
        rec["interviewEventId"], rec["interviewId"] = erec["id"], erec.get("interviewId")
        k = next(i for i, e in enumerate(tale.entries) if e[0] == tale.interview_stage)
        rec["applicationHistoryId"] = hist.id_of(app * MAX_ENTRIES + k)
        end = datetime.fromisoformat(erec["endTime"].replace("Z", "+00:00"))
        rec["submittedAt"] = iso_ms(epoch_ms(end) + 3_600_000)

    def custom_field(self, index: int, rec: dict[str, Any]) -> None:
        if index < len(CUSTOM_FIELDS):
            rec["title"], rec["objectType"], rec["fieldType"] = CUSTOM_FIELDS[index]

    def custom_values(self, index: int, rec: dict[str, Any], name: str = "candidates") -> None:
        if "customFields" not in rec:
            return
        fields = self.t("custom_fields")
        rng = random.Random(f"{self.seed}:custom:{name}:{index}")
        out = []
        for k, (title, kind, ftype) in enumerate(CUSTOM_FIELDS):
            if kind != CUSTOM_FIELD_OBJECT[name] or k >= fields.base_count:
                continue
            value = custom_field_value(ftype, rng)
            if rng.random() < 0.8:
                out.append(
                    {"id": fields.id_of(k), "title": title, "value": value, "isPrivate": False}
                )
        rec["customFields"] = out
