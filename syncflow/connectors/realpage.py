"""RealPage connector: per property and collection, pages ordered by modified time,
filtered by `modifiedSince` in the property's local time. After each page the query
restarts from the newest time seen (inclusive), so records that move while we page (an
update sends a record to the end) are not skipped."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from syncflow.connectors.base import Page, cursor_ceiling_ms, latest_modified_ms, load_json
from syncflow.connectors.http import SourceHttp
from syncflow.connectors.schemas import SOURCE_ENTITIES
from syncflow.settings import SourceSettings

COLLECTION = {"location": "locations", "resident": "residents", "service_request": "workorders",
              "attachment": "attachments"}


def local_time(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M:%S")


def parse_page(body: bytes) -> tuple[list[dict[str, Any]], bool]:
    """(records, has next page). Raises ValueError for a body that is not a page."""
    page = load_json(body)
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise ValueError("no data list")
    links = page.get("links") or {}
    if not isinstance(links, dict):
        raise ValueError("links is not an object")
    return page["data"], bool(links.get("next"))


class RealPageClient:
    source = "realpage"

    def __init__(self, session: aiohttp.ClientSession, settings: SourceSettings, schemas_dir: Any = None):
        self.settings = settings
        self.http = SourceHttp(session, settings, self.source)
        self.base = settings.base_url.rstrip("/") + "/api/v1/properties"
        self.headers = {"Authorization": f"Bearer {settings.api_key}", "Accept": "application/json"}
        self.time_zones: dict[str, str] = {}

    async def streams(self) -> list[str]:
        listing = await self.http.call("GET", self.base, _parse_properties, operation="properties", headers=self.headers)
        self.time_zones = {p["propertyCode"]: p.get("timeZone") if isinstance(p.get("timeZone"), str) else "UTC"
                           for p in listing}
        codes = list(self.settings.properties) or list(self.time_zones)
        return [f"{code}/{entity}" for code in codes for entity in SOURCE_ENTITIES[self.source]]

    def replay_from_ms(self, cursor: str) -> int | None:
        """modifiedSince of the next pass: cursor - overlap, to the second (as sent)."""
        ms = int(cursor) - int(self.settings.overlap_s * 1000)
        return ms - ms % 1000

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        code, entity_type = stream.rsplit("/", 1)
        tz = self.time_zones.get(code, "UTC")
        newest = int(cursor) if cursor else None
        since = newest - int(self.settings.overlap_s * 1000) if newest is not None else None
        page_no = 1
        while True:
            params = {"page": str(page_no), "pageSize": str(self.settings.page_size)}
            if since is not None:
                params["modifiedSince"] = local_time(since, tz)
            records, has_next = await self.http.call("GET", f"{self.base}/{code}/{COLLECTION[entity_type]}",
                                                     parse_page, operation=COLLECTION[entity_type], params=params,
                                                     headers=self.headers)
            ceiling = cursor_ceiling_ms(self.settings)
            page_newest = latest_modified_ms(self.source, records, None, ceiling)
            newest = latest_modified_ms(self.source, records, newest, ceiling)
            yield Page(stream, entity_type, records, None if newest is None else str(newest))
            if not has_next:
                return
            if page_newest is not None and (since is None or page_newest > since):
                since, page_no = page_newest, 1  # re-query from the newest time seen
            else:
                page_no += 1  # a whole page at one instant: step over it


def _parse_properties(body: bytes) -> list[dict[str, Any]]:
    """The listed properties; an entry without a property code names nothing to read and is left out."""
    data = load_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("no data list")
    return [p for p in data["data"] if isinstance(p, dict) and isinstance(p.get("propertyCode"), str)]
