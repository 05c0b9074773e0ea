"""Lessen360 connector: work orders and attachments, keyset-paged by (updatedAtMs, id).
A pass starts `overlap_s` before the saved position (inclusive), then follows the keyset
exactly; the saved cursor is the last (updatedAtMs, id) acknowledged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from syncflow.connectors.base import Page, cursor_ceiling_ms, load_json
from syncflow.connectors.http import SourceHttp
from syncflow.settings import SourceSettings

COLLECTION = {"service_request": "work-orders", "attachment": "attachments"}
ID_FIELD = {"service_request": "workOrderId", "attachment": "attachmentId"}


def parse_results(body: bytes) -> tuple[list[dict[str, Any]], bool]:
    page = load_json(body)
    if not isinstance(page, dict) or not isinstance(page.get("results"), list):
        raise ValueError("no results list")
    return page["results"], bool(page.get("hasMore"))


def last_position(entity_type: str, records: list[dict[str, Any]], current: tuple[int, str] | None,
                  ceiling_ms: int | None = None) -> tuple[int, str] | None:
    """The greatest (updatedAtMs, id) among the records and `current`; a record that is not
    one, or whose time is not a time up to `ceiling_ms`, moves no position (it goes to the DLQ
    or out as it is, but a garbage time must not make the connector skip what follows)."""
    best = current
    for r in records:
        if not isinstance(r, dict):
            continue
        ms = r.get("updatedAtMs")
        if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0 or (ceiling_ms is not None and ms > ceiling_ms):
            continue
        if isinstance(r.get(ID_FIELD[entity_type]), str):
            pos = (r["updatedAtMs"], r[ID_FIELD[entity_type]])
            best = pos if best is None else max(best, pos)
    return best


class Lessen360SourceClient:
    source = "lessen360"

    def __init__(self, session: aiohttp.ClientSession, settings: SourceSettings, schemas_dir: Any = None):
        self.settings = settings
        self.http = SourceHttp(session, settings, self.source)
        self.base = settings.base_url.rstrip("/") + "/api"
        self.headers = {"Authorization": f"Token {settings.api_key}", "Accept": "application/json"}

    async def streams(self) -> list[str]:
        return list(COLLECTION)

    def replay_from_ms(self, cursor: str) -> int | None:
        """updatedSince of the next pass: the saved position's time - overlap."""
        return max(0, int(json.loads(cursor)[0]) - int(self.settings.overlap_s * 1000))

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        saved = tuple(json.loads(cursor)) if cursor else None
        position: tuple[int, str] | None = (int(saved[0]), str(saved[1])) if saved else None
        params = {"limit": str(self.settings.page_size), "updatedSince": "0"}
        if position is not None:
            params["updatedSince"] = str(max(0, position[0] - int(self.settings.overlap_s * 1000)))
        while True:
            records, has_more = await self.http.call("GET", f"{self.base}/{COLLECTION[stream]}", parse_results,
                                                     operation=COLLECTION[stream], params=params, headers=self.headers)
            page_last = last_position(stream, records, None)
            position = last_position(stream, records, position, cursor_ceiling_ms(self.settings))
            yield Page(stream, stream, records, json.dumps(list(position)) if position else None)
            if not has_more or page_last is None:
                return
            params = {"limit": str(self.settings.page_size), "updatedSince": str(page_last[0]), "afterId": page_last[1]}
