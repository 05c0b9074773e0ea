"""The ONE client: one PUT (upsert) or DELETE per record, bearer token, Idempotency-Key."""

from __future__ import annotations

import asyncio
from typing import Any

from syncflow.errors import TransientTargetError
from syncflow.sinks.targets.base import Delivery, DeliveryResult, TargetClient, body_text, error_for


def one_error_parts(body: Any) -> tuple[str, list[tuple[str, str]]]:
    """(reason, missing references) from a ONE error body {"error": {"code", "message", ...}}."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return body_text(body), []
    reason = f"{err.get('code', '')}: {err.get('message', '')}"
    if details := err.get("details"):
        reason += " " + ", ".join(f"{d.get('field')} {d.get('issue')}" for d in details if isinstance(d, dict))
    missing = [(m.get("collection", "?"), m.get("externalId", "?")) for m in err.get("missing") or [] if isinstance(m, dict)]
    return reason, missing


class OneClient(TargetClient):
    name = "one"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}"}

    async def deliver(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        return list(await asyncio.gather(*(self._one(d) for d in deliveries)))

    async def _one(self, d: Delivery) -> DeliveryResult:
        path = f"/api/v2/{d.resource}/{d.entity_id}"
        headers = {"Idempotency-Key": d.idempotency_key}
        try:
            if d.op == "delete":
                status, body, resp_headers = await self.call("DELETE", path, headers=headers)
                if status == 404:  # already gone: the delete's effect holds
                    return DeliveryResult(d, target_ref=None)
            else:
                status, body, resp_headers = await self.call("PUT", path, json_body=d.payload, headers=headers)
        except TransientTargetError as exc:
            return DeliveryResult(d, error=exc)
        reason, missing = one_error_parts(body)
        error = error_for(status, reason, retry_after=resp_headers.get("Retry-After"), missing=missing)
        if error is not None:
            return DeliveryResult(d, error=error)
        return DeliveryResult(d, target_ref=body.get("id") if isinstance(body, dict) else None)
