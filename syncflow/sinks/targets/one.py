"""The ONE client: one PUT (upsert) or DELETE per record, bearer token, Idempotency-Key, and
the record's trace (`traceparent`, `X-Request-Id`)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from syncflow.errors import BadAnswerError, SyncflowError, TargetError
from syncflow.sinks.targets.base import Delivery, DeliveryResult, RecordPage, TargetClient, TargetRecord, body_text, error_for, readable, target_ref_of


def one_error_parts(body: Any) -> tuple[str, list[tuple[str, str]]]:
    """(reason, missing references) from a ONE error body {"error": {"code", "message", ...}};
    any other body (text, HTML, another shape) is the reason as it is."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return body_text(body), []
    reason = f"{err.get('code', '')}: {err.get('message', '')}"
    details = err.get("details")
    if isinstance(details, list) and details:
        reason += " " + ", ".join(f"{d.get('field')} {d.get('issue')}" for d in details if isinstance(d, dict))
    missing = err.get("missing")
    refs = [(str(m.get("collection", "?")), str(m.get("externalId", "?")))
            for m in (missing if isinstance(missing, list) else []) if isinstance(m, dict)]
    return readable(reason), refs


class OneClient(TargetClient):
    name = "one"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}"}

    async def deliver(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        return list(await asyncio.gather(*(self._one(d) for d in deliveries)))

    async def _one(self, d: Delivery) -> DeliveryResult:
        path = f"/api/v2/{d.resource}/{d.entity_id}"
        headers = {"Idempotency-Key": d.idempotency_key, **d.trace_headers()}
        try:
            if d.op == "delete":
                answer = await self.call("DELETE", path, headers=headers)
                if answer.status == 404:  # already gone: the delete's effect holds
                    return DeliveryResult(d, target_ref=None)
            else:
                answer = await self.call("PUT", path, json_body=d.payload, headers=headers)
        except TargetError as exc:  # no answer, or no token to call with
            return DeliveryResult(d, error=exc)
        if not 200 <= answer.status < 300:  # the error body is read only when there is an error
            reason, missing = one_error_parts(answer.body)
            error = error_for(answer.status, reason, retry_after=answer.headers.get("Retry-After"), missing=missing)
            return DeliveryResult(d, error=error)
        if answer.problem is not None:
            return DeliveryResult(d, error=answer.unreadable(self.name))
        if not isinstance(answer.body, dict):
            return DeliveryResult(d, error=BadAnswerError(
                f"one answered {answer.status} with JSON that is not an object: {body_text(answer.body)}", answer.status))
        try:
            return DeliveryResult(d, target_ref=target_ref_of(answer.body.get("id")))
        except SyncflowError as exc:
            return DeliveryResult(d, error=exc)

    # -- the read side ------------------------------------------------------------------------
    async def read_page(self, resource: str, cursor: str | None, limit: int) -> RecordPage:
        query = urlencode({"limit": limit, **({"cursor": cursor} if cursor else {})})
        body = await self.read_json(f"/api/v2/{quote(resource)}?{query}")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BadAnswerError(f"one answered a page of {resource} without an items list: {body_text(body)}")
        return RecordPage([one_record(i) for i in items], body.get("nextCursor") or None)

    async def read_record(self, resource: str, external_id: str) -> TargetRecord | None:
        body = await self.read_json(f"/api/v2/{quote(resource)}/{quote(external_id, safe='')}", missing_ok=True)
        return None if body is None else one_record(body)


def one_record(item: Any) -> TargetRecord:
    """A ONE record {"id", "externalId", "version", "deleted", "data"}."""
    if not isinstance(item, dict) or not isinstance(item.get("externalId"), str):
        raise BadAnswerError(f"one answered a record without an externalId: {body_text(item)}")
    version, data = item.get("version"), item.get("data")
    return TargetRecord(item["externalId"], version if isinstance(version, int) else None, bool(item.get("deleted")),
                        data if isinstance(data, dict) else None, target_ref_of(item.get("id")))
