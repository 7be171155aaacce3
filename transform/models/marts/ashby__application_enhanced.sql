-- One row per live application, with its job, candidate, source, stage and counts.
-- Custom fields: one column per title in var('ashby_custom_fields') (custom_<snake_case>),
-- the application's value, else the candidate's (text, as Ashby sent it).
{%- set custom_fields = var('ashby_custom_fields') %}

with applications as (
    select * from {{ ref('stg_ashby__applications') }}
),

offers as (
    select
        application_id,
        count(*) as offer_count,
        max(case when latest = 1 then offer_status end) as latest_offer_status
    from (
        select
            application_id,
            offer_status,
            case when decided_at is not null then row_number() over (
                partition by application_id
                order by case when decided_at is null then 1 else 0 end, decided_at desc, id
            ) end as latest
        from {{ ref('stg_ashby__offers') }}
    ) as ranked
    group by application_id
),

schedules as (
    select application_id, count(*) as interview_schedule_count
    from {{ ref('stg_ashby__interview_schedules') }}
    group by application_id
),

feedback as (
    select application_id, count(*) as feedback_count
    from {{ ref('stg_ashby__application_feedback') }}
    group by application_id
)

select
    a.id as application_id,
    a.candidate_id,
    coalesce(c.name, a.candidate_name) as candidate_name,
    a.job_id,
    j.title as job_title,
    coalesce(j.department_id, a.job_department_id) as department_id,
    d.name as department_name,
    coalesce(j.location_id, a.job_location_id) as location_id,
    l.name as location_name,
    a.status,
    a.source_id,
    coalesce(s.title, a.source_title) as source_title,
    a.current_stage_id,
    coalesce(st.title, a.current_stage_title) as current_stage_title,
    a.archive_reason_id,
    coalesce(r.text, a.archive_reason_text) as archive_reason_text,
    a.created_at,
    a.archived_at,
    coalesce(a.status = 'Hired', false) as is_hired,
    coalesce(o.offer_count, 0) as offer_count,
    o.latest_offer_status,
    coalesce(sc.interview_schedule_count, 0) as interview_schedule_count,
    coalesce(f.feedback_count, 0) as feedback_count
    {%- for title in custom_fields %},
    coalesce(
        {{ ashby_json_find_text('a.custom_fields', 'title', title, 'value') }},
        {{ ashby_json_find_text('c.custom_fields', 'title', title, 'value') }}
    ) as {{ ashby_custom_field_column(title) }}
    {%- endfor %}
from applications as a
left join {{ ref('stg_ashby__candidates') }} as c on c.id = a.candidate_id
left join {{ ref('stg_ashby__jobs') }} as j on j.id = a.job_id
left join {{ ref('stg_ashby__departments') }} as d
    on d.id = coalesce(j.department_id, a.job_department_id)
left join {{ ref('stg_ashby__locations') }} as l
    on l.id = coalesce(j.location_id, a.job_location_id)
left join {{ ref('stg_ashby__sources') }} as s on s.id = a.source_id
left join {{ ref('stg_ashby__interview_stages') }} as st on st.id = a.current_stage_id
left join {{ ref('stg_ashby__archive_reasons') }} as r on r.id = a.archive_reason_id
left join offers as o on o.application_id = a.id
left join schedules as sc on sc.application_id = a.id
left join feedback as f on f.application_id = a.id
