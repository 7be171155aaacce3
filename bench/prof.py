"""Reading the tap's cProfile output: top entries, cost by package, the hot path's functions."""

from __future__ import annotations

import json
import pstats
from pathlib import Path
from typing import Any

from procs import REPO

# Functions on the per-record / per-page path worth watching (matched by function name).
WATCH = [
    "_sync_records",
    "request_records",
    "_request",
    "send",
    "validate_response",
    "parse_response",
    "post_process",
    "_generate_record_messages",
    "_generate_record_messages_batch",
    "_write_record_message",
    "write_message",
    "_conform_record_data_types",
    "conform_record_data_types",
    "pop_deselected_record_properties",
    "_pop_deselected_schema",
    "is_property_selected",
    "utc_now",
    "format_message",
    "serialize_message",
    "_write_state_message",
    "generate_record_message",
    "get_records",
    "_pass",
    "paged_records",
    "decode",
    "encode",
    "encode_into",
    "getproxies_environment",
    "merge_environment_settings",
    "get_environ_proxies",
    "request_decorator",
    "within_budget",
    "slot",
    "_list_records",
    "_child_records",
    "consume",
    "fan_out",
    "_children_of",
    "_post_once",
    "pages",
]


# Per-record work the floor does not do at all (so it is overhead, not fetching, parsing or
# writing): the SDK's conformance and selection walks, the proxy lookup per request, the
# RecordMessage timestamp, and the tap's own per-record hooks (post_process, the ledger).
OVERHEAD = {
    "conform_record_data_types": "singer_sdk",
    "pop_deselected_record_properties": "singer_sdk",
    "getproxies_environment": "urllib",
    "utc_now": "singer_sdk",
    "post_process": "tap_ashby",
    "entry": "tap_ashby",
    "encode_key": "tap_ashby",
    "add": "tap_ashby",
    "values_at": "tap_ashby",
    "tombstone": "tap_ashby",
}


def short_path(filename: str) -> str:
    if filename == "~":
        return ""
    if "/tap_ashby/" in filename:  # the repo or the run's snapshot copy
        return "tap_ashby/" + filename.rsplit("/tap_ashby/", 1)[1]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib") else tail
    try:
        return str(Path(filename).resolve().relative_to(REPO))
    except ValueError:
        return filename


def label(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    path = short_path(filename)
    return f"{path}:{line}({func})" if path else func


def package(key: tuple[str, int, str]) -> str:
    """A coarse owner of a function's self time."""
    filename, _, func = key
    if filename == "~":
        if any(s in func for s in ("socket", "recv", "send", "select", "poll", "_ssl")):
            return "socket I/O (builtins)"
        if "msgspec" in func or "Decoder" in func or "Encoder" in func:
            return "msgspec"
        return "builtins (other)"
    if "importlib" in filename or filename.startswith("<frozen"):
        return "imports"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/tap_ashby/" in filename:
        return "tap_ashby"
    if "/lib/python3." in filename:
        mod = filename.split("/lib/python3.", 1)[1].split("/", 1)[1]
        top = mod.split("/", 1)[0].removesuffix(".py")
        return {
            "socket": "socket I/O (builtins)",
            "ssl": "socket I/O (builtins)",
            "selectors": "socket I/O (builtins)",
        }.get(top, f"stdlib {top}")
    return "other"


HOT_CALLS = 100


def _is_wrapper(key: tuple[str, int, str]) -> bool:
    """CLI and thread plumbing whose cumulative time is the whole run (skipped in the top
    cumulative list so that it starts at the SDK's and the tap's own functions)."""
    filename, _, func = key
    return (
        (filename == "~" and func in ("<built-in method builtins.exec>",))
        or any(
            part in filename
            for part in (
                "runpy",
                "profile_threads.py",
                "/click/",
                "threading.py",
                "concurrent/futures/thread.py",
            )
        )
        or filename.startswith("<string>")
    )


def analyse(prof_path: Path, top: int = 15, records: int | None = None) -> dict[str, Any]:
    """Top entries, cost by package, the watched hot-path functions and, given the run's
    record count, the tap's own functions by cost per record (us)."""
    stats = pstats.Stats(str(prof_path))
    raw: dict[tuple[str, int, str], tuple] = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]

    def entry(key: tuple[str, int, str], value: tuple) -> dict[str, Any]:
        cc, nc, tt, ct, _ = value
        out = {
            "function": label(key),
            "ncalls": nc,
            "primitive_calls": cc,
            "tottime": round(tt, 3),
            "cumtime": round(ct, 3),
            "cum_pct": round(100 * ct / total, 1) if total else 0.0,
            "self_pct": round(100 * tt / total, 1) if total else 0.0,
        }
        if records:
            out["self_us_per_record"] = round(tt / records * 1e6, 2)
            out["cum_us_per_record"] = round(ct / records * 1e6, 2)
        return out

    items = list(raw.items())
    # The hot path: functions called per page or per record (at least HOT_CALLS times); the
    # CLI, stream and thread plumbing above them (called a handful of times) is left out.
    by_cum = sorted(
        (kv for kv in items if not _is_wrapper(kv[0]) and kv[1][1] >= HOT_CALLS),
        key=lambda kv: kv[1][3],
        reverse=True,
    )[:top]
    by_self = sorted(items, key=lambda kv: kv[1][2], reverse=True)[:top]
    packages: dict[str, float] = {}
    for key, value in items:
        packages[package(key)] = packages.get(package(key), 0.0) + value[2]
    watched = []
    for key, value in items:
        if (
            key[2] in WATCH
            and key[0] != "~"
            and (
                "singer_sdk" in key[0]
                or "tap_ashby" in key[0]
                or "requests" in key[0]
                or "urllib" in key[0]
            )
        ):
            watched.append(entry(key, value))
    watched.sort(key=lambda e: e["cumtime"], reverse=True)
    # The largest self-time entries that are neither socket I/O nor import machinery.
    hot = [
        entry(k, v)
        for k, v in sorted(items, key=lambda kv: kv[1][2], reverse=True)
        if package(k) not in ("socket I/O (builtins)", "imports")
    ][:10]
    overhead = [entry(k, v) for k, v in items if k[2] in OVERHEAD and OVERHEAD[k[2]] in k[0]]
    overhead.sort(key=lambda e: e["cumtime"], reverse=True)
    tap_own = [entry(k, v) for k, v in items if "/tap_ashby/" in k[0] and "/emulator/" not in k[0]]
    meta_path = Path(str(prof_path) + ".json")
    return {
        "total_s": round(total, 3),
        "records": records,
        "threads": _read_json(meta_path),
        "tap_by_self": sorted(tap_own, key=lambda e: e["tottime"], reverse=True)[:12],
        "tap_by_cum": sorted(tap_own, key=lambda e: e["cumtime"], reverse=True)[:12],
        "tap_by_cum_all": sorted(tap_own, key=lambda e: e["cumtime"], reverse=True)[:60],
        "overhead": overhead,
        "top_cumulative": [entry(k, v) for k, v in by_cum],
        "top_self": [entry(k, v) for k, v in by_self],
        "by_package": [
            {
                "package": p,
                "self_s": round(s, 3),
                "pct": round(100 * s / total, 1) if total else 0.0,
            }
            for p, s in sorted(packages.items(), key=lambda kv: kv[1], reverse=True)
        ],
        "watched": watched[:20],
        "hot_self_non_io": hot,
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None
