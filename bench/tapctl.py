"""Driving tap-ashby as a process: config, catalog selection, its summary log and state."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from copy import deepcopy
from pathlib import Path
from typing import Any

from emu import KEY
from procs import BIN, REPO

# stream -> (endpoint, the fixed body the tap sends; the floor sends the same)
STREAMS = {
    "candidates": ("candidate.list", {}),
    "applications": ("application.list", {"expand": ["openings"]}),
}
# "summary <stream> <n> records [<n> requests] [<x>s] <x> rec/s <status>" (newer columns optional)
SUMMARY = re.compile(
    r"summary (\S+)\s+(\d+) records\s+(?:(\d+) requests\s+)?(?:[\d.]+s\s+)?([\d.]+) rec/s"
    r"\s+(.*)$",
    re.M,
)
TOTAL = re.compile(r"summary total (\d+) records(?:, (\d+) requests)? in ([\d.]+)s")
DELETED = re.compile(r"reconciled \((\d+) deleted\)")


def tap_command() -> list[str]:
    exe = BIN / "tap-ashby"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tap_ashby.tap"]


def write_config(path: Path, url: str, **settings: Any) -> Path:
    """Budget lifted (``requests_per_minute: 0``) unless a setting says otherwise; a setting
    given as None is left out (the tap's default applies). The ledger of delivered keys goes
    under the run's temp directory (``<config dir>/ledger``), never to the user's data
    directory."""
    config = {
        "api_key": KEY,
        "base_url": url,
        "requests_per_minute": 0,
        "ledger_uri": str(path.parent / "ledger"),
        **settings,
    }
    path.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return path


def discover(config_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [*tap_command(), "--config", str(config_path), "--discover"],
        capture_output=True,
        check=True,
        cwd=REPO,
        timeout=120,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def write_catalog(path: Path, catalog: dict[str, Any], streams: set[str]) -> Path:
    """The catalog with exactly ``streams`` selected."""
    cat = deepcopy(catalog)
    for entry in cat["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in streams
    path.write_text(json.dumps(cat))
    return path


def parse_summary(stderr_text: str) -> dict[str, Any]:
    """Per-stream records and seconds (records / rec/s), and the run's total, from the log."""
    streams: dict[str, dict[str, Any]] = {}
    for name, records, requests, rate, status in SUMMARY.findall(stderr_text):
        if name == "total":
            continue
        n, r = int(records), float(rate)
        deleted = DELETED.search(status)
        streams[name] = {
            "records": n,
            "seconds": (n / r) if r else 0.0,
            "requests": int(requests) if requests else None,
            "status": status.strip(),
            "deleted": int(deleted.group(1)) if deleted else None,
        }
    total = TOTAL.search(stderr_text)
    return {
        "streams": streams,
        "records": int(total.group(1)) if total else None,
        "requests": int(total.group(2)) if total and total.group(2) else None,
        "seconds": float(total.group(3)) if total else None,
    }


def last_state(states_path: Path) -> dict[str, Any] | None:
    """The value of the last STATE line in a file of (grepped) Singer messages."""
    last = None
    with states_path.open("rb") as fh:
        for line in fh:
            if line.startswith(b"{"):
                last = line
    if last is None:
        return None
    return json.loads(last)["value"]  # type: ignore[no-any-return]
