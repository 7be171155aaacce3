-- One row per job and interview stage reached by at least one live application.
select
    job_id,
    stage_id,
    max(stage_title) as stage_title,
    min(stage_number) as stage_order,
    count(distinct application_id) as applications_entered,
    count(distinct case when is_current then application_id end) as applications_current,
    {{ ashby_median('days_in_stage') }} as median_days_in_stage
from {{ ref('ashby__application_history') }}
where job_id is not null and stage_id is not null
group by job_id, stage_id
