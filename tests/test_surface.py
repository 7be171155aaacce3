"""The SDK surface and packaging: --about, stream maps, start_date, schemas vs real answers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from ashby_emulator import Emulator
from ashby_emulator.catalog import endpoints
from conftest import ROOT, TAP, run_tap, tap_config

from tap_ashby.endpoints import ROWS

EXAMPLES = Path(__file__).parent / "fixtures" / "examples"
SCHEMAS = ROOT / "schemas"
STREAM_OF_PATH = {r.path: r.stream for r in ROWS}


def test_about_marks_the_key_secret() -> None:
    out = subprocess.run(
        [*TAP, "--about", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    about = json.loads(out)
    key = about["settings"]["properties"]["api_key"]
    assert key.get("secret") is True and key.get("writeOnly") is True
    assert "stream-maps" in about["capabilities"]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_answers_validate_against_the_schemas(example: Path) -> None:
    row = endpoints()[example.stem]
    stream = STREAM_OF_PATH.get(example.stem) or row.get("lookup_of")
    schema = json.loads((SCHEMAS / f"{stream}.json").read_text())
    results = json.loads(example.read_text())["results"]
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    for record in results if isinstance(results, list) else [results]:
        validator.validate(record)


def test_stream_maps_hash_and_drop_pii(tmp_path: Path, emulator: Emulator) -> None:
    config = tap_config(
        emulator,
        stream_maps={
            "candidates": {"name": "md5(name)", "phoneNumbers": None, "__else__": None, "id": "id"}
        },
    )
    run = run_tap(tmp_path, config, select={"candidates"})
    assert run.returncode == 0, run.stderr[-2000:]
    record = run.records["candidates"][0]
    assert set(record) == {"id", "name"} and len(record["name"]) == 32
    assert not record["name"].startswith("Candidate")


def test_start_date_becomes_created_after(tmp_path: Path, emulator: Emulator) -> None:
    table = emulator.org.tables["candidates"]
    cutoff = table.get(20)["createdAt"]
    run = run_tap(
        tmp_path, tap_config(emulator, start_date=cutoff), select={"candidates", "departments"}
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = sorted(r["createdAt"] for r in run.records["candidates"])
    assert got and all(created > cutoff for created in got)
    assert len(got) == len([i for i in table.live_indices() if table.get(i)["createdAt"] > cutoff])
    assert run.ids("departments")  # no createdAfter on endpoints that do not take it
    datetime.fromisoformat(cutoff.replace("Z", "+00:00"))


def test_test_mode_syncs_one_record_per_stream(tmp_path: Path, emulator: Emulator) -> None:
    run = run_tap(
        tmp_path, tap_config(emulator), select={"candidates", "departments"}, args=["--test"]
    )
    assert run.returncode == 0, run.stderr[-2000:]
    counts = {s: len(r) for s, r in run.records.items()}
    assert counts["candidates"] == 1 and counts["departments"] == 1
    assert max(counts.values()) == 1  # the SDK's --test: one record per stream, all streams


def test_the_wheel_ships_every_schema(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("tap_ashby-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"tap_ashby/schemas/{r.stream}.json" for r in ROWS} <= names
    assert not [
        n for n in names if n.split("/")[0] in ("ashby_emulator", "tests", "bench", "scripts")
    ]
    assert not [n for n in names if "emulator" in n or n.endswith("demo.py")]
    version = re.search(r'__version__ = "(.+)"', (ROOT / "tap_ashby" / "__init__.py").read_text())[
        1
    ]
    assert wheel.name.startswith(f"tap_ashby-{version}-")


@pytest.mark.slow
def test_the_wheel_alone_runs_about(tmp_path: Path) -> None:
    """A fresh venv with only the wheel and its runtime dependencies: --about and --version
    work, and the version is the one in tap_ashby/__init__.py (its one source)."""
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("tap_ashby-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    about = subprocess.run(
        [str(venv / "bin" / "tap-ashby"), "--about", "--format", "json"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert about.returncode == 0, about.stderr[-2000:]
    assert json.loads(about.stdout)["name"] == "tap-ashby"
    version = re.search(r'__version__ = "(.+)"', (ROOT / "tap_ashby" / "__init__.py").read_text())[
        1
    ]
    shown = subprocess.run(
        [str(venv / "bin" / "tap-ashby"), "--version"], check=False, capture_output=True, text=True
    )
    assert version in shown.stdout + shown.stderr
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import ashby_emulator"],
        check=False,
        capture_output=True,
    )
    assert imported.returncode != 0  # the emulator is not in the tap's wheel
