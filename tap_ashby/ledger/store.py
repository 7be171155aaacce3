"""Where ledger generations live: ``<uri>/<stream>/<lineage>/<gen>.ledger``, any fsspec URL.

A generation is written once, under a new name, before the STATE naming it is emitted.
Names sort by creation time, then a run id (``20261207T101500123456Z-1f2e3d4c5b6a-0001``),
and each file's header names the generation it was derived from (its *base*). Runs overlap
(a slow run and the next scheduled one, ``--force``, two runners on one bucket), and any of
their final STATEs may be the one the next run starts from. So a run that starts from
generation G, derived from B, prunes only generations of G's lineage named no later than B:
never G, never a newer one, and never a sibling of G (another run's output from B, which
that run's STATE names). A generation whose STATE never left its process (a killed run) is
then pruned one generation later than before.

Lineages that no run has written for ``GC_AGE`` are removed by the next run that writes the
same stream: a STATE still naming one gets one warning and a rebuild, never a wrong delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .codec import HeaderMismatch, file_header

GC_AGE = timedelta(days=14)  # documented in the README ("Where the ledger lives")
STAMP = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True)
class LedgerRef:
    """What Singer state keeps of a ledger generation."""

    lineage: str
    gen: str
    rows: int
    sha256: str
    scope: str

    def as_state(self) -> dict[str, Any]:
        return {
            "lineage": self.lineage,
            "gen": self.gen,
            "rows": self.rows,
            "sha256": self.sha256,
            "scope": self.scope,
        }

    @classmethod
    def from_state(cls, value: Any) -> LedgerRef | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                str(value["lineage"]),
                str(value["gen"]),
                int(value["rows"]),
                str(value["sha256"]),
                str(value["scope"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


class LedgerUnavailable(Exception):
    """The generation named by state cannot be used; ``str()`` says why (one line)."""


def gen_time(name: str) -> datetime | None:
    """When a generation was named (None for names of tap-ashby 0.2: random hex)."""
    try:
        return datetime.strptime(name.split("-", 1)[0], STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


class LedgerStore:
    """Ledger generations of every stream under one fsspec URL or local directory."""

    def __init__(self, uri: str, workdir: str, logger: logging.Logger | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.workdir = workdir
        self.logger = logger or logging.getLogger(__name__)
        self.run_id = uuid.uuid4().hex[:12]  # one per store, i.e. per run
        self._count = 0
        self._lock = threading.Lock()

    @cached_property
    def _fs_root(self) -> tuple[Any, str]:
        # fsspec (and s3fs, gcsfs...) load on the first ledger actually read or written
        import fsspec  # noqa: PLC0415

        return fsspec.core.url_to_fs(self.uri)

    @property
    def fs(self) -> Any:
        return self._fs_root[0]

    @property
    def root(self) -> str:
        return self._fs_root[1]

    def _path(self, stream: str, lineage: str = "", gen: str = "") -> str:
        base = f"{self.root}/{stream}"
        if lineage:
            base = f"{base}/{lineage}"
        return f"{base}/{gen}.ledger" if gen else base

    # files kept aside: the parent keys of an unfinished child pass -----------------------
    # They live under <uri>/_resume/<stream>/, outside every lineage folder (so pruning and
    # garbage collection of generations never see them); state names them relative to uri.
    def put_aside(self, stream: str, local: str) -> str:
        name = f"_resume/{stream}/{self.new_name()}.parents"
        self.fs.makedirs(f"{self.root}/_resume/{stream}", exist_ok=True)
        self.fs.put_file(local, f"{self.root}/{name}")
        return name

    def has_aside(self, name: str) -> bool:
        try:
            return bool(self.fs.exists(f"{self.root}/{name}"))
        except (OSError, ValueError):
            return False

    def get_aside(self, name: str, local: str) -> None:
        self.fs.get_file(f"{self.root}/{name}", local)

    def drop_aside(self, name: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # already gone, or refused: harmless
            self.fs.rm_file(f"{self.root}/{name}")

    def drop_aside_of(self, stream: str) -> None:
        """A finished pass: every file kept aside for the stream's earlier unfinished passes
        goes (a run that still names one only falls back to paging its parents again)."""
        upto = self.new_name()
        for name in self._names(f"{self.root}/_resume/{stream}"):
            if name < upto:
                self.drop_aside(f"_resume/{stream}/{name}")

    def new_name(self) -> str:
        """A generation name later than any this store named before, and unique to it."""
        with self._lock:
            self._count += 1
            count = self._count
        return f"{datetime.now(timezone.utc).strftime(STAMP)}-{self.run_id}-{count:04d}"

    def fetch(
        self, stream: str, ref: LedgerRef, scope: str, keys: list[str]
    ) -> tuple[str, dict[str, Any]]:
        """A verified local copy of the generation ``ref`` names, and its header."""
        fd, local = tempfile.mkstemp(suffix=".ledger", dir=self.workdir)
        os.close(fd)
        try:
            try:
                self.fs.get_file(self._path(stream, ref.lineage, ref.gen), local)
            except (OSError, ValueError) as err:
                raise LedgerUnavailable(
                    f"generation {ref.gen} cannot be read from {self.uri} ({type(err).__name__})"
                ) from err
            if file_sha256(local) != ref.sha256:
                raise LedgerUnavailable(
                    f"generation {ref.gen} in {self.uri} does not match the state (damaged, or "
                    "written over)"
                )
            try:
                header = file_header(local, keys, scope)
            except HeaderMismatch as err:
                raise LedgerUnavailable(str(err)) from err
            if ref.scope != scope:  # the file says so too; the state must agree with it
                raise LedgerUnavailable("it was built for other settings (base_url or filters)")
        except LedgerUnavailable:
            os.unlink(local)
            raise
        return local, header

    def publish(self, stream: str, lineage: str, local: str, rows: int, scope: str) -> LedgerRef:
        """Upload a finished local file as a new generation (never overwrites one)."""
        gen = self.new_name()
        self.fs.makedirs(self._path(stream, lineage), exist_ok=True)
        self.fs.put_file(local, self._path(stream, lineage, gen))
        return LedgerRef(lineage, gen, rows, file_sha256(local), scope)

    def _names(self, folder: str) -> list[str]:
        try:
            # refresh: another process may have written since (s3fs caches listings)
            names = self.fs.ls(folder, detail=False, refresh=True)
            return [Path(str(n)).name for n in names]
        except (OSError, ValueError):
            return []

    def prune(self, stream: str, lineage: str, upto: str, keep: set[str]) -> None:
        """Drop generations of ``lineage`` named no later than ``upto``, except ``keep``
        (best effort: a generation left over is only disk space)."""
        for name in self._names(self._path(stream, lineage)):
            gen = name.removesuffix(".ledger")
            if name.endswith(".ledger") and gen <= upto and gen not in keep:
                try:
                    self.fs.rm_file(self._path(stream, lineage, gen))
                except OSError as err:
                    self.logger.debug("could not prune %s: %s", name, err)

    def collect_garbage(self, stream: str, keep: str, now: datetime | None = None) -> None:
        """Remove lineages of ``stream`` other than ``keep`` unwritten for ``GC_AGE``."""
        now = now or datetime.now(timezone.utc)
        for lineage in self._names(self._path(stream)):
            if lineage == keep:
                continue
            last = self._last_written(stream, lineage)
            if last is None or now - last < GC_AGE:
                continue
            try:
                self.fs.rm(self._path(stream, lineage), recursive=True)
            except OSError as err:
                self.logger.debug("could not remove lineage %s: %s", lineage, err)
                continue
            self.logger.info(
                "%s: removed ledger lineage %s, unused for %d days (no state of this run names "
                "it; ledgers unused for %d days are removed)",
                stream,
                lineage,
                (now - last).days,
                GC_AGE.days,
            )

    def _last_written(self, stream: str, lineage: str) -> datetime | None:
        """When a lineage last got a generation: from names, else file times (0.2 names)."""
        folder = self._path(stream, lineage)
        times = []
        for name in self._names(folder):
            when = gen_time(name)
            if when is None:
                try:
                    when = _modified(self.fs.info(f"{folder}/{name}"))
                except (OSError, ValueError):
                    when = None
            if when is None:
                return None  # unknown age: keep it
            times.append(when)
        return max(times) if times else None


def _modified(info: dict[str, Any]) -> datetime | None:
    """A file's modification time from an fsspec ``info`` (each filesystem names it its way)."""
    for field in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(field)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, timezone.utc)
    return None


def default_ledger_uri(environ: dict[str, str] | None = None) -> str:
    """Inside the Meltano project when run by Meltano, else the user's data directory."""
    env = os.environ if environ is None else environ
    if env.get("MELTANO_PROJECT_ROOT"):
        return str(Path(env["MELTANO_PROJECT_ROOT"]) / ".meltano" / "tap-ashby" / "ledger")
    data = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data) / "tap-ashby" / "ledger")


def normalize_base_url(url: str) -> str:
    """The API root as a ledger scope: lower-case scheme and host, no trailing slash
    (``https://API.ashbyhq.com/`` and ``https://api.ashbyhq.com`` are one account)."""
    parts = urlsplit(str(url).strip())
    netloc = parts.netloc.lower()
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))
