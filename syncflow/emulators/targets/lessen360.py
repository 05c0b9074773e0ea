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

from syncflow.emulators.targets.core import (
    EmulatorState,
    ReadApi,
    Rejection,
    answers_rejections,
    error_answer,
    missing_fields,
    read_handlers,
)

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


READ_API = ReadApi(page_size="page_size", page_token="page_token", items="data", next_token="next_page_token",
                   external_id="external_id", updated_at="updated_at", bad_query="validation_failed",
                   not_found="not_found", names_bad_fields=True)


def _check(state: EmulatorState, resource: str, data: dict[str, Any]) -> None:
    if absent := missing_fields(REQUIRED[resource], data):
        raise error_answer(400, "validation_failed", "required field(s) missing", fields={f: "is required" for f in absent})
    if missing := state.unknown_references(REFERENCES.get(resource, {}), data):
        raise error_answer(422, "reference_not_found", "a referenced record is unknown",
                           missing=[{"resource": r, "external_id": i} for r, i in missing])


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
            raise error_answer(404, "unknown_resource", f"unknown resource {resource!r}")
        if not external_id:
            raise error_answer(400, "validation_failed", "external_id is required", fields={"external_id": "is required"})
        if kind == "delete":
            if not state.holds(resource, external_id):
                raise error_answer(404, "not_found", f"{resource}/{external_id} does not exist")
            status, ref = state.apply(resource, external_id, "delete", key, None, trace)
        elif kind == "upsert":
            data = op.get("data")
            if not isinstance(data, dict):
                raise error_answer(400, "validation_failed", "data must be an object", fields={"data": "must be an object"})
            _check(state, resource, data)
            status, ref = state.apply(resource, external_id, "upsert", key, data, trace)
        else:
            raise error_answer(400, "validation_failed", f"unknown op {kind!r}", fields={"op": "upsert or delete"})
    except Rejection as r:
        return r.status, r.body
    body = {"id": ref, "external_id": external_id, "resource": resource}
    state.remember(key, status, body)
    return status, body


def routes(state: EmulatorState, api_key: str) -> list[web.RouteDef]:
    def authorize(request: web.Request) -> None:
        if (problem := state.credential_problem(request, "X-Api-Key", api_key, "X-Api-Key")) is not None:
            raise error_answer(401, "unauthorized", problem)

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
                raise error_answer(400, "bad_json", "body is not JSON") from None
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
            raise error_answer(400, "bad_json", "body is not JSON") from None
        ops = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(ops, list) or not ops or len(ops) > MAX_BATCH:
            raise error_answer(400, "validation_failed", f"operations must be a list of 1..{MAX_BATCH}")
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

    async def admit(request: web.Request) -> str:
        """Authorized, a known resource, within the rate limit: the resource."""
        authorize(request)
        resource = request.match_info["resource"]
        if resource not in REQUIRED:
            raise error_answer(404, "unknown_resource", f"unknown resource {resource!r}")
        await state.guard(request)
        return resource

    list_records, get = read_handlers(state, READ_API, admit)
    return [
        web.get("/v1/{resource}", list_records),
        web.get("/v1/{resource}/{external_id}", get),
        web.put("/v1/{resource}/{external_id}", single),
        web.delete("/v1/{resource}/{external_id}", single),
        web.post("/v1/batch", batch),
    ]
