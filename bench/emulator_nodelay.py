"""The emulator's CLI with TCP_NODELAY on every connection (``bench/run.py --nodelay``).

The shipped emulator writes a response's headers and body in two sends; without TCP_NODELAY a
small response on a keep-alive connection then waits for the client's delayed ACK (~40 ms).
This shim changes nothing in the emulator's files: it sets the stdlib's
``StreamRequestHandler.disable_nagle_algorithm`` on the emulator's handler class, then runs
its CLI unchanged, so the cost of that stall can be measured.
"""

from __future__ import annotations

from tap_ashby.emulator import server
from tap_ashby.emulator.cli import main

server._Handler.disable_nagle_algorithm = True

if __name__ == "__main__":
    main()
