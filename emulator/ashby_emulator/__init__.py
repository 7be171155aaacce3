"""A faithful, seeded emulator of Ashby's public API (for tests, the demo and benchmarks).

It never imports the tap, and the tap never imports it.
"""

from .api import ALL_PERMISSIONS, Api, Settings
from .faults import Faults
from .org import TABLES, Org
from .server import Emulator

__all__ = ["ALL_PERMISSIONS", "TABLES", "Api", "Emulator", "Faults", "Org", "Settings"]
