"""Lessen360 emulator: work orders and attachments, keyset-paged by (updatedAtMs, id) with
`updatedSince` + `afterId`, `Authorization: Token <key>`. It can also push changed work
orders to a webhook (syncflow's ingest API), the way Lessen360 notifies subscribers."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from syncflow.emulators.sources.base import STATE_KEY, EmulatorState, make_app
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import apply_changes

COLLECTIONS = {"work-orders": "service_request", "attachments": "attachment"}
INGEST_ENTITY = {"service_request": "service_request", "attachment": "attachment"}
MAX_LIMIT = 500


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"detail": message}, status=status)


def _unauthorized(request: web.Request, state: EmulatorState) -> web.StreamResponse | None:
    if request.headers.get("Authorization") != f"Token {state.api_key}":
        return _error(401, "Invalid token.")
    return None


async def list_collection(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    collection = request.match_info["collection"]
    if collection not in COLLECTIONS:
        return _error(404, "Not found.")
    try:
        since = int(request.query.get("updatedSince", "0"))
        limit = int(request.query.get("limit", "100"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError("limit must be 1..500")
    except ValueError as exc:
        return _error(400, str(exc))
    after_id = request.query.get("afterId")
    if after_id is None:
        matching = [e for e in state.entities(COLLECTIONS[collection]) if e.modified_ms >= since]
    else:
        matching = [e for e in state.entities(COLLECTIONS[collection]) if (e.modified_ms, e.source_id) > (since, after_id)]
    items = matching[:limit]
    state.stats["records_served"] += len(items)
    return web.json_response({"results": [render(e) for e in items], "hasMore": len(matching) > limit})


async def push_webhook(request: web.Request) -> web.Response:
    """POST /_emulator/webhook {"url", "api_key", "count"}: apply `count` changes and post
    every changed record to `url`/<entity_type> as a JSON list; answers what the hook said."""
    state = request.app[STATE_KEY]
    body = await request.json()
    changed = apply_changes(state.world, state.source, int(body.get("count", 1)))
    results = []
    async with aiohttp.ClientSession() as session:
        for entity_type in INGEST_ENTITY:
            records = [render(e) for e in changed if e.entity_type == entity_type]
            if not records:
                continue
            async with session.post(f"{body['url'].rstrip('/')}/{entity_type}", json=records,
                                    headers={"X-API-Key": body.get("api_key", "")}) as resp:
                results.append({"entity_type": entity_type, "status": resp.status, "sent": len(records),
                                "body": await resp.json(content_type=None)})
    return web.json_response({"pushed": results})


def make_lessen360_app(state: EmulatorState) -> web.Application:
    app = make_app(state, _unauthorized)
    app.router.add_get("/api/{collection}", list_collection)
    app.router.add_post("/_emulator/webhook", push_webhook)
    return app
