"""What every source emulator shares: fault injection (latency, 5xx, timeouts, malformed
bodies, auth failures) and the `/_emulator/` control and inspection API that tests, the
demo and the checker use to drive a source and to know the truth about it."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import Entity, World, apply_changes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE_KEY: web.AppKey["EmulatorState"] = web.AppKey("emulator_state")


@dataclass
class Faults:
    """Fault injection settings; rates are probabilities per API request."""

    latency_ms: int = 0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    malformed_rate: float = 0.0
    auth_fail: bool = False
    timeout_s: float = 30.0  # how long a "timed out" request hangs


@dataclass
class EmulatorState:
    source: str
    world: World
    api_key: str
    faults: Faults = field(default_factory=Faults)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    stats: Counter[str] = field(default_factory=Counter)

    def entities(self, entity_type: str, property_code: str | None = None) -> list[Entity]:
        """This source's records of one type (of one property, when given) in feed order:
        modified time, then id."""
        chosen = self.world.of(self.source, entity_type)
        if property_code is not None:
            chosen = [e for e in chosen if e.data["property_code"] == property_code]
        return sorted(chosen, key=lambda e: (e.modified_ms, e.source_id))


def fault_middleware(unauthorized: Callable[[web.Request, "EmulatorState"], web.StreamResponse | None]) -> Any:
    """Apply the configured faults to every API request (never to /_emulator/), then the
    source's own auth check: `unauthorized` returns the source's auth error or None."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        state = request.app[STATE_KEY]
        faults = state.faults
        state.stats["requests"] += 1
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.timeout_rate and state.rng.random() < faults.timeout_rate:
            state.stats["timeouts"] += 1
            await asyncio.sleep(faults.timeout_s)
            return web.Response(status=504, text="gateway timeout")
        if faults.error_rate and state.rng.random() < faults.error_rate:
            state.stats["errors"] += 1
            return web.Response(status=503, text="service unavailable")
        denied = unauthorized(request, state)
        if faults.auth_fail or denied is not None:
            state.stats["auth_failures"] += 1
            if denied is None:
                denied = unauthorized(request, _denying(state))
            assert denied is not None
            return denied
        response = await handler(request)
        if faults.malformed_rate and isinstance(response, web.Response) and response.body \
                and state.rng.random() < faults.malformed_rate:
            state.stats["malformed"] += 1
            body = bytes(response.body)  # type: ignore[arg-type]
            return web.Response(status=200, body=body[: len(body) // 2], content_type=response.content_type)
        return response

    return middleware


def _denying(state: EmulatorState) -> EmulatorState:
    """A copy of the state whose key matches nothing, to build the source's auth error."""
    return EmulatorState(state.source, state.world, api_key="\x00never\x00", faults=state.faults, rng=state.rng)


def truth(entity: Entity, world: World) -> dict[str, Any]:
    key = (entity.source, entity.entity_type, entity.source_id)
    return {"entity_type": entity.entity_type, "source_id": entity.source_id, "deleted": entity.deleted,
            "invalid": entity.invalid, "invalid_ever": key in world.invalid_ever,
            "modified_ms": entity.modified_ms, "record": render(entity)}


async def get_records(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    entity_type = request.query.get("entity_type")
    records = [truth(e, state.world) for e in state.world.of(state.source, entity_type)]
    return web.json_response({"source": state.source, "clock_ms": state.world.clock_ms, "records": records})


async def post_changes(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _json_body(request)
    count = body.get("count", 1)
    if not isinstance(count, int) or count < 0:
        return web.json_response({"error": "count must be a non-negative integer"}, status=400)
    changed = apply_changes(state.world, state.source, count)
    return web.json_response({"clock_ms": state.world.clock_ms, "changed": [
        {"entity_type": e.entity_type, "source_id": e.source_id, "deleted": e.deleted} for e in changed]})


async def post_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _json_body(request)
    known = set(asdict(Faults()))
    unknown = sorted(set(body) - known)
    if unknown:
        return web.json_response({"error": f"unknown fault settings: {', '.join(unknown)}"}, status=400)
    state.faults = Faults(**{**asdict(Faults()), **body})
    return web.json_response(asdict(state.faults))


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[STATE_KEY].faults))


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response({"source": state.source, **state.stats, "changes_applied": state.world.changes_applied})


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def make_app(state: EmulatorState,
             unauthorized: Callable[[web.Request, EmulatorState], web.StreamResponse | None]) -> web.Application:
    """An application with the fault middleware and the control routes; the source adds
    its API routes."""
    app = web.Application(middlewares=[fault_middleware(unauthorized)])
    app[STATE_KEY] = state
    app.router.add_get("/_emulator/records", get_records)
    app.router.add_post("/_emulator/changes", post_changes)
    app.router.add_get("/_emulator/faults", get_faults)
    app.router.add_post("/_emulator/faults", post_faults)
    app.router.add_get("/_emulator/stats", get_stats)
    return app
