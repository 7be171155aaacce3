{# The few cross-adapter helpers the models need (DuckDB and PostgreSQL), instead of dbt Hub
   packages, which an offline `dbt deps` cannot fetch.
   Loaded shapes differ: target-duckdb stores objects and arrays as JSON text columns;
   target-postgres stores objects as jsonb and arrays as jsonb[] (staging turns those into one
   jsonb array, so the marts see a JSON array on both). #}

{# Text at a path inside a JSON value (null when absent or not a scalar). #}
{% macro ashby_json_text(expr, path) -%}
    {%- if target.type == 'postgres' -%}
        ({{ expr }} #>> '{{ "{" ~ path | join(",") ~ "}" }}')
    {%- else -%}
        json_extract_string({{ expr }}, '$.{{ path | join(".") }}')
    {%- endif -%}
{%- endmacro %}

{# A JSON value at a path (object or array), still JSON. #}
{% macro ashby_json_value(expr, path) -%}
    {%- if target.type == 'postgres' -%}
        ({{ expr }} #> '{{ "{" ~ path | join(",") ~ "}" }}')
    {%- else -%}
        json_extract({{ expr }}, '$.{{ path | join(".") }}')
    {%- endif -%}
{%- endmacro %}

{# Number of elements of a JSON array (0 for null or a non-array). #}
{% macro ashby_json_array_length(expr) -%}
    {%- if target.type == 'postgres' -%}
        (case when jsonb_typeof({{ expr }}) = 'array' then jsonb_array_length({{ expr }}) else 0 end)
    {%- else -%}
        coalesce(json_array_length({{ expr }}), 0)
    {%- endif -%}
{%- endmacro %}

{# ``select <source columns>, <element> as <alias> from <relation> cross join its elements``:
   one row per element of the JSON array column ``column``; as_text for arrays of strings. #}
{% macro ashby_json_elements(relation, column, alias, as_text=false) -%}
    {%- if target.type == 'postgres' -%}
        select src.*, el.value as {{ alias }}
        from {{ relation }} as src
        cross join lateral jsonb_array_elements{{ '_text' if as_text }}(
            case when jsonb_typeof(src.{{ column }}) = 'array' then src.{{ column }}
            else '[]'::jsonb end
        ) as el(value)
    {%- else -%}
        select * exclude (el){% if as_text %}, json_extract_string(el, '$') as {{ alias }}{% else %}, el as {{ alias }}{% endif %}
        from (
            select src.*, unnest(json_extract(src.{{ column }}, '$[*]')) as el
            from {{ relation }} as src
        )
    {%- endif -%}
{%- endmacro %}

{# Value (as text) of the element of a JSON array of objects whose ``key`` equals ``match``,
   e.g. a custom field by title. The first such element wins. #}
{% macro ashby_json_find_text(expr, key, match, field) -%}
    {%- if target.type == 'postgres' -%}
        (select el ->> '{{ field }}'
         from jsonb_array_elements(
             case when jsonb_typeof({{ expr }}) = 'array' then {{ expr }} else '[]'::jsonb end
         ) as el
         where el ->> '{{ key }}' = {{ dbt.string_literal(match) }}
         limit 1)
    {%- else -%}
        json_extract_string(
            list_filter(
                json_extract({{ expr }}, '$[*]'),
                el -> json_extract_string(el, '$.{{ key }}') = {{ dbt.string_literal(match) }}
            )[1],
            '$.{{ field }}'
        )
    {%- endif -%}
{%- endmacro %}

{# (later - earlier) in days, as a decimal (double precision); null if either is null. #}
{% macro ashby_days_between(earlier, later) -%}
    {%- if target.type == 'postgres' -%}
        cast(extract(epoch from ({{ later }} - {{ earlier }})) / 86400.0 as double precision)
    {%- else -%}
        cast((epoch_ms({{ later }}) - epoch_ms({{ earlier }})) / 86400000.0 as double precision)
    {%- endif -%}
{%- endmacro %}

{# Median (interpolated between the two middle values, like percentile_cont(0.5)). #}
{% macro ashby_median(expr) -%}
    {%- if target.type == 'postgres' -%}
        percentile_cont(0.5) within group (order by {{ expr }})
    {%- else -%}
        median({{ expr }})
    {%- endif -%}
{%- endmacro %}

{# Column name for a custom field title: custom_<lower snake case>. #}
{% macro ashby_custom_field_column(title) -%}
    {{- 'custom_' ~ modules.re.sub('[^a-z0-9]+', '_', title | lower).strip('_') -}}
{%- endmacro %}
