"""A frozen copy of the code under test, so a long run measures one version of it.

The full run takes ~35 minutes; an edit to tap_ashby/ in that time would otherwise give the
later cases other code than the earlier ones (every tap and emulator is a new process). The
harness copies tap_ashby/ and schemas/ once, at the start, into its temp directory and puts
that copy first on PYTHONPATH for every process it starts (the editable install in the venvs,
Meltano's included, comes after PYTHONPATH). ``--no-snapshot`` measures the live tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from procs import REPO

PARTS = ("tap_ashby", "schemas")


def digest(root: Path = REPO) -> str:
    """sha256 (first 12 hex digits) over the code and schemas under ``root``."""
    h = hashlib.sha256()
    for part in PARTS:
        for path in sorted((root / part).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def freeze(dest: Path) -> str:
    """Copy the code under test to ``dest``, put it first on PYTHONPATH; returns its digest."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        shutil.copytree(
            REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(dest) + (os.pathsep + old if old else "")
    return digest(dest)
