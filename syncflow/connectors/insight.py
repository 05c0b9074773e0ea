"""Insight connector: one change feed per entity type, followed with its opaque cursor
token; the token of the last acknowledged page is the saved cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from syncflow.connectors.base import Page, load_json
from syncflow.connectors.http import SourceHttp
from syncflow.settings import SourceSettings

FEED = {"location": "locations", "resident": "occupants", "service_request": "tickets"}


def parse_feed_page(body: bytes) -> tuple[list[dict[str, Any]], str, bool]:
    """(items, next cursor, has more). Raises ValueError for a body that is not a page."""
    page = load_json(body)
    if not isinstance(page, dict) or not isinstance(page.get("items"), list) or "next_cursor" not in page:
        raise ValueError("not a change-feed page")
    if not isinstance(page["next_cursor"], str | None):
        raise ValueError("next_cursor is not a string")
    return page["items"], page["next_cursor"] or "", bool(page.get("has_more"))


class InsightClient:
    source = "insight"

    def __init__(self, session: aiohttp.ClientSession, settings: SourceSettings, schemas_dir: Any = None):
        self.settings = settings
        self.http = SourceHttp(session, settings, self.source)
        self.url = settings.base_url.rstrip("/") + "/v2/changes"
        self.headers = {"X-Insight-Key": settings.api_key, "Accept": "application/json"}

    async def streams(self) -> list[str]:
        return list(FEED)

    def replay_from_ms(self, cursor: str) -> int | None:
        """None: the feed resumes exactly after the acknowledged token and never serves a
        change twice, so there is no overlap to de-duplicate and nothing to remember."""
        return None

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        token = cursor or ""
        while True:
            params = {"entity": FEED[stream], "limit": str(self.settings.page_size), "cursor": token}
            items, token, has_more = await self.http.call("GET", self.url, parse_feed_page, operation=FEED[stream], params=params,
                                                          headers=self.headers)
            yield Page(stream, stream, items, token or None)
            if not has_more:
                return
