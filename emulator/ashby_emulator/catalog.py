"""The Ashby API catalog the emulator serves: endpoints and object field specs (catalog.json)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def catalog() -> dict[str, Any]:
    """Return the packaged catalog: ``{"endpoints": [...], "objects": {...}}``."""
    text = resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8")
    return json.loads(text)


def endpoints() -> dict[str, dict[str, Any]]:
    """Every endpoint Ashby hosts, by path (``candidate.list``)."""
    return {row["path"]: row for row in catalog()["endpoints"]}


def objects() -> dict[str, dict[str, Any]]:
    """Field specs of every object, by object name (``Candidate``)."""
    return catalog()["objects"]
