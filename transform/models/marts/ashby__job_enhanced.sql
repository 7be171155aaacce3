-- One row per live job, with its application, hire, offer and opening counts.
with applications as (
    select
        job_id,
        count(*) as application_count,
        sum(case when status = 'Active' then 1 else 0 end) as active_application_count,
        sum(case when status = 'Hired' then 1 else 0 end) as hired_count
    from {{ ref('stg_ashby__applications') }}
    group by job_id
),

offers as (
    select a.job_id, count(*) as offer_count
    from {{ ref('stg_ashby__offers') }} as o
    inner join {{ ref('stg_ashby__applications') }} as a on a.id = o.application_id
    group by a.job_id
),

opening_jobs as (
    {{ ashby_json_elements(ref('stg_ashby__openings'), 'job_ids', 'job_id', as_text=true) }}
),

openings as (
    select job_id, count(distinct id) as opening_count
    from opening_jobs
    group by job_id
)

select
    j.id as job_id,
    j.title as job_title,
    j.status,
    d.name as department_name,
    l.name as location_name,
    j.opened_at,
    j.closed_at,
    coalesce(a.application_count, 0) as application_count,
    coalesce(a.active_application_count, 0) as active_application_count,
    coalesce(a.hired_count, 0) as hired_count,
    coalesce(o.offer_count, 0) as offer_count,
    coalesce(op.opening_count, 0) as opening_count
from {{ ref('stg_ashby__jobs') }} as j
left join {{ ref('stg_ashby__departments') }} as d on d.id = j.department_id
left join {{ ref('stg_ashby__locations') }} as l on l.id = j.location_id
left join applications as a on a.job_id = j.id
left join offers as o on o.job_id = j.id
left join openings as op on op.job_id = j.id
