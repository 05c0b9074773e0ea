"""The Lessen360 client: records go in batches through POST /v1/batch (X-Api-Key); the answer
carries one result per operation, so one batch can mix successes and typed errors."""

from __future__ import annotations

import asyncio
from typing import Any

from syncflow.errors import TransientTargetError
from syncflow.sinks.targets.base import Delivery, DeliveryResult, TargetClient, body_text, error_for


def lessen_error_parts(body: Any) -> tuple[str, list[tuple[str, str]]]:
    """(reason, missing references) from a Lessen360 error body {"error": {"code", ...}}."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return body_text(body), []
    reason = f"{err.get('code', '')}: {err.get('message', '')}"
    if fields := err.get("fields"):
        reason += " " + ", ".join(f"{k} {v}" for k, v in fields.items())
    missing = [(m.get("resource", "?"), m.get("external_id", "?")) for m in err.get("missing") or [] if isinstance(m, dict)]
    return reason, missing


def batch_operation(d: Delivery) -> dict[str, Any]:
    op: dict[str, Any] = {"op": d.op, "resource": d.resource, "external_id": d.entity_id, "idempotency_key": d.idempotency_key}
    if d.op != "delete":
        op["data"] = d.payload
    return op


class Lessen360Client(TargetClient):
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
            status, body, headers = await self.call("POST", "/v1/batch", json_body={"operations": [batch_operation(d) for d in chunk]})
        except TransientTargetError as exc:
            return [DeliveryResult(d, error=exc) for d in chunk]
        results = body.get("results") if isinstance(body, dict) else None
        if status != 200 or not isinstance(results, list) or len(results) != len(chunk):
            reason, missing = lessen_error_parts(body)
            error = error_for(status if status != 200 else 502, reason, retry_after=headers.get("Retry-After"), missing=missing)
            return [DeliveryResult(d, error=error) for d in chunk]
        return [self._result(d, r) for d, r in zip(chunk, results)]

    @staticmethod
    def _result(d: Delivery, r: dict[str, Any]) -> DeliveryResult:
        status = int(r.get("http_status", 200 if r.get("status") == "ok" else 500))
        if d.op == "delete" and status == 404:  # already gone: the delete's effect holds
            return DeliveryResult(d, target_ref=None)
        reason, missing = lessen_error_parts(r)
        error = error_for(status, reason, missing=missing)
        return DeliveryResult(d, error=error) if error else DeliveryResult(d, target_ref=r.get("id"))
