"""The floor: the simplest correct client, a bare ``requests.Session`` pager.

    python bench/floor.py URL ENDPOINT KEY '{"expand": ["openings"]}' MAX_PAGES > /dev/null

POSTs ``{"limit": 100, "cursor": ...}`` (plus the fixed body the tap sends to that endpoint),
``r.json()`` per page, one ``json.dumps`` line per record on stdout. Its own loop time and
counts go to stderr as one JSON line (``FLOOR {...}``).
"""

from __future__ import annotations

import json
import sys
import time

import requests


def main() -> None:
    url, endpoint, key, fixed, max_pages = sys.argv[1:6]
    body_base = json.loads(fixed)
    session = requests.Session()
    session.auth = (key, "")
    out = sys.stdout
    cursor = None
    records = pages = 0
    started = time.perf_counter()
    while pages < int(max_pages):
        body = {**body_base, "limit": 100}
        if cursor:
            body["cursor"] = cursor
        response = session.post(f"{url}/{endpoint}", json=body, timeout=120)
        response.raise_for_status()
        page = response.json()
        pages += 1
        if not page.get("success"):
            raise SystemExit(f"floor: {endpoint} answered {page.get('errors')}")
        for record in page["results"]:
            out.write(json.dumps(record) + "\n")
            records += 1
        cursor = page.get("nextCursor")
        if not (page.get("moreDataAvailable") and cursor):
            break
    out.flush()
    seconds = time.perf_counter() - started
    sys.stderr.write(
        "FLOOR " + json.dumps({"records": records, "pages": pages, "seconds": seconds}) + "\n"
    )


if __name__ == "__main__":
    main()
