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

from syncflow.emulators.targets.core import (
    EmulatorState,
    ReadApi,
    answers_rejections,
    error_answer,
    missing_fields,
    read_handlers,
)

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


READ_API = ReadApi(page_size="limit", page_token="cursor", items="items", next_token="nextCursor",
                   external_id="externalId", updated_at="updatedAt", bad_query="BAD_QUERY", not_found="NOT_FOUND")


def _check(state: EmulatorState, collection: str, body: dict[str, Any]) -> None:
    if absent := missing_fields(REQUIRED[collection], body):
        raise error_answer(
            422, "VALIDATION_FAILED", f"missing required field(s): {', '.join(absent)}",
            details=[{"field": f, "issue": "required"} for f in absent],
        )
    if missing := state.unknown_references(REFERENCES.get(collection, {}), body):
        raise error_answer(409, "UNKNOWN_REFERENCE", "referenced record does not exist",
                           missing=[{"collection": c, "externalId": i} for c, i in missing])


def routes(state: EmulatorState, token: str) -> list[web.RouteDef]:
    async def admit(request: web.Request) -> str:
        """Authorized, a known collection, within the rate limit: the collection."""
        if (problem := state.credential_problem(request, "Authorization", f"Bearer {token}", "bearer token")) is not None:
            raise error_answer(401, "UNAUTHORIZED", problem)
        collection = request.match_info["collection"]
        if collection not in REQUIRED:
            raise error_answer(404, "NOT_FOUND", f"unknown collection {collection}")
        await state.guard(request)
        return collection

    @answers_rejections
    async def write(request: web.Request) -> web.Response:
        """PUT (create or replace) or DELETE one record; an idempotency key already applied
        gets its first answer again."""
        collection = await admit(request)
        key = request.headers.get("Idempotency-Key")
        external_id = request.match_info["external_id"]
        if (answer := state.replay(key)) is not None:
            return state.respond(request, [external_id], state.shape(external_id, answer[1]), answer[0])
        if request.method == "DELETE":
            if not state.holds(collection, external_id):
                raise error_answer(404, "NOT_FOUND", f"{collection}/{external_id} does not exist")
            _, ref = state.apply(collection, external_id, "delete", key, None, state.trace_of(request))
            status, answer_body = 200, {"id": ref, "externalId": external_id, "deleted": True}
        else:
            try:
                body = await request.json()
            except ValueError:
                raise error_answer(400, "BAD_JSON", "body is not JSON") from None
            if not isinstance(body, dict):
                raise error_answer(400, "BAD_JSON", "body must be an object")
            _check(state, collection, body)
            status, ref = state.apply(collection, external_id, "upsert", key, body, state.trace_of(request))
            answer_body = {"id": ref, "externalId": external_id, "collection": collection}
        state.remember(key, status, answer_body)
        return state.respond(request, [external_id], state.shape(external_id, answer_body), status)

    list_records, get = read_handlers(state, READ_API, admit)
    return [
        web.get("/api/v2/{collection}", list_records),
        web.get("/api/v2/{collection}/{external_id}", get),
        web.put("/api/v2/{collection}/{external_id}", write),
        web.delete("/api/v2/{collection}/{external_id}", write),
    ]
