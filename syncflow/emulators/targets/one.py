"""The ONE emulator: a JSON REST API with bearer-token auth (the static token, or one issued
by the OAuth2 token endpoint when the emulator has an OAuth2 client) and camelCase bodies.

    PUT    /api/v2/{collection}/{externalId}   create or replace (201 created / 200 updated)
    DELETE /api/v2/{collection}/{externalId}   delete (200; 404 when unknown)
    GET    /api/v2/{collection}?limit=&cursor= a page of records: {"items": [record], "nextCursor"}
    GET    /api/v2/{collection}/{externalId}   one record (404 when unknown)
           record: {"id", "externalId", "version", "deleted", "updatedAt", "data"}; version is
           the one the last write's Idempotency-Key named, data its body (null once deleted)

Collections: locations, tenants, work-orders, documents. Every write carries an
`Idempotency-Key` header (and may carry `traceparent` / `X-Request-Id`, kept in `received`). Errors: {"error": {"code", "message", "details" | "missing"}}.
A success about a record with an answer mode (core.ANSWER_MODES) is spoiled after the write."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syncflow.emulators.targets.core import EmulatorState, EntityState, Rejection, answers_rejections

REQUIRED: dict[str, list[str]] = {
    "locations": ["propertyCode", "kind"],
    "tenants": ["firstName", "lastName"],
    "work-orders": ["locationExternalId", "category", "status", "requestedAt"],
    "documents": ["workOrderExternalId", "fileName", "url"],
}
# field holding another record's external id → the collection that must hold it
REFERENCES: dict[str, dict[str, str]] = {
    "tenants": {"unitExternalId": "locations"},
    "work-orders": {"locationExternalId": "locations", "tenantExternalId": "tenants"},
    "documents": {"workOrderExternalId": "work-orders"},
}


def _error(status: int, code: str, message: str, **extra: Any) -> Rejection:
    return Rejection(status, {"error": {"code": code, "message": message, **extra}})


def _check(state: EmulatorState, collection: str, body: dict[str, Any]) -> None:
    missing_fields = [f for f in REQUIRED[collection] if body.get(f) in (None, "")]
    if missing_fields:
        raise _error(
            422, "VALIDATION_FAILED", f"missing required field(s): {', '.join(missing_fields)}",
            details=[{"field": f, "issue": "required"} for f in missing_fields],
        )
    missing = [
        {"collection": other, "externalId": body[f]}
        for f, other in REFERENCES.get(collection, {}).items()
        if body.get(f) and not state.holds(other, body[f])
    ]
    if missing:
        raise _error(409, "UNKNOWN_REFERENCE", "referenced record does not exist", missing=missing)


def routes(state: EmulatorState, token: str) -> list[web.RouteDef]:
    def authorize(request: web.Request) -> None:
        if state.oauth2 is not None:  # a bearer token from the emulator's token endpoint
            if (problem := state.bearer_problem(request)) is not None:
                raise _error(401, "UNAUTHORIZED", problem)
        elif request.headers.get("Authorization") != f"Bearer {token}":
            raise _error(401, "UNAUTHORIZED", "missing or invalid bearer token")

    def collection_of(request: web.Request) -> str:
        collection = request.match_info["collection"]
        if collection not in REQUIRED:
            raise _error(404, "NOT_FOUND", f"unknown collection {collection}")
        return collection

    @answers_rejections
    async def put(request: web.Request) -> web.Response:
        authorize(request)
        collection = collection_of(request)
        await state.guard(request)
        key = request.headers.get("Idempotency-Key")
        external_id = request.match_info["external_id"]
        if (answer := state.replay(key)) is not None:
            return state.respond(request, [external_id], state.shape(external_id, answer[1]), answer[0])
        try:
            body = await request.json()
        except ValueError:
            raise _error(400, "BAD_JSON", "body is not JSON") from None
        if not isinstance(body, dict):
            raise _error(400, "BAD_JSON", "body must be an object")
        _check(state, collection, body)
        status, ref = state.apply(collection, external_id, "upsert", key, body, state.trace_of(request))
        answer_body = {"id": ref, "externalId": external_id, "collection": collection}
        state.remember(key, status, answer_body)
        return state.respond(request, [external_id], state.shape(external_id, answer_body), status)

    @answers_rejections
    async def delete(request: web.Request) -> web.Response:
        authorize(request)
        collection = collection_of(request)
        await state.guard(request)
        key = request.headers.get("Idempotency-Key")
        external_id = request.match_info["external_id"]
        if (answer := state.replay(key)) is not None:
            return state.respond(request, [external_id], state.shape(external_id, answer[1]), answer[0])
        if not state.holds(collection, external_id):
            raise _error(404, "NOT_FOUND", f"{collection}/{external_id} does not exist")
        _, ref = state.apply(collection, external_id, "delete", key, None, state.trace_of(request))
        answer_body = {"id": ref, "externalId": external_id, "deleted": True}
        state.remember(key, 200, answer_body)
        return state.respond(request, [external_id], state.shape(external_id, answer_body), 200)

    def record(external_id: str, e: EntityState) -> dict[str, Any]:
        return {"id": e.target_ref, "externalId": external_id, "version": e.version, "deleted": e.deleted,
                "updatedAt": e.updated_at, "data": e.payload}

    @answers_rejections
    async def list_records(request: web.Request) -> web.Response:
        authorize(request)
        collection = collection_of(request)
        await state.guard(request)
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            raise _error(400, "BAD_QUERY", "limit must be a number") from None
        page, cursor = state.page(collection, request.query.get("cursor") or None, limit)
        return web.json_response({"items": [record(i, e) for i, e in page], "nextCursor": cursor})

    @answers_rejections
    async def get(request: web.Request) -> web.Response:
        authorize(request)
        collection = collection_of(request)
        await state.guard(request)
        external_id = request.match_info["external_id"]
        entity = state.entities.get((collection, external_id))
        if entity is None:
            raise _error(404, "NOT_FOUND", f"{collection}/{external_id} does not exist")
        return web.json_response(record(external_id, entity))

    return [
        web.get("/api/v2/{collection}", list_records),
        web.get("/api/v2/{collection}/{external_id}", get),
        web.put("/api/v2/{collection}/{external_id}", put),
        web.delete("/api/v2/{collection}/{external_id}", delete),
    ]
