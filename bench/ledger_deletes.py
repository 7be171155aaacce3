"""Peak RSS of a reconcile that finds 1M deletions (issue 22: under 150 MB, as a full sync).

    .venv/bin/python bench/ledger_deletes.py              # 1M deletions, both shapes
    .venv/bin/python bench/ledger_deletes.py --rows 100000

Standalone (not a section of bench/run.py): the emulator would need 1M hard deletes before
the reconcile, which costs more than the measurement. This drives the tap's own ledger code
instead, in fresh processes, the way a stream does:

1. a *build* process writes a generation of N delivered keys (``LedgerRun.add`` then
   ``close``), as a first full sync does;
2. a *reconcile* process starts from that generation's state, gets a scan that lists none
   of them, and writes every tombstone as a Singer RECORD line to /dev/null (the SDK's
   writer does the same per record). It imports the whole tap first, so its baseline is a
   tap process's. Its peak RSS (``ru_maxrss``) is the number.

Two shapes: ``top-level`` (candidates: the vanished keys stream out during the merge) and
``child`` (job postings keyed by id across parents: the keys that left their parent spill to
disk and are checked against every parent's keys before a tombstone goes out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCOPE = "bench-ledger-deletes"
LIMIT_MB = 150


def _store(root: str):  # type: ignore[no-untyped-def]
    from tap_ashby.ledger import LedgerStore  # noqa: PLC0415

    work = Path(root) / "work"
    work.mkdir(exist_ok=True)
    return LedgerStore(str(Path(root) / "ledgers"), str(work))


def _run(root: str, shape: str, state: dict):  # type: ignore[no-untyped-def]
    import logging  # noqa: PLC0415

    from tap_ashby.ledger import LedgerRun  # noqa: PLC0415

    stream = "candidates" if shape == "top-level" else "job_postings"
    return LedgerRun(
        _store(root), stream, ["id"], SCOPE, state, logging.getLogger("bench"), 1, True
    )


def build(root: str, shape: str, rows: int) -> None:
    """Child process: the first generation, ``rows`` keys (10 parents for ``child``)."""
    run = _run(root, shape, {})
    for n in range(rows):
        parent = "" if shape == "top-level" else str(uuid.UUID(int=n % 10 + 1))
        run.add(parent, {"id": str(uuid.UUID(int=(n + 1) << 64))})
    replaced = None if shape == "top-level" else []
    for _ in run.close(replaced=replaced, live=None, reconciled=True):
        pass
    print(json.dumps(run.commit))


def reconcile(root: str, shape: str, state: dict) -> None:
    """Child process: everything vanished; tombstones written as Singer lines."""
    import tap_ashby.tap  # noqa: F401, PLC0415 (the tap's own baseline: SDK, client, streams)
    from tap_ashby.ledger import encode_key  # noqa: PLC0415

    run = _run(root, shape, state)
    started = time.perf_counter()
    sent = 0
    with open(os.devnull, "w") as out:
        if shape == "top-level":
            scan: list[bytes] = []  # the reconcile scan lists nothing
            tombstones = run.close(replaced=None, live=None, current=iter(scan), reconciled=True)
        else:  # every board listed, empty (and still live)
            boards = sorted(encode_key(str(uuid.UUID(int=b + 1))) for b in range(10))
            tombstones = run.close(replaced=None, live=boards, reconciled=True)
        for record in tombstones:
            out.write(json.dumps({"type": "RECORD", "stream": run.stream, "record": record}))
            out.write("\n")
            sent += 1
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sent": sent, "peak_kb": peak_kb, "seconds": time.perf_counter() - started}))


def _child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(rows: int, shape: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as root:
        state = _child("--build", root, shape, str(rows))
        result = _child("--reconcile", root, shape, json.dumps(state))
    assert result["sent"] == rows, result
    return {"shape": shape, "rows": rows, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--build", nargs=3, metavar=("ROOT", "SHAPE", "ROWS"))
    parser.add_argument("--reconcile", nargs=3, metavar=("ROOT", "SHAPE", "STATE"))
    args = parser.parse_args(argv)
    if args.build:
        build(args.build[0], args.build[1], int(args.build[2]))
        return 0
    if args.reconcile:
        reconcile(args.reconcile[0], args.reconcile[1], json.loads(args.reconcile[2]))
        return 0
    print("| shape | deletions | peak RSS | reconcile time |")
    print("| --- | ---: | ---: | ---: |")
    worst = 0.0
    for shape in ("top-level", "child"):
        r = measure(args.rows, shape)
        mb = r["peak_kb"] / 1024
        worst = max(worst, mb)
        print(f"| {shape} | {r['sent']:,} | {mb:.0f} MB | {r['seconds']:.1f} s |", flush=True)
    print(f"\nlimit {LIMIT_MB} MB: {'ok' if worst < LIMIT_MB else 'EXCEEDED'}")
    return 0 if worst < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
