-- One row per interview event of a live application (from interview_schedules).
with feedback as (
    select interview_event_id, count(*) as feedback_count
    from {{ ref('stg_ashby__application_feedback') }}
    where interview_event_id is not null
    group by interview_event_id
)

select
    e.interview_event_id,
    e.interview_schedule_id,
    e.application_id,
    a.candidate_id,
    a.job_id,
    e.interview_id,
    e.interview_stage_id,
    e.start_time,
    e.end_time,
    {{ ashby_days_between('e.start_time', 'e.end_time') }} * 1440 as duration_minutes,
    e.interviewer_count,
    e.has_submitted_feedback,
    coalesce(f.feedback_count, 0) as feedback_count
from {{ ref('stg_ashby__interview_schedule_events') }} as e
inner join {{ ref('stg_ashby__applications') }} as a on a.id = e.application_id
left join feedback as f on f.interview_event_id = e.interview_event_id
