"""The docs match the code: README tables, meltano.yml settings and default selection."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tap_ashby.endpoints import ROWS
from tap_ashby.tap import CONFIG_SCHEMA

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_are_generated_from_the_code() -> None:
    fresh = subprocess.run(
        [sys.executable, "scripts/generate_docs.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert fresh.strip() == (ROOT / "README.md").read_text().strip(), (
        "README.md is stale: run `make docs`"
    )
    assert "| `candidates` | `candidate.list` |" in fresh


def _tap_plugin() -> dict:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    return next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-ashby")


def test_meltano_declares_every_about_setting_with_the_same_meaning() -> None:
    about = json.loads(
        subprocess.run(
            [sys.executable, "-m", "tap_ashby.tap", "--about", "--format=json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    settings = about["settings"]["properties"]
    declared = {s["name"]: s for s in _tap_plugin()["settings"]}
    assert set(CONFIG_SCHEMA["properties"]) <= set(settings)
    assert set(declared) == set(settings)
    for name, spec in settings.items():
        mine = declared[name]
        assert " ".join(mine["description"].split()) == " ".join(
            str(spec.get("description", "")).split()
        ), name
        assert mine.get("sensitive", False) == bool(spec.get("secret")), name
        types = spec.get("type", [])
        if spec.get("enum"):
            assert mine["kind"] == "options", name
            assert [o["value"] for o in mine["options"]] == spec["enum"], name
        elif spec.get("format") == "date-time":
            assert mine["kind"] == "date_iso8601", name
        else:
            assert mine["kind"] in types, name


def test_meltano_yml_generated_blocks_are_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_docs", ROOT / "scripts" / "generate_docs.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "meltano.yml").read_text()
    assert module.render_meltano(text) == text, "meltano.yml is stale: run `make docs`"


def test_meltano_selects_the_default_streams() -> None:
    selected = {entry.split(".")[0] for entry in _tap_plugin()["select"]}
    assert selected == {r.stream for r in ROWS if r.selected_by_default}


def test_schemas_are_shipped_for_every_stream() -> None:
    names = {p.stem for p in (ROOT / "schemas").glob("*.json")}
    assert names == {r.stream for r in ROWS}


def test_top_level_streams_have_one_key_field() -> None:
    # The reconcile scan of a top-level list collects one key field (streams.py).
    assert all(len(r.primary_keys) == 1 for r in ROWS if r.parent is None)


def test_every_parent_comes_before_its_children_in_the_table() -> None:
    # The tap syncs streams in table order so that one parent pass serves its children.
    position = {row.stream: n for n, row in enumerate(ROWS)}
    for row in ROWS:
        if row.parent:
            assert position[row.parent.stream] < position[row.stream], row.stream


def test_the_changelog_names_the_current_version() -> None:
    """CHANGELOG.md (Keep a Changelog) has an entry for the version the package carries."""
    version = re.search(r'__version__ = "(.+)"', (ROOT / "tap_ashby" / "__init__.py").read_text())
    assert version is not None
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version[1])}\] - \d{{4}}-\d\d-\d\d$", changelog, re.M)
