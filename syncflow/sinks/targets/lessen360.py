"""The Lessen360 client: records go in batches through POST /v1/batch (X-Api-Key); the answer
carries one result per operation, so one batch can mix successes and typed errors. A result
syncflow cannot read (not an object, no usable status, answering another operation) fails
only its own record. Each operation carries its record's trace (`traceparent`, `request_id`);
the call carries them as headers too when all its operations belong to one trace."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from syncflow.errors import BadAnswerError, SyncflowError, TargetError
from syncflow.tracing import REQUEST_ID, TRACEPARENT
from syncflow.sinks.targets.base import Delivery, DeliveryResult, RecordPage, TargetClient, TargetRecord, body_text, error_for, readable, target_ref_of


def lessen_error_parts(body: Any) -> tuple[str, list[tuple[str, str]]]:
    """(reason, missing references) from a Lessen360 error body {"error": {"code", ...}};
    any other body (text, HTML, another shape) is the reason as it is."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return body_text(body), []
    reason = f"{err.get('code', '')}: {err.get('message', '')}"
    fields = err.get("fields")
    if isinstance(fields, dict) and fields:
        reason += " " + ", ".join(f"{k} {v}" for k, v in fields.items())
    missing = err.get("missing")
    refs = [(str(m.get("resource", "?")), str(m.get("external_id", "?")))
            for m in (missing if isinstance(missing, list) else []) if isinstance(m, dict)]
    return readable(reason), refs


def result_status(r: dict[str, Any]) -> int | None:
    """A batch result's HTTP status: `http_status` as a whole number (or digits), else from
    `status` ("ok" → 200, "error" → 500); None when neither is usable."""
    value = r.get("http_status")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if value is None:
        return {"ok": 200, "error": 500}.get(r.get("status"))  # type: ignore[arg-type]
    return None


def batch_operation(d: Delivery) -> dict[str, Any]:
    op: dict[str, Any] = {"op": d.op, "resource": d.resource, "external_id": d.entity_id, "idempotency_key": d.idempotency_key}
    if trace := d.trace_headers():  # per operation: one batch call carries records of many traces
        op["traceparent"], op["request_id"] = trace[TRACEPARENT], trace[REQUEST_ID]
    if d.op != "delete":
        op["data"] = d.payload
    return op


def batch_trace_headers(chunk: list[Delivery]) -> dict[str, str]:
    """The call's own trace headers when all its operations belong to one trace."""
    traces = {d.trace_id for d in chunk}
    return chunk[0].trace_headers() if len(traces) == 1 else {}


class Lessen360TargetClient(TargetClient):
    name = "lessen360"

    def auth_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.settings.api_key}

    async def deliver(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        size = max(1, self.settings.batch_max)
        chunks = [deliveries[i : i + size] for i in range(0, len(deliveries), size)]
        answers = await asyncio.gather(*(self._batch(c) for c in chunks))
        return [r for rs in answers for r in rs]

    async def _batch(self, chunk: list[Delivery]) -> list[DeliveryResult]:
        try:
            answer = await self.call("POST", "/v1/batch", json_body={"operations": [batch_operation(d) for d in chunk]},
                                     headers=batch_trace_headers(chunk))
        except TargetError as exc:  # no answer, or no token to call with
            return [DeliveryResult(d, error=exc) for d in chunk]
        if answer.status != 200 or answer.problem is not None:
            reason, missing = lessen_error_parts(answer.body)
            error = error_for(answer.status, reason, retry_after=answer.headers.get("Retry-After"), missing=missing)
            if error is None:  # a success whose body cannot be read
                error = answer.unreadable(self.name) if answer.problem else BadAnswerError(
                    f"lessen360 answered the batch with {answer.status}, not 200 with results: {reason}", answer.status)
            return [DeliveryResult(d, error=error) for d in chunk]
        results = answer.body.get("results") if isinstance(answer.body, dict) else None
        if not isinstance(results, list) or len(results) != len(chunk):
            count = f"{len(results)} results" if isinstance(results, list) else "no results list"
            error = BadAnswerError(f"lessen360 answered a batch of {len(chunk)} operations with {count}: {body_text(answer.body)}", 200)
            return [DeliveryResult(d, error=error) for d in chunk]
        return [self._result(i, d, r) for i, (d, r) in enumerate(zip(chunk, results))]

    @staticmethod
    def _result(index: int, d: Delivery, r: Any) -> DeliveryResult:
        """One operation's result; anything unreadable fails this record alone."""
        if not isinstance(r, dict):
            return DeliveryResult(d, error=BadAnswerError(f"lessen360 batch result {index} is not an object: {body_text(r)}"))
        if "index" in r and r["index"] != index:
            return DeliveryResult(d, error=BadAnswerError(
                f"lessen360 batch result {index} says it answers operation {body_text(r['index'])}: {body_text(r)}"))
        status = result_status(r)
        if status is None:
            return DeliveryResult(d, error=BadAnswerError(
                f"lessen360 batch result {index} has no usable status (http_status {readable(repr(r.get('http_status')), 100)}, "
                f"status {readable(repr(r.get('status')), 100)})"))
        if d.op == "delete" and status == 404:  # already gone: the delete's effect holds
            return DeliveryResult(d, target_ref=None)
        if not 200 <= status < 300:  # the error body is read only when there is an error
            reason, missing = lessen_error_parts(r)
            return DeliveryResult(d, error=error_for(status, reason, missing=missing))
        try:
            return DeliveryResult(d, target_ref=target_ref_of(r.get("id")))
        except SyncflowError as exc:
            return DeliveryResult(d, error=exc)

    # -- the read side ------------------------------------------------------------------------
    async def read_page(self, resource: str, cursor: str | None, limit: int) -> RecordPage:
        query = urlencode({"page_size": limit, **({"page_token": cursor} if cursor else {})})
        body = await self.read_json(f"/v1/{quote(resource)}?{query}")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BadAnswerError(f"lessen360 answered a page of {resource} without a data list: {body_text(body)}")
        return RecordPage([lessen_record(i) for i in data], body.get("next_page_token") or None)

    async def read_record(self, resource: str, external_id: str) -> TargetRecord | None:
        body = await self.read_json(f"/v1/{quote(resource)}/{quote(external_id, safe='')}", missing_ok=True)
        return None if body is None else lessen_record(body)


def lessen_record(item: Any) -> TargetRecord:
    """A Lessen360 record {"id", "external_id", "version", "deleted", "data"}."""
    if not isinstance(item, dict) or not isinstance(item.get("external_id"), str):
        raise BadAnswerError(f"lessen360 answered a record without an external_id: {body_text(item)}")
    version, data = item.get("version"), item.get("data")
    return TargetRecord(item["external_id"], version if isinstance(version, int) else None, bool(item.get("deleted")),
                        data if isinstance(data, dict) else None, target_ref_of(item.get("id")))
