"""The emulator's ceiling: a trivial ``http.client`` pager that never parses JSON.

    python bench/ceiling.py URL ENDPOINT KEY '{"expand": ["openings"]}' MAX_PAGES MAX_SECONDS

Reads each page whole and finds ``nextCursor`` with a regex in the page's tail (the emulator
puts it last). Prints one JSON line: pages, records (pages x 100, the last page counted as
full), seconds, bytes.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import sys
import time
from urllib.parse import urlparse

CURSOR = re.compile(rb'"nextCursor":"([^"]+)"')


def main() -> None:
    url, endpoint, key, fixed, max_pages, max_seconds = sys.argv[1:7]
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    base = json.loads(fixed)
    cursor = None
    pages = size = 0
    started = time.perf_counter()
    deadline = started + float(max_seconds)
    while pages < int(max_pages) and time.perf_counter() < deadline:
        body = {**base, "limit": 100}
        if cursor:
            body["cursor"] = cursor
        conn.request("POST", f"/{endpoint}", json.dumps(body), headers)
        data = conn.getresponse().read()
        pages += 1
        size += len(data)
        found = CURSOR.search(data, max(0, len(data) - 1024))
        if not found:
            break
        cursor = found.group(1).decode()
    seconds = time.perf_counter() - started
    print(json.dumps({"pages": pages, "seconds": seconds, "bytes": size}))


if __name__ == "__main__":
    main()
