-- One row per history entry of a live application: which stage, when entered and left.
select
    h.id as history_id,
    h.application_id,
    a.candidate_id,
    a.job_id,
    h.stage_id,
    coalesce(st.title, h.title) as stage_title,
    h.stage_number,
    h.entered_stage_at,
    h.left_stage_at,
    {{ ashby_days_between('h.entered_stage_at', 'h.left_stage_at') }} as days_in_stage,
    h.left_stage_at is null as is_current
from {{ ref('stg_ashby__application_history') }} as h
inner join {{ ref('stg_ashby__applications') }} as a on a.id = h.application_id
left join {{ ref('stg_ashby__interview_stages') }} as st on st.id = h.stage_id
