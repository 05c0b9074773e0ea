"""What every target client shares: one aiohttp session, timeouts, auth headers, and the one
mapping from an HTTP answer to a typed error, so the worker routes by error class only.

Whatever a target answers — a body not valid in its charset, HTML where JSON was expected, a
body larger than `max_answer_bytes`, a status no HTTP client expects — becomes an `Answer` or
a typed error here, never an exception: one odd answer must not stop a batch."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import aiohttp

from syncflow.errors import (
    DependencyNotMetError,
    PermanentTargetError,
    RateLimitedError,
    SyncflowError,
    TransientTargetError,
)
from syncflow.streams.settings import TargetSettings

DEFAULT_RETRY_AFTER_S = 1.0
REASON_MAX = 500  # characters of a target's text kept in a reason


class BadAnswerError(TransientTargetError):
    """A target's answer syncflow cannot read (bad charset, not JSON, too large, an odd
    status, a batch result of the wrong shape): the outcome is unknown, so the record is
    tried again under the same idempotency key and lands in the DLQ after the last tier."""

    category = "bad-answer"


class UnusableAnswerError(PermanentTargetError):
    """A well-formed success whose content syncflow cannot keep (the target's id is too long
    or not text): the target answers the same on every retry, so the record goes to the DLQ."""

    category = "unusable-answer"


@dataclass(frozen=True)
class Delivery:
    """One change to send: the target resource, its payload, and syncflow's identity of it."""

    entity_type: str  # canonical entity type
    entity_id: str  # canonical id, used as the record's external id at the target
    version: int
    op: str  # "upsert" | "delete"
    resource: str  # the target's name for the collection
    payload: dict[str, Any] | None

    @property
    def idempotency_key(self) -> str:
        return f"{self.entity_id}:{self.version}"


@dataclass(frozen=True)
class DeliveryResult:
    """The target's answer to one delivery: its own id for the record, or a typed error."""

    delivery: Delivery
    target_ref: str | None = None
    error: SyncflowError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


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


class TargetClient(ABC):
    """Base of every target client. `deliver` never raises for a failing call: each result
    carries its own typed error, because one batch can mix outcomes."""

    name: str = ""

    def __init__(self, settings: TargetSettings):
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))

    async def __aenter__(self) -> "TargetClient":
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self.settings.base_url,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                connector=aiohttp.TCPConnector(limit=max(1, self.settings.concurrency) * 2),
                headers=self.auth_headers(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every call."""

    @abstractmethod
    async def deliver(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        """Send the deliveries (different entities); one result per delivery, same order."""

    async def call(self, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        """One HTTP call → its Answer, whatever the status or the body. Timeouts, connection
        failures and answers that are not HTTP become TransientTargetError. Redirects are not
        followed: a write answered by a redirect did not happen."""
        assert self._session is not None, "start() the client first"
        limit = self.settings.max_answer_bytes
        async with self._slots:
            try:
                async with self._session.request(method, path, json=json_body, headers=headers, allow_redirects=False) as resp:
                    raw, complete = await read_capped(resp, limit)
                    return parse_answer(resp.status, raw, complete, resp.content_type, resp.charset, dict(resp.headers), limit)
            except asyncio.TimeoutError as exc:
                raise TransientTargetError(f"timeout after {self.settings.timeout_s:g}s calling {method} {path}") from exc
            except aiohttp.ClientError as exc:
                raise TransientTargetError(readable(f"connection error calling {method} {path}, no usable answer: {type(exc).__name__}: {exc}")) from exc
