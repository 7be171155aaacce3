"""The docs match the code: README tables, meltano.yml settings and default selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tap_ashby.endpoints import ROWS
from tap_ashby.tap import CONFIG_SCHEMA

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_are_generated_from_the_code() -> None:
    fresh = subprocess.run([sys.executable, "scripts/readme_tables.py"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert fresh.strip() == (ROOT / "README.md").read_text().strip(), \
        "README.md is stale: run `make docs`"
    assert "| `candidates` | `candidate.list` |" in fresh


def _tap_plugin() -> dict:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    return next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-ashby")


def test_meltano_declares_every_tap_setting() -> None:
    declared = {s["name"] for s in _tap_plugin()["settings"]}
    assert set(CONFIG_SCHEMA["properties"]) <= declared
    key = next(s for s in _tap_plugin()["settings"] if s["name"] == "api_key")
    assert key["sensitive"] is True


def test_meltano_selects_the_default_streams() -> None:
    selected = {entry.split(".")[0] for entry in _tap_plugin()["select"]}
    assert selected == {r.stream for r in ROWS if r.selected_by_default}


def test_schemas_are_shipped_for_every_stream() -> None:
    names = {p.stem for p in (ROOT / "schemas").glob("*.json")}
    assert names == {r.stream for r in ROWS}


def test_top_level_streams_have_one_key_field() -> None:
    # The reconcile scan of a top-level list collects one key field (streams.py).
    assert all(len(r.primary_keys) == 1 for r in ROWS if r.parent is None)
