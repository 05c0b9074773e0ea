"""What a source connector client yields: pages of native records of one stream (a
property's entity type, or a feed), each with the cursor to save once the broker has
acknowledged them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncflow.connectors.http import SourceHttp
from syncflow.connectors.publish import Reject
from syncflow.connectors.schemas import modified_ms_of


@dataclass
class Page:
    stream: str
    entity_type: str
    records: list[dict[str, Any]]
    cursor: str | None  # None: leave the stream's cursor as it is
    rejects: list[Reject] = field(default_factory=list)


class SourceClient(Protocol):
    source: str
    http: SourceHttp

    async def streams(self) -> list[str]:
        """The streams of one pass (raises PermanentSourceError when none can be listed)."""
        ...

    def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        """Everything in `stream` changed since `cursor`, page by page."""
        ...


def latest_modified_ms(source: str, records: list[dict[str, Any]], current: int | None) -> int | None:
    """The newest modified time among the records (or `current`), ignoring unreadable ones:
    such a record still goes out, the rules reject it with its reason."""
    best = current
    for record in records:
        try:
            ms = modified_ms_of(source, record)
        except (ValueError, KeyError, TypeError):
            continue
        best = ms if best is None else max(best, ms)
    return best
