-- One row per source with at least one live application.
select
    source_id,
    max(source_title) as source_title,
    count(*) as application_count,
    sum(case when is_hired then 1 else 0 end) as hired_count,
    cast(sum(case when is_hired then 1 else 0 end) as double precision) / count(*) as hire_rate
from {{ ref('ashby__application_enhanced') }}
where source_id is not null
group by source_id
