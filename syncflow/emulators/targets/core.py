"""What every emulated target system shares: the faults it can inject, its own rate limit,
idempotency keys, the record of applied requests and the current state per entity.

The HTTP formats differ per target (one.py, lessen360.py); the behaviour a sync-out worker
must cope with is the same, so it lives here once."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import unquote

from aiohttp import BasicAuth, web


# Answer modes: how a success answer about one record (by external id) is spoiled after the
# write was applied — what a misbehaving target, proxy or gateway answers.
BODY_MODES: dict[str, str] = {
    "bad_charset": "200 whose body is not valid in the charset it declares (utf-8)",
    "html": "200 with an HTML page where JSON was expected",
    "huge": "200 with a JSON body of more than 2 MiB",
    "odd_status": "status 999 with the usual body",
    "garbage_status": "a status line that is not HTTP, then the connection closes",
}
ITEM_MODES: dict[str, str] = {
    "long_ref": "the target's id for the record is 320 characters long",
    "item_not_object": "the record's answer (a batch result) is a string, not an object",
    "item_text_status": "the record's batch result has a non-numeric http_status",
    "item_odd_status": "the record's batch result has http_status 999",
    "item_wrong_index": "the record's batch result names another operation's index",
}
ANSWER_MODES = {**BODY_MODES, **ITEM_MODES}
HUGE_BYTES = 2 * 1024 * 1024 + 100


@dataclass
class Faults:
    """Injected misbehaviour. Rates are probabilities per service request (0..1)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # answer 5xx
    timeout_rate: float = 0.0  # hang for hang_s (longer than any sane client timeout)
    reset_rate: float = 0.0  # drop the connection without an answer
    hang_s: float = 30.0
    fail_next: int = 0  # the next N service requests answer 503, deterministically
    rate_limit_per_minute: float = 0.0  # the target's own limit (0 = none) → 429
    retry_after_s: float = 1.0
    force_429_s: float = 0.0  # answer 429 to everything for this many seconds from now
    next_429: int = 0  # the next N service requests answer 429, deterministically
    # external id → answer mode (ANSWER_MODES): every success answer about that record is spoiled
    answer_modes: dict[str, str] = field(default_factory=dict)
    # an origin (http://host:port): every service and token request that passed authentication
    # is answered with redirect_status and Location <redirect_to><the request's path>
    redirect_to: str = ""
    redirect_status: int = 307

    def update(self, values: dict[str, Any]) -> None:
        """Apply a POST /_emulator/faults body; unknown names and answer modes are refused."""
        known = {f.name: f.type for f in fields(self)}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}")
            if name == "answer_modes":
                if not isinstance(value, dict) or any(m not in ANSWER_MODES for m in value.values()):
                    raise ValueError(f"answer_modes maps external ids to one of {', '.join(ANSWER_MODES)}")
                self.answer_modes = {str(k): str(v) for k, v in value.items()}
            elif name == "redirect_to":
                self.redirect_to = str(value).rstrip("/")
            elif name == "redirect_status" and not 300 <= int(value) < 400:
                raise ValueError("redirect_status is a 3xx status")
            else:
                setattr(self, name, int(value) if name in ("fail_next", "next_429", "redirect_status") else float(value))


@dataclass
class OAuth2Client:
    """The one OAuth2 client the emulator knows (client credentials grant) and how long the
    tokens it issues live."""

    client_id: str
    client_secret: str
    token_ttl_s: float = 300.0


@dataclass
class Applied:
    """One request that changed the target's state."""

    entity_type: str
    external_id: str
    op: str  # upsert | delete
    version: int | None
    idempotency_key: str | None
    time: float
    payload: dict[str, Any] | None
    target_ref: str
    traceparent: str | None = None  # the trace the write came with (header, or the batch operation's)
    request_id: str | None = None


