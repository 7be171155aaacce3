"""Cursor pagination and the syncToken a finished pass hands back."""

from __future__ import annotations

from typing import Any

import requests
from singer_sdk.pagination import BaseAPIPaginator


def body_of(response: requests.Response) -> dict[str, Any]:
    """The JSON body parsed once by ``validate_response`` (see ``AshbyStream``)."""
    return response.ashby_body  # type: ignore[attr-defined, no-any-return]


class AshbyPaginator(BaseAPIPaginator[str | None]):
    """Follows ``nextCursor`` while ``moreDataAvailable``; keeps the last page's syncToken.

    The token stays here, not in state, until the caller has emitted every record of the
    pass: a run that dies half-way keeps the old bookmark (at least once, never a gap).
    """

    def __init__(self) -> None:
        super().__init__(None)
        self.sync_token: str | None = None
        self.pages = 0

    def has_more(self, response: requests.Response) -> bool:
        body = body_of(response)
        self.pages += 1
        # Follow a cursor whenever one comes back, even on endpoints documented as
        # unpaginated (source.list, archiveReason.list); stop on a last page without one.
        if body.get("moreDataAvailable") and body.get("nextCursor"):
            return True
        self.sync_token = body.get("syncToken") or None
        return False

    def get_next(self, response: requests.Response) -> str | None:
        return body_of(response).get("nextCursor")

    def continue_if_empty(self, response: requests.Response) -> bool:
        # An incremental pass with no changes is an empty page that still carries the new
        # token; let advance() see it.
        return True
