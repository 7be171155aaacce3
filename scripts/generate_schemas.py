"""Regenerate schemas/<stream>.json from the Ashby catalog (the emulator's catalog.json).

Run after changing the endpoint table or the catalog: ``python scripts/generate_schemas.py``.
The tap reads only the generated files; this script is a development tool.

Rules: every field is typed from the catalog (nested objects and arrays included) and
nullable, except primary keys, because recorded data shows nulls and absent keys where the
spec says nothing; enums are not enforced (Ashby adds values); ``any`` values (custom-field
values) accept every JSON type so that no real value breaks a sync.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tap_ashby.endpoints import ROWS  # noqa: E402

CATALOG = json.loads((ROOT / "emulator" / "ashby_emulator" / "catalog.json").read_text())
ANY_TYPE = ["string", "number", "boolean", "object", "array", "null"]
# Fields of the object that this list endpoint never returns (catalog audit: info-only).
LIST_OMITS = {
    "application.list": {
        "applicationHistory",
        "applicationFormSubmissions",
        "referrals",
        "resumeFileHandle",
    }
}


def convert(spec: dict[str, Any], top_level: bool = False) -> dict[str, Any]:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "any")
    if kind == "any":
        # Top-level "any" fields are expand-only embedded objects (Location, Interview, ...).
        return {"type": ["object", "null"]} if top_level else {"type": ANY_TYPE}
    if kind == "object":
        out: dict[str, Any] = {"type": ["object", "null"]}
        if "fields" in spec:
            out["properties"] = {n: convert(s) for n, s in spec["fields"].items()}
        return out
    if kind == "array":
        return {"type": ["array", "null"], "items": convert(spec.get("items", {"type": "any"}))}
    out = {"type": [kind, "null"]}
    if kind == "string" and spec.get("format") == "date-time":
        out["format"] = "date-time"
    return out


def schema_for(row: Any) -> dict[str, Any]:
    endpoint = next(e for e in CATALOG["endpoints"] if e["path"] == row.path)
    fields = CATALOG["objects"][endpoint["object"]]["fields"]
    omit = LIST_OMITS.get(row.path, set())
    props = {
        name: convert(spec, top_level=True) for name, spec in fields.items() if name not in omit
    }
    extra = [row.parent.inject] if row.parent and row.parent.inject else []
    extra += [row.partition_param] if row.partition_param else []
    for name in extra:
        props.setdefault(name, {"type": ["string", "null"]})
    for key in row.primary_keys:
        props[key] = {"type": "string"}
    # Tombstones of rows deleted in Ashby carry their key and this (see tap_ashby/ledger.py).
    props["_sdc_deleted_at"] = {"type": ["string", "null"], "format": "date-time"}
    return {"type": "object", "properties": props}


def main() -> None:
    out_dir = ROOT / "schemas"
    out_dir.mkdir(exist_ok=True)
    for row in ROWS:
        path = out_dir / f"{row.stream}.json"
        path.write_text(json.dumps(schema_for(row), indent=2) + "\n")
    print(f"wrote {len(ROWS)} schemas to {out_dir}")


if __name__ == "__main__":
    main()
