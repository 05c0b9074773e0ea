"""What every target client shares: one aiohttp session, timeouts, authentication (a static
key or OAuth2 client credentials), the one place a base URL and a request path are joined, and
the one mapping from an HTTP answer to a typed error, so the worker routes by error class only.

Redirects are never followed, neither by target calls nor by token requests: a write answered
by a redirect did not happen, and a credential must not travel to wherever a Location header
points (aiohttp drops `Authorization` on a cross-origin redirect, but not `X-Api-Key` or a
client secret in a form body).

Whatever a target answers — a body not valid in its charset, HTML where JSON was expected, a
body larger than `max_answer_bytes`, a status no HTTP client expects — becomes an `Answer` or
a typed error here, never an exception: one odd answer must not stop a batch."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from syncflow.errors import (
    BadAnswerError,
    DependencyNotMetError,
    PermanentTargetError,
    RateLimitedError,
    RetryLaterError,
    SyncflowError,
    TransientTargetError,
    UnusableAnswerError,
)
from syncflow.tracing import REQUEST_ID, TRACEPARENT, traceparent
from syncflow.settings import TargetSettings

DEFAULT_RETRY_AFTER_S = 1.0
REASON_MAX = 500  # characters of a target's text kept in a reason


@dataclass(frozen=True)
class Delivery:
    """One change to send: the target resource, its payload, and syncflow's identity of it."""

    entity_type: str  # canonical entity type
    entity_id: str  # canonical id, used as the record's external id at the target
    version: int
    op: str  # "upsert" | "delete"
    resource: str  # the target's name for the collection
    payload: dict[str, Any] | None
    trace_id: str | None = None  # the record's trace id, from the source to this call
    resend: str = ""  # a forced resend (heal, resync): its id, so the target applies it again

    @property
    def idempotency_key(self) -> str:
        """`entity_id:version`; a forced resend adds `/<resend id>`: the target has seen the
        plain key already and would answer it from its idempotency store without applying it."""
        return f"{self.entity_id}:{self.version}" + (f"/{self.resend}" if self.resend else "")

    def trace_headers(self) -> dict[str, str]:
        """`traceparent` (W3C, derived from the trace id; the span from the idempotency key)
        and `X-Request-Id` (the trace id as it is) for the call; none without a trace id."""
        if not self.trace_id:
            return {}
        return {TRACEPARENT: traceparent(self.trace_id, self.idempotency_key), REQUEST_ID: header_text(self.trace_id)}


@dataclass(frozen=True)
class DeliveryResult:
    """The target's answer to one delivery: its own id for the record, or a typed error."""

    delivery: Delivery
    target_ref: str | None = None
    error: SyncflowError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def header_text(value: str, limit: int = 200) -> str:
    """A value an HTTP header can carry: printable ASCII, short."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in value)
    return text[:limit]


def parse_retry_after(value: str | None, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def readable(text: str, limit: int = REASON_MAX) -> str:
    """A target's text as a reason: no NUL characters or lone surrogates (neither PostgreSQL
    nor a Kafka header can hold them), and short."""
    text = text.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def error_for(
    status: int,
    reason: str,
    *,
    retry_after: str | None = None,
    missing: list[tuple[str, str]] | None = None,
) -> SyncflowError | None:
    """The typed error for an HTTP answer (None for 2xx). `missing` lists the references the
    target says it does not hold; `reason` is the target's own explanation."""
    if 200 <= status < 300:
        return None
    reason = readable(reason)
    if status == 429:
        return RateLimitedError(f"429 rate limited: {reason}", parse_retry_after(retry_after))
    if missing:
        return DependencyNotMetError(missing)
    if status < 200 or status >= 600:
        return BadAnswerError(f"{status} is not an HTTP status a write can end with: {reason}", status)
    if 300 <= status < 400:
        return PermanentTargetError(f"{status}: a redirect is not an answer to a write (base_url or path wrong?): {reason}", status)
    if status >= 500 or status == 408:
        return TransientTargetError(f"{status}: {reason}", status)
    return PermanentTargetError(f"{status}: {reason}", status)


def json_text(body: Any) -> str:
    """A request body as JSON text (orjson: several times faster than json.dumps on a
    record's payload; every target call serializes one)."""
    return orjson.dumps(body, default=str).decode()


def body_text(body: Any) -> str:
    """Any body as a short reason."""
    return readable(body if isinstance(body, str) else json.dumps(body, default=str))


