{# One staging model over one loaded stream table.

   columns: (name, source column, JSON path or none, type) where type is text, timestamp,
   bigint, double, boolean, json, json_array or raw. With a path, the value is extracted from
   the JSON source column. Rows whose _sdc_deleted_at is set (tombstones: deleted or
   merged-away records) are filtered out, whether or not the target hard-deletes.

   A stream that was not selected has no table: the model is then an empty relation with the
   same typed columns, so everything downstream still builds (and counts 0). #}
{% macro ashby_staging(stream, columns) -%}
    {%- set src = source('ashby', stream) -%}
    {%- set relation = adapter.get_relation(src.database, src.schema, src.identifier) if execute else none -%}
    {%- if relation is none %}
select
    {%- for name, _, _, kind in columns %}
    cast(null as {{ ashby_sql_type(kind) }}) as {{ adapter.quote(name) }}{{ ',' if not loop.last }}
    {%- endfor %}
where 1 = 0
    {%- else %}
    {%- set loaded = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list %}
select
    {%- for name, column, path, kind in columns %}
    {{ ashby_staging_column(column, path, kind, loaded) }} as {{ adapter.quote(name) }}{{ ',' if not loop.last }}
    {%- endfor %}
from {{ src }}
    {%- if '_sdc_deleted_at' in loaded %}
where _sdc_deleted_at is null
    {%- endif %}
    {%- endif %}
{%- endmacro %}

{% macro ashby_staging_column(column, path, kind, loaded) -%}
    {%- set quoted = '"' ~ column ~ '"' -%}
    {%- if column | lower not in loaded -%}
        {#- a property the target never created a column for -#}
        cast(null as {{ ashby_sql_type(kind) }})
    {%- elif path is not none and kind == 'json' -%}
        {{ ashby_json_value(quoted, path) }}
    {%- elif path is not none -%}
        cast({{ ashby_json_text(quoted, path) }} as {{ ashby_sql_type(kind) }})
    {%- elif kind == 'json_array' and target.type == 'postgres' -%}
        to_jsonb({{ quoted }})
    {%- elif kind == 'raw' -%}
        {{ quoted }}
    {%- else -%}
        cast({{ quoted }} as {{ ashby_sql_type(kind) }})
    {%- endif -%}
{%- endmacro %}

{% macro ashby_sql_type(kind) -%}
    {%- set json = 'jsonb' if target.type == 'postgres' else 'json' -%}
    {{- {
        'text': 'text',
        'timestamp': 'timestamp',
        'bigint': 'bigint',
        'double': 'double precision',
        'boolean': 'boolean',
        'json': json,
        'json_array': json,
        'raw': 'text',
    }[kind] -}}
{%- endmacro %}
