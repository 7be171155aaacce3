"""One-line answers to bad input: files, settings, extras, typos and stream maps.

Every function here returns text for an operator: it names the file, the setting or the
stream, says what is wrong and what to do, and never contains the value of a secret setting.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

import jsonschema
from singer_sdk.exceptions import MapExpressionError, MaxRecordsLimitException

# fsspec protocol -> (module it needs, tap-ashby extra that installs it)
EXTRAS = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
}
STREAM_MAP_OPTIONS = frozenset({"__else__"})
TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def closest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest valid name, else ``""``."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


# files --------------------------------------------------------------------------------------
def json_file_problem(path: str, what: str, flag: str) -> tuple[Any, str | None]:
    """Parse a JSON file given on the command line: (value, None) or (None, one line)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), None
    except OSError as err:
        return None, f"cannot read the {what} file {path}: {err.strerror}; check {flag}"
    except UnicodeDecodeError:
        return None, f"the {what} file {path} is not UTF-8 text; save it as UTF-8 JSON"
    except json.JSONDecodeError as err:
        return None, (
            f"the {what} file {path} is not valid JSON ({err.msg} at line {err.lineno} "
            f"column {err.colno}); fix it or point {flag} at another file"
        )


def flag_values(argv: list[str], flag: str) -> list[str]:
    """Every value given for ``flag`` (``--flag value`` or ``--flag=value``)."""
    values = []
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            values.append(argv[index + 1])
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
    return values


def config_file_problem(path: str) -> str | None:
    config, problem = json_file_problem(path, "config", "--config")
    if problem:
        return problem
    if not isinstance(config, dict):
        return f"the config file {path} is not a JSON object; see config.example.json"
    return None


def state_file_problem(path: str) -> str | None:
    state, problem = json_file_problem(path, "state", "--state")
    if problem:
        return problem
    if not isinstance(state, dict) or not isinstance(state.get("bookmarks", {}), dict):
        return f"the state file {path} is not a Singer state (expected an object with 'bookmarks')"
    return None


def catalog_file_problem(path: str) -> str | None:
    catalog, problem = json_file_problem(path, "catalog", "--catalog")
    if problem:
        return problem
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        return (
            f"the catalog file {path} is not a Singer catalog (expected an object with "
            "'streams'); write one with tap-ashby --config CONFIG --discover"
        )
    return None


def command_line_problem(argv: list[str]) -> str | None:
    """The first file named on the command line that cannot be used, as one line."""
    checks = (
        ("--config", config_file_problem),
        ("--state", state_file_problem),
        ("--catalog", catalog_file_problem),
    )
    for flag, check in checks:
        for path in flag_values(argv, flag):
            if flag == "--config" and path == "ENV":
                continue
            problem = check(path)
            if problem:
                return problem
    return None


# settings -----------------------------------------------------------------------------------
def _is_secret(schema: Mapping[str, Any], setting: str) -> bool:
    spec = schema.get("properties", {}).get(setting, {})
    return bool(spec.get("secret") or spec.get("writeOnly"))


def _expected(error: jsonschema.ValidationError) -> str:
    rule, value = error.validator, error.validator_value
    if rule == "type":
        kinds = [value] if isinstance(value, str) else list(value)
        return "must be " + " or ".join(TYPE_WORDS.get(k, k) for k in kinds if k != "null")
    if rule == "minLength":
        return "must not be empty"
    if rule == "enum":
        return "must be one of " + ", ".join(repr(v) for v in value)
    phrases = {
        "minimum": f"must be at least {value}",
        "maximum": f"must be at most {value}",
        "exclusiveMinimum": f"must be more than {value}",
        "exclusiveMaximum": f"must be less than {value}",
        "format": f"must be a {value} value",
        "pattern": f"must match {value}",
    }
    return phrases.get(str(rule), f"breaks the schema rule {rule!r}")


def _got(error: jsonschema.ValidationError, secret: bool) -> str:
    """What was given: the value for ordinary settings, only its JSON type for secrets."""
    instance = error.instance
    if secret or error.validator == "type":
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}
        name = kind.get(type(instance)) or (
            "list" if isinstance(instance, list) else "object" if isinstance(instance, dict) else ""
        )
        return f" (got {'null' if instance is None else name or type(instance).__name__})"
    shown = json.dumps(instance, default=str)
    return f" (got {shown[:60]}{'…' if len(shown) > 60 else ''})"


def schema_problem(error: jsonschema.ValidationError, schema: Mapping[str, Any]) -> str:
    """One validation error as a line naming the setting; a secret's value is never shown."""
    if error.validator == "required":
        missing = [p for p in error.validator_value if p not in (error.instance or {})]
        name = missing[0] if missing else "a required setting"
        return f"{name} is missing: set it in the config (or {env_name(name)})"
    setting = str(error.path[0]) if error.path else ""
    where = ".".join(str(p) for p in error.path) or "the config"
    hint = f": fix {setting} in the config (or {env_name(setting)})" if setting else ""
    return f"{where} {_expected(error)}{_got(error, _is_secret(schema, setting))}{hint}"


