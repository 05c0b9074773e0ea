"""What every target client shares: one aiohttp session, timeouts, auth headers, and the one
mapping from an HTTP answer to a typed error, so the worker routes by error class only."""

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
    if status == 429:
        return RateLimitedError(f"429 rate limited: {reason}", parse_retry_after(retry_after))
    if missing:
        return DependencyNotMetError(missing)
    if status >= 500 or status == 408:
        return TransientTargetError(f"{status}: {reason}", status)
    return PermanentTargetError(f"{status}: {reason}", status)


def body_text(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body)[:2000]


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

    async def call(self, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """One HTTP call → (status, parsed body, headers). Timeouts and connection failures
        become TransientTargetError; answers of any status are returned."""
        assert self._session is not None, "start() the client first"
        async with self._slots:
            try:
                async with self._session.request(method, path, json=json_body, headers=headers) as resp:
                    text = await resp.text()
                    try:
                        body: Any = json.loads(text) if text else {}
                    except ValueError:
                        body = text
                    return resp.status, body, dict(resp.headers)
            except asyncio.TimeoutError as exc:
                raise TransientTargetError(f"timeout after {self.settings.timeout_s:g}s calling {method} {path}") from exc
            except aiohttp.ClientError as exc:
                raise TransientTargetError(f"connection error calling {method} {path}: {type(exc).__name__}: {exc}") from exc
