"""Calling a source API: one request with a timeout, its failure sorted into transient
(timeouts, connection errors, 5xx, 429, a malformed body: retried with backoff) or
permanent (bad credentials, unknown property: reported, not retried)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from syncflow.errors import MalformedResponseError, PermanentSourceError, TransientSourceError
from syncflow.settings import SourceSettings

T = TypeVar("T")
log = logging.getLogger(__name__)


class SourceHttp:
    """Requests to one source, retried on transient failures."""

    def __init__(self, session: aiohttp.ClientSession, settings: SourceSettings, source: str,
                 on_latency: Callable[[str, float], None] | None = None):
        self.session, self.settings, self.source = session, settings, source
        self.on_latency = on_latency  # (operation, seconds) of every call, failed ones too

    async def call(self, method: str, url: str, parse: Callable[[bytes], T], *, operation: str = "",
                   **kwargs: Any) -> T:
        """Request and parse; `parse` raises ValueError (malformed) or a SourceError."""
        s = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, s.retry_attempts)),
            wait=wait_exponential_jitter(initial=s.retry_initial_s, max=s.retry_max_s),
            retry=retry_if_exception_type(TransientSourceError),
            reraise=True,
            before_sleep=lambda rs: log.warning("%s: %s, retry %d", self.source, rs.outcome.exception(), rs.attempt_number),
        )
        async for attempt in retrying:
            with attempt:
                started = time.perf_counter()
                try:
                    return await self._once(method, url, parse, **kwargs)
                finally:
                    if self.on_latency is not None:
                        self.on_latency(operation or method, time.perf_counter() - started)
        raise AssertionError("unreachable")

    async def _once(self, method: str, url: str, parse: Callable[[bytes], T], **kwargs: Any) -> T:
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        try:
            async with self.session.request(method, url, timeout=timeout, **kwargs) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransientSourceError(f"{self.source}: {method} {url}: {type(exc).__name__} {exc}") from exc
        if status >= 500 or status == 429:
            raise TransientSourceError(f"{self.source}: {method} {url}: HTTP {status}")
        if status in (401, 403):
            raise PermanentSourceError(f"{self.source}: credentials rejected (HTTP {status}): {body[:200]!r}")
        if status >= 400:
            raise PermanentSourceError(f"{self.source}: {method} {url}: HTTP {status}: {body[:300]!r}")
        try:
            return parse(body)
        except ValueError as exc:
            raise MalformedResponseError(f"{self.source}: {method} {url}: malformed body: {exc}") from exc
