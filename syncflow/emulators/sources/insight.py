"""Insight emulator: one change feed per entity across all properties, paged by an opaque
cursor token (oldest change first), key in an `X-Insight-Key` header."""

from __future__ import annotations

import base64
import json

from aiohttp import web

from syncflow.emulators.sources.base import STATE_KEY, EmulatorState, make_app
from syncflow.emulators.sources.render import render

FEEDS = {"locations": "location", "occupants": "resident", "tickets": "service_request"}
MAX_LIMIT = 500


def encode_cursor(modified_ms: int, source_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([modified_ms, source_id]).encode()).decode()


def decode_cursor(token: str) -> tuple[int, str]:
    """Raises ValueError for a token this feed did not hand out."""
    try:
        ms, sid = json.loads(base64.urlsafe_b64decode(token.encode()))
    except Exception as exc:  # noqa: BLE001 - any garbage is an invalid cursor
        raise ValueError(f"invalid cursor {token!r}") from exc
    if not isinstance(ms, int) or not isinstance(sid, str):
        raise ValueError(f"invalid cursor {token!r}")
    return ms, sid


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _unauthorized(request: web.Request, state: EmulatorState) -> web.StreamResponse | None:
    if request.headers.get("X-Insight-Key") != state.api_key:
        return _error(401, "unauthorized", "invalid X-Insight-Key")
    return None


async def changes(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    entity = request.query.get("entity", "")
    if entity not in FEEDS:
        return _error(400, "invalid_entity", f"entity must be one of {', '.join(FEEDS)}")
    token = request.query.get("cursor", "")
    try:
        limit = int(request.query.get("limit", "100"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError("limit must be 1..500")
        after = decode_cursor(token) if token else None
    except ValueError as exc:
        return _error(400, "invalid_request", str(exc))
    feed = [e for e in state.entities(FEEDS[entity]) if after is None or (e.modified_ms, e.source_id) > after]
    items = feed[:limit]
    next_cursor = encode_cursor(items[-1].modified_ms, items[-1].source_id) if items else token
    state.stats["records_served"] += len(items)
    return web.json_response({"items": [render(e) for e in items], "next_cursor": next_cursor,
                              "has_more": len(feed) > limit})


def make_insight_app(state: EmulatorState) -> web.Application:
    app = make_app(state, _unauthorized)
    app.router.add_get("/v2/changes", changes)
    return app
