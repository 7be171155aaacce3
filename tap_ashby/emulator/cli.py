"""``tap-ashby-emulator``: serve an emulated Ashby org on a local port."""

from __future__ import annotations

import argparse
import sys

from .faults import Faults
from .server import Emulator

SCALES = {"tiny": 40, "small": 1_000, "medium": 20_000, "large": 1_000_000}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, print the URL and key, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="tap-ashby-emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--scale", choices=sorted(SCALES), default="small",
                        help="number of candidates: " + ", ".join(
                            f"{k}={v:,}" for k, v in SCALES.items()))
    parser.add_argument("--candidates", type=int, help="exact number of candidates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--key", default="demo", help="the API key to accept")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added to every API request")
    args = parser.parse_args(argv)
    emu = Emulator(candidates=args.candidates or SCALES[args.scale], seed=args.seed,
                   key=args.key, faults=Faults(seed=args.seed, latency=args.latency))
    emu.start(args.host, args.port)
    print(f"Ashby emulator at {emu.url} key {args.key} "
          f"({emu.org.candidates:,} candidates, seed {args.seed})", flush=True)
    try:
        emu._thread.join()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