def target_ref_of(value: Any) -> str | None:
    """The target's own id from an answer: text (a number becomes text), or None when absent.
    Raises UnusableAnswerError for anything else (an object, a list, true)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise UnusableAnswerError(f"the target's id for the record is not text: {body_text(value)}")


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as read: the body parsed as JSON when it is JSON, else its text, and
    `problem` saying why it is not (None when the body is readable JSON or empty)."""

    status: int
    body: Any
    headers: dict[str, str]
    problem: str | None = None

    def unreadable(self, target: str) -> BadAnswerError:
        """The error for a success answer whose body cannot be read."""
        return BadAnswerError(f"{target} answered {self.status} but {self.problem}", self.status)


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body; False when there was more (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True


def parse_answer(status: int, raw: bytes, complete: bool, content_type: str, charset: str | None,
                 headers: dict[str, str], limit: int) -> Answer:
    """Decode in the declared charset (UTF-8 when none) and parse JSON; every way that can go
    wrong becomes `problem`, with the body's text (decoded leniently) kept for the reason."""
    encoding = charset or "utf-8"
    problem: str | None = None
    try:
        text = raw.decode(encoding)
    except LookupError:
        text, problem = raw.decode("utf-8", "replace"), f"the body declares an unknown charset {encoding!r}"
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", "replace")
        problem = f"the body is not valid {encoding} ({exc.reason} at byte {exc.start}): {readable(text, 200)}"
    if not complete:
        return Answer(status, readable(text), headers, f"the body is larger than {limit} bytes (not read)")
    if problem is not None:
        return Answer(status, readable(text), headers, problem)
    if not text.strip():
        return Answer(status, {}, headers)
    try:
        return Answer(status, json.loads(text), headers)
    except (ValueError, RecursionError):
        what = content_type or "no content type"
        return Answer(status, readable(text), headers, f"the body is not JSON ({what}): {readable(text, 200)}")


def join_url(base_url: str, path: str) -> str:
    """The URL of `path` at a target: the base URL's own path (a prefix such as /api behind a
    gateway) is kept, with exactly one slash between it and the request path."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


class OAuth2Token:
    """OAuth2 client credentials (RFC 6749 §4.4): a token fetched from the token endpoint with
    the client id and secret (HTTP Basic), kept until `oauth2_refresh_margin_s` (at most half
    its lifetime) before it expires, fetched again when it is due or when the target refused
    it. Concurrent calls share one fetch."""

    def __init__(self, settings: TargetSettings):
        assert settings.oauth2_token_url and settings.oauth2_client_id and settings.oauth2_client_secret
        self.settings = settings
        self._token: str | None = None
        self._renew_at = 0.0  # monotonic time from which the token is fetched again
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def token(self, session: aiohttp.ClientSession) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = await self._fetch(session)
                margin = min(self.settings.oauth2_refresh_margin_s, lifetime / 2)
                self._renew_at = time.monotonic() + lifetime - margin
            return self._token

    def refused(self, token: str) -> None:
        """The target answered 401 to `token`: the next call fetches another (once, even when
        several calls were refused with the same token)."""
        if self._token == token:
            self._token = None

    async def _fetch(self, session: aiohttp.ClientSession) -> tuple[str, float]:
        s = self.settings
        url = s.oauth2_token_url
        form = {"grant_type": "client_credentials"}
        if s.oauth2_scope:
            form["scope"] = s.oauth2_scope
        # RFC 6749 §2.3.1: id and secret form-urlencoded, then HTTP Basic
        secret = s.oauth2_client_secret.get_secret_value() if s.oauth2_client_secret else ""
        auth = aiohttp.BasicAuth(quote(s.oauth2_client_id or "", safe=""), quote(secret, safe=""))
        try:
            async with session.post(url, data=form, auth=auth, allow_redirects=False, headers={"Accept": "application/json"}) as resp:
                raw, complete = await read_capped(resp, s.max_answer_bytes)
                answer = parse_answer(resp.status, raw, complete, resp.content_type, resp.charset, dict(resp.headers), s.max_answer_bytes)
        except asyncio.TimeoutError as exc:
            raise TransientTargetError(f"timeout after {s.timeout_s:g}s fetching an OAuth2 token from {url}") from exc
        except aiohttp.ClientError as exc:
            raise TransientTargetError(readable(f"connection error fetching an OAuth2 token from {url}: {type(exc).__name__}: {exc}")) from exc
        self.fetches += 1
        what = f"the token endpoint {url} answered {answer.status}"
        if answer.status != 200:
            error = error_for(answer.status, body_text(answer.body), retry_after=answer.headers.get("Retry-After"))
            if isinstance(error, RetryLaterError):
                raise error
            raise PermanentTargetError(f"{what}, no token: {body_text(answer.body)}", answer.status)
        body = answer.body if isinstance(answer.body, dict) else {}
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if answer.problem is not None or not isinstance(token, str) or not token:
            raise BadAnswerError(f"{what} without a usable access_token: {answer.problem or body_text(answer.body)}", answer.status)
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise PermanentTargetError(f"{what} with token_type {body_text(body.get('token_type'))}, only bearer is supported")
        try:
            return token, max(0.0, float(lifetime))
        except (TypeError, ValueError):
            raise BadAnswerError(f"{what} with an unreadable expires_in: {body_text(lifetime)}", answer.status) from None


def payload_hash(payload: Any) -> str:
    """The content hash of a payload as syncflow sends it or a target returns it (canonical
    JSON: sorted keys, no spaces), so the two sides compare whatever their key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class TargetRecord:
    """One record as a target holds it (its read side): the external id (the canonical entity
    id), the syncflow version it last applied (None when it cannot say), whether it is
    deleted, and its content."""

    external_id: str
    version: int | None
    deleted: bool
    payload: dict[str, Any] | None
    target_ref: str | None = None

    @property
    def content_hash(self) -> str | None:
        return None if self.payload is None else payload_hash(self.payload)


@dataclass(frozen=True)
class RecordPage:
    records: list[TargetRecord]
    next_cursor: str | None  # None: the last page


class TargetClient(ABC):
    """Base of every target client. `deliver` never raises for a failing call: each result
    carries its own typed error, because one batch can mix outcomes."""

    name: str = ""

    def __init__(self, settings: TargetSettings):
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))
        self._blocked_until = 0.0  # monotonic: after a 429, no call of this client before its Retry-After
        self.oauth2 = OAuth2Token(settings) if settings.oauth2_token_url else None

    async def __aenter__(self) -> "TargetClient":
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is None:
            # no base_url on the session: aiohttp would refuse one with a path not ending in
            # "/", and an absolute request path would drop the prefix (join_url does both)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                connector=aiohttp.TCPConnector(limit=max(1, self.settings.concurrency) * 2),
                json_serialize=json_text,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every call with the static `api_key`."""

    @abstractmethod
    async def deliver(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        """Send the deliveries (different entities); one result per delivery, same order."""

    # -- the read side (reconcile, resync): typed errors are raised, not returned ----------------
    async def read_page(self, resource: str, cursor: str | None, limit: int) -> RecordPage:
        """A page of the records of one resource, from `cursor` (None: the first page)."""
        raise NotImplementedError(f"{self.name} has no read side")

    async def read_record(self, resource: str, external_id: str) -> TargetRecord | None:
        """One record by external id; None when the target does not hold it."""
        raise NotImplementedError(f"{self.name} has no read side")

    async def read_json(self, path: str, *, missing_ok: bool = False) -> Any:
        """GET `path` → its JSON body; None for a 404 with `missing_ok`. Any other answer that
        is not a readable 200 raises its typed error (429: RateLimitedError)."""
        answer = await self.call("GET", path)
        if missing_ok and answer.status == 404:
            return None
        error = error_for(answer.status, body_text(answer.body), retry_after=answer.headers.get("Retry-After"))
        if error is not None:
            raise error
        if answer.problem is not None:
            raise answer.unreadable(self.name)
        return answer.body

    def url(self, path: str) -> str:
        return join_url(self.settings.base_url, path)

    async def call(self, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        """One HTTP call → its Answer, whatever the status or the body. Timeouts, connection
        failures and answers that are not HTTP become TransientTargetError. Redirects are not
        followed: a write answered by a redirect did not happen, and the credential stays
        here. With OAuth2, a 401 fetches a new token and the call is made once more. After
        a 429, calls waiting for a slot are not made before its Retry-After has passed: they
        raise RateLimitedError without a status (nothing was sent)."""
        assert self._session is not None, "start() the client first"
        async with self._slots:
            wait = self._blocked_until - time.monotonic()
            if wait > 0:
                raise RateLimitedError(f"not sent: {self.name} answered 429 to another call, {wait:.1f}s left to wait", wait, None)
            answer = await self._authorized(method, path, json_body, headers)
            if answer.status == 429:
                self._blocked_until = max(self._blocked_until,
                                          time.monotonic() + parse_retry_after(answer.headers.get("Retry-After")))
            return answer

    async def _authorized(self, method: str, path: str, json_body: Any, headers: dict[str, str] | None) -> Answer:
        """The call with its credential (see call)."""
        assert self._session is not None
        if self.oauth2 is None:
            return await self._request(method, path, json_body, {**(headers or {}), **self.auth_headers()})
        token = await self.oauth2.token(self._session)
        answer = await self._request(method, path, json_body, {**(headers or {}), "Authorization": f"Bearer {token}"})
        if answer.status != 401:
            return answer
        self.oauth2.refused(token)
        token = await self.oauth2.token(self._session)
        return await self._request(method, path, json_body, {**(headers or {}), "Authorization": f"Bearer {token}"})

    async def _request(self, method: str, path: str, json_body: Any, headers: dict[str, str]) -> Answer:
        assert self._session is not None
        limit = self.settings.max_answer_bytes
        try:
            async with self._session.request(method, self.url(path), json=json_body, headers=headers, allow_redirects=False) as resp:
                raw, complete = await read_capped(resp, limit)
                return parse_answer(resp.status, raw, complete, resp.content_type, resp.charset, dict(resp.headers), limit)
        except asyncio.TimeoutError as exc:
            raise TransientTargetError(f"timeout after {self.settings.timeout_s:g}s calling {method} {path}") from exc
        except aiohttp.ClientError as exc:
            raise TransientTargetError(readable(f"connection error calling {method} {path}, no usable answer: {type(exc).__name__}: {exc}")) from exc
