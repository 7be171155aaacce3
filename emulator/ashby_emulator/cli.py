"""``tap-ashby-emulator``: serve an emulated Ashby org on a local port."""

from __future__ import annotations

import argparse
import sys

from .faults import Faults
from .server import Emulator

SCALES = {"tiny": 40, "small": 1_000, "medium": 20_000, "large": 1_000_000}


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments as a dict."""
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} wants NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, print the URL and key, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="tap-ashby-emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="small",
        help="number of candidates: " + ", ".join(f"{k}={v:,}" for k, v in SCALES.items()),
    )
    parser.add_argument("--candidates", type=int, help="exact number of candidates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--key", default="demo", help="the API key to accept")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every API request"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a protocol setting, e.g. max_incremental_pages=50, "
        "strict_bodies=false, child_changes_touch_parent=false",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a fault rate, e.g. partner_rate_limit=0.05, rate_limit=0.1",
    )
    parser.add_argument(
        "--api-version",
        action="append",
        default=[],
        metavar="VERSION=STATUS",
        help="add an API version or set its status, e.g. 2026-01-01=deprecated",
    )
    args = parser.parse_args(argv)
    faults = Faults(seed=args.seed, latency=args.latency)
    try:
        faults.update(**_pairs(args.fault, "--fault"))
        emu = Emulator(
            candidates=args.candidates or SCALES[args.scale],
            seed=args.seed,
            key=args.key,
            faults=faults,
        )
        emu.configure(**_pairs(args.set, "--set"))
        for version, status in _pairs(args.api_version, "--api-version").items():
            emu.set_version(version, status)
    except ValueError as err:
        parser.error(str(err))
    emu.start(args.host, args.port)
    print(
        f"Ashby emulator at {emu.url} key {args.key} "
        f"({emu.org.candidates:,} candidates, seed {args.seed})",
        flush=True,
    )
    try:
        emu._thread.join()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
