"""singer-sdk's standard tap tests, run against the emulator over real HTTP (every stream)."""

from __future__ import annotations

import atexit

from ashby_emulator import Emulator
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_ashby.tap import TapAshby

_EMULATOR = Emulator(candidates=12, seed=5, key="sdk-suite-key").start()
atexit.register(_EMULATOR.stop)
_CONFIG = {
    "api_key": _EMULATOR.key,
    "base_url": _EMULATOR.url,
    "requests_per_minute": 0,
    "report_ids": ["saved-report-1"],
}


def _catalog_selecting_everything() -> dict:
    catalog = TapAshby(config=_CONFIG, parse_env_config=False).catalog_dict
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = True
    return catalog


TestTapAshby = get_tap_test_class(
    tap_class=TapAshby,
    config=_CONFIG,
    catalog=_catalog_selecting_everything(),
    suite_config=SuiteConfig(max_records_limit=500, ignore_no_records=False),
)
