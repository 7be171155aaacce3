{# A model's +schema is used as written (ashby_staging, ashby_analytics), not appended to
   the profile's schema as dbt does by default. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
