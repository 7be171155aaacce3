"""Passes over an Ashby list: syncToken fallback and cursor restarts.

A *pass* reads every page of one list call, from a stored syncToken (only what changed) or
from scratch. Its new token is handed to the caller in a ``PassOutcome`` and enters Singer
state only after the caller emitted every record (at least once, never a gap).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .client import AshbyClient, Call
from .errors import CursorExpired, SyncTokenRejected

MAX_PASS_RESTARTS = 3
Rows = list[dict[str, Any]]


@dataclass
class PassOutcome:
    """How a pass ended: the token to store next (None: the list has none) and whether
    the pass was full (from scratch) rather than incremental."""

    token: str | None = None
    full: bool = True


def read_pass(
    client: AshbyClient,
    call: Call,
    token: str | None,
    owner: str,
    logger: logging.Logger,
    outcome: PassOutcome,
) -> Iterator[Rows]:
    """Pages of one pass; ``outcome`` is filled in when the pass has ended.

    A refused token (expired, invalid, or ``incremental_sync_too_large`` after some pages)
    falls back to a full pass in the same run; an expired cursor restarts the pass. Rows of
    the aborted part may come twice: loading upserts on the primary key.
    """
    restarts = 0
    while True:
        try:
            for page in client.pages(call, token, owner):
                yield page.records
                if page.last:
                    outcome.token = page.sync_token
            break
        except SyncTokenRejected as err:
            if token is None:
                raise
            logger.warning(
                "%s: %s: the stored syncToken cannot be used (%s); doing a full pass",
                owner,
                call.path,
                err.code,
            )
            token = None
        except CursorExpired as err:
            restarts += 1
            if restarts > MAX_PASS_RESTARTS:
                raise
            logger.warning("%s: cursor expired mid-pass (%s); restarting the pass", owner, err.code)
    outcome.full = token is None
