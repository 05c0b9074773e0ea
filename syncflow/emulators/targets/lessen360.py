"""The Lessen360 emulator: snake_case JSON, an `X-Api-Key` header (or, when the emulator has
an OAuth2 client, a bearer token its token endpoint issued), single-record endpoints
and a batch endpoint that applies operations in order and answers for each one.

    PUT    /v1/{resource}/{external_id}   upsert one record (Idempotency-Key header)
    DELETE /v1/{resource}/{external_id}   delete one record
    GET    /v1/{resource}?page_size=&page_token=   {"data": [record], "next_page_token"}
    GET    /v1/{resource}/{external_id}   one record (404 when unknown)
           record: {"id", "external_id", "version", "deleted", "updated_at", "data"}; version is
           the one the last write's idempotency key named, data its body (null once deleted)
    POST   /v1/batch   {"operations": [{"op": "upsert"|"delete", "resource", "external_id",
                        "idempotency_key", "data", "traceparent", "request_id"}]}
           → 200 {"results": [{"index", "status": "ok"|"error", "http_status", "id" | "error"}]}

Resources: locations, residents, work_orders, attachments. The whole batch counts against the
rate limit once per operation. Errors: {"error": {"code", "message", "fields" | "missing"}}.
A success about a record with an answer mode (core.ANSWER_MODES) is spoiled after the write:
its own batch result (item modes), or the whole answer (body modes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syncflow.emulators.targets.core import EmulatorState, EntityState, Rejection, answers_rejections

REQUIRED: dict[str, list[str]] = {
    "locations": ["property_code", "location_kind"],
    "residents": ["first_name", "last_name"],
    "work_orders": ["location_external_id", "trade", "state", "reported_at"],
    "attachments": ["work_order_external_id", "file_name", "file_url"],
}
REFERENCES: dict[str, dict[str, str]] = {
    "residents": {"location_external_id": "locations"},
    "work_orders": {"location_external_id": "locations", "resident_external_id": "residents"},
    "attachments": {"work_order_external_id": "work_orders"},
}
MAX_BATCH = 100


def _error(status: int, code: str, message: str, **extra: Any) -> Rejection:
    return Rejection(status, {"error": {"code": code, "message": message, **extra}})


def _check(state: EmulatorState, resource: str, data: dict[str, Any]) -> None:
    missing_fields = [f for f in REQUIRED[resource] if data.get(f) in (None, "")]
    if missing_fields:
        raise _error(400, "validation_failed", "required field(s) missing", fields={f: "is required" for f in missing_fields})
    missing = [
        {"resource": other, "external_id": data[f]}
        for f, other in REFERENCES.get(resource, {}).items()
        if data.get(f) and not state.holds(other, data[f])
    ]
    if missing:
        raise _error(422, "reference_not_found", "a referenced record is unknown", missing=missing)


def _operation(state: EmulatorState, op: dict[str, Any], call_trace: dict[str, str | None] | None = None) -> tuple[int, dict[str, Any]]:
    """Apply one operation; returns (HTTP status it would have had alone, answer body). Its
    trace: the operation's own traceparent/request_id, else the call's headers."""
    key = op.get("idempotency_key")
    trace = {"traceparent": op.get("traceparent"), "request_id": op.get("request_id")}
    if not trace["traceparent"] and not trace["request_id"]:
        trace = call_trace or {}
    if (answer := state.replay(key)) is not None:
        return answer
    try:
        resource, external_id, kind = op.get("resource"), op.get("external_id"), op.get("op", "upsert")
        if resource not in REQUIRED:
            raise _error(404, "unknown_resource", f"unknown resource {resource!r}")
        if not external_id:
            raise _error(400, "validation_failed", "external_id is required", fields={"external_id": "is required"})
        if kind == "delete":
            if not state.holds(resource, external_id):
                raise _error(404, "not_found", f"{resource}/{external_id} does not exist")
            status, ref = state.apply(resource, external_id, "delete", key, None, trace)
        elif kind == "upsert":
            data = op.get("data")
            if not isinstance(data, dict):
                raise _error(400, "validation_failed", "data must be an object", fields={"data": "must be an object"})
            _check(state, resource, data)
            status, ref = state.apply(resource, external_id, "upsert", key, data, trace)
        else:
            raise _error(400, "validation_failed", f"unknown op {kind!r}", fields={"op": "upsert or delete"})
    except Rejection as r:
        return r.status, r.body
    body = {"id": ref, "external_id": external_id, "resource": resource}
    state.remember(key, status, body)
    return status, body


def routes(state: EmulatorState, api_key: str) -> list[web.RouteDef]:
    def authorize(request: web.Request) -> None:
        if state.oauth2 is not None:  # a bearer token from the emulator's token endpoint
            if (problem := state.bearer_problem(request)) is not None:
                raise _error(401, "unauthorized", problem)
        elif request.headers.get("X-Api-Key") != api_key:
            raise _error(401, "unauthorized", "missing or invalid X-Api-Key")

    @answers_rejections
    async def single(request: web.Request) -> web.Response:
        authorize(request)
        await state.guard(request)
        op: dict[str, Any] = {
            "op": "delete" if request.method == "DELETE" else "upsert",
            "resource": request.match_info["resource"],
            "external_id": request.match_info["external_id"],
            "idempotency_key": request.headers.get("Idempotency-Key"),
        }
        if request.method != "DELETE":
            try:
                op["data"] = await request.json()
            except ValueError:
                raise _error(400, "bad_json", "body is not JSON") from None
        status, body = _operation(state, op, state.trace_of(request))
        if 200 <= status < 300:
            external_id = op["external_id"]
            return state.respond(request, [external_id], state.shape(external_id, body), status)
        return web.json_response(body, status=status)

    @answers_rejections
    async def batch(request: web.Request) -> web.Response:
        authorize(request)
        try:
            body = await request.json()
        except ValueError:
            raise _error(400, "bad_json", "body is not JSON") from None
        ops = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(ops, list) or not ops or len(ops) > MAX_BATCH:
            raise _error(400, "validation_failed", f"operations must be a list of 1..{MAX_BATCH}")
        await state.guard(request, cost=len(ops))
        results: list[Any] = []
        external_ids: list[str] = []
        for index, op in enumerate(ops):
            op = op if isinstance(op, dict) else {}
            status, answer = _operation(state, op, state.trace_of(request))
            if 200 <= status < 300:
                external_id = str(op.get("external_id"))
                external_ids.append(external_id)
                results.append(state.shape(external_id, {"index": index, "status": "ok", "http_status": status, **answer}))
            else:
                results.append({"index": index, "status": "error", "http_status": status, **answer})
        return state.respond(request, external_ids, {"results": results}, 200)

    def record(external_id: str, e: EntityState) -> dict[str, Any]:
        return {"id": e.target_ref, "external_id": external_id, "version": e.version, "deleted": e.deleted,
                "updated_at": e.updated_at, "data": e.payload}

    def resource_of(request: web.Request) -> str:
        resource = request.match_info["resource"]
        if resource not in REQUIRED:
            raise _error(404, "unknown_resource", f"unknown resource {resource!r}")
        return resource

    @answers_rejections
    async def list_records(request: web.Request) -> web.Response:
        authorize(request)
        resource = resource_of(request)
        await state.guard(request)
        try:
            size = max(1, min(1000, int(request.query.get("page_size", "100"))))
        except ValueError:
            raise _error(400, "validation_failed", "page_size must be a number", fields={"page_size": "a number"}) from None
        page, token = state.page(resource, request.query.get("page_token") or None, size)
        return web.json_response({"data": [record(i, e) for i, e in page], "next_page_token": token})

    @answers_rejections
    async def get(request: web.Request) -> web.Response:
        authorize(request)
        resource = resource_of(request)
        await state.guard(request)
        external_id = request.match_info["external_id"]
        entity = state.entities.get((resource, external_id))
        if entity is None:
            raise _error(404, "not_found", f"{resource}/{external_id} does not exist")
        return web.json_response(record(external_id, entity))

    return [
        web.get("/v1/{resource}", list_records),
        web.get("/v1/{resource}/{external_id}", get),
        web.put("/v1/{resource}/{external_id}", single),
        web.delete("/v1/{resource}/{external_id}", single),
        web.post("/v1/batch", batch),
    ]
