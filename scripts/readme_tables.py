"""Generate the README's settings and streams tables from the code.

``python scripts/readme_tables.py --write`` rewrites the blocks between the markers in
README.md; without ``--write`` it prints them. tests/test_docs.py fails when README.md is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tap_ashby.endpoints import ROWS  # noqa: E402
from tap_ashby.tap import CONFIG_SCHEMA  # noqa: E402

README = ROOT / "README.md"


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
    lines = ["| stream | endpoint | primary key | parent | incremental | default | note |",
             "|---|---|---|---|---|---|---|"]
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
        lines.append(f"| `{row.stream}` | `{row.path}` | {keys} | {parent} | {inc} | "
                     f"{default} | {note} |")
    total = len(ROWS)
    incremental = sum(1 for r in ROWS if r.incremental)
    children = sum(1 for r in ROWS if r.parent)
    lines.append("")
    lines.append(f"{total} streams: {incremental} incremental, {children} child streams, "
                 f"{sum(1 for r in ROWS if r.selected_by_default)} selected by default.")
    return "\n".join(lines)


BLOCKS = {"settings": settings_table, "streams": streams_table}


def render(text: str) -> str:
    for name, build in BLOCKS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md lacks the {start} / {end} markers")
        block = f"{start}\n{build()}\n{end}"
        text = pattern.sub(lambda _m, b=block: b, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    current = README.read_text()
    fresh = render(current)
    if args.write:
        README.write_text(fresh)
        print("README.md tables regenerated")
    else:
        print(fresh)


if __name__ == "__main__":
    main()
