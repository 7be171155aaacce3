-- One row per interview event, from the events interview_schedules embeds (interviewEvents[]):
-- the interview_events stream is not selected by default, the embedded copies always are.
with events as (
    {{ ashby_json_elements(ref('stg_ashby__interview_schedules'), 'interview_events', 'event') }}
)

select
    cast({{ ashby_json_text('event', ['id']) }} as text) as interview_event_id,
    id as interview_schedule_id,
    application_id,
    interview_stage_id,
    cast({{ ashby_json_text('event', ['interviewId']) }} as text) as interview_id,
    cast({{ ashby_json_text('event', ['startTime']) }} as timestamp) as start_time,
    cast({{ ashby_json_text('event', ['endTime']) }} as timestamp) as end_time,
    {{ ashby_json_array_length(ashby_json_value('event', ['interviewers'])) }} as interviewer_count,
    cast({{ ashby_json_text('event', ['hasSubmittedFeedback']) }} as boolean)
        as has_submitted_feedback
from events
