"""What a source connector client yields: pages of native records of one stream (a
property's entity type, or a feed), each with the cursor to save once the broker has
acknowledged them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncflow.connectors.cursor import Fingerprint, content_digest
from syncflow.connectors.http import SourceHttp
from syncflow.connectors.publish import Reject
from syncflow.connectors.schemas import modified_ms_of, source_id_of
from syncflow.settings import SourceSettings
from syncflow.streams.topics import raw_key

# What reading a field of a record that does not look like what its source documents can
# raise (a list for an object, a NUL in a time zone, an endless number, absurd nesting).
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError)


def load_json(body: bytes) -> Any:
    """json.loads, with nesting too deep for the parser reported as malformed (ValueError)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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

    def replay_from_ms(self, cursor: str) -> int | None:
        """The oldest modified time (UTC ms) a pass starting at `cursor` reads again, or
        None when a pass never re-reads what was acknowledged (nothing to remember)."""
        ...


def cursor_ceiling_ms(settings: SourceSettings) -> int:
    """The newest modified time a cursor may move to: now + max_future_s."""
    return int((time.time() + settings.max_future_s) * 1000)


def latest_modified_ms(source: str, records: list[dict[str, Any]], current: int | None,
                       ceiling_ms: int | None = None) -> int | None:
    """The newest modified time among the records (or `current`), ignoring unreadable ones
    and those after `ceiling_ms`: such a record still goes out (or to the DLQ), but moving
    the cursor to a garbage time would skip everything the source changes after it."""
    best = current
    for record in records:
        try:
            ms = modified_ms_of(source, record)
        except UNREADABLE:
            continue
        if ceiling_ms is not None and ms > ceiling_ms:
            continue
        best = ms if best is None else max(best, ms)
    return best


def fingerprint_of(source: str, entity_type: str, record: dict[str, Any]) -> tuple[str, Fingerprint] | None:
    """(raw key, (modified ms, content digest)) of a record; None when its source id or
    modified time cannot be read (such a record is always sent)."""
    try:
        key = raw_key(entity_type, source_id_of(source, entity_type, record))
        return key, (modified_ms_of(source, record), content_digest(record))
    except UNREADABLE:
        return None


def unpublished(source: str, entity_type: str, records: list[dict[str, Any]],
                published: dict[str, Fingerprint]) -> tuple[list[dict[str, Any]], dict[str, Fingerprint]]:
    """The records to send (those not last published in exactly this form), and the
    fingerprints to remember once the broker acknowledged them."""
    fresh: list[dict[str, Any]] = []
    marks: dict[str, Fingerprint] = {}
    last = dict(published)
    for record in records:
        found = fingerprint_of(source, entity_type, record)
        if found is not None and last.get(found[0]) == found[1]:
            continue
        fresh.append(record)
        if found is not None:
            last[found[0]] = marks[found[0]] = found[1]
    return fresh, marks


def within_window(published: dict[str, Fingerprint], marks: dict[str, Fingerprint],
                  window_ms: int) -> dict[str, Fingerprint]:
    """The fingerprints after a page: the newly sent ones win, and only what the next pass
    re-reads (modified at or after `window_ms`) is kept, so the cursor file stays small."""
    merged = {**published, **marks}
    return {key: mark for key, mark in merged.items() if mark[0] >= window_ms}
