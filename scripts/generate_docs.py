"""Generate the docs that describe the code: README tables and meltano.yml's tap settings.

``python scripts/generate_docs.py --write`` rewrites the generated blocks of README.md (between
``<!-- name:start -->`` markers) and of meltano.yml (between ``# generated:name`` comments), and
writes plugin.yml, the Meltano Hub plugin definition; without ``--write`` it prints the README.
tests/test_docs.py and tests/test_newcomer.py fail when any of them is stale.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tap_ashby.endpoints import ROWS  # noqa: E402
from tap_ashby.settings import CONFIG_SCHEMA  # noqa: E402
from tap_ashby.tap import TapAshby  # noqa: E402

README = ROOT / "README.md"
MELTANO = ROOT / "meltano.yml"
PLUGIN = ROOT / "plugin.yml"
MELTANO_INDENT = "    "


def settings_table() -> str:
    lines = ["| setting | required | default | description |", "|---|---|---|---|"]
    required = set(CONFIG_SCHEMA.get("required", []))
    for name, spec in CONFIG_SCHEMA["properties"].items():
        default = spec.get("default")
        shown = "" if default is None else f"`{default}`"
        desc = spec.get("description", "")
        if spec.get("enum"):
            desc += " One of: " + ", ".join(f"`{v}`" for v in spec["enum"]) + "."
        lines.append(f"| `{name}` | {'yes' if name in required else 'no'} | {shown} | {desc} |")
    return "\n".join(lines)


def streams_table() -> str:
    lines = [
        "| stream | endpoint | primary key | parent | incremental | default | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        if row.parent:
            parent = f"`{row.parent.stream}` (`{row.parent.param}`)"
            inc = "changed parents" if row.incremental else "no"
        else:
            parent = ""
            inc = "syncToken" if row.sync_token else "no"
        if row.partition_param:
            note = f"one pass per `{row.partition_param}`"
            note += f" ({', '.join(row.partition_values)})" if row.partition_values else ""
            note = note + "; " + row.note if row.note else note
        else:
            note = row.note
        keys = ", ".join(f"`{k}`" for k in row.primary_keys)
        default = "yes" if row.selected_by_default else "no"
        lines.append(
            f"| `{row.stream}` | `{row.path}` | {keys} | {parent} | {inc} | {default} | {note} |"
        )
    total = len(ROWS)
    incremental = sum(1 for r in ROWS if r.incremental)
    children = sum(1 for r in ROWS if r.parent)
    lines.append("")
    lines.append(
        f"{total} streams: {incremental} incremental, {children} child streams, "
        f"{sum(1 for r in ROWS if r.selected_by_default)} selected by default."
    )
    return "\n".join(lines)


BLOCKS = {"settings": settings_table, "streams": streams_table}


def _kind(spec: dict) -> str:
    types = spec.get("type", "string")
    kind = next(
        (t for t in ([types] if isinstance(types, str) else types) if t != "null"), "string"
    )
    if spec.get("enum"):
        return "options"
    if kind == "string" and spec.get("format") == "date-time":
        return "date_iso8601"
    return {"number": "decimal"}.get(kind, kind)


def meltano_settings() -> list[str]:
    """The tap's settings as Meltano declares them: every ``--about`` setting (the tap's
    own and the SDK's), same names, kinds, secrecy and descriptions."""
    out = []
    schema = copy.deepcopy(TapAshby.config_jsonschema)
    TapAshby.append_builtin_config(schema)  # what --about shows: the SDK's settings too
    for name, spec in schema["properties"].items():
        description = " ".join(str(spec.get("description", "")).split())
        out += [f"- name: {name}", f"  label: {spec.get('title') or name}", "  description: >-"]
        lines = textwrap.wrap(description, 88, break_on_hyphens=False, break_long_words=False) or [
            '""'
        ]
        out += [f"    {line}" for line in lines]
        out.append(f"  kind: {_kind(spec)}")
        if spec.get("secret") or spec.get("writeOnly"):
            out.append("  sensitive: true")
        if spec.get("enum"):
            out.append("  options:")
            out += [f"  - label: {v}\n    value: {v}" for v in spec["enum"]]
    return out


