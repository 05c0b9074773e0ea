"""RealPage emulator: JSON REST, bearer auth, per-property collections with page/pageSize
paging and a next link, a `modifiedSince` filter in property-local time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from syncflow.emulators.sources.base import STATE_KEY, EmulatorState, make_app
from syncflow.emulators.sources.render import render

COLLECTIONS = {"locations": "location", "residents": "resident", "workorders": "service_request",
               "attachments": "attachment"}
MAX_PAGE_SIZE = 500


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _unauthorized(request: web.Request, state: EmulatorState) -> web.StreamResponse | None:
    if request.headers.get("Authorization") != f"Bearer {state.api_key}":
        return _error(401, "Unauthorized", "missing or invalid bearer token")
    return None


async def list_properties(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    data = [{"propertyCode": p.data["property_code"], "propertyName": p.data["name"], "timeZone": p.data["time_zone"]}
            for p in state.world.properties("realpage")]
    return web.json_response({"data": data})


async def list_collection(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    code, collection = request.match_info["code"], request.match_info["collection"]
    if collection not in COLLECTIONS:
        return _error(404, "NotFound", f"unknown collection {collection}")
    prop = next((p for p in state.world.properties("realpage") if p.data["property_code"] == code), None)
    if prop is None:
        return _error(404, "PropertyNotFound", f"property {code} does not exist")
    try:
        page = int(request.query.get("page", "1"))
        page_size = int(request.query.get("pageSize", "100"))
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError("page >= 1 and 1 <= pageSize <= 500")
        since_ms = 0
        if since := request.query.get("modifiedSince"):
            local = datetime.strptime(since, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=ZoneInfo(prop.data["time_zone"]))
            since_ms = int(local.timestamp() * 1000)
    except ValueError as exc:
        return _error(400, "BadRequest", str(exc))
    matching = [e for e in state.entities(COLLECTIONS[collection], code) if e.modified_ms >= since_ms]
    chunk = matching[(page - 1) * page_size: page * page_size]
    next_link = None
    if page * page_size < len(matching):
        next_link = str(request.url.update_query({"page": str(page + 1), "pageSize": str(page_size)}))
    state.stats["records_served"] += len(chunk)
    return web.json_response({"data": [render(e) for e in chunk], "page": page, "pageSize": page_size,
                              "totalCount": len(matching), "links": {"next": next_link}})


def make_realpage_app(state: EmulatorState) -> web.Application:
    app = make_app(state, _unauthorized)
    app.router.add_get("/api/v1/properties", list_properties)
    app.router.add_get("/api/v1/properties/{code}/{collection}", list_collection)
    return app