def env_name(setting: str) -> str:
    return "TAP_ASHBY_" + setting.upper()


def schema_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every way ``config`` breaks ``schema``, one safe line each (the SDK's own messages
    repeat the offending value, an API key included)."""
    validator = jsonschema.Draft202012Validator(
        dict(schema), format_checker=jsonschema.FormatChecker()
    )
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(map(str, e.path)))
    return [schema_problem(e, schema) for e in errors]


def extras_problem(config: Mapping[str, Any]) -> str | None:
    """The ``pip install`` line a ``ledger_uri`` needs, checked before any request."""
    uri = config.get("ledger_uri")
    if not isinstance(uri, str) or "://" not in uri:
        return None
    scheme = urlparse(uri).scheme.lower()
    if scheme not in EXTRAS:
        return None
    module, extra = EXTRAS[scheme]
    if importlib.util.find_spec(module) is not None:
        return None
    return (
        f"ledger_uri uses {scheme}://, which needs {module}: pip install 'tap-ashby[{extra}]' "
        f"(under Meltano: pip_url: tap-ashby[{extra}], then meltano install)"
    )


# typos (warnings; the run goes on) -----------------------------------------------------------
def unknown_settings(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """A warning per setting the tap does not know (keys starting with ``_`` are comments)."""
    known = set(schema.get("properties", {}))
    return [
        f"unknown setting {name!r} is ignored{closest(name, known)}"
        for name in config
        if name not in known and not name.startswith("_")
    ]


def unknown_map_streams(stream_maps: Any, streams: Iterable[str]) -> list[str]:
    """A warning per ``stream_maps`` key (or ``__source__``) matching no stream."""
    if not isinstance(stream_maps, dict):
        return []
    known = sorted(streams)
    warnings = []
    for key, spec in stream_maps.items():
        source = spec.get("__source__") if isinstance(spec, dict) else None
        name = str(source or key)
        if name in STREAM_MAP_OPTIONS or fnmatch.filter(known, name):
            continue
        warnings.append(
            f"stream_maps: no stream is named {name!r}, so its map does nothing"
            f"{closest(name, known)}"
        )
    return warnings


def unknown_catalog_streams(names: Iterable[str], streams: Iterable[str]) -> list[str]:
    known = sorted(streams)
    return [
        f"the catalog names stream {name!r}, which tap-ashby does not have; it is ignored"
        f"{closest(name, known)}"
        for name in names
        if name not in known
    ]


# stream maps --------------------------------------------------------------------------------
def map_locations(stream_maps: Any, expression: str) -> list[str]:
    """``stream_maps.<stream>.<property>`` for every place ``expression`` is written."""
    found = []
    for stream, spec in (stream_maps or {}).items():
        for prop, value in (spec or {}).items() if isinstance(spec, dict) else ():
            if isinstance(value, str) and value.strip() == expression.strip():
                found.append(f"stream_maps.{stream}.{prop}")
    return found


def map_error_line(
    err: MapExpressionError,
    config: Mapping[str, Any],
    fields: Callable[[str], Iterable[str]] = lambda stream: (),
) -> str:
    """A stream-map failure as one line: where the expression is, why it fails, and for an
    unknown name the closest field of that stream (``fields(stream)``)."""
    message = str(err).strip().rstrip(".")
    expression = message.split("expression", 1)[-1].lstrip("s").strip()
    places = map_locations(config.get("stream_maps"), expression) or ["stream_maps"]
    cause = err.__cause__
    why = " ".join(str(cause).split()) if cause else message
    unknown = getattr(cause, "name", None)
    if isinstance(unknown, str) and places[0] != "stream_maps":
        why += closest(unknown, fields(places[0].split(".")[1]))
    return f"{', '.join(places)}: cannot use the expression {expression!r}: {why}; fix the map"


# the SDK's per-stream error line ------------------------------------------------------------
class SyncErrorFilter(logging.Filter):
    """Drops the SDK's "An unhandled error occurred while syncing" line when the error in
    flight is the planned stop of a ``--test`` dry run (one record per stream), or one the
    tap reports itself in one line (``reported``); keeps the stream's name for that line.

    Why a filter: ``Stream.sync`` is final and logs that line at ERROR for every abort,
    including the SDK's own dry-run record limit; the log record carries no exception, so
    the one in flight is read from ``sys.exc_info()`` (we are inside its ``except``).
    """

    def __init__(self, reported: Callable[[BaseException], bool]) -> None:
        super().__init__()
        self.reported = reported
        self.stream: str | None = None  # the stream whose sync failed first

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("An unhandled error occurred while syncing"):
            return True
        error = sys.exc_info()[1]
        if error is None:
            return True
        if isinstance(error.__cause__, MaxRecordsLimitException):
            return False
        if not self.reported(error):
            return True
        self.stream = self.stream or record.name.rsplit(".", 1)[-1]
        return False