def about_schema() -> dict:
    """The settings ``--about`` shows: the tap's own and the SDK's."""
    schema = copy.deepcopy(TapAshby.config_jsonschema)
    TapAshby.append_builtin_config(schema)
    return schema


def hub_setting(name: str, spec: dict, required: bool) -> dict[str, Any]:
    """One setting as Meltano Hub lists it: kind, label, description and sensitivity always."""
    setting: dict[str, Any] = {
        "name": name,
        "label": spec.get("title") or name,
        "description": " ".join(str(spec.get("description", "")).split()),
        "kind": _kind(spec),
        "sensitive": bool(spec.get("secret") or spec.get("writeOnly")),
    }
    if required:
        setting["required"] = True
    if spec.get("default") is not None:
        setting["value"] = spec["default"]
    if spec.get("enum"):
        setting["options"] = [{"label": v, "value": v} for v in spec["enum"]]
    return setting


def plugin_definition() -> dict[str, Any]:
    """plugin.yml: a Meltano Hub extractor definition, in the layout of the MeltanoLabs taps,
    built from what ``--about`` reports (capabilities, settings, Python versions)."""
    schema = about_schema()
    required = set(schema.get("required", []))
    return {
        "name": TapAshby.name,
        "namespace": "tap_ashby",
        "label": "Ashby",
        "description": "Applicant tracking system (ATS): candidates, applications, jobs, "
        "interviews, offers and feedback",
        "domain_url": "https://www.ashbyhq.com",
        "docs": "https://pypi.org/project/tap-ashby/",
        "pip_url": "tap-ashby",
        "executable": "tap-ashby",
        "maintenance_status": "active",
        "keywords": ["meltano_sdk", "ashby", "ats", "recruiting", "hr"],
        "capabilities": [str(c.value) for c in TapAshby.capabilities],
        "supported_python_versions": TapAshby.get_supported_python_versions() or [],
        "settings_group_validation": [sorted(required)],
        "settings": [
            hub_setting(name, spec, name in required) for name, spec in schema["properties"].items()
        ],
    }


def render_plugin() -> str:
    header = "# Meltano Hub plugin definition, generated by scripts/generate_docs.py (make docs)\n"
    return header + yaml.safe_dump(plugin_definition(), sort_keys=False, width=100)


def meltano_select() -> list[str]:
    return [f"- {row.stream}.*" for row in ROWS if row.selected_by_default]


MELTANO_BLOCKS = {"settings": meltano_settings, "select": meltano_select}


def render_meltano(text: str) -> str:
    for name, build in MELTANO_BLOCKS.items():
        start, end = f"# generated:{name}:start", f"# generated:{name}:end"
        pattern = re.compile(rf"^(\s*){re.escape(start)}\n.*?^\s*{re.escape(end)}$", re.S | re.M)
        match = pattern.search(text)
        if not match:
            raise SystemExit(f"meltano.yml lacks the {start} / {end} markers")
        indent = match.group(1)
        body = "\n".join(indent + line for chunk in build() for line in chunk.split("\n"))
        block = f"{indent}{start}\n{body}\n{indent}{end}"
        text = text[: match.start()] + block + text[match.end() :]
    return text


def render(text: str) -> str:
    for name, build in BLOCKS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md lacks the {start} / {end} markers")
        block = f"{start}\n{build()}\n{end}"
        text = pattern.sub(lambda _m, b=block: b, text)  # type: ignore[misc]
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    fresh = render(README.read_text())
    if args.write:
        README.write_text(fresh)
        MELTANO.write_text(render_meltano(MELTANO.read_text()))
        PLUGIN.write_text(render_plugin())
        print("README.md tables, meltano.yml settings and plugin.yml regenerated")
    else:
        print(fresh)


if __name__ == "__main__":
    main()