class Rejection(Exception):
    """A request the emulator answers with an error; `body` is already in the target's format."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}
        super().__init__(f"{status} {body}")


Handler = Callable[[web.Request], Awaitable[web.Response]]


def error_answer(status: int, code: str, message: str, **extra: Any) -> Rejection:
    """An error in the envelope both target APIs use: {"error": {"code", "message", ...}}."""
    return Rejection(status, {"error": {"code": code, "message": message, **extra}})


def missing_fields(required: Iterable[str], body: dict[str, Any]) -> list[str]:
    """The required fields a body leaves out or empty."""
    return [f for f in required if body.get(f) in (None, "")]


def answers_rejections(handler: Handler) -> Handler:
    """A request handler whose Rejection becomes the target's own error answer."""

    @functools.wraps(handler)
    async def answered(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except Rejection as r:
            return web.json_response(r.body, status=r.status, headers=r.headers)

    return answered


def version_from_key(key: str | None) -> int | None:
    """syncflow's idempotency key is `entity_id:version`; a target only sees an opaque key,
    the emulator reads the version back to check ordering."""
    if not key or ":" not in key:
        return None
    tail = key.rsplit(":", 1)[1].split("/", 1)[0]  # a forced resend: `entity_id:version/<resend id>`
    return int(tail) if tail.isdigit() else None


@dataclass
class EntityState:
    version: int | None
    target_ref: str
    deleted: bool = False
    payload: dict[str, Any] | None = None  # the body of the last upsert (None once deleted)
    updated_at: float = 0.0


TAMPER_ACTIONS = ("lose", "corrupt", "rollback")


@dataclass
class EmulatorState:
    """The target's memory. One per emulator; reset by POST /_emulator/reset."""

    name: str
    ref_prefix: str
    faults: Faults = field(default_factory=Faults)
    received: list[Applied] = field(default_factory=list)
    entities: dict[tuple[str, str], EntityState] = field(default_factory=dict)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    out_of_order: list[dict[str, Any]] = field(default_factory=list)
    oauth2: OAuth2Client | None = None  # set: service calls need a bearer token it issued
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    _tokens: float = 0.0
    _tokens_at: float = 0.0
    _forced_429_until: float = 0.0

    def reset(self) -> None:
        self.faults = Faults()
        self.received.clear()
        self.entities.clear()
        self.answers.clear()
        self.counters.clear()
        self.out_of_order.clear()
        self.access_tokens.clear()
        self._forced_429_until = 0.0

    def set_faults(self, values: dict[str, Any]) -> None:
        self.faults.update(values)
        if "force_429_s" in values:
            self._forced_429_until = time.monotonic() + float(values["force_429_s"])
        if "rate_limit_per_minute" in values:
            self._tokens, self._tokens_at = self._capacity(), time.monotonic()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def holds(self, entity_type: str, external_id: str) -> bool:
        entity = self.entities.get((entity_type, external_id))
        return entity is not None and not entity.deleted

    def unknown_references(self, references: dict[str, str], body: dict[str, Any]) -> list[tuple[str, str]]:
        """(kind, external id) of each record the body references (field → kind) that the
        target does not hold."""
        return [(kind, body[f]) for f, kind in references.items() if body.get(f) and not self.holds(kind, body[f])]

    # -- OAuth2 client credentials ------------------------------------------------------------
    async def token_endpoint(self, request: web.Request) -> web.Response:
        """POST <prefix>/oauth/token (RFC 6749 §4.4): the client authenticates with HTTP Basic
        or client_id/client_secret in the form; answers a bearer token living token_ttl_s."""
        self.count("token_requests")
        if self.oauth2 is None:
            return web.json_response({"error": "unsupported_grant_type", "error_description": "no OAuth2 here"}, status=400)
        form = await request.post()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                basic = BasicAuth.decode(header)
                client_id, secret = unquote(basic.login), unquote(basic.password)
            except ValueError:
                client_id = secret = None
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if (client_id, secret) != (self.oauth2.client_id, self.oauth2.client_secret):
            self.count("token_refusals")
            return web.json_response({"error": "invalid_client"}, status=401, headers={"WWW-Authenticate": 'Basic realm="token"'})
        try:
            self.redirect(request)
        except Rejection as r:
            return web.json_response(r.body, status=r.status, headers=r.headers)
        token = secrets.token_urlsafe(24)
        self.access_tokens[token] = time.monotonic() + self.oauth2.token_ttl_s
        self.count("tokens_issued")
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": self.oauth2.token_ttl_s},
                                 headers={"Cache-Control": "no-store"})

    def bearer_problem(self, request: web.Request) -> str | None:
        """Why the request's bearer token is refused (unknown, expired), None when it is good."""
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        expires = self.access_tokens.get(token)
        if expires is None:
            problem = "missing or unknown bearer token"
        elif time.monotonic() >= expires:
            problem = "expired bearer token"
        else:
            return None
        self.count("tokens_refused")
        return problem

    def credential_problem(self, request: web.Request, header: str, expected: str, what: str) -> str | None:
        """Why a service call is refused, None when it may go on: with an OAuth2 client, its
        bearer token's problem; otherwise `header` must hold the static credential `what`."""
        if self.oauth2 is not None:
            return self.bearer_problem(request)
        return None if request.headers.get(header) == expected else f"missing or invalid {what}"

    def revoke_tokens(self) -> None:
        """Forget every token issued (as a target does after a key rotation)."""
        self.access_tokens.clear()

    # -- faults applied to every service request (per HTTP request, before any operation) --
    async def guard(self, request: web.Request, cost: int = 1) -> None:
        """Raise Rejection for 429/5xx, or misbehave (latency, hang, reset) as configured."""
        self.count("requests")
        f = self.faults
        self.redirect(request)
        if f.next_429 > 0 or time.monotonic() < self._forced_429_until or not self._take_tokens(cost):
            f.next_429 = max(0, f.next_429 - 1)
            self.count("rate_limited")
            raise Rejection(429, {"message": "rate limit exceeded"}, {"Retry-After": f"{f.retry_after_s:g}"})
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        if f.fail_next > 0:
            f.fail_next -= 1
            self.count("errors_5xx")
            raise Rejection(503, {"message": "service unavailable (injected)"})
        roll = random.random()
        if roll < f.reset_rate:
            self.count("resets")
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        roll -= f.reset_rate
        if roll < f.timeout_rate:
            self.count("timeouts")
            await asyncio.sleep(f.hang_s)
            raise Rejection(504, {"message": "gateway timeout (injected)"})
        roll -= f.timeout_rate
        if roll < f.error_rate:
            self.count("errors_5xx")
            raise Rejection(random.choice([500, 502, 503]), {"message": "internal error (injected)"})

    def redirect(self, request: web.Request) -> None:
        """Raise the redirect Faults.redirect_to asks for (nothing when it is empty)."""
        if self.faults.redirect_to:
            self.count("redirects")
            location = self.faults.redirect_to + request.path_qs
            raise Rejection(self.faults.redirect_status, {"message": f"moved to {location}"}, {"Location": location})

    def _capacity(self) -> float:
        return max(1.0, self.faults.rate_limit_per_minute / 60.0)

    def _take_tokens(self, cost: int) -> bool:
        rpm = self.faults.rate_limit_per_minute
        if rpm <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self._capacity(), self._tokens + (now - self._tokens_at) * rpm / 60.0)
        self._tokens_at = now
        if self._tokens + 1e-9 < cost:
            return False
        self._tokens -= cost
        return True

    # -- one operation ----------------------------------------------------------------------
    def replay(self, key: str | None) -> tuple[int, dict[str, Any]] | None:
        """The stored answer for an idempotency key already applied (no second effect)."""
        if key and key in self.answers:
            self.count("replays")
            return self.answers[key]
        return None

    def apply(self, entity_type: str, external_id: str, op: str, key: str | None, payload: dict[str, Any] | None,
              trace: dict[str, str | None] | None = None) -> tuple[int, str]:
        """Change the state; returns (HTTP status, the target's own id). `trace`: the
        traceparent and request_id the write came with, kept in `received`."""
        version = version_from_key(key)
        current = self.entities.get((entity_type, external_id))
        if current is not None and version is not None and current.version is not None and version < current.version:
            self.out_of_order.append({"entity_type": entity_type, "external_id": external_id, "version": version, "after": current.version})
        created = current is None or current.deleted
        ref = current.target_ref if current is not None else f"{self.ref_prefix}-{uuid.uuid4().hex[:12]}"
        self.entities[(entity_type, external_id)] = EntityState(version, ref, deleted=op == "delete",
                                                                payload=payload if op != "delete" else None,
                                                                updated_at=time.time())
        trace = trace or {}
        self.received.append(Applied(entity_type, external_id, op, version, key, time.time(), payload, ref,
                                     trace.get("traceparent"), trace.get("request_id")))
        self.count("applied")
        return (201 if created and op != "delete" else 200), ref

    def remember(self, key: str | None, status: int, body: dict[str, Any]) -> None:
        if key and 200 <= status < 300:
            self.answers[key] = (status, body)

    @staticmethod
    def trace_of(request: web.Request) -> dict[str, str | None]:
        """The trace headers of a request (W3C traceparent, X-Request-Id)."""
        return {"traceparent": request.headers.get("traceparent"), "request_id": request.headers.get("X-Request-Id")}

    # -- spoiled answers (Faults.answer_modes) -------------------------------------------------
    def shape(self, external_id: str, answer: dict[str, Any]) -> Any:
        """One record's success answer (a whole body, or one batch result) as its item mode
        spoils it; unchanged when it has none."""
        mode = self.faults.answer_modes.get(external_id)
        if mode not in ITEM_MODES:
            return answer
        self.count("bad_answers")
        if mode == "long_ref":
            return {**answer, "id": f"{answer.get('id', '')}-" + "x" * 300}
        if mode == "item_not_object":
            return "ok"
        if mode == "item_text_status":
            return {**answer, "http_status": "fine", "status": "mostly"}
        if mode == "item_odd_status":
            return {**answer, "http_status": 999}
        return {**answer, "index": int(answer.get("index", 0)) + 1000}  # item_wrong_index

    def respond(self, request: web.Request, external_ids: Iterable[str], body: Any, status: int) -> web.Response:
        """A success answer about these records, spoiled as the first body mode among them says."""
        mode = next((m for i in external_ids if (m := self.faults.answer_modes.get(i)) in BODY_MODES), None)
        if mode is None:
            return web.json_response(body, status=status)
        self.count("bad_answers")
        if mode == "bad_charset":
            raw = json.dumps(body).encode()[:-1] + b', "note": "caf\xe9 \xff\xfe"}'
            return web.Response(body=raw, status=status, headers={"Content-Type": "application/json; charset=utf-8"})
        if mode == "html":
            return web.Response(text="<html><body><h1>Welcome</h1><p>Please sign in.</p></body></html>",
                                status=200, content_type="text/html")
        if mode == "huge":
            return web.json_response({**body, "padding": "x" * HUGE_BYTES}, status=status)
        if mode == "odd_status":
            return web.json_response(body, status=999)
        if request.transport is not None:  # garbage_status
            request.transport.write(b"HTTP/1.1 abc Fine\r\nContent-Length: 2\r\n\r\n{}")
            request.transport.close()
        raise asyncio.CancelledError()

    # -- the read side ------------------------------------------------------------------------
    def page(self, entity_type: str, after: str | None, limit: int) -> tuple[list[tuple[str, EntityState]], str | None]:
        """A page of the records of one collection, by external id (deleted ones included,
        flagged), after the external id `after`; the cursor of the next page or None."""
        ids = sorted(i for (t, i) in self.entities if t == entity_type and (after is None or i > after))
        chosen = ids[:limit]
        more = len(ids) > limit
        return [(i, self.entities[(entity_type, i)]) for i in chosen], (chosen[-1] if more and chosen else None)

    # -- drift behind syncflow's back (POST /_emulator/tamper) ---------------------------------
    def tamper(self, action: str, entity_type: str, external_id: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        """Change a record without a request through the API (nothing lands in `received`):
        `lose` forgets it, `corrupt` changes its content keeping its version (`fields` merged
        into the payload; by default one field is changed), `rollback` puts back an older
        version's content and version (the latest applied one below the current version).
        Raises LookupError for an unknown record, ValueError for what cannot be done."""
        if action not in TAMPER_ACTIONS:
            raise ValueError(f"action is one of {', '.join(TAMPER_ACTIONS)}")
        key = (entity_type, external_id)
        current = self.entities.get(key)
        if current is None:
            raise LookupError(f"{entity_type}/{external_id} is not held")
        self.count(f"tampered_{action}")
        if action == "lose":
            del self.entities[key]
            return {"action": action, "entity_type": entity_type, "external_id": external_id}
        if action == "corrupt":
            if current.payload is None:
                raise ValueError(f"{entity_type}/{external_id} has no content to corrupt (deleted)")
            changes = fields if fields else {"name": f"{current.payload.get('name') or ''} (edited at the target)"}
            current.payload = {**current.payload, **changes}
            current.updated_at = time.time()
            return {"action": action, "entity_type": entity_type, "external_id": external_id,
                    "version": current.version, "fields": sorted(changes)}
        older = [a for a in self.received if (a.entity_type, a.external_id) == key and a.version is not None
                 and current.version is not None and a.version < current.version]
        if not older:
            raise ValueError(f"{entity_type}/{external_id} has no older version to roll back to")
        back = older[-1]
        current.version, current.deleted, current.payload = back.version, back.op == "delete", back.payload
        current.updated_at = time.time()
        return {"action": action, "entity_type": entity_type, "external_id": external_id, "version": back.version}

    # -- inspection ---------------------------------------------------------------------------
    def received_json(self) -> list[dict[str, Any]]:
        return [asdict(a) for a in self.received]

    def state_json(self) -> dict[str, Any]:
        return {
            "entities": {f"{t}/{i}": asdict(e) for (t, i), e in self.entities.items()},
            "counters": dict(self.counters),
            "out_of_order": list(self.out_of_order),
            "faults": asdict(self.faults),
        }


# -- the read side both targets serve, each in its own names --------------------------------
@dataclass(frozen=True)
class ReadApi:
    """How one target API names its read side: a page of a kind's records by external id,
    and one record."""

    page_size: str  # query parameters
    page_token: str
    items: str  # page answer fields
    next_token: str
    external_id: str  # record fields
    updated_at: str
    bad_query: str  # error codes
    not_found: str
    names_bad_fields: bool = False  # a bad page size is also named under "fields"

    def record(self, external_id: str, e: EntityState) -> dict[str, Any]:
        """{"id", <external id>, "version", "deleted", <updated at>, "data"}: version is the one
        the last write's idempotency key named, data its body (None once deleted)."""
        return {"id": e.target_ref, self.external_id: external_id, "version": e.version, "deleted": e.deleted,
                self.updated_at: e.updated_at, "data": e.payload}


def read_handlers(state: EmulatorState, api: ReadApi, admit: Callable[[web.Request], Awaitable[str]]) -> tuple[Handler, Handler]:
    """The list and get handlers of a target; `admit` authorizes the call, applies the
    faults and returns the kind of record the path names (or raises a Rejection)."""

    @answers_rejections
    async def list_records(request: web.Request) -> web.Response:
        kind = await admit(request)
        try:
            size = max(1, min(1000, int(request.query.get(api.page_size, "100"))))
        except ValueError:
            extra = {"fields": {api.page_size: "a number"}} if api.names_bad_fields else {}
            raise error_answer(400, api.bad_query, f"{api.page_size} must be a number", **extra) from None
        page, token = state.page(kind, request.query.get(api.page_token) or None, size)
        return web.json_response({api.items: [api.record(i, e) for i, e in page], api.next_token: token})

    @answers_rejections
    async def get(request: web.Request) -> web.Response:
        kind = await admit(request)
        external_id = request.match_info["external_id"]
        entity = state.entities.get((kind, external_id))
        if entity is None:
            raise error_answer(404, api.not_found, f"{kind}/{external_id} does not exist")
        return web.json_response(api.record(external_id, entity))

    return list_records, get
