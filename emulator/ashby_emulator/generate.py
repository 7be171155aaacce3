"""Seeded generation of Ashby-shaped values from the catalog's field specs."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

EPOCH = datetime(2023, 1, 2, 9, 0, 0, tzinfo=timezone.utc)

_WORDS = [
    "Alpha",
    "Bravo",
    "Cedar",
    "Delta",
    "Ember",
    "Fjord",
    "Grove",
    "Harbor",
    "Iris",
    "Juniper",
]


def iso(dt: datetime) -> str:
    """Format like Ashby: ``2024-02-13T17:10:56.882Z``."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_ms(epoch_ms: int) -> str:
    """Ashby timestamp for a Unix epoch in milliseconds."""
    return iso(datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc))


def epoch_ms(dt: datetime) -> int:
    """Unix epoch milliseconds of an aware datetime."""
    return int(dt.timestamp() * 1000)


def random_uuid(rng: random.Random) -> str:
    """A UUID drawn from ``rng`` (deterministic under the seed)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def value_for(
    spec: dict[str, Any],
    name: str,
    rng: random.Random,
    path: str,
    nullable: set[str],
    required: set[str],
    variant: int,
) -> Any:
    """Generate one value for a field spec; ``path`` is the dotted path used by ``nullable``."""
    if path in nullable and variant % 4 == 1:
        return None
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if "enum" in spec:
        return spec["enum"][variant % len(spec["enum"])]
    if kind == "string":
        fmt = spec.get("format")
        if fmt == "uuid":
            return random_uuid(rng)
        if fmt == "date-time":
            return iso(EPOCH + timedelta(seconds=rng.randrange(0, 40_000_000)))
        if fmt == "date":
            return (EPOCH + timedelta(days=rng.randrange(0, 700))).strftime("%Y-%m-%d")
        if fmt == "uri" or name.lower().endswith(("url", "link")):
            return f"https://example.ashbyhq.com/{name}/{rng.randrange(10**6)}"
        if "email" in name.lower():
            return f"person{rng.randrange(10**6)}@example.com"
        return f"{rng.choice(_WORDS)} {name} {rng.randrange(1000)}"
    if kind == "integer":
        return rng.randrange(0, 100)
    if kind == "number":
        return round(rng.uniform(0, 200_000), 2)
    if kind == "boolean":
        if name.startswith("is") and "Archived" in name:
            return variant % 3 == 0
        return rng.random() < 0.5
    if kind == "object":
        if "fields" not in spec:  # additional_properties: free-form map
            return {"key": f"value {rng.randrange(100)}", "n": rng.randrange(100)}
        return object_for(spec["fields"], rng, path + ".", nullable, required, variant)
    if kind == "array":
        items = spec.get("items", {"type": "string"})
        count = 0 if variant % 5 == 4 else 1 + variant % 2
        return [
            value_for(items, name, rng, path + "[]", nullable, required, variant + k)
            for k in range(count)
        ]
    # "any" at the top level: expand-only embedded objects (Location, Interview, ...).
    if "." not in path and "[]" not in path:
        return {"id": random_uuid(rng), "title": f"{rng.choice(_WORDS)} {name}"}
    # nested "any": custom-field values; a string is the common case.
    return f"{rng.choice(_WORDS)} {rng.randrange(1000)}"


def object_for(
    fields: dict[str, Any],
    rng: random.Random,
    prefix: str,
    nullable: set[str],
    required: set[str],
    variant: int,
) -> dict[str, Any]:
    """Generate one object; optional nullable fields are sometimes absent rather than null.

    The catalog notes that recorded data shows both explicit nulls and absent keys for
    nullable fields, so the emulator produces both (hardest on a client).
    """
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        path = prefix + name
        if path in nullable and path not in required and variant % 4 == 2:
            continue
        out[name] = value_for(spec, name, rng, path, nullable, required, variant)
    return out
